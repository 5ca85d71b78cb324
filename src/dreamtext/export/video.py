"""Turntable videos (mp4 and gif) and named-view stills of a rendered scene.

Layout: each frame or still shows the requested kinds side by side, left to right in the order
given (by default colour | normals | depth), so one file compares them at a glance.

`render_fn(cameras)` is the renderer: it returns a dict of tensors [N, H, W, C] with values in
[0, 1] for "rgb" and "normal"; "depth" [N, H, W] or [N, H, W, 1] in scene units, normalised here
for display (near bright, far dark, background black); an optional "opacity" [N, H, W(, 1)]
separates the object from the background for that normalisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import DreamtextError
from ..scene.cameras import NAMED_VIEWS, Cameras, named_view_cameras, orbit_cameras
from ..utils.io import atomic_write
from ..utils.progress import Progress

RenderFn = Callable[[Cameras], Mapping[str, Tensor]]
DISPLAY_KINDS: tuple[str, ...] = ("rgb", "normal", "depth")


def _as_hw(tensor: Tensor) -> np.ndarray:
    """[N, H, W] or [N, H, W, 1] to float32 [N, H, W]."""
    array = tensor.detach().float().cpu().numpy()
    return array[..., 0] if array.ndim == 4 else array


@torch.no_grad()
def render_in_chunks(render_fn: RenderFn, cameras: Cameras, kinds: Sequence[str], chunk_frames: int,
                     on_chunk: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Render `chunk_frames` cameras at a time; keep colours as uint8 and depth/opacity as float32.

    Returns "rgb"/"normal" uint8 [N, H, W, 3], "depth" float32 [N, H, W] and, when the renderer
    gives it, "opacity" float32 [N, H, W]. on_chunk(frames_done) is called after each chunk.
    """
    unknown = [kind for kind in kinds if kind not in DISPLAY_KINDS]
    if unknown:
        raise DreamtextError(f"unknown render kinds {unknown}; choose from {', '.join(DISPLAY_KINDS)}")
    wanted = list(kinds) + (["opacity"] if "depth" in kinds else [])
    pieces: dict[str, list[np.ndarray]] = {key: [] for key in wanted}
    for start in range(0, len(cameras), chunk_frames):
        outputs = render_fn(cameras[start : start + chunk_frames])
        missing = [kind for kind in kinds if kind not in outputs]
        if missing:
            raise ValueError(f"the renderer gave no {missing} output; it gave {sorted(outputs)}")
        for key in wanted:
            if key not in outputs:
                continue
            if key in ("depth", "opacity"):
                pieces[key].append(_as_hw(outputs[key]))
            else:
                color = outputs[key][..., :3].detach().float().clamp(0, 1).cpu().numpy()
                pieces[key].append(np.rint(color * 255.0).astype(np.uint8))
        if on_chunk is not None:
            on_chunk(min(start + chunk_frames, len(cameras)))
    return {key: np.concatenate(chunks) for key, chunks in pieces.items() if chunks}


