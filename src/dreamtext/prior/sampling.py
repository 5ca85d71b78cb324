"""DDIM sampling from a prior with classifier-free guidance, and SDEdit redraws of given images.

The sampling core of `dreamtext sample`, the drawings a text-to-3D run starts from and `eval-prior`.
A camera-aware prior (`prior.camera`) is told the camera to draw from; a text-only one hears only text,
unless it carries a camera classifier and `camera_guidance` asks for its guidance towards the camera
(`prior.camera_classifier`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..scene.cameras import Cameras, cartesian_to_spherical
from .camera import camera_labels
from .camera_classifier import guided_noise_shift
from .latents import images_to_latents, latents_to_images
from .loading import Prior


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
                first_step: int = 0, cameras: Cameras | None = None, camera_guidance: float = 0.0) -> Tensor:
    """Denoise `latents` [B, C, h, w] with DDIM and guidance; images [B, 3, H, W] in [0, 1].

    cond / uncond: text embeddings [1 or B, 77, D]. first_step: the latents are noisy as at that step of the
    `steps`-step schedule (0: pure noise). on_step(k) is called after the k-th denoising step.
    cameras: 1 or B cameras to draw from, for a camera-aware prior (`prior.camera`; both halves of the
    guidance batch see them); ignored by a text-only prior. None: the unknown camera.
    camera_guidance: the scale of the prior's camera classifier's guidance towards `cameras` (0: none; nothing
    changes for a prior without a classifier or a call without cameras).
    """
    scheduler = ddim_scheduler(prior, steps)
    batch = latents.shape[0]
    text = torch.cat([cond.expand(batch, -1, -1), uncond.expand(batch, -1, -1)]).to(prior.dtype)
    if cameras is not None and len(cameras) == 1 and batch > 1:
        cameras = cameras[torch.zeros(batch, dtype=torch.long)]
    labels = camera_labels(prior.unet, cameras, batch, prior.device, prior.dtype, copies=2)
    steer = camera_guidance > 0 and cameras is not None and prior.camera_classifier is not None
    if steer:
        _, polar, azimuth = cartesian_to_spherical(cameras.origins.float())
        alphas_cumprod = scheduler.alphas_cumprod.to(prior.device, torch.float32)
    if first_step == 0:
        latents = latents * scheduler.init_noise_sigma
    for index, t in enumerate(scheduler.timesteps[first_step:]):
        model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t).to(prior.dtype)
        eps_cond, eps_uncond = prior.unet(model_input, t, encoder_hidden_states=text, **labels).sample.float().chunk(2)
        guided = eps_uncond + guidance * (eps_cond - eps_uncond)
        if steer:
            steps = t.to(prior.device).long().repeat(batch)
            guided = guided + guided_noise_shift(prior.camera_classifier, latents, steps, alphas_cumprod, polar, azimuth,
                                                 camera_guidance)
        latents = scheduler.step(guided, t, latents, eta=eta, generator=generator).prev_sample
        if on_step is not None:
            on_step(index + 1)
    return latents_to_images(prior.vae, latents, prior.dtype)


@torch.no_grad()
def camera_log_prob(prior: Prior, images: Tensor, cameras: Cameras) -> Tensor:
    """log p(camera | image) [N] of finished drawings [N, 3, H, W] for their cameras (N, or 1 for all), by the
    prior's camera classifier on their clean latents (its most accurate noise level)."""
    if prior.camera_classifier is None:
        raise ValueError("this prior has no camera classifier")
    latents = images_to_latents(prior.vae, images.to(prior.device), prior.dtype)
    _, polar, azimuth = cartesian_to_spherical(cameras.origins.float().to(prior.device))
    count = latents.shape[0]
    polar, azimuth = polar.expand(count), azimuth.expand(count)
    steps = torch.zeros(count, dtype=torch.long, device=prior.device)
    classifier = prior.camera_classifier
    return classifier.log_prob(latents.to(next(classifier.parameters()).dtype), steps, polar, azimuth).float()


def best_at_cameras(prior: Prior, drawings: Tensor, cameras: Cameras, candidates: int) -> Tensor:
    """From drawings [B * candidates, 3, H, W] (drawing k of camera b at b * candidates + k), the one per camera
    [B, 3, H, W] that the prior's camera classifier finds the most likely seen from it (best of K)."""
    scores = camera_log_prob(prior, drawings, cameras[torch.arange(len(cameras)).repeat_interleave(candidates)])
    best = scores.view(-1, candidates).argmax(dim=1)
    return drawings.view(-1, candidates, *drawings.shape[1:])[torch.arange(best.shape[0]), best.cpu()]


@torch.no_grad()
def ddim_redraw(prior: Prior, images: Tensor, cond: Tensor, uncond: Tensor, noise: Tensor, strength: float, steps: int,
                guidance: float, cameras: Cameras | None = None, camera_guidance: float = 0.0) -> Tensor:
    """SDEdit (Meng et al. 2022): `images` [B, 3, H, W] in [0, 1] noised to `strength` of the schedule with
    `noise` [B, C, h, w] and denoised by DDIM under the prompt; the prior redraws what the images only
    sketch, keeping their layout where the strength leaves it. strength 1 draws from pure noise.
    cameras: where the images are seen from, for a camera-aware prior (`ddim_sample`)."""
    scheduler = ddim_scheduler(prior, steps)
    first_step = min(round(steps * (1.0 - strength)), steps - 1)
    latents = images_to_latents(prior.vae, images.to(prior.device), prior.dtype)
    start = scheduler.timesteps[first_step].repeat(latents.shape[0])
    noisy = scheduler.add_noise(latents, noise.to(latents), start)
    return ddim_sample(prior, cond, uncond, noisy, steps, guidance, first_step=first_step, cameras=cameras,
                       camera_guidance=camera_guidance)
