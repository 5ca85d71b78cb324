"""Everything a finished run exports into its workspace: mesh, turntable video and named views.

Training methods call `export_all` at the end of a run; `dreamtext render` and `dreamtext export`
call `render_outputs` and `export_mesh` on a trained workspace.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from torch import Tensor

from ..errors import DreamtextError
from ..scene.cameras import NAMED_VIEWS, Cameras
from ..utils.progress import stage, timed
from .field_query import field_device, visible_surface_normals
from .formats import save_mesh
from .mesh import MeshExportConfig, extract_mesh
from .texture import TextureBakeConfig, texture_mesh
from .video import RenderFn, mp4_writer_available, save_named_views, save_turntable

if TYPE_CHECKING:
    from ..scene.protocols import Field
    from ..scene.renderer import Background, VolumeRenderer
    from ..utils.workspace import Workspace


@dataclass(frozen=True)
class ExportConfig:
    """What a run writes when it ends (ours: sizes a CPU renders in seconds; raise them on a GPU)."""

    mesh: MeshExportConfig = field(default_factory=MeshExportConfig)
    formats: tuple[Literal["glb", "obj", "ply"], ...] = ("glb",)
    texture: bool = False
    """Bake a UV texture (xatlas) instead of per-vertex colours."""
    texture_bake: TextureBakeConfig = field(default_factory=TextureBakeConfig)
    video_frames: int = 60
    video_size: int = 128
    video_fps: float = 30.0
    views: tuple[str, ...] = tuple(NAMED_VIEWS)
    views_size: int = 256
    camera_radius: float | None = None
    """Distance of the turntable and named-view cameras. None: the run's choice (fit: the data's mean
    camera distance; otherwise 1.3, the middle of the thesis's [1.0, 1.5])."""
    camera_fovy_deg: float | None = None
    """Their vertical field of view. None: the run's choice (fit: the data's; otherwise 50)."""

    def cameras(self) -> dict:
        return {"radius": self.camera_radius or 1.3, "fovy_deg": self.camera_fovy_deg or 50.0}


class ShownScene(Protocol):
    """What the exporters need of a trained scene (`methods.trained.TrainedScene` is one): the field, the renderer
    that shows it, the background behind it and the run's export settings."""

    field: "Field"
    renderer: "VolumeRenderer"
    background: "Background"
    export: ExportConfig


def display_render_fn(field: "Field", renderer: "VolumeRenderer", background: "Background", chunk: int = 2**16):
    """A render function for videos and stills: rgb, display normals, depth and opacity.

    Normals are taken once per ray at the rendered surface point (o + depth d), not at every sample,
    and only on pixels that show the object (`visible_surface_normals`): for display that is the same
    picture at a fraction of the cost (finite-difference normals cost six extra field evaluations per
    point). On the README's mug: `render --frames 60 --size 128` 73 s -> 37 s on 2 cores, every
    turntable and view pixel unchanged.
    """

    def render(cameras: Cameras) -> dict[str, Tensor]:
        cameras = cameras.to(field_device(field))
        out = renderer.render(field, cameras, background=background)
        rays = cameras.generate_rays()
        surface = (rays.origins + rays.directions * out.depth).reshape(-1, 3)
        normals = visible_surface_normals(field, surface, out.opacity, chunk).reshape(out.rgb.shape)
        # Shown as (n + 1) / 2, faded to white where the ray hits nothing, as colour fades to the background.
        display_normals = ((normals + 1) / 2) * out.opacity + (1 - out.opacity)
        return {"rgb": out.rgb.clamp(0, 1), "normal": display_normals.clamp(0, 1), "depth": out.depth, "opacity": out.opacity}

    return render


def write_turntable(render: RenderFn, path: Path, frames: int, size: int, config: ExportConfig,
                    progress: bool = False) -> list[Path]:
    """The turntable as mp4 and gif; as gif only, with a warning, where no ffmpeg is installed (an
    export never fails a finished run for want of a video codec)."""
    mp4 = mp4_writer_available()
    if not mp4:
        print("dreamtext: warning: imageio-ffmpeg is not installed, so the turntable is written as a gif only "
              "(pip install imageio-ffmpeg for mp4)", file=sys.stderr)
    return save_turntable(render, path, n_frames=frames, size=size, fps=config.video_fps, mp4=mp4, progress=progress,
                          **config.cameras())


def write_mesh(field: "Field", config: ExportConfig, path: str | Path, fmt: str,
               progress: bool = False) -> tuple[list[Path], dict]:
    with stage(f"mesh ({fmt})", progress):
        mesh = extract_mesh(field, config.mesh)
    if config.texture:
        with stage("texture bake", progress):
            mesh = texture_mesh(mesh, field, config.texture_bake)
    files = save_mesh(mesh, path, fmt)  # type: ignore[arg-type]
    return files, {"mesh_vertices": int(len(mesh.vertices)), "mesh_faces": int(len(mesh.faces)), "mesh_volume": float(mesh.volume)}


def export_all(field: "Field", renderer: "VolumeRenderer", workspace: "Workspace", config: ExportConfig,
               background: "Background", progress: bool = False) -> dict:
    """Write mesh(es), turntable and named views into the workspace; return figures for metrics.json (with
    each stage's wall time in `stage_seconds`). progress: show each stage's progress."""
    stats: dict = {}
    seconds: dict[str, float] = {}
    files: list[Path] = []
    for fmt in config.formats:
        try:
            with timed(seconds, "mesh"):
                written, stats = write_mesh(field, config, workspace.path(f"mesh.{fmt}"), fmt, progress)
        except DreamtextError as error:
            # A run's training is never lost to an export problem: report it and write the rest.
            print(f"dreamtext: warning: no mesh written: {error}", file=sys.stderr)
            stats = {"mesh_error": str(error)}
            break
        files += written
    render = display_render_fn(field, renderer, background)
    with timed(seconds, "turntable"):
        files += write_turntable(render, workspace.path("turntable.mp4"), config.video_frames, config.video_size, config,
                                 progress)
    with timed(seconds, "views"):
        files += save_named_views(render, workspace.path("views"), names=config.views, size=config.views_size,
                                  progress=progress, **config.cameras())
    stats["files"] = sorted(str(f.relative_to(workspace.root)) for f in files)
    stats["stage_seconds"] = seconds
    return stats


def render_outputs(trained: ShownScene, folder: Path, frames: int, size: int, progress: bool = False) -> list[Path]:
    config = trained.export
    render = display_render_fn(trained.field, trained.renderer, trained.background)
    files = write_turntable(render, folder / "turntable.mp4", frames, size, config, progress)
    return files + save_named_views(render, folder / "views", names=config.views, size=size, progress=progress,
                                    **config.cameras())


def export_mesh(trained: ShownScene, path: str, fmt: str, resolution: int | None = None, texture: bool | None = None,
                progress: bool = False, density_threshold: float | None = None) -> list[Path]:
    config = trained.export
    if resolution is not None:
        config = replace(config, mesh=replace(config.mesh, resolution=resolution))
    if density_threshold is not None:
        config = replace(config, mesh=replace(config.mesh, density_threshold=density_threshold))
    if texture is not None:
        config = replace(config, texture=texture)
    files, _ = write_mesh(trained.field, config, path, fmt, progress)
    return files
