"""The image-to-3D commands of `dreamtext` (DreamText, thesis 5.2-5.3): `image` runs the three steps
`describe`, `descriptor` and `reconstruct`; `diverse` runs it on images drawn from the prior."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..errors import DreamtextError
from ..methods.describe import DescribeConfig, describe_image
from ..methods.image_to_3d.descriptor import DescriptorConfig, train_descriptor
from ..methods.image_to_3d.pipeline import (DEFAULT_METHOD, METHODS, ImageTo3DConfig, image_to_3d, method_config,
                                             read_stage_file, with_stage_settings)
from ..methods.image_to_3d.diverse import DIVERSE_METHOD, DiverseConfig, diverse
from ..methods.image_to_3d.reconstruct import ReconstructConfig, reconstruct, resolve_text
from ..methods.sample import SampleConfig
from ..utils.device import Device, Precision
from ..utils.workspace_files import DESCRIPTOR_DIR
from .defaults import first_positional, flag_value, saved_config
from .positionals import ImageFile, Prompt, WorkspaceDir

Method = Literal[tuple(METHODS)]  # type: ignore[valid-type]  # the method table's own names


def _method_of(workspace: str | None, given: str | None, default: str = DEFAULT_METHOD) -> str:
    """The method named on the command line, else the one the workspace's stage file records, else `default`."""
    if given is not None:
        return given
    if workspace is None:
        return default
    try:
        saved = read_stage_file(Path(workspace))
    except (DreamtextError, OSError):  # a damaged stage file is reported when the command runs
        saved = None
    return (saved or {}).get("method", default)


def _method_defaults(args: list[str], workspace: str | None, model_flags: tuple[str, ...],
                     default: str = DEFAULT_METHOD) -> ImageTo3DConfig:
    """The image-to-3D config of the method a command line names (--method, else its workspace's), its
    reconstruction's text-to-3D settings those of the preset named (--reconstruct.preset), else of the model
    the first of `model_flags` given names."""
    method = _method_of(workspace, flag_value(args, "--method"), default)
    config = method_config(ImageTo3DConfig(method=method if method in METHODS else default))
    model = next((value for value in map(partial(flag_value, args), model_flags) if value is not None), None)
    preset = flag_value(args, "--reconstruct.preset")
    reconstruct = resolve_text(dataclasses.replace(config.reconstruct, preset=preset or config.reconstruct.preset), model)
    return dataclasses.replace(config, reconstruct=reconstruct)


@dataclass
class DescribeCommand:
    """Choose the sentence that describes an image (DreamText's first step).

    CLIP picks the noun, then words are put in front of it while the image-text similarity rises.
    Writes WORKSPACE/input.png (square, on white), input_mask.png (when the image has transparency) and
    describe.json (the sentence, its words and every step's score), which `dreamtext descriptor` reads.
    Every setting is an option named as `dreamtext image` names it: describe.clip, describe.sentence.noun
    (also --noun), describe.image.size, ...
    """

    image: ImageFile
    workspace: str = "out/image"
    config: Annotated[DescribeConfig, tyro.conf.arg(name="describe")] = dataclasses.field(default_factory=DescribeConfig)

    def run(self) -> None:
        selection = describe_image(self.image, self.workspace, self.config)
        print(f'"{selection.sentence}" (CLIP similarity {selection.score:.4f}); wrote {Path(self.workspace) / "describe.json"}')


@dataclass
class DescriptorCommand:
    """Train the learned sentence of a described image (thesis 5.2.2): one new token per descriptor word.

    Reads WORKSPACE/describe.json and input.png (`dreamtext describe`); writes WORKSPACE/descriptor/ (config,
    checkpoints, metrics) and WORKSPACE/embeddings/ (one diffusers textual-inversion file per token + sentence.json).
    Every setting is an option named as `dreamtext image` names it (descriptor.iters, descriptor.augment.scale_min,
    ...); the defaults are the method's, or with --resume the saved run's.
    """

    workspace: WorkspaceDir
    method: Method | None = None
    """What is trained (None: the workspace's method, else dreamtext); see `dreamtext image --help`."""
    resume: bool = False
    """Continue the training saved in the workspace."""
    quiet: bool = False
    config: Annotated[DescriptorConfig, tyro.conf.arg(name="descriptor")] = dataclasses.field(default_factory=DescriptorConfig)

    @classmethod
    def defaults(cls, args: list[str]) -> DescriptorCommand:
        workspace = first_positional(cls, args)
        config = _method_defaults(args, workspace, ()).descriptor
        if "--resume" in args and workspace is not None:
            config = saved_config(str(Path(workspace) / DESCRIPTOR_DIR), config) or config
        return cls(workspace=tyro.MISSING, config=config)

    def run(self) -> None:
        result = train_descriptor(self.workspace, self.config, resume=self.resume, progress=not self.quiet)
        print(f'"{result.learned.prompt}" after {result.metrics["iters"]} iterations; wrote {Path(self.workspace) / "embeddings"}')


