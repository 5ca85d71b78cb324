"""`dreamtext view`: a workspace in the browser, served by viser from localhost.

viser serves its own bundled web client and streams images and GUI state over a websocket, so the
viewer works offline. Each browser's camera is rendered by `render.render_view` in one worker
thread: a small preview while the camera moves, then the full size once it has stopped. A second
thread polls the workspace and, while a run trains, reloads each new checkpoint and shows the
step, losses and ETA from progress.json.
"""

from __future__ import annotations

import contextlib
import io
import math
import socket
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch

from ..errors import DreamtextError
from ..scene.cameras import spherical_to_cartesian
from ..utils.device import Device, resolve_device
from ..utils.memory import release_free_memory
from .live import LiveWorkspace
from .origin import install as install_origin_checks
from .render import VIEW_MODES, ViewImage, ViewMode, ViewPose, light_direction, pose_from_viser, render_view

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
BACKGROUNDS: dict[str, tuple[float, float, float] | None] = {"run": None, "white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


@dataclass
class ViewerConfig:
    host: str = "127.0.0.1"
    """Address to listen on (ours: 127.0.0.1, this machine only; 0.0.0.0: every network interface)."""
    port: int = 8080
    """Port to listen on (viser's default; the next free one is taken, and said, when it is busy; 0: any free port)."""
    device: Device = "auto"
    render_height: int | None = None
    """Height in pixels of a still frame (ours: None = 512 on CUDA, 128 on CPU, where a 192x128 frame
    of an untrained default field took 1.7-5.6 s on two busy cores; half that height while moving)."""
    preview_fraction: float = 0.5
    """ours: frames drawn while the camera moves are this fraction of the height."""
    settle_s: float = 0.25
    """ours: the camera counts as still this long after its last move."""
    poll_s: float = 1.0
    """ours: how often (seconds) the workspace is checked for a new checkpoint, mesh and progress."""
    release_memory: bool = True
    """ours: when a browser leaves, hand the process's free heap back to the system (glibc's malloc_trim;
    `dreamtext bench viewer` measures both)."""

    def check(self) -> None:
        """One-line errors for an address this machine cannot listen on (viser would try port after port)."""
        if not 0 <= self.port <= 65535:
            raise DreamtextError(f"--port {self.port} is no port number; use 1-65535 (or 0 for any free port)")
        if self.render_height is not None and not 16 <= self.render_height <= 4096:
            raise DreamtextError(f"--render-height {self.render_height} is out of range; use 16 to 4096 pixels")
        try:
            family = socket.getaddrinfo(self.host, None)[0][0]
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((self.host, 0))
        except OSError as error:  # unknown name, or not an address of this machine
            raise DreamtextError(f"--host {self.host!r} cannot be listened on ({error.strerror or error}); "
                                 "use 127.0.0.1, or 0.0.0.0 for every interface") from None

    def still_height(self) -> int:
        if self.render_height is not None:
            return self.render_height
        return 512 if resolve_device(self.device).type == "cuda" else 128


@dataclass
class DisplaySettings:
    """What the panel chose: the same for every connected browser."""

    show: Literal["field", "mesh"] = "field"
    mode: ViewMode = "albedo"
    light_follows_camera: bool = True  # the thesis lights the object from near the camera (6.1.4)
    light_azimuth_deg: float = 45.0
    light_elevation_deg: float = 30.0
    background: str = "run"
    height: int = 128

    def light(self):
        return None if self.light_follows_camera else light_direction(self.light_azimuth_deg, self.light_elevation_deg)


@dataclass
class _Browser:
    """One connected browser: its latest camera and which version of it was drawn, at what size."""

    client: object
    camera: tuple | None = None  # (wxyz, position, fov_rad, aspect)
    version: int = 0
    drawn_version: int = -1
    drawn_full: bool = False
    shown: tuple[int, bool] = (-1, False)  # (version, full size) of the last frame sent to the page
    moved_at: float = field(default_factory=time.monotonic)


class WorkspaceViewer:
    """The viewer of one workspace. `start()` serves it and returns its URL; `stop()` ends it."""

    def __init__(self, workspace: str | Path, config: ViewerConfig = ViewerConfig(), loader: Callable | None = None):
        self.config = config
        self.live = LiveWorkspace(workspace, config.device, loader)
        self.settings = DisplaySettings(height=config.still_height())
        self.frames_sent = 0
        self.last_error: str | None = None
        self._browsers: dict[int, _Browser] = {}
        self._lock = threading.Lock()
        # The poll thread replaces the mesh while a panel callback may set its visibility: one at a time,
        # re-entrant because setting the dropdown's value can run its callback in the same thread.
        self._mesh_lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.server = None

    # -- rendering, independent of the browser -------------------------------------------------------
    def render(self, pose: ViewPose) -> ViewImage | None:
        """The current scene from `pose` with the panel's settings; None before the first checkpoint."""
        scene = self.live.scene
        if scene is None:
            return None
        settings = self.settings
        return render_view(scene, pose, settings.mode, light_dir=settings.light(), background=BACKGROUNDS[settings.background])

    def invalidate(self) -> None:
        """Draw every browser again (new settings or a new checkpoint)."""
        with self._lock:
            for browser in self._browsers.values():
                browser.version += 1
        self._wake.set()

    def _next_frame(self) -> tuple[_Browser, tuple, bool] | None:
        """The browser to draw next, its camera, and whether at full size."""
        now = time.monotonic()
        with self._lock:
            for browser in self._browsers.values():
                if browser.camera is None:
                    continue
                still = now - browser.moved_at >= self.config.settle_s
                if browser.drawn_version != browser.version or (not browser.drawn_full and still):
                    browser.drawn_version, browser.drawn_full = browser.version, still
                    return browser, browser.camera, still
        return None

    def _draw(self, browser: _Browser, camera: tuple, full: bool) -> None:
        client = browser.client
        if client.client_id not in self._browsers:  # the page was closed meanwhile
            return
        if self.settings.show == "mesh" or self.live.scene is None:
            client.scene.set_background_image(None)
            return
        height = self.settings.height if full else max(16, int(self.settings.height * self.config.preview_fraction))
        wxyz, position, fov, aspect = camera
        frame = self.render(pose_from_viser(wxyz, position, fov, aspect, height))
        if frame is not None and client.client_id in self._browsers:  # still open after the render
            with warnings.catch_warnings():  # viser warns when the page closed between that check and the send
                warnings.filterwarnings("ignore", message="Queued a .* on a closed connection")
                client.scene.set_background_image(frame.image, format="jpeg", jpeg_quality=90)
            self.frames_sent += 1
            browser.shown = (browser.drawn_version, full)

    def _render_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            job = self._next_frame()
            if job is None:
                self._wake.wait(0.05)
                continue
            try:
                self._draw(*job)
            except Exception as error:  # noqa: BLE001 - one bad frame must not end the viewer
                self._report(error)

    def _poll_loop(self) -> None:
        while not self._stopping.wait(self.config.poll_s):
            try:
                self.refresh()
            except Exception as error:  # noqa: BLE001 - keep following the workspace
                self._report(error)

    def _report(self, error: Exception) -> None:
        self.last_error = f"{type(error).__name__}: {error}"
        print(f"dreamtext view: {self.last_error}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)

    def refresh(self) -> set[str]:
        """Reload what changed in the workspace and update the panel and the browsers."""
        updated = self.live.refresh()
        if self.server is not None:
            self._status.content = self.live.summary()
            if "mesh" in updated:
                self._show_mesh()
        if "scene" in updated:
            self.invalidate()
        return updated

    # -- the viser server --------------------------------------------------------------------------
    def start(self) -> str:
        import viser

        self.config.check()
        self.live.refresh()
        install_origin_checks(self.config.host)  # only this machine's pages may read the viewer (origin.py)
        with contextlib.redirect_stdout(io.StringIO()):  # viser's own banner; `serve` prints the URL
            self.server = viser.ViserServer(host=self.config.host, port=self.config.port, label="dreamtext", verbose=False)
        self.server.scene.set_up_direction("+y")
        self._place_initial_camera()
        self._build_panel()
        self._mesh = None
        self._show_mesh()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        for target in (self._render_loop, self._poll_loop):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.url

    @property
    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.server.get_port()}/"

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        if self.server is not None:
            with contextlib.redirect_stdout(io.StringIO()):  # viser's "Server stopped"
                self.server.stop()

    def _place_initial_camera(self) -> None:
        """In front of the object, slightly above, at the distance and field of view of the run's videos."""
        framing = self.live.scene.export.cameras() if self.live.scene is not None else {"radius": 1.3, "fovy_deg": 50.0}
        eye = spherical_to_cartesian(torch.tensor(framing["radius"]), torch.tensor(70.0), torch.tensor(0.0))
        camera = self.server.initial_camera
        camera.position = tuple(float(v) for v in eye)
        camera.look_at = (0.0, 0.0, 0.0)
        camera.up = (0.0, 1.0, 0.0)
        camera.fov = math.radians(framing["fovy_deg"])

    def _build_panel(self) -> None:
        gui = self.server.gui
        self._status = gui.add_markdown(self.live.summary())
        self._show = gui.add_dropdown("Show", self._show_options(), initial_value="field")
        mode = gui.add_dropdown("Shading", VIEW_MODES, initial_value=self.settings.mode)
        follows = gui.add_checkbox("Light follows camera", self.settings.light_follows_camera)
        azimuth = gui.add_slider("Light azimuth", 0.0, 360.0, 5.0, self.settings.light_azimuth_deg, disabled=True)
        elevation = gui.add_slider("Light elevation", -90.0, 90.0, 5.0, self.settings.light_elevation_deg, disabled=True)
        background = gui.add_dropdown("Background", tuple(BACKGROUNDS), initial_value=self.settings.background)
        height = gui.add_slider("Resolution", 32, 1024, 32, self.settings.height)

        def setter(name: str, handle, after: Callable[[], None] | None = None) -> None:
            @handle.on_update
            def _(_event) -> None:
                setattr(self.settings, name, handle.value)
                if after is not None:
                    after()
                self.invalidate()

        def light_controls() -> None:
            azimuth.disabled = elevation.disabled = bool(follows.value)

        setter("show", self._show, self._mesh_visibility)
        setter("mode", mode)
        setter("light_follows_camera", follows, light_controls)
        setter("light_azimuth_deg", azimuth)
        setter("light_elevation_deg", elevation)
        setter("background", background)
        setter("height", height)

    def _show_options(self) -> tuple[str, ...]:
        return ("field", "mesh") if self.live.mesh_glb is not None else ("field",)

    def _show_mesh(self) -> None:
        """Add, replace or hide the exported mesh, and offer it in the panel once it is in the scene (a
        choice made as soon as it is offered must find it there)."""
        with self._mesh_lock:
            if self._mesh is not None:
                self._mesh.remove()
                self._mesh = None
            if self.live.mesh_glb is not None:
                self._mesh = self.server.scene.add_glb("/mesh", self.live.mesh_glb, visible=False)
            self._show.options = self._show_options()
            if self.settings.show not in self._show.options:
                self.settings.show = self._show.value = "field"
            self._mesh_visibility()

    def _mesh_visibility(self) -> None:
        with self._mesh_lock:
            if self._mesh is not None:
                self._mesh.visible = self.settings.show == "mesh"

    def _connect(self, client) -> None:
        browser = _Browser(client)
        with self._lock:
            self._browsers[client.client_id] = browser

        @client.camera.on_update
        def _(camera) -> None:
            with self._lock:
                browser.camera = (camera.wxyz.copy(), camera.position.copy(), float(camera.fov), float(camera.aspect))
                browser.version += 1
                browser.moved_at = time.monotonic()
            self._wake.set()

    def _disconnect(self, client) -> None:
        with self._lock:
            self._browsers.pop(client.client_id, None)
        if self.config.release_memory:
            # The frames drawn for that browser were freed, but glibc keeps them in the rendering and encoding
            # threads' arenas, so the resident set would stay at its peak after the visitors have gone.
            release_free_memory()


def serve(workspace: str | Path, config: ViewerConfig = ViewerConfig()) -> None:
    """Serve the viewer until Ctrl+C."""
    viewer = WorkspaceViewer(workspace, config)
    url = viewer.start()
    if config.host not in LOCAL_HOSTS:
        print(f"dreamtext view: warning: listening on {config.host}: other machines can open this viewer", file=sys.stderr)
    if config.port not in (0, viewer.server.get_port()):
        print(f"dreamtext view: port {config.port} is busy; using {viewer.server.get_port()}", file=sys.stderr)
    print(f"viewer of {viewer.live.workspace.root} at {url} (Ctrl+C stops it)", flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
