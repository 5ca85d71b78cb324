/* dreamtext gallery page: a turntable whose mp4 this browser cannot play shows its gif instead. */
(function () {
  "use strict";
  var NO_SOURCE = 3; // HTMLMediaElement.NETWORK_NO_SOURCE: every <source> failed

  function useGif(video) {
    if (!video.parentNode) return;
    var image = document.createElement("img");
    image.src = video.dataset.gif;
    image.alt = video.getAttribute("aria-label") || "turntable";
    image.className = video.className;
    video.parentNode.replaceChild(image, video);
  }

  Array.prototype.forEach.call(document.querySelectorAll("video[data-gif]"), function (video) {
    // <source> errors do not bubble, so listen in the capture phase.
    video.addEventListener("error", function () { if (video.networkState === NO_SOURCE) useGif(video); }, true);
    if (video.networkState === NO_SOURCE) useGif(video);
  });
})();
