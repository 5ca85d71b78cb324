"""`dreamtext bench sds`: speed and memory of text-to-3D training on a full-size random SD 2.1-base prior.

No checkpoint is reachable offline, so the prior is Stable Diffusion 2.1-base's exact architecture from
its public configuration (REFERENCE.md 4) with random weights: the same compute as the real model.
For each preset (dreamfusion at 64 px, fitfusion at 256 px), measured in one process, side by side
(each time is the mean over the measured iterations, the two steps taking turns):
- iterations/s of the real `TextTo3DTrainer.train_step` (render + SDS + regularisers + backward + Adan),
  after warm-up, with the shaded modes of the bulk of training (the albedo-only warm-up is skipped);
- the prior alone per iteration (`ScoreDistillation.loss` + backward on a random image needing grad:
  VAE encode at the prior's resolution with backward and the batched CFG UNet call), and the share of
  the step spent elsewhere, `overhead_fraction = 1 - prior_seconds / step_seconds`;
- peak memory (CUDA allocator peak, reset per preset after the prior is built; on CPU the process's
  peak resident set, which only grows).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import types
from dataclasses import dataclass
from typing import Callable

import torch

from ..methods.presets import preset_config
from ..methods.text_to_3d import TextTo3DConfig, TextTo3DTrainer
from ..prior import Prior, ScoreDistillation, build_clip_tokenizer
from ..prior.loading import resolve_dtype
from ..scene.field import FieldConfig
from ..scene.hash_encoding import HashGridConfig
from ..utils.workspace import Workspace
from .engine import _peak_memory_mb, _sync

BENCH_PROMPT = "a DSLR photo of a red ceramic mug"  # ours: any prompt; its words do not change the compute


@dataclass(frozen=True)
class SDArchitectureConfig:
    """The widths of a Stable Diffusion 2.x pipeline. Defaults: SD 2.1-base's public configuration
    (REFERENCE.md 4: UNet 866M, VAE 84M, text encoder 340M parameters)."""

    latent_size: int = 64  # SD 2.1-base: 64x64 latents = 512 px images
    unet_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    unet_layers_per_block: int = 2
    unet_head_dims: tuple[int, ...] = (5, 10, 20, 20)  # SD 2.x's "attention_head_dim" (really head counts)
    unet_cross_attention_levels: int = 3  # CrossAttnDownBlock2D x3 + DownBlock2D
    vae_channels: tuple[int, ...] = (128, 256, 512, 512)
    vae_layers_per_block: int = 2
    text_hidden: int = 1024  # OpenCLIP ViT-H/14 text tower, penultimate layer = 23 layers
    text_intermediate: int = 4096
    text_heads: int = 16
    text_layers: int = 23


SD21_BASE = SDArchitectureConfig()
# ours: a toy pipeline of the same family (8x8 latents, one VAE halving: 16 px images) for tests and smoke runs.
TINY_SD = SDArchitectureConfig(
    latent_size=8, unet_channels=(32, 64), unet_layers_per_block=1, unet_head_dims=(4, 4),
    unet_cross_attention_levels=1, vae_channels=(32, 64), vae_layers_per_block=1,
    text_hidden=32, text_intermediate=37, text_heads=4, text_layers=2,
)


def _scheduler():
    """SD 2.1-base's noise levels: epsilon prediction, scaled-linear betas 0.00085..0.012 over 1000 steps."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )


def _random_modules(arch: SDArchitectureConfig):
    """(unet, vae, text_encoder) with fresh random weights, created on the ambient default device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    levels = len(arch.unet_channels)
    plain = levels - arch.unet_cross_attention_levels
    unet = UNet2DConditionModel(
        sample_size=arch.latent_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=arch.unet_channels,
        layers_per_block=arch.unet_layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * arch.unet_cross_attention_levels + ("DownBlock2D",) * plain,
        up_block_types=("UpBlock2D",) * plain + ("CrossAttnUpBlock2D",) * arch.unet_cross_attention_levels,
        cross_attention_dim=arch.text_hidden,
        attention_head_dim=arch.unet_head_dims,
        use_linear_projection=True,
    )
    vae_levels = len(arch.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=arch.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * vae_levels,
        up_block_types=("UpDecoderBlock2D",) * vae_levels,
        latent_channels=4,
        layers_per_block=arch.vae_layers_per_block,
        sample_size=arch.latent_size * 2 ** (vae_levels - 1),
        scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408, hidden_size=arch.text_hidden, intermediate_size=arch.text_intermediate,
            num_hidden_layers=arch.text_layers, num_attention_heads=arch.text_heads, max_position_embeddings=77,
            hidden_act="gelu", projection_dim=512, bos_token_id=49406, eos_token_id=49407, pad_token_id=1,
        )
    )
    return unet, vae, text_encoder


def build_random_sd21_base(device: torch.device | str, dtype: torch.dtype | None = None, quick: bool = False) -> Prior:
    """A frozen `Prior` with SD 2.1-base's architecture and random weights on `device`.

    The modules are created directly on `device` (on "meta" nothing is allocated: parameters can be
    counted for free). dtype: None picks the prior's default for the device (fp16 on CUDA, fp32 on CPU).
    quick: the toy architecture instead, for tests and CPU smoke runs.
    """
    device = torch.device(device)
    with torch.device(device):
        unet, vae, text_encoder = _random_modules(TINY_SD if quick else SD21_BASE)
    pipeline = types.SimpleNamespace(
        unet=unet, vae=vae, text_encoder=text_encoder,
        tokenizer=build_clip_tokenizer(pad_token="!"),  # SD 2.x pads with "!" (REFERENCE.md 4)
        scheduler=_scheduler(),  # built off the device context: its tables stay real CPU tensors
    )
    return Prior.from_pipeline(pipeline, device=device, dtype=dtype)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- measurement -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SDSBenchPlan:
    """How much to run: warm-up and measured iterations, and the quick mode's toy sizes."""

    warmup: int
    iterations: int
    quick: bool

    @classmethod
    def for_device(cls, device: torch.device, quick: bool) -> "SDSBenchPlan":
        if quick:
            return cls(warmup=1, iterations=3, quick=True)
        if device.type == "cuda":
            # ours: multiples of the occupancy grid's 16-step update period, so updates weigh as in training
            return cls(warmup=16, iterations=48, quick=False)
        return cls(warmup=1, iterations=2, quick=False)  # ours: the full-size model takes many seconds a step on CPU


