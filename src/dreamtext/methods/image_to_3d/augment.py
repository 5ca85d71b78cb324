"""The thesis's image augmentations for descriptor training (seed 6.1.9), batched and seeded, in plain torch.

The thesis composes torchvision transforms on one image: horizontal flip (p 0.5), rotation by up to
10 degrees with white fill (p 0.9), Gaussian blur with kernel 5 and sigma in [0.1, 2] (p 0.25), a
random crop of 0.8 of the side (p 0.5), grayscale (p 0.1), colour jitter 0.1 on brightness,
contrast, saturation and hue (RandomApply's default p 0.5), and a resize to the prior's resolution.
Here every image of a batch draws its own parameters from one `torch.Generator`, in a fixed order
that does not depend on the outcomes, so a run is reproducible and a resumed run continues the same
stream. Images are [B, 3, H, W] floats in [0, 1]; every step keeps that range.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale uses them.
LUMA = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation; defaults are the thesis's (seed 6.1.9)."""

    flip_p: float = 0.5  # thesis: RandomHorizontalFlip(p=0.5)
    rotation_p: float = 0.9  # thesis: RandomApply([RandomRotation(degrees=10, fill=1.0)], p=0.9)
    rotation_deg: float = 10.0  # thesis: angle uniform in [-10, 10] degrees
    blur_p: float = 0.25  # thesis: RandomApply([GaussianBlur(5, (0.1, 2.0))], p=0.25)
    blur_kernel: int = 5  # thesis: kernel size 5
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # thesis: sigma uniform in [0.1, 2.0]
    crop_p: float = 0.5  # thesis: RandomApply([RandomCrop(0.8 * side, fill=1.0)], p=0.5)
    crop_fraction: float = 0.8  # thesis: crop side = 0.8 of the image side (> 1 zooms out over white)
    grayscale_p: float = 0.1  # thesis: RandomGrayscale(p=0.10)
    jitter_p: float = 0.5  # thesis: RandomApply([ColorJitter(...)]) with torchvision's default p=0.5
    brightness: float = 0.1  # thesis: ColorJitter(0.1, 0.1, 0.1, 0.1): factor in [0.9, 1.1]
    contrast: float = 0.1  # thesis: factor in [0.9, 1.1]
    saturation: float = 0.1  # thesis: factor in [0.9, 1.1]
    hue: float = 0.1  # thesis: hue shift in [-0.1, 0.1] of a full turn
    fill: float = 1.0  # thesis: fill=1.0, white, like the composited input's background


NO_AUGMENTATION = AugmentConfig(
    flip_p=0.0, rotation_p=0.0, blur_p=0.0, crop_p=0.0, grayscale_p=0.0, jitter_p=0.0
)


@dataclass
class AugmentDraw:
    """Every random choice of one batch, drawn before any image is touched (for tests and logs)."""

    flip: Tensor  # [B] bool
    rotate: Tensor  # [B] bool
    angle_deg: Tensor  # [B]
    blur: Tensor  # [B] bool
    sigma: Tensor  # [B]
    crop: Tensor  # [B] bool
    crop_offset: Tensor  # [B, 2] (x, y) in [0, 1]: where the window sits in the free range
    grayscale: Tensor  # [B] bool
    jitter: Tensor  # [B] bool
    jitter_factors: Tensor  # [B, 4] brightness, contrast, saturation, hue shift
    jitter_order: Tensor  # [B, 4] permutation of the four jitter operations (torchvision shuffles them)


def draw(batch: int, config: AugmentConfig, generator: torch.Generator | None, device: torch.device | str) -> AugmentDraw:
    """The random parameters of `batch` images, always consuming the same amount of the stream."""

    def uniform(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator, device=device)

    apply = uniform(batch, 6)
    angle = (uniform(batch) * 2 - 1) * config.rotation_deg
    low, high = config.blur_sigma
    sigma = low + (high - low) * uniform(batch)
    offset = uniform(batch, 2)
    spans = torch.tensor([config.brightness, config.contrast, config.saturation, config.hue], device=device)
    centre = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device)  # multiplicative factors around 1, hue around 0
    factors = centre + (uniform(batch, 4) * 2 - 1) * spans
    order = uniform(batch, 4).argsort(dim=1)
    return AugmentDraw(
        flip=apply[:, 0] < config.flip_p, rotate=apply[:, 1] < config.rotation_p, angle_deg=angle,
        blur=apply[:, 2] < config.blur_p, sigma=sigma, crop=apply[:, 3] < config.crop_p, crop_offset=offset,
        grayscale=apply[:, 4] < config.grayscale_p, jitter=apply[:, 5] < config.jitter_p,
        jitter_factors=factors, jitter_order=order,
    )


