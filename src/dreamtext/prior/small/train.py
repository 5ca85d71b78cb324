"""Training the small prior's VAE and UNet on world renders, and the `dreamtext train-prior` stages.

Order (as Stable Diffusion): CLIP (`clip.py`), then the VAE, then the UNet on frozen VAE latents and
frozen CLIP text embeddings, then `assemble` writes the diffusers pipeline folder. Everything is
reproducible from `seed`: model initialisation, the render pool, minibatches, noise, timesteps and
caption dropout all come from seeded generators.

Schedules (`VaeTrainConfig.for_device`, `UnetTrainConfig.for_device`):
- CPU: a smoke-sized run (200 steps on a pool of <= 64 renders, which take about 1 s each to sphere
  trace at 64 px on CPU); it shows the losses falling, not a usable prior.
- CUDA, sized for one H100 in 10 minutes per stage: a pool of 8192 renders traced on the GPU, the VAE
  4000 steps at batch 64, the UNet 8000 steps at batch 128 under bf16 autocast. These figures are
  estimates from the model sizes (2.7M and 6.1M parameters at 64 px / 16x16 latents), not yet measured.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from ...errors import DreamtextError
from ...utils.device import resolve_device
from ...utils.io import atomic_write
from ...utils.progress import Progress
from .diffusion import (
    SmallUnetConfig,
    SmallVaeConfig,
    build_small_unet,
    build_small_vae,
    build_training_scheduler,
    diffusion_loss,
    drop_captions,
    encode_captions,
    latent_scaling_factor,
    to_vae_range,
    vae_loss,
)
from .pipeline import assemble_pipeline, build_prior_tokenizer, load_clip_text_encoder, save_pretrained_atomically

Stage = Literal["clip", "vae", "unet", "assemble", "all"]
STAGE_FOLDERS = {"clip": "clip", "vae": "vae", "unet": "unet", "assemble": "pipeline"}


@dataclass(frozen=True)
class VaeTrainConfig:
    """steps / batch_size / pool_size: see the module docstring (CPU smoke run, H100 10-minute run).
    lr: ours, 5e-4 with AdamW: a 2.7M-parameter autoencoder converges far faster than LDM's (4.5e-6 x batch).
    weight_decay: ours, 0: reconstructions, not generalisation, are the goal; the KL term regularises.
    scale_images: ours, 256 renders (capped by the pool) to estimate the latents' std, as SD used a batch.
    """

    steps: int = 200
    batch_size: int = 8
    pool_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.0
    scale_images: int = 256

    @classmethod
    def for_device(cls, device: torch.device) -> "VaeTrainConfig":
        return cls(steps=4000, batch_size=64, pool_size=8192) if device.type == "cuda" else cls()


@dataclass(frozen=True)
class UnetTrainConfig:
    """steps / batch_size / pool_size: see the module docstring.
    lr: ours, 3e-4 (SD: 1e-4 at far larger width; small UNets take larger steps).
    weight_decay: Stable Diffusion's AdamW, 1e-2.
    caption_dropout: Stable Diffusion 1.5 / 2.x, 10% empty prompts for classifier-free guidance.
    grad_clip: ours, 1.0: guards the first steps of a freshly initialised UNet.
    """

    steps: int = 200
    batch_size: int = 16
    pool_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-2
    caption_dropout: float = 0.1
    grad_clip: float = 1.0

    @classmethod
    def for_device(cls, device: torch.device) -> "UnetTrainConfig":
        return cls(steps=8000, batch_size=128, pool_size=8192) if device.type == "cuda" else cls()


@dataclass
class CaptionedRenderPool:
    """Captioned world renders drawn once and sampled from during training (tracing is the slow part)."""

    images: Tensor  # [N, 3, H, W] uint8 (a quarter of the memory of float)
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)

    def sample(self, batch_size: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, list[str]]:
        """A random minibatch (with replacement): [B, 3, H, W] float in [0, 1] on `device`, and captions."""
        index = torch.randint(len(self), (batch_size,), generator=generator)
        images = self.images[index].to(device).float() / 255
        return images, [self.captions[i] for i in index.tolist()]

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])


def render_pool(count: int, seed: int, resolution: int = 64, device: torch.device | str = "cpu",
                chunk: int = 64, progress: bool = True) -> CaptionedRenderPool:
    """`count` train-split renders; chunk i is `sample_render_batch(seed=seed * 100_000 + i)` (distinct objects)."""
    from ...world.renders import RenderConfig, sample_render_batch

    config = RenderConfig(resolution=resolution)
    images, captions = [], []
    chunks = math.ceil(count / chunk)
    with Progress(total=chunks, description="rendering world", log_every=max(1, chunks // 10), enabled=progress) as bar:
        for i in range(chunks):
            size = min(chunk, count - i * chunk)
            batch = sample_render_batch(size, seed * 100_000 + i, "train", config, device=device)
            images.append((batch.images * 255).round().to(torch.uint8).cpu())
            captions += batch.captions
            bar.update(i + 1)
    return CaptionedRenderPool(torch.cat(images), captions)


def cached_render_pool(cache_dir: Path, count: int, seed: int, resolution: int, device: torch.device,
                       progress: bool = True) -> CaptionedRenderPool:
    """`render_pool`, stored once in `cache_dir` (safetensors + captions) so the VAE and UNet stages share it."""
    from safetensors.torch import load_file, save_file

    stem = cache_dir / f"renders-seed{seed}-n{count}-{resolution}px"
    images_path, captions_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if images_path.is_file() and captions_path.is_file():
        return CaptionedRenderPool(load_file(str(images_path))["images"], json.loads(captions_path.read_text()))
    pool = render_pool(count, seed, resolution, device, progress=progress)
    atomic_write(images_path, lambda tmp: save_file({"images": pool.images.contiguous()}, str(tmp)))
    atomic_write(captions_path, lambda tmp: tmp.write_text(json.dumps(pool.captions)))
    return pool


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (H100 tensor cores); plain fp32 elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


def _as_device(device: torch.device | str) -> torch.device:
    return resolve_device(device) if isinstance(device, str) else device


def train_small_vae(
    config: SmallVaeConfig = SmallVaeConfig(),
    out_dir: str | os.PathLike = "prior/vae",
    device: torch.device | str = "cpu",
    progress: bool = True,
    steps: int | None = None,
    seed: int = 0,
    train: VaeTrainConfig | None = None,
    pool: CaptionedRenderPool | None = None,
) -> dict:
    """Train the AutoencoderKL (L1 + LDM's light KL), store 1/std of its latents as `scaling_factor`, save it.

    Returns {"steps", "first_loss", "last_loss", "scaling_factor", "parameters", "seconds", "out_dir"}.
    """
    device = _as_device(device)
    train = train or VaeTrainConfig.for_device(device)
    steps = train.steps if steps is None else steps
    if pool is None:
        pool = render_pool(min(train.pool_size, max(1, steps * train.batch_size)), seed, config.image_size, device,
                           progress=progress)
    if pool.resolution != config.image_size:
        raise DreamtextError(f"the render pool is {pool.resolution} px but the VAE expects {config.image_size} px")

    torch.manual_seed(seed)
    vae = build_small_vae(config).to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    start = time.perf_counter()
    with Progress(total=steps, description="vae", enabled=progress) as bar:
        for step in range(1, steps + 1):
            images, _ = pool.sample(train.batch_size, generator, device)
            with _autocast(device):
                loss, l1 = vae_loss(vae, images, config.kl_weight, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            bar.update(step, loss=losses[-1], l1=float(l1.detach()))

    vae.eval()
    scale_images = pool.images[: train.scale_images].to(device).float() / 255
    scaling = latent_scaling_factor(vae, scale_images, generator)
    vae.register_to_config(scaling_factor=scaling)
    save_pretrained_atomically(vae, out_dir)
    return {
        "steps": steps, "first_loss": losses[0] if losses else float("nan"), "last_loss": losses[-1] if losses else float("nan"),
        "scaling_factor": scaling, "parameters": sum(p.numel() for p in vae.parameters()),
        "seconds": time.perf_counter() - start, "out_dir": str(out_dir),
    }


def load_frozen_vae(vae_dir: str | os.PathLike, device: torch.device):
    from diffusers import AutoencoderKL

    if not (Path(vae_dir) / "config.json").is_file():
        raise DreamtextError(f"no trained VAE in {str(vae_dir)!r}; run `dreamtext train-prior vae` first")
    vae = AutoencoderKL.from_pretrained(vae_dir, local_files_only=True, use_safetensors=True)
    return vae.to(device).eval().requires_grad_(False)


@torch.no_grad()
def training_inputs(vae, text_encoder, tokenizer, images: Tensor, captions: list[str], caption_dropout: float,
                    generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Scaled VAE latents (sampled from the posterior, as SD) and text embeddings with caption dropout."""
    latents = vae.encode(to_vae_range(images)).latent_dist.sample(generator=generator) * vae.config.scaling_factor
    embeddings = encode_captions(text_encoder, tokenizer, drop_captions(captions, caption_dropout, generator))
    return latents, embeddings


def train_small_unet(
    config: SmallUnetConfig = SmallUnetConfig(),
    out_dir: str | os.PathLike = "prior/unet",
    vae_dir: str | os.PathLike = "prior/vae",
    clip_dir: str | os.PathLike = "prior/clip",
    device: torch.device | str = "cpu",
    progress: bool = True,
    steps: int | None = None,
    seed: int = 0,
    train: UnetTrainConfig | None = None,
    pool: CaptionedRenderPool | None = None,
    tokenizer_cache: str | os.PathLike | None = None,
) -> dict:
    """Train the UNet to predict noise on frozen VAE latents, conditioned on frozen CLIP text embeddings.

    Returns {"steps", "first_loss", "last_loss", "parameters", "seconds", "out_dir"}.
    """
    device = _as_device(device)
    train = train or UnetTrainConfig.for_device(device)
    steps = train.steps if steps is None else steps
    vae = load_frozen_vae(vae_dir, device)
    text_encoder = load_clip_text_encoder(clip_dir).to(device)
    tokenizer = build_prior_tokenizer(text_encoder, tokenizer_cache)
    image_size = config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
    if pool is None:
        pool = render_pool(min(train.pool_size, max(1, steps * train.batch_size)), seed, image_size, device,
                           progress=progress)
    if pool.resolution != image_size:
        raise DreamtextError(f"the render pool is {pool.resolution} px but the UNet's latents need {image_size} px")

    torch.manual_seed(seed)
    unet = build_small_unet(config, int(text_encoder.config.hidden_size)).to(device).train()
    scheduler = build_training_scheduler()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    start = time.perf_counter()
    with Progress(total=steps, description="unet", enabled=progress) as bar:
        for step in range(1, steps + 1):
            images, captions = pool.sample(train.batch_size, generator, device)
            latents, embeddings = training_inputs(vae, text_encoder, tokenizer, images, captions,
                                                  train.caption_dropout, generator)
            with _autocast(device):
                loss = diffusion_loss(unet, scheduler, latents, embeddings, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), train.grad_clip)
            optimizer.step()
            losses.append(float(loss.detach()))
            bar.update(step, loss=losses[-1])

    save_pretrained_atomically(unet.eval(), out_dir)
    return {
        "steps": steps, "first_loss": losses[0] if losses else float("nan"), "last_loss": losses[-1] if losses else float("nan"),
        "parameters": sum(p.numel() for p in unet.parameters()), "seconds": time.perf_counter() - start,
        "out_dir": str(out_dir),
    }


