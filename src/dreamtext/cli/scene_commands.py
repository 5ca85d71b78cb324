"""The `dreamtext` commands that make a scene: `text` (text-to-3D by score distillation) and `fit` (a radiance
field fitted to posed images)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

import tyro

from ..methods.fit import FitConfig, fit
from ..methods.presets import PRESETS, default_preset, preset_config
from ..methods.text_to_3d import TextTo3DConfig, text_to_3d
from .defaults import flag_value, saved_config
from .positionals import DataDir, Prompt

PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]  # the preset table's own names


@dataclass
class FitCommand:
    """Fit a radiance field to posed images (transforms.json + images), then export a mesh and videos.

    With no folder, the built-in analytic scene (a red mug) is rendered into the workspace and fitted.
    """

    data: DataDir = None
    """Folder holding transforms.json (Instant-NGP / nerfstudio convention) and the images."""
    workspace: str = "out/fit"
    """Folder that receives config, checkpoints, validation renders, mesh and videos."""
    resume: bool = False
    """Continue the run saved in the workspace."""
    quiet: bool = False
    config: Annotated[FitConfig, tyro.conf.arg(name="")] = field(default_factory=FitConfig)

    @classmethod
    def defaults(cls, args: list[str]) -> "FitCommand":
        """FitConfig's defaults, or with --resume the saved run's (an option left out keeps the run's value)."""
        config = saved_config(flag_value(args, "--workspace") or cls.workspace, FitConfig()) if "--resume" in args else None
        return cls(config=config or FitConfig())

    def run(self) -> None:
        config = replace(self.config, data=self.data)
        result = fit(config, self.workspace, resume=self.resume, progress=not self.quiet)
        print(f"held-out PSNR {result.heldout_psnr:.2f} dB; outputs in {result.workspace}")


@dataclass
class TextCommand:
    """Create a 3D object from a text prompt by score distillation on Stable Diffusion.

    Writes config, checkpoints, validation renders, a turntable video, named views and a GLB mesh. Every
    setting of the run is an option (`--sds.guidance`, `--renderer.max-samples-per-chunk`, ...); their defaults
    are the chosen preset's, or with --resume the saved run's.
    """

    prompt: Prompt
    workspace: str = "out/text"
    preset: PresetName | None = None
    """builtin: the built-in prior on a CPU (32 px, a small field, 1200 iterations, the prior's hull as the start);
    dreamfusion: Stable DreamFusion as the thesis started from it (64 px, guidance 100, 10k iterations);
    fitfusion: the thesis's tuned settings (256 px, guidance 1000, 20k iterations). None: builtin for the
    built-in prior, else dreamfusion."""
    resume: bool = False
    """Continue the run saved in the workspace (the same schedule and random stream; options given now on top)."""
    quiet: bool = False
    config: Annotated[TextTo3DConfig, tyro.conf.arg(name="")] = field(default_factory=TextTo3DConfig)

    @classmethod
    def defaults(cls, args: list[str]) -> "TextCommand":
        """The defaults this command line starts from: the preset's config (the preset named, else the one its
        --model implies), or with --resume the saved run's."""
        preset = flag_value(args, "--preset")
        config = preset_config(preset or default_preset(flag_value(args, "--model")), "")
        workspace = flag_value(args, "--workspace") or cls.workspace
        if "--resume" in args:
            config = saved_config(workspace, config) or config
        return cls(prompt=tyro.MISSING, config=config)

    def run(self) -> None:
        config = replace(self.config, prompt=replace(self.config.prompt, prompt=self.prompt))
        result = text_to_3d(config, self.workspace, resume=self.resume, progress=not self.quiet)
        print(f"{result.metrics['iters']} iterations; outputs in {result.workspace}")
