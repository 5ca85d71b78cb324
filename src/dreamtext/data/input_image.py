"""The single input image of image-to-3D: any file PIL reads, made square, on white, at a chosen size.

`utils.images.load_image` decodes it (RGB, RGBA, grayscale, 16-bit, palette with a transparent index,
CMYK; EXIF orientation applied; empty, unreadable or oversized files are one-line errors). This module
then frames it the way the prior and CLIP expect:

- with transparency, the object is cut out by its alpha, recentred and scaled so its longer side
  covers `object_fraction` of the square, composited on white, and alpha becomes the object mask;
- without transparency, the picture is padded with white to a square around its centre, unscaled
  relative to itself (the framing of a photo is kept), and no mask is known.

Compositing on white before resizing is exact: "over white" is linear in premultiplied colour and
alpha, so resizing the composite equals compositing the resized premultiplied image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor

from ..utils.images import DEFAULT_MAX_PIXELS, composite_on_background, file_error, load_image, resize_area, save_image

WHITE = 1.0


@dataclass(frozen=True)
class InputImageConfig:
    """How an input image is framed.

    size: the side of the square output; 512 is Stable Diffusion 2.1-base's resolution, to which the
        thesis resizes its input (5.2.2 augmentations end with Resize(512)).
    object_fraction: DreamGaussian's preprocessing (border ratio 0.2): a cut-out object's longer side
        covers 80% of the square, leaving room for the augmentations' rotations and crops.
    alpha_threshold: ours, 0.05: pixels at least this opaque define the object's bounding box, so a
        faint halo or stray semi-transparent noise does not shift the recentring.
    max_pixels: utils.images' limit (8192 x 8192) on the decoded file.
    min_side: ours, 16 px: below that a file says too little about its object to describe it (a 1x1 image
        went on into descriptor training); 1 lets any size through.
    """

    size: int = 512
    object_fraction: float = 0.8
    alpha_threshold: float = 0.05
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = 16


@dataclass
class InputImage:
    """A prepared input image: square, on white, channels first."""

    image: Tensor  # [3, S, S] in [0, 1], composited on white
    mask: Tensor | None  # [1, S, S] in [0, 1], the object's coverage; None when the file had no alpha
    source: Path
    original_size: tuple[int, int]  # (width, height) of the upright file
    crop_box: tuple[int, int, int, int]  # (left, top, side, side) of the square taken from the upright file

    @property
    def has_mask(self) -> bool:
        return self.mask is not None

    def save(self, image_path: str | Path, mask_path: str | Path | None = None) -> list[Path]:
        """Write the image (PNG or JPEG) and, when there is one and a path is given, the mask (grey PNG)."""
        written = [save_image(image_path, self.image.permute(1, 2, 0))]
        if self.mask is not None and mask_path is not None:
            written.append(save_image(mask_path, self.mask.permute(1, 2, 0)))
        return written


def load_input_image(path: str | Path, config: InputImageConfig = InputImageConfig()) -> InputImage:
    """Read and frame one input image (see the module docstring); bad files raise a one-line error."""
    if config.size <= 0:
        raise ValueError(f"the output size must be positive, got {config.size}")
    if not 0.0 < config.object_fraction <= 1.0:
        raise ValueError(f"object_fraction must be in (0, 1], got {config.object_fraction}")
    path = Path(path)
    rgb, alpha = load_image(path, max_pixels=config.max_pixels)
    height, width = rgb.shape[:2]
    if min(width, height) < config.min_side:
        raise file_error(path, f"the image is only {width}x{height} pixels", f"give a photo at least {config.min_side} pixels "
                         "on each side (the object should fill much of it)")
    if alpha is None:
        box = padded_square_box(width, height)
    else:
        box = object_square_box(path, alpha[..., 0], config)
    composite = composite_on_background(rgb, alpha, WHITE)
    image = crop_square(composite, box, fill=WHITE)
    mask = None if alpha is None else crop_square(alpha, box, fill=0.0)
    return InputImage(
        image=resize_square(image, config.size).permute(2, 0, 1).contiguous(),
        mask=None if mask is None else resize_square(mask, config.size).permute(2, 0, 1).contiguous(),
        source=path,
        original_size=(width, height),
        crop_box=box,
    )


def padded_square_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The square around the picture's centre whose side is its longer side."""
    side = max(width, height)
    return (width - side) // 2, (height - side) // 2, side, side


def object_square_box(path: Path, alpha: Tensor, config: InputImageConfig) -> tuple[int, int, int, int]:
    """The square, centred on the object's bounding box, in which the object's longer side covers
    `object_fraction` of the side."""
    rows = (alpha >= config.alpha_threshold).any(dim=1).nonzero()
    cols = (alpha >= config.alpha_threshold).any(dim=0).nonzero()
    if rows.numel() == 0:
        raise file_error(path, "the image is fully transparent (no object in its alpha channel)", "use an image showing the object")
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    side = max(1, math.ceil(max(bottom - top, right - left) / config.object_fraction))
    # Integer corner nearest to centring the box: 2 * corner + side = left + right.
    return (left + right - side) // 2, (top + bottom - side) // 2, side, side


def crop_square(image: Tensor, box: tuple[int, int, int, int], fill: float) -> Tensor:
    """The [side, side, C] window of a channels-last image at `box`, `fill` where it leaves the image."""
    left, top, width, height = box
    rows, cols = image.shape[:2]
    pad_left, pad_top = max(0, -left), max(0, -top)
    pad_right, pad_bottom = max(0, left + width - cols), max(0, top + height - rows)
    inside = image[max(0, top) : min(rows, top + height), max(0, left) : min(cols, left + width)]
    # F.pad pads the last dims first: (channels: none), then columns, then rows.
    return F.pad(inside, (0, 0, pad_left, pad_right, pad_top, pad_bottom), value=fill)


def resize_square(image: Tensor, size: int) -> Tensor:
    """Channels-last [S, S, C] to [size, size, C]: exact area averaging down, bilinear up (a box
    filter would show blocks when a small picture is enlarged to the prior's 512 px)."""
    if image.shape[0] >= size:
        return resize_area(image, size, size)
    enlarged = F.interpolate(image.permute(2, 0, 1)[None], size=(size, size), mode="bilinear", align_corners=False)
    return enlarged[0].permute(1, 2, 0).clamp(0.0, 1.0)