def augment(
    images: Tensor, config: AugmentConfig, generator: torch.Generator | None = None, size: int | None = None,
    drawn: AugmentDraw | None = None,
) -> Tensor:
    """Augmented copies of `images` [B, 3, H, W] in [0, 1], resized to `size` x `size` (default: H x W).

    The steps run in the thesis's order: flip, rotation, blur, crop, grayscale, colour jitter, resize.
    drawn: the parameters to use instead of drawing them from `generator`.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
    d = drawn if drawn is not None else draw(images.shape[0], config, generator, images.device)
    x = torch.where(_per_image(d.flip), images.flip(-1), images)
    x = _where(d.rotate, rotate(x, d.angle_deg, config.fill), x)
    x = _where(d.blur, gaussian_blur(x, d.sigma, config.blur_kernel), x)
    x = _where(d.crop, crop(x, config.crop_fraction, d.crop_offset, config.fill), x)
    x = torch.where(_per_image(d.grayscale), grayscale(x).expand_as(x), x)
    x = _where(d.jitter, color_jitter(x, d.jitter_factors, d.jitter_order), x)
    return resize(x, size)


def _per_image(mask: Tensor) -> Tensor:
    return mask.view(-1, 1, 1, 1)


def _where(mask: Tensor, computed: Tensor, original: Tensor) -> Tensor:
    """Per-image choice; images left alone keep their exact values (no resampling round-off)."""
    return torch.where(_per_image(mask), computed, original)


# -- geometric steps ---------------------------------------------------------------------------------


def resample_affine(images: Tensor, theta: Tensor, fill: float) -> Tensor:
    """Bilinear resampling at `theta` [B, 2, 3] (output -> input, normalised coordinates); samples falling
    outside the image take the `fill` value, blended by their covered fraction so edges stay smooth."""
    batch, channels, height, width = images.shape
    grid = F.affine_grid(theta.to(images.dtype), [batch, channels + 1, height, width], align_corners=False)
    ones = torch.ones_like(images[:, :1])
    sampled = F.grid_sample(torch.cat([images, ones], dim=1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    colour, coverage = sampled[:, :channels], sampled[:, channels:]
    return (colour + (1.0 - coverage) * fill).clamp(0.0, 1.0)


def rotate(images: Tensor, angle_deg: Tensor, fill: float = 1.0) -> Tensor:
    """Rotate each image about its centre by `angle_deg` [B] degrees (counter-clockwise as seen, like
    torchvision), filling the uncovered corners with `fill`."""
    _, _, height, width = images.shape
    angle = torch.deg2rad(angle_deg.to(images.device, torch.float32))
    cos, sin = torch.cos(angle), torch.sin(angle)
    # In pixel units (x right, y down) the source of output point p is R(angle) p for a counter-clockwise
    # turn of the picture; normalised coordinates scale x by 2 / W and y by 2 / H.
    aspect = height / width
    theta = torch.zeros(angle.shape[0], 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * aspect
    theta[:, 1, 0], theta[:, 1, 1] = sin / aspect, cos
    return resample_affine(images, theta, fill)


def crop(images: Tensor, fraction: float, offset: Tensor, fill: float = 1.0) -> Tensor:
    """A square window of `fraction` of each side, placed at `offset` [B, 2] in [0, 1] of the free range,
    resampled back to the full size (RandomCrop followed by the thesis's final Resize)."""
    centre = (2 * offset.to(images.device, torch.float32) - 1) * (1 - fraction)  # window centre, normalised
    theta = torch.zeros(offset.shape[0], 2, 3, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = fraction
    theta[:, :, 2] = centre
    return resample_affine(images, theta, fill)


def resize(images: Tensor, size: int | None) -> Tensor:
    """Antialiased bilinear resize to size x size (thesis: Resize to the prior's resolution); a no-op at that size."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images, (size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0.0, 1.0)


# -- filters -----------------------------------------------------------------------------------------


def gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """Normalised 1D Gaussian kernels [B, kernel_size], one per sigma."""
    half = (kernel_size - 1) / 2
    x = torch.linspace(-half, half, kernel_size, device=sigma.device)
    weights = torch.exp(-(x[None, :] ** 2) / (2 * sigma[:, None].float() ** 2))
    return weights / weights.sum(dim=1, keepdim=True)


def gaussian_blur(images: Tensor, sigma: Tensor, kernel_size: int = 5) -> Tensor:
    """Separable Gaussian blur with a sigma per image, reflect padding (as torchvision's GaussianBlur)."""
    batch, channels, height, width = images.shape
    kernels = gaussian_kernels(sigma, kernel_size).to(images.dtype)
    kernels = kernels.repeat_interleave(channels, dim=0)  # [B * C, k]: one filter per image channel
    pad = kernel_size // 2
    x = F.pad(images, (pad, pad, pad, pad), mode="reflect").reshape(1, batch * channels, height + 2 * pad, width + 2 * pad)
    x = F.conv2d(x, kernels[:, None, None, :], groups=batch * channels)
    x = F.conv2d(x, kernels[:, None, :, None], groups=batch * channels)
    return x.reshape(batch, channels, height, width)


def grayscale(images: Tensor) -> Tensor:
    """Luma [B, 1, H, W]."""
    weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    return (images * factor.view(-1, 1, 1, 1)).clamp(0.0, 1.0)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's mean luma (torchvision's adjust_contrast)."""
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    f = factor.view(-1, 1, 1, 1)
    return (f * images + (1 - f) * mean).clamp(0.0, 1.0)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's own grayscale (torchvision's adjust_saturation)."""
    f = factor.view(-1, 1, 1, 1)
    return (f * images + (1 - f) * grayscale(images)).clamp(0.0, 1.0)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Turn the hue by `shift` [B] of a full circle, in HSV."""
    hue, saturation, value = rgb_to_hsv(images).unbind(dim=1)
    hue = torch.remainder(hue + shift.view(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack([hue, saturation, value], dim=1))


def rgb_to_hsv(images: Tensor) -> Tensor:
    """[B, 3, H, W] RGB to HSV, every component in [0, 1]; grey pixels get hue 0."""
    r, g, b = images.unbind(dim=1)
    value, argmax = images.max(dim=1)
    chroma = value - images.min(dim=1).values
    saturation = torch.where(value > 0, chroma / value.clamp_min(1e-12), torch.zeros_like(value))
    safe = chroma.clamp_min(1e-12)
    sector = torch.stack([torch.remainder((g - b) / safe, 6.0), (b - r) / safe + 2.0, (r - g) / safe + 4.0], dim=1)
    hue = sector.gather(1, argmax.unsqueeze(1)).squeeze(1) / 6.0
    hue = torch.where(chroma > 0, torch.remainder(hue, 1.0), torch.zeros_like(hue))
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    hue, saturation, value = hsv.unbind(dim=1)
    # f(n) = V - V S max(0, min(k, 4 - k, 1)) with k = (n + 6 H) mod 6, n = 5, 3, 1 for R, G, B.
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * hue.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return (value.unsqueeze(1) * (1.0 - saturation.unsqueeze(1) * ramp)).clamp(0.0, 1.0)


def color_jitter(images: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    """Brightness, contrast, saturation and hue changes [B, 4], applied in each image's own `order` [B, 4]."""
    operations = (
        lambda x: adjust_brightness(x, factors[:, 0]),
        lambda x: adjust_contrast(x, factors[:, 1]),
        lambda x: adjust_saturation(x, factors[:, 2]),
        lambda x: adjust_hue(x, factors[:, 3]),
    )
    x = images
    for position in range(len(operations)):
        chosen = order[:, position].view(-1, 1, 1, 1)
        result = x
        for index, operation in enumerate(operations):
            result = torch.where(chosen == index, operation(x), result)  # branch-free: no device sync
        x = result
    return x


def white_fraction(images: Tensor, tolerance: float = 1e-6) -> Tensor:
    """Per image, the fraction of pixels that are white in every channel (for tests and diagnostics)."""
    return (images >= 1.0 - tolerance).all(dim=1).float().mean(dim=(1, 2))


__all__ = [
    "AugmentConfig", "AugmentDraw", "NO_AUGMENTATION", "augment", "draw", "rotate", "crop", "resize",
    "gaussian_blur", "grayscale", "color_jitter", "rgb_to_hsv", "hsv_to_rgb", "white_fraction",
]