def depth_to_display(depth: np.ndarray, opacity: np.ndarray | None = None) -> np.ndarray:
    """Depth [N, H, W] to uint8 grey [N, H, W, 3] with one range for all frames, so nothing flickers.

    The range spans the 1st to 99th percentile of the object's depths (pixels with opacity above
    one half, or every finite pixel without opacity); near is bright, the background black.
    """
    finite = np.isfinite(depth)
    foreground = finite if opacity is None else finite & (opacity > 0.5)
    if not foreground.any():
        return np.zeros(depth.shape + (3,), dtype=np.uint8)
    near, far = np.percentile(depth[foreground], [1.0, 99.0])
    shade = 1.0 - (np.where(finite, depth, far) - near) / max(far - near, 1e-8)
    shade = np.clip(shade, 0.0, 1.0)
    shade = shade * (foreground if opacity is None else np.clip(opacity, 0.0, 1.0))
    grey = np.rint(shade * 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def compose_panels(frames: Mapping[str, np.ndarray], kinds: Sequence[str], even: bool = False) -> np.ndarray:
    """The kinds side by side, [N, H, W * len(kinds), 3]; `even` pads with black to even sides (yuv420p)."""
    panels = [depth_to_display(frames["depth"], frames.get("opacity")) if kind == "depth" else frames[kind] for kind in kinds]
    strip = np.concatenate(panels, axis=2)
    if even:
        n, h, w, _ = strip.shape
        strip = np.pad(strip, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    return strip


def mp4_writer_available() -> bool:
    """Whether mp4 can be written: imageio-ffmpeg imports and finds its ffmpeg binary."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return False
    return True


def write_mp4(frames: np.ndarray, path: Path, fps: float) -> Path:
    """H.264 yuv420p mp4 (what browsers and players accept) with the ffmpeg bundled in imageio-ffmpeg."""
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError("yuv420p needs even frame sides; pad the frames first")

    def write(tmp: Path) -> None:
        # The temporary name does not end in .mp4, so the container is named explicitly.
        import imageio_ffmpeg  # only mp4 needs ffmpeg: training and meshes work without it

        writer = imageio_ffmpeg.write_frames(
            str(tmp), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
            macro_block_size=1, output_params=["-f", "mp4", "-movflags", "+faststart"],
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()

    return atomic_write(path, write)


def write_gif(frames: np.ndarray, path: Path, fps: float) -> Path:
    """Looping gif; Pillow merges identical consecutive frames (a still object) into longer ones."""
    images = [Image.fromarray(frame) for frame in frames]
    duration_ms = max(20, int(round(1000.0 / fps)))
    return atomic_write(
        path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    )


def save_turntable(
    render_fn: RenderFn,
    path: str | Path,
    n_frames: int = 120,
    size: int = 256,
    fps: float = 30.0,
    kinds: Sequence[str] = DISPLAY_KINDS,
    *,
    radius: float = 1.3,
    polar_deg: float = 70.0,
    fovy_deg: float = 50.0,
    chunk_frames: int = 1,
    gif: bool = True,
    mp4: bool = True,
    progress: bool = False,
) -> list[Path]:
    """Render a full orbit starting in front; write `path` (suffix set to .mp4) and the same name as .gif
    (each unless turned off by `mp4` / `gif`).

    Defaults: 120 frames at 30 fps is a 4 s turn (ours); the orbit's radius, polar angle and field of
    view are `orbit_cameras`'s. Frames are rendered `chunk_frames` at a time (ours: one, so progress moves
    with every frame; the renderer batches each frame's rays itself); only uint8 frames and float depth stay in
    memory. Returns the files written.
    """
    if n_frames < 1:
        raise DreamtextError(f"a turntable needs at least one frame, got {n_frames}")
    if not (mp4 or gif):
        raise ValueError("save_turntable needs at least one of mp4 and gif")
    path = Path(path).with_suffix(".mp4")
    cameras = orbit_cameras(n_frames, size, size, radius=radius, polar_deg=polar_deg, fovy_deg=fovy_deg).cameras
    with Progress(total=n_frames, description="turntable", log_every=chunk_frames, enabled=progress) as bar:
        frames = compose_panels(render_in_chunks(render_fn, cameras, kinds, chunk_frames, bar.update), kinds, even=True)
    written = [write_mp4(frames, path, fps)] if mp4 else []
    if gif:
        written.append(write_gif(frames, path.with_suffix(".gif"), fps))
    return written


def save_named_views(
    render_fn: RenderFn,
    folder: str | Path,
    names: Sequence[str] = tuple(NAMED_VIEWS),
    size: int = 512,
    kinds: Sequence[str] = ("rgb",),
    *,
    radius: float = 1.3,
    fovy_deg: float = 50.0,
    chunk_frames: int = 1,
    progress: bool = False,
) -> list[Path]:
    """One PNG per named view (scene/cameras.py's NAMED_VIEWS), `folder/<name>.png`, kinds side by side.

    Depth shares one display range across the views. Returns the files written, in `names` order.
    """
    folder = Path(folder)
    unknown = [name for name in names if name not in NAMED_VIEWS]
    if unknown:
        raise DreamtextError(f"unknown view names {unknown}; known views: {', '.join(NAMED_VIEWS)}")
    cameras = named_view_cameras(list(names), size, size, radius=radius, fovy_deg=fovy_deg).cameras
    with Progress(total=len(names), description="views", log_every=chunk_frames, enabled=progress) as bar:
        stills = compose_panels(render_in_chunks(render_fn, cameras, kinds, chunk_frames, bar.update), kinds)
    written = []
    for name, still in zip(names, stills):
        image = Image.fromarray(still)
        written.append(atomic_write(folder / f"{name}.png", lambda tmp, image=image: image.save(tmp, format="PNG")))
    return written
