"""The `dreamtext` command: one subcommand per job, each generated from a typed dataclass.

Errors caused by the user's input print one line and exit with status 2; nothing is overwritten.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..errors import EXIT_BAD_INPUT, DreamtextError
from ..methods.fit import FitConfig


@dataclass
class FitCommand:
    """Fit a radiance field to posed images (transforms.json + images), then export a mesh and videos.

    With no folder, the built-in analytic scene (a red mug) is rendered into the workspace and fitted.
    """

    data: tyro.conf.Positional[str | None] = None
    """Folder holding transforms.json (Instant-NGP / nerfstudio convention) and the images."""
    workspace: str = "out/fit"
    """Folder that receives config, checkpoints, validation renders, mesh and videos."""
    resume: bool = False
    """Continue the run saved in the workspace."""
    quiet: bool = False
    config: Annotated[FitConfig, tyro.conf.arg(name="")] = field(default_factory=FitConfig)

    def run(self) -> None:
        from ..methods.fit import fit

        self.config.data = self.data
        result = fit(self.config, self.workspace, resume=self.resume, progress=not self.quiet)
        print(f"held-out PSNR {result.heldout_psnr:.2f} dB; outputs in {result.workspace}")


@dataclass
class RenderCommand:
    """Render a trained workspace again: turntable video and named views."""

    workspace: tyro.conf.Positional[str]
    frames: int = 60
    size: int = 256

    def run(self) -> None:
        from ..methods.registry import load_trained
        from ..export.pipeline import render_outputs

        trained = load_trained(self.workspace)
        files = render_outputs(trained, Path(self.workspace), frames=self.frames, size=self.size)
        print("wrote " + ", ".join(str(f) for f in files))


@dataclass
class ExportCommand:
    """Export the mesh of a trained workspace."""

    workspace: tyro.conf.Positional[str]
    format: Literal["glb", "obj", "ply"] = "glb"
    resolution: int | None = None
    """Marching-cubes grid resolution (default: the run's export config)."""
    texture: bool | None = None
    """Bake a UV texture (xatlas) instead of vertex colours (default: the run's export config)."""
    out: str | None = None
    """Output path (default: WORKSPACE/mesh.FORMAT)."""

    def run(self) -> None:
        from ..methods.registry import load_trained
        from ..export.pipeline import export_mesh

        trained = load_trained(self.workspace)
        path = export_mesh(trained, self.out or str(Path(self.workspace) / f"mesh.{self.format}"), self.format,
                           resolution=self.resolution, texture=self.texture)
        print(f"wrote {path}")


@dataclass
class BenchCommand:
    """Run a benchmark and print its figures (JSON with --json)."""

    suite: tyro.conf.Positional[Literal["engine"]]
    json: bool = False
    quick: bool = False
    """A small, fast version of the suite (for tests and smoke checks)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def run(self) -> None:
        from ..bench import run_benchmark

        run_benchmark(self.suite, as_json=self.json, quick=self.quick, device=self.device)


COMMANDS = {"fit": FitCommand, "render": RenderCommand, "export": ExportCommand, "bench": BenchCommand}


def main(argv: list[str] | None = None) -> int:
    command = tyro.extras.subcommand_cli_from_dict(COMMANDS, prog="dreamtext", args=argv)
    try:
        command.run()
    except DreamtextError as error:
        print(f"dreamtext: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("dreamtext: interrupted; the last checkpoint is kept, continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
