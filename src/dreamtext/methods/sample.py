"""`dreamtext sample "PROMPT" --workspace DIR -n 4`: images from the 2D prior (the thesis's sample script).

DDIM sampling (deterministic with eta 0) with classifier-free guidance on any prior `load_prior`
reads, the built-in one included. Image i starts from the noise of seed `seed + i`, so an image does
not depend on how many are drawn or how they are batched: `-n 2` gives the first two of `-n 4`.
Diversity augmentation (thesis 5.3) samples this way and turns each image into 3D.

Writes DIR/samples/sample_000.png ... (each as soon as its batch is done), DIR/samples/contact_sheet.png
and DIR/samples/samples.json ({prompt, negative_prompt, model, steps, guidance, eta, seed, files:
[{file, seed}]}).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ..errors import DreamtextError
from ..prior.latents import images_to_latents, latents_to_images
from ..prior.loading import Prior, load_prior
from ..prior.prompts import TextEmbeddingCache
from ..utils.device import resolve_device
from ..utils.images import save_image
from ..utils.io import atomic_write_json
from ..utils.progress import Progress
from ..utils.workspace import Workspace

SAMPLES_DIR = "samples"
CONTACT_SHEET = "contact_sheet.png"
SAMPLES_FILE = "samples.json"


@dataclass(frozen=True)
class SampleConfig:
    """prompt: what to draw, e.g. "An image of a dog" (the thesis's example).
    n: issue 5 item 7, 4 images by default.
    model: load_prior's forms; None is its default model from the local cache.
    steps / guidance: diffusers' StableDiffusionPipeline defaults, 50 DDIM steps at guidance 7.5 in
        the standard form uncond + s (cond - uncond).
    eta: DDIM's (Song et al. 2021), 0: deterministic sampling, so a seed fixes the image.
    seed: ours, 0: image i uses seed + i.
    batch_size: ours, 4 images per UNet call (x2 for guidance); lower it on a small GPU.
    """

    prompt: str
    n: int = 4
    model: str | None = None
    steps: int = 50
    guidance: float = 7.5
    negative_prompt: str = ""
    eta: float = 0.0
    seed: int = 0
    batch_size: int = 4
    device: str = "auto"


def initial_noise(prior: Prior, seeds: list[int]) -> Tensor:
    """Latent noise [len(seeds), C, h, w], one CPU generator per seed (the same on every device)."""
    channels, size = int(prior.unet.config.in_channels), prior.latent_size
    noise = [torch.randn(channels, size, size, generator=torch.Generator().manual_seed(seed)) for seed in seeds]
    return torch.stack(noise).to(prior.device, torch.float32)


def ddim_scheduler(prior: Prior, steps: int):
    """A DDIM scheduler over `steps` steps built from the prior's own noise schedule (its betas, offset and
    prediction type), whatever scheduler class it ships."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(prior.scheduler.config)
    scheduler.set_timesteps(steps, device=prior.device)
    return scheduler


@torch.no_grad()
def ddim_sample(prior: Prior, cond: Tensor, uncond: Tensor, latents: Tensor, steps: int, guidance: float,
                eta: float = 0.0, generator: torch.Generator | None = None, on_step: Callable[[int], None] | None = None,
                first_step: int = 0) -> Tensor:
    """Denoise `latents` [B, C, h, w] with DDIM and guidance; images [B, 3, H, W] in [0, 1].

    cond / uncond: text embeddings [1 or B, 77, D]. first_step: the latents are noisy as at that step of the
    `steps`-step schedule (0: pure noise). on_step(k) is called after the k-th denoising step.
    """
    scheduler = ddim_scheduler(prior, steps)
    batch = latents.shape[0]
    text = torch.cat([cond.expand(batch, -1, -1), uncond.expand(batch, -1, -1)]).to(prior.dtype)
    if first_step == 0:
        latents = latents * scheduler.init_noise_sigma
    for index, t in enumerate(scheduler.timesteps[first_step:]):
        model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t).to(prior.dtype)
        eps_cond, eps_uncond = prior.unet(model_input, t, encoder_hidden_states=text).sample.float().chunk(2)
        guided = eps_uncond + guidance * (eps_cond - eps_uncond)
        latents = scheduler.step(guided, t, latents, eta=eta, generator=generator).prev_sample
        if on_step is not None:
            on_step(index + 1)
    return latents_to_images(prior.vae, latents, prior.dtype)