def train_prior(
    stage: Stage,
    out_root: str | os.PathLike,
    device: str = "auto",
    steps: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Run one stage (or `all`, in order) with its outputs in `out_root`/{clip,vae,unet,pipeline}.

    The render pool is cached in `out_root`/renders so the VAE and UNet stages trace it once.
    """
    root = Path(out_root)
    if root.exists() and not root.is_dir():
        raise DreamtextError(f"--out {str(root)!r} is a file; give a folder for the prior's stages")
    torch_device = resolve_device(device)
    folders = {name: root / folder for name, folder in STAGE_FOLDERS.items()}
    results: dict[str, dict] = {}
    for current in (("clip", "vae", "unet", "assemble") if stage == "all" else (stage,)):
        if current == "clip":
            from .clip import SmallClipConfig, train_small_clip  # written alongside, imported only when needed

            results["clip"] = train_small_clip(SmallClipConfig(), folders["clip"], torch_device, progress, steps)
        elif current in ("vae", "unet"):
            schedule = (VaeTrainConfig if current == "vae" else UnetTrainConfig).for_device(torch_device)
            if batch_size is not None:
                schedule = replace(schedule, batch_size=batch_size)
            run_steps = schedule.steps if steps is None else steps
            count = min(schedule.pool_size, max(1, run_steps * schedule.batch_size))
            pool = cached_render_pool(root / "renders", count, seed, SmallVaeConfig().image_size, torch_device, progress)
            if current == "vae":
                results["vae"] = train_small_vae(SmallVaeConfig(), folders["vae"], torch_device, progress, run_steps,
                                                 seed, schedule, pool)
            else:
                results["unet"] = train_small_unet(SmallUnetConfig(), folders["unet"], folders["vae"], folders["clip"],
                                                   torch_device, progress, run_steps, seed, schedule, pool)
        else:
            out = assemble_pipeline(folders["vae"], folders["unet"], folders["clip"], folders["assemble"])
            results["assemble"] = {"out_dir": str(out)}
    return results
