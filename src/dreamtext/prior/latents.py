"""Between images and Stable Diffusion's latent space: the one recipe every caller of the VAE shares.

Images are [B, 3, H, W] in [0, 1]; the VAE reads [-1, 1]; the UNet reads the VAE's latents times the
checkpoint's `scaling_factor` (0.18215 for SD, measured for the built-in prior), so that they have about
unit variance. SDS, the DDIM redraw, DreamText's descriptor training and the small prior's UNet training
encode this way; sampling decodes the other way.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor


def to_vae_range(images: Tensor) -> Tensor:
    """[0, 1] images -> the VAE's [-1, 1] input range (as Stable Diffusion's image processor)."""
    return images * 2 - 1


def images_to_latents(
    vae: Any,
    images: Tensor,
    dtype: torch.dtype | None = None,
    sample: bool = False,
    generator: torch.Generator | None = None,
    encode: Callable[[Tensor], Any] | None = None,
    channels_last: bool = False,
) -> Tensor:
    """Scaled latents [B, C, h, w], float32, of `images` [B, 3, H, W] in [0, 1] (on the VAE's device).

    The VAE posterior's mean, or a draw from it with `generator` (`sample`, as Stable Diffusion's own
    training does), times the VAE's `scaling_factor`. Differentiable in `images`.
    dtype: the VAE's weights' dtype, which its input takes (None: as the images are).
    encode: `vae.encode` or a compiled version of it. channels_last: hand the VAE that memory format
    (faster convolutions on CUDA).
    """
    pixels = to_vae_range(images)
    if dtype is not None:
        pixels = pixels.to(dtype)
    if channels_last:
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    posterior = (encode or vae.encode)(pixels).latent_dist
    latents = posterior.sample(generator) if sample else posterior.mean
    return latents.float() * vae.config.scaling_factor


def latents_to_images(vae: Any, latents: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """[0, 1] images [B, 3, H, W], float32, of scaled latents [B, C, h, w] (the inverse of `images_to_latents`)."""
    scaled = latents / vae.config.scaling_factor
    decoded = vae.decode(scaled if dtype is None else scaled.to(dtype)).sample.float()
    return ((decoded + 1) / 2).clamp(0, 1)


__all__ = ["images_to_latents", "latents_to_images", "to_vae_range"]