# ours: the quick mode's toy trainer (render sizes a quarter of the presets', a small field).
QUICK_RENDER_SIZE = {"dreamfusion": 16, "fitfusion": 32}
QUICK_OVERRIDES = {
    "field": FieldConfig(encoding=HashGridConfig(log2_hashmap_size=12, max_resolution=64), hidden_dim=16, num_blocks=1),
    "renderer.num_samples": 16,
    "occupancy.resolution": 16,
}


def bench_config(preset: str, device: torch.device, quick: bool) -> TextTo3DConfig:
    """The preset as trained, on `device`, with shading from the first step (the albedo-only warm-up
    covers only 10 of 100-200 epochs, so the shaded step is the representative one)."""
    overrides = {"device": device.type, "shading.albedo_only_epochs": 0}
    if quick:
        overrides.update(QUICK_OVERRIDES, render_size=QUICK_RENDER_SIZE[preset])
    return preset_config(preset, BENCH_PROMPT, overrides)


def interleaved_seconds(steps: dict[str, Callable[[], object]], warmup: int, iterations: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each call of each step, the steps taking turns so that load from other processes (or
    clock changes) hits them alike; each call is timed between device syncs."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(iterations):
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def bench_preset(preset: str, device: torch.device, dtype: torch.dtype | None, plan: SDSBenchPlan) -> dict:
    """Train-step and prior-alone timings and peak memory of one preset, on a freshly built prior."""
    prior = build_random_sd21_base(device, dtype, quick=plan.quick)
    config = bench_config(preset, device, plan.quick)
    with tempfile.TemporaryDirectory(prefix="dreamtext-bench-sds-") as tmp:
        trainer = TextTo3DTrainer(config, Workspace(tmp), prior=prior)  # encodes the prompts, frees the text encoder
        _reset_peak(device)
        times = interleaved_seconds(
            {"step": trainer.train_step, "prior": prior_alone_step(trainer)}, plan.warmup, plan.iterations, device
        )
        peak_mb = _peak_memory_mb(device)
    # Means, not medians: the occupancy-grid update every 16 steps belongs to the cost of training.
    step_seconds, prior_seconds = statistics.fmean(times["step"]), statistics.fmean(times["prior"])
    return {
        "preset": preset,
        "render_size": config.render_size,
        "prior_image_size": prior.image_size,
        "prior_dtype": str(trainer.prior.dtype).removeprefix("torch."),
        "step_seconds": step_seconds,
        "iterations_per_second": 1.0 / step_seconds,
        "step_seconds_median": statistics.median(times["step"]),
        "prior_seconds": prior_seconds,
        "overhead_fraction": 1.0 - prior_seconds / step_seconds,
        "peak_memory_mb": peak_mb,
        # Past this many field samples a training render checkpoints its field queries (scene/renderer.py).
        "renderer_max_samples_per_chunk": config.renderer.max_samples_per_chunk,
        "skipped_steps": trainer.skipped_steps,
    }


def prior_alone_step(trainer: TextTo3DTrainer) -> Callable[[], None]:
    """One SDS loss + backward on a random render of the preset's size: the prior's share of a step."""
    config, device = trainer.config, trainer.device
    sds = ScoreDistillation(trainer.prior, config.sds)
    generator = torch.Generator(device=device).manual_seed(0)
    size = config.render_size
    images = torch.rand(config.batch_size, 3, size, size, device=device, generator=generator, requires_grad=True)
    cond = trainer.embeddings.conditional(torch.zeros(config.batch_size, dtype=torch.long))
    uncond = trainer.embeddings.unconditional(config.batch_size)

    def step() -> None:
        images.grad = None
        loss, _ = sds.loss(images, cond, uncond, 0.5, generator=generator)
        loss.backward()

    return step


def prior_bench_header(suite: str, quick: bool, device: torch.device, dtype: torch.dtype) -> dict:
    """The fields every benchmark on the random SD 2.1-base prior reports first: what ran, where, how."""
    return {
        "suite": suite,
        "quick": quick,
        "prior": "toy Stable Diffusion (random weights)" if quick else "Stable Diffusion 2.1-base architecture, random weights",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def bench_sds(quick: bool = False, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> dict:
    device = torch.device(device)
    plan = SDSBenchPlan.for_device(device, quick)
    presets = [bench_preset(name, device, dtype, plan) for name in ("dreamfusion", "fitfusion")]
    notes = []
    if quick:
        notes.append("quick: toy prior (16 px images) and toy render sizes; not the full-size model")
    elif device.type != "cuda":
        notes.append(f"CPU: the full-size model is very slow here, only {plan.iterations} iterations measured after {plan.warmup} warm-up")
    if device.type != "cuda":
        notes.append("CPU peak memory is the process's peak resident set, which is never reset between presets")
    return {
        **prior_bench_header("sds", quick, device, resolve_dtype(device, dtype)),
        "warmup_iterations": plan.warmup,
        "iterations_measured": plan.iterations,
        "shading": "sampled albedo/textureless/lambertian from step 0 (albedo-only warm-up skipped)",
        "presets": presets,
        "notes": notes,
    }
