"""The `dreamtext` commands of the 2D prior: `sample` draws from it, `train-prior` and `eval-prior` train and
measure the built-in one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..errors import DreamtextError
from ..methods.sample import SampleConfig, sample_to_workspace
from ..prior.builtin import BUILTIN_CLIP_DIR, require_builtin_prior
from ..prior.loading import BUILTIN_MODEL, resolve_model
from ..prior.small.evaluate import PriorEvalConfig, evaluate_prior, prediction_distance
from ..prior.small.train import train_prior
from ..utils.device import Device, resolve_device
from .positionals import Prompt


@dataclass
class SampleCommand:
    """Draw images from the 2D prior for a prompt (DDIM with classifier-free guidance), plus a contact sheet.

    Writes WORKSPACE/samples/sample_000.png ..., contact_sheet.png and samples.json (prompt, settings, seed of each image).
    """

    prompt: Prompt
    workspace: str = "out/sample"
    quiet: bool = False
    config: Annotated[SampleConfig, tyro.conf.arg(name="")] = field(default_factory=lambda: SampleConfig(prompt=""))

    def run(self) -> None:
        files = sample_to_workspace(replace(self.config, prompt=self.prompt), self.workspace, progress=not self.quiet)
        print("wrote " + ", ".join(str(f) for f in files))


@dataclass
class TrainPriorCommand:
    """Train the built-in prior on world renders, one stage at a time (clip, vae, unet, assemble) or all.

    Stages write DIR/clip, DIR/vae, DIR/unet and, with assemble, the Stable Diffusion folder DIR/pipeline. The
    camera stage trains a camera classifier on a pipeline's latents (--init-unet names the pipeline; builtin by
    default) into DIR/camera_classifier, for camera guidance (copy it into the pipeline folder, or pass it as
    --camera-classifier).
    """

    stage: tyro.conf.Positional[Literal["clip", "vae", "unet", "assemble", "all", "camera"]]
    out: str = "out/prior"
    """Folder that receives every stage's output."""
    device: Device = "auto"
    steps: int | None = None
    """Training steps (None: the stage's schedule for the device)."""
    seed: int = 0
    batch_size: int | None = None
    """Minibatch size of the stage(s) (None: the stage's schedule for the device)."""
    pool_size: int | None = None
    """World renders shared by the stages (None: 256 on CPU, 32768 on CUDA)."""
    workers: int | None = None
    """CPU processes that render the pool (None: every core)."""
    max_minutes: float | None = None
    """Safety stop per stage: save what is trained after this long."""
    init_clip: str | None = None
    """Continue this CLIP instead of training a new one (builtin: the shipped one; or a DIR/clip): only its
    image side trains, against its frozen text tower, so a diffusion model trained on that tower stays valid."""
    init_unet: str | None = None
    """Continue this pipeline's UNet (builtin: the shipped one; or a DIR/pipeline) on its own frozen VAE and text
    encoder, with a warm-up and a cosine decay; writes DIR/unet and the assembled DIR/pipeline."""
    camera: bool = False
    """With --init-unet: the UNet gains the camera input (diffusers class_labels, see dreamtext.prior.camera) and
    trains on each render's true camera. Its state is kept in DIR/unet-state.pt; running again continues it."""
    attention_head_dim: tuple[int, ...] | None = None
    """With --init-unet: another head layout for the continued UNet (heads per level, e.g. 2 4 4)."""
    distill: bool = False
    """With --init-unet: the continued UNet learns the UNet it continues (its plain and guided noise predictions
    on the same inputs) instead of the renders' noise: a new head layout that keeps the prior's function."""
    teacher: str | None = None
    """With --distill: learn this pipeline's UNet instead (builtin or a DIR/pipeline on the same VAE and text
    encoder), e.g. go on distilling a student (--init-unet DIR/pipeline) from the UNet it was distilled from."""
    quiet: bool = False

    def run(self) -> None:
        if self.init_clip is not None and self.stage not in ("clip", "all"):
            raise DreamtextError(f"--init-clip continues a CLIP; it applies to the clip stage, not {self.stage!r}")
        results = train_prior(self.stage, self.out, device=self.device, steps=self.steps, seed=self.seed,
                              batch_size=self.batch_size, progress=not self.quiet, pool_size=self.pool_size,
                              workers=self.workers, max_minutes=self.max_minutes, init_clip=self.init_clip,
                              init_unet=self.init_unet, camera=self.camera,
                              attention_head_dim=self.attention_head_dim, distill=self.distill,
                              teacher=self.teacher)
        for name, result in results.items():
            print(f"{name}: wrote {result.get('out_dir', self.out)}")


@dataclass
class EvalPriorCommand:
    """Measure a trained small prior: sample images for held-out captions and classify them with the small CLIP."""

    pipeline: str = "builtin"
    """The Stable Diffusion folder (`train-prior assemble` writes DIR/pipeline); builtin: the shipped prior."""
    clip: str = "builtin"
    """The small CLIP that classifies the samples (`train-prior clip` writes DIR/clip); builtin: the shipped one."""
    device: Device = "auto"
    json: bool = False
    reference: str | None = None
    """Also report how far this prior's noise predictions lie from those of the pipeline REFERENCE (the one its
    UNet was distilled or continued from): relative squared error of the plain and guided predictions on
    held-out renders at four noise levels (`prediction_distance`)."""
    config: Annotated[PriorEvalConfig, tyro.conf.arg(name="")] = field(default_factory=PriorEvalConfig)

    def run(self) -> None:
        pipeline = Path(resolve_model(self.pipeline))  # "builtin": the shipped pipeline, checked to be installed
        if self.clip == BUILTIN_MODEL:
            require_builtin_prior()
        clip = BUILTIN_CLIP_DIR if self.clip == BUILTIN_MODEL else Path(self.clip)
        for name, folder in (("--pipeline", pipeline), ("--clip", clip)):
            if not (folder / ("model_index.json" if name == "--pipeline" else "config.json")).is_file():
                raise DreamtextError(f"{name} {str(folder)!r} holds no trained model; run `dreamtext train-prior all` first")
        reference = None if self.reference is None else Path(resolve_model(self.reference))
        if reference is not None and not (reference / "model_index.json").is_file():
            raise DreamtextError(f"--reference {str(reference)!r} holds no Stable Diffusion pipeline (model_index.json)")
        device = resolve_device(self.device)
        result = evaluate_prior(pipeline, clip, self.config, device)
        if reference is not None:
            result["distance"] = prediction_distance(pipeline, reference, seed=self.config.seed, device=device)
        if self.json:
            print(json.dumps(result, indent=2))
        else:
            print(f"noun top-1 {result['noun_top1']:.1%}, colour top-1 {result['colour_top1']:.1%} on {result['count']} "
                  f"samples (CLIP on true renders: {result['clip_on_renders']['noun_top1']:.1%} / "
                  f"{result['clip_on_renders']['colour_top1']:.1%})")
            for t, errors in result.get("distance", {}).items():
                print(f"against the reference at t={t}: " + ", ".join(f"{k} {v:.4f}" for k, v in errors.items()))
            if "pose_top1" in result:
                print(f"pose within {self.config.pose_tolerance_deg:.0f} degrees: {result['pose_top1']:.1%} of "
                      f"{result['pose_count']} drawings, {result['pose_top1_asymmetric']:.1%} of the "
                      f"{result['pose_asymmetric_count']} asymmetric objects")
