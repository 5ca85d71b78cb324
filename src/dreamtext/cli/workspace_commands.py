"""The `dreamtext` commands that use a trained workspace: `render`, `export`, `view` and `gallery`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..export.formats import mesh_format
from ..export.outputs import export_mesh, render_outputs
from ..gallery import build_gallery
from ..methods.trained import load_trained
from ..viewer.server import ViewerConfig, serve
from .positionals import WorkspaceDir, WorkspaceDirs


@dataclass
class RenderCommand:
    """Render a trained workspace again: turntable video and named views."""

    workspace: WorkspaceDir
    frames: int = 60
    size: int = 256

    def run(self) -> None:
        trained = load_trained(self.workspace)
        files = render_outputs(trained, Path(self.workspace), frames=self.frames, size=self.size, progress=True)
        print("wrote " + ", ".join(str(f) for f in files))


@dataclass
class ExportCommand:
    """Export the mesh of a trained workspace."""

    workspace: WorkspaceDir
    format: Literal["glb", "obj", "ply"] | None = None
    """None: --out's suffix when it names a format, else glb."""
    resolution: int | None = None
    """Marching-cubes grid resolution (None: the run's export config)."""
    density_threshold: float | None = None
    """The density the surface is drawn at (None: the run's export config; lower it when the mesh comes out
    empty or thin parts are missing)."""
    texture: bool = False
    """Bake a UV texture (xatlas) instead of vertex colours (without it: as the run's export config says)."""
    out: str | None = None
    """Output path (None: WORKSPACE/mesh.FORMAT, or WORKSPACE/mesh_textured.FORMAT with --texture, beside the run's
    own mesh)."""

    def run(self) -> None:
        trained = load_trained(self.workspace)
        fmt = mesh_format(self.format, self.out)
        default = f"mesh_textured.{fmt}" if self.texture else f"mesh.{fmt}"
        files = export_mesh(trained, self.out or str(Path(self.workspace) / default), fmt,
                            resolution=self.resolution, texture=True if self.texture else None, progress=True,
                            density_threshold=self.density_threshold)
        print("wrote " + ", ".join(str(f) for f in files))


@dataclass
class ViewCommand:
    """Open a workspace in the browser: its trained field (shading modes, light direction) or mesh, live while it trains."""

    workspace: WorkspaceDir
    config: Annotated[ViewerConfig, tyro.conf.arg(name="")] = field(default_factory=ViewerConfig)

    def run(self) -> None:
        serve(self.workspace, self.config)


@dataclass
class GalleryCommand:
    """Write a static web page comparing runs: prompt or input, turntables, named views, metrics and each mesh in 3D."""

    workspaces: WorkspaceDirs
    out: str = "site"
    """Folder that receives index.html, the runs' files and the page's scripts (no CDN, works offline)."""
    title: str = "dreamtext results"

    def run(self) -> None:
        index = build_gallery(self.workspaces, self.out, title=self.title)
        print(f"wrote {index}; view it with: python3 -m http.server -d {self.out}")