@dataclass
class ReconstructCommand:
    """Reconstruct the object of a workspace in 3D from its learned sentence (thesis 5.2.3).

    Writes WORKSPACE/reconstruction/, a text-to-3D workspace (config, checkpoints, validation renders, mesh,
    turntable, views): `dreamtext render` and `export` work on it. Every setting is an option named as
    `dreamtext image` names it (reconstruct.render_size, reconstruct.sds.guidance, reconstruct.reference.rgb_weight:
    every text-to-3D setting under reconstruct.); the defaults are the method's and the preset's.
    """

    workspace: WorkspaceDir
    method: Method | None = None
    """Switches the reference-view losses (None: the workspace's method, else dreamtext)."""
    resume: bool = False
    quiet: bool = False
    config: Annotated[ReconstructConfig, tyro.conf.arg(name="reconstruct")] = dataclasses.field(default_factory=ReconstructConfig)

    @classmethod
    def defaults(cls, args: list[str]) -> ReconstructCommand:
        defaults = _method_defaults(args, first_positional(cls, args), ("--reconstruct.model",))
        return cls(workspace=tyro.MISSING, config=defaults.reconstruct)

    def run(self) -> None:
        result = reconstruct(self.workspace, self.config, resume=self.resume, progress=not self.quiet)
        print(f"{result.metrics['iters']} iterations; outputs in {result.workspace}")


@dataclass
class ImageSettings:
    """The settings of the three stages that `image` and `diverse` share: each by its config name
    (`--method`, `--describe.sentence.noun`, `--descriptor.iters`, `--reconstruct.render-size`, ...), the
    defaults the method's; and four that both learning stages share."""

    model: str | None = None
    """Stable Diffusion 1.x/2.x for both learning stages (descriptor.model and reconstruct.model): a diffusers
    folder, a .safetensors file or a cached hub id."""
    seed: int | None = None
    """Seed of both learning stages."""
    device: Device | None = None
    """Device of every stage."""
    precision: Precision | None = None
    """Precision of both learning stages."""
    quiet: bool = False
    config: Annotated[ImageTo3DConfig, tyro.conf.arg(name="")] = dataclasses.field(default_factory=ImageTo3DConfig)

    @classmethod
    def defaults(cls, args: list[str], method: str = DEFAULT_METHOD) -> ImageSettings:
        return cls(config=_method_defaults(args, None, ("--model", "--reconstruct.model"), method))

    def image_config(self) -> ImageTo3DConfig:
        config = self.config
        if self.device is not None:
            config = dataclasses.replace(config, describe=dataclasses.replace(config.describe, device=self.device))
        return with_stage_settings(config, model=self.model, seed=self.seed, device=self.device, precision=self.precision)


@dataclass
class ImageCommand:
    """Turn one image into a 3D object with DreamText: describe, train the descriptor, reconstruct.

    Run it again after an interruption: finished stages are skipped and the interrupted one resumes at its
    last checkpoint (WORKSPACE/stage.json records where it stands).
    """

    image: ImageFile
    workspace: str = "out/image"
    settings: Annotated[ImageSettings, tyro.conf.arg(name="")] = dataclasses.field(default_factory=ImageSettings)

    @classmethod
    def defaults(cls, args: list[str]) -> ImageCommand:
        return cls(image=tyro.MISSING, settings=ImageSettings.defaults(args))

    def run(self) -> None:
        result = image_to_3d(self.image, self.workspace, self.settings.image_config(), progress=not self.settings.quiet)
        print(f'"{result.prompt}"; 3D outputs in {result.reconstruction}')


@dataclass
class DiverseCommand:
    """Diversity augmentation (thesis 5.3): K images of a prompt from the prior, one DreamText object each.

    Writes WORKSPACE/samples/, WORKSPACE/object_00 ... (one `dreamtext image` workspace each), diverse_sheet.png
    (each image beside its object's views) and diverse.json. Run it again to continue an interrupted run.
    """

    prompt: Prompt
    workspace: str = "out/diverse"
    n: Annotated[int, tyro.conf.arg(aliases=("-n",))] = 4
    """Number of images and objects; image i uses seed + i."""
    steps: int = 50
    """DDIM steps of the samples."""
    sample_guidance: float = 7.5
    """Classifier-free guidance of the samples (uncond + s (cond - uncond))."""
    settings: Annotated[ImageSettings, tyro.conf.arg(name="")] = dataclasses.field(default_factory=ImageSettings)

    @classmethod
    def defaults(cls, args: list[str]) -> DiverseCommand:
        return cls(prompt=tyro.MISSING, settings=ImageSettings.defaults(args, DIVERSE_METHOD))

    def run(self) -> None:
        settings = self.settings
        image = settings.image_config()
        sample = SampleConfig(prompt=self.prompt, n=self.n, model=image.descriptor.model, steps=self.steps,
                              guidance=self.sample_guidance, seed=image.descriptor.seed,
                              device=image.descriptor.device)
        results = diverse(self.prompt, self.workspace, self.n, DiverseConfig(sample=sample, image=image),
                          progress=not settings.quiet)
        print(json.dumps({"sheet": str(Path(self.workspace) / "diverse_sheet.png"), "prompts": [r.prompt for r in results]}))
