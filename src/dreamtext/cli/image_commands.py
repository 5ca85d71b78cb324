"""The image-to-3D subcommands of `dreamtext` (DreamText, thesis 5.2-5.3): descriptor, reconstruct, image, diverse.

Each wraps `dreamtext.methods.dreamtext`; `cli/main.py` registers them in COMMANDS.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

Method = Literal["dreamtext", "realfusion", "sentence", "dreamtext+reference"]


def _method_of(workspace: str, given: str | None) -> str:
    """The method named on the command line, else the one the workspace's stage file records, else dreamtext."""
    if given is not None:
        return given
    from ..methods.dreamtext.image_to_3d import read_stage_file

    saved = read_stage_file(Path(workspace))
    return (saved or {}).get("method", "dreamtext")


def _image_config(method: str):
    from ..methods.dreamtext.image_to_3d import ImageTo3DConfig, method_config

    return method_config(ImageTo3DConfig(method=method))


def _reconstruct_config(config, preset, size, iters, guidance):
    changes = {"preset": preset, "render_size": size, "iters": iters, "guidance": guidance}
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class DescriptorCommand:
    """Train the learned sentence of a described image (thesis 5.2.2): one new token per descriptor word.

    Reads WORKSPACE/describe.json and input.png (`dreamtext describe`); writes WORKSPACE/descriptor/ (config,
    checkpoints, metrics) and WORKSPACE/embeddings/ (one diffusers textual-inversion file per token + sentence.json).
    """

    workspace: tyro.conf.Positional[str]
    method: Method | None = None
    """What is trained (default: the workspace's method, else dreamtext). dreamtext: descriptor words trained (the thesis); realfusion: noun-only textual inversion plus
    reference-view RGB and mask losses; sentence: the whole sentence embedding trained (the thesis's first approach);
    dreamtext+reference: DreamText plus the reference-view losses."""
    model: str | None = None
    """Stable Diffusion 1.x/2.x: a diffusers folder, a .safetensors file or a cached hub id."""
    iters: int | None = None
    """Training iterations (default 10k, thesis 6.3.3)."""
    lr: float | None = None
    seed: int | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    compile: Literal["off", "default", "reduce-overhead"] | None = None
    """torch.compile on CUDA (default: the config's)."""
    resume: bool = False
    """Continue the training saved in the workspace."""
    quiet: bool = False

    def run(self) -> None:
        from ..methods.dreamtext.descriptor import train_descriptor

        config = _image_config(_method_of(self.workspace, self.method)).descriptor
        changes = {"model": self.model, "iters": self.iters, "lr": self.lr, "seed": self.seed, "device": self.device,
                   "precision": self.precision, "compile": self.compile}
        config = dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
        result = train_descriptor(self.workspace, config, resume=self.resume, progress=not self.quiet)
        print(f'"{result.learned.prompt}" after {result.metrics["iters"]} iterations; wrote {Path(self.workspace) / "embeddings"}')


@dataclass
class ReconstructCommand:
    """Reconstruct the object of a workspace in 3D from its learned sentence (thesis 5.2.3).

    Writes WORKSPACE/reconstruction/, a text-to-3D workspace (config, checkpoints, validation renders, mesh,
    turntable, views): `dreamtext render` and `export` work on it.
    """

    workspace: tyro.conf.Positional[str]
    method: Method | None = None
    """Switches the reference-view losses (default: the workspace's method, else dreamtext). dreamtext: descriptor words trained (the thesis); realfusion: noun-only textual inversion plus
    reference-view RGB and mask losses; sentence: the whole sentence embedding trained (the thesis's first approach);
    dreamtext+reference: DreamText plus the reference-view losses."""
    preset: Literal["dreamfusion", "fitfusion"] | None = None
    """Text-to-3D preset under the reconstruction (default dreamfusion, as the thesis's run)."""
    iters: int | None = None
    """Training iterations (default 10k, thesis 8.1)."""
    size: int | None = None
    """Render size fed to the prior (default 256, thesis 8.1)."""
    guidance: float | None = None
    model: str | None = None
    seed: int | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    resume: bool = False
    quiet: bool = False

    def run(self) -> None:
        from ..methods.dreamtext.reconstruct import reconstruct

        config = _reconstruct_config(_image_config(_method_of(self.workspace, self.method)).reconstruct,
                                     self.preset, self.size, self.iters, self.guidance)
        shared = {"model": self.model, "seed": self.seed, "device": self.device, "precision": self.precision}
        config = dataclasses.replace(config, **{k: v for k, v in shared.items() if v is not None})
        result = reconstruct(self.workspace, config, resume=self.resume, progress=not self.quiet)
        print(f"{result.metrics['iters']} iterations; outputs in {result.workspace}")