@torch.no_grad()
def ddim_redraw(prior: Prior, images: Tensor, cond: Tensor, uncond: Tensor, noise: Tensor, strength: float, steps: int,
                guidance: float) -> Tensor:
    """SDEdit (Meng et al. 2022): `images` [B, 3, H, W] in [0, 1] noised to `strength` of the schedule with
    `noise` [B, C, h, w] and denoised by DDIM under the prompt; the prior redraws what the images only
    sketch, keeping their layout where the strength leaves it. strength 1 draws from pure noise."""
    scheduler = ddim_scheduler(prior, steps)
    first_step = min(round(steps * (1.0 - strength)), steps - 1)
    latents = images_to_latents(prior.vae, images.to(prior.device), prior.dtype)
    start = scheduler.timesteps[first_step].repeat(latents.shape[0])
    noisy = scheduler.add_noise(latents, noise.to(latents), start)
    return ddim_sample(prior, cond, uncond, noisy, steps, guidance, first_step=first_step)


def contact_sheet(images: Tensor, columns: int | None = None, gap: int = 4) -> Tensor:
    """Images [N, 3, H, W] on a white grid [H', W', 3] (channels last, for save_image); columns
    default to ceil(sqrt(N))."""
    count, _, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    sheet = torch.ones(3, rows * height + (rows + 1) * gap, columns * width + (columns + 1) * gap, dtype=images.dtype)
    for index, image in enumerate(images.cpu()):
        row, column = divmod(index, columns)
        top, left = gap + row * (height + gap), gap + column * (width + gap)
        sheet[:, top : top + height, left : left + width] = image
    return sheet.permute(1, 2, 0)


def check_sample_config(config: SampleConfig) -> None:
    if not config.prompt.strip():
        raise DreamtextError("the prompt is empty: describe the image to draw")
    if config.n <= 0 or config.steps <= 0 or config.batch_size <= 0:
        raise DreamtextError(f"-n, --steps and --batch-size must be positive (got {config.n}, {config.steps}, {config.batch_size})")


def sample_images(prior: Prior, config: SampleConfig, on_batch=None, progress: bool = True) -> Tensor:
    """`config.n` images [n, 3, H, W] in [0, 1]; `on_batch(first_index, images)` sees each batch."""
    check_sample_config(config)
    embeddings = TextEmbeddingCache(prior).encode([config.prompt, config.negative_prompt])
    cond, uncond = embeddings[:1], embeddings[1:]
    seeds = [config.seed + i for i in range(config.n)]
    batches = [seeds[start : start + config.batch_size] for start in range(0, config.n, config.batch_size)]
    images = []
    with Progress(total=config.steps * len(batches), description="sample", log_every=config.steps, enabled=progress) as bar:
        for number, batch_seeds in enumerate(batches):
            done = number * config.steps
            batch = ddim_sample(prior, cond, uncond, initial_noise(prior, batch_seeds), config.steps, config.guidance,
                                config.eta, torch.Generator().manual_seed(batch_seeds[0]), lambda k: bar.update(done + k))
            if on_batch is not None:
                on_batch(number * config.batch_size, batch)
            images.append(batch.cpu())
    return torch.cat(images)


def sample_to_workspace(config: SampleConfig, workspace: str | Path, progress: bool = True, prior: Prior | None = None) -> list[Path]:
    """Sample, write each image as soon as it exists, then the contact sheet and samples.json."""
    check_sample_config(config)  # before the prior loads
    folder = Workspace(workspace).path(SAMPLES_DIR)
    if prior is None:
        prior = load_prior(config.model, resolve_device(config.device))
    files: list[Path] = []

    def write(first: int, batch: Tensor) -> None:
        for offset, image in enumerate(batch):
            files.append(save_image(folder / f"sample_{first + offset:03d}.png", image.permute(1, 2, 0)))

    images = sample_images(prior, config, on_batch=write, progress=progress)
    sheet = save_image(folder / CONTACT_SHEET, contact_sheet(images))
    record = {**asdict(config), "files": [{"file": f.name, "seed": config.seed + i} for i, f in enumerate(files)]}
    atomic_write_json(folder / SAMPLES_FILE, record)
    return [*files, sheet]