@dataclass
class ImageSettings:
    """The settings of the three stages that `image` and `diverse` share."""

    method: Method = "dreamtext"
    """dreamtext: descriptor words trained (the thesis); realfusion: noun-only textual inversion plus
    reference-view RGB and mask losses; sentence: the whole sentence embedding trained (the thesis's first approach);
    dreamtext+reference: DreamText plus the reference-view losses."""
    noun: str | None = None
    """Fix the noun instead of letting CLIP choose it (thesis: --noun watch)."""
    quantifier: str | None = None
    """The word before the noun ("a", "an", "two"; default: the article that fits the noun)."""
    clip: str | None = None
    """CLIP model for sentence selection (default: the built-in small CLIP; see `dreamtext describe --help`)."""
    vocabulary: str | None = None
    model: str | None = None
    """Stable Diffusion 1.x/2.x for both learning stages: a diffusers folder, a .safetensors file or a cached hub id."""
    descriptor_iters: int | None = None
    """Descriptor training iterations (default 10k)."""
    iters: int | None = None
    """Reconstruction iterations (default 10k)."""
    preset: Literal["dreamfusion", "fitfusion"] | None = None
    size: int | None = None
    """Render size of the reconstruction (default 256)."""
    guidance: float | None = None
    seed: int | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    quiet: bool = False

    def config(self):
        from ..methods.describe import SentenceConfig
        from ..methods.dreamtext.image_to_3d import ImageTo3DConfig, with_stage_settings

        config = ImageTo3DConfig(method=self.method)
        config.describe = dataclasses.replace(config.describe, clip=self.clip, vocabulary=self.vocabulary, device=self.device,
                                              sentence=SentenceConfig(noun=self.noun, quantifier=self.quantifier))
        if self.descriptor_iters is not None:
            config.descriptor = dataclasses.replace(config.descriptor, iters=self.descriptor_iters)
        config.reconstruct = _reconstruct_config(config.reconstruct, self.preset, self.size, self.iters, self.guidance)
        return with_stage_settings(config, model=self.model, seed=self.seed, device=self.device, precision=self.precision)


@dataclass
class ImageCommand:
    """Turn one image into a 3D object with DreamText: describe, train the descriptor, reconstruct.

    Run it again after an interruption: finished stages are skipped and the interrupted one resumes at its
    last checkpoint (WORKSPACE/stage.json records where it stands).
    """

    image: tyro.conf.Positional[str]
    workspace: str = "out/image"
    settings: Annotated[ImageSettings, tyro.conf.arg(name="")] = dataclasses.field(default_factory=ImageSettings)

    def run(self) -> None:
        from ..methods.dreamtext.image_to_3d import image_to_3d

        result = image_to_3d(self.image, self.workspace, self.settings.config(), progress=not self.settings.quiet)
        print(f'"{result.prompt}"; 3D outputs in {result.reconstruction}')


@dataclass
class DiverseCommand:
    """Diversity augmentation (thesis 5.3): K images of a prompt from the prior, one DreamText object each.

    Writes WORKSPACE/samples/, WORKSPACE/object_00 ... (one `dreamtext image` workspace each), diverse_sheet.png
    (each image beside its object's views) and diverse.json. Run it again to continue an interrupted run.
    """

    prompt: tyro.conf.Positional[str]
    workspace: str = "out/diverse"
    n: Annotated[int, tyro.conf.arg(aliases=("-n",))] = 4
    """Number of images and objects; image i uses seed + i."""
    steps: int = 50
    """DDIM steps of the samples."""
    sample_guidance: float = 7.5
    """Classifier-free guidance of the samples (uncond + s (cond - uncond))."""
    settings: Annotated[ImageSettings, tyro.conf.arg(name="")] = dataclasses.field(default_factory=ImageSettings)

    def run(self) -> None:
        from ..methods.dreamtext.diverse import DiverseConfig, diverse
        from ..methods.sample import SampleConfig

        settings = self.settings
        sample = SampleConfig(prompt=self.prompt, n=self.n, model=settings.model, steps=self.steps,
                              guidance=self.sample_guidance, seed=settings.seed or 0, device=settings.device)
        results = diverse(self.prompt, self.workspace, self.n, DiverseConfig(sample=sample, image=settings.config()),
                          progress=not settings.quiet)
        print(json.dumps({"sheet": str(Path(self.workspace) / "diverse_sheet.png"), "prompts": [r.prompt for r in results]}))


IMAGE_COMMANDS = {"descriptor": DescriptorCommand, "reconstruct": ReconstructCommand, "image": ImageCommand,
                  "diverse": DiverseCommand}
