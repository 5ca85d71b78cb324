"""Reading and writing images: every pixel format PIL opens, EXIF orientation, one-line errors.

Images live in memory as float32 tensors, channels last, values in [0, 1]: colour [H, W, 3] and, when
the file carries transparency, a separate straight (not premultiplied) alpha [H, W, 1].
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ..errors import DreamtextError
from .io import atomic_write

# ours: 2^26 pixels (8192 x 8192) is already 800 MB as float32 RGB; larger inputs are almost always a
# mistake (a scan or a panorama) and would exhaust memory before any downscaling could happen.
DEFAULT_MAX_PIXELS = 1 << 26

# Suffixes tried, in order, when a file name is given without one (NeRF-synthetic's "./train/r_0").
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".PNG", ".JPG", ".JPEG")

# PIL modes that carry an alpha channel of their own; other modes may still have a transparent colour.
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def one_line(text: object) -> str:
    """`text` with line breaks made visible, so it can sit inside a one-line `DreamtextError`."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


def file_error(path: str | Path, problem: str, advice: str) -> DreamtextError:
    """The package's one-line error about an input file: `<path>: <problem>; <what to do>`."""
    return DreamtextError(f"{one_line(path)}: {one_line(problem)}; {one_line(advice)}")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[Tensor, Tensor | None]:
    """Read an image file as (rgb [H, W, 3], alpha [H, W, 1] or None), float32 in [0, 1].

    Handles RGB, RGBA, grayscale (8 and 16 bit), grayscale + alpha, palette images (with a transparent
    index), CMYK and the like, and turns the pixels upright according to the EXIF orientation tag.
    16-bit grayscale keeps its full precision; PIL reduces 16-bit colour images to 8 bits per channel.
    `alpha` is None when the file has no transparency at all. Raises `DreamtextError` for a missing,
    empty, unreadable, truncated or too large file.
    """
    path = Path(path)
    if not path.exists():
        raise file_error(path, "no such file", "check the path")
    if path.is_dir():
        raise file_error(path, "is a folder, not an image file", "pass the path of an image file")
    if path.stat().st_size == 0:
        raise file_error(path, "the file is empty (0 bytes)", "replace it with a PNG or JPEG image")

    with warnings.catch_warnings():
        # PIL warns between its own limit and twice that; `max_pixels` is the limit that counts here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                _check_size(path, image.size, max_pixels)
                if getattr(image, "n_frames", 1) > 1:
                    print(f"dreamtext: warning: {path} is animated ({image.n_frames} frames); using its first frame",
                          file=sys.stderr)
                image.load()
                image = _upright(image)
                return _to_tensors(image)
        except DreamtextError:
            raise
        except Image.DecompressionBombError as error:
            raise file_error(path, f"the image is too large to load ({error})", "downscale it first") from error
        except UnidentifiedImageError as error:
            raise file_error(
                path, "not an image file PIL can read", "use PNG, JPEG, WebP, BMP or TIFF, or remove the file"
            ) from error
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
            # PIL reports truncated or corrupt pixel data with any of these.
            raise file_error(
                path, f"the image data is unreadable or truncated ({error})", "re-export or re-download the image"
            ) from error


def _check_size(path: Path, size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise file_error(path, f"the image has zero size ({width}x{height})", "replace it with a non-empty image")
    if max_pixels is not None and width * height > max_pixels:
        raise file_error(
            path,
            f"the image has {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}",
            "downscale it first (or raise max_pixels)",
        )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag. A broken EXIF block must not make a readable image unusable."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - malformed metadata only; the pixels are already decoded
        return image


def _to_tensors(image: Image.Image) -> tuple[Tensor, Tensor | None]:
    transparency = image.info.get("transparency")
    if image.mode in _SIXTEEN_BIT_MODES:
        raw = np.asarray(image).astype(np.float32)
        gray = np.clip(raw / 65535.0, 0.0, 1.0)
        rgb = np.repeat(gray[..., None], 3, axis=-1)
        alpha = None
        if isinstance(transparency, int):  # a 16-bit grey value marked transparent (PNG tRNS)
            alpha = (raw != transparency).astype(np.float32)[..., None]
        return torch.from_numpy(np.ascontiguousarray(rgb)), None if alpha is None else torch.from_numpy(alpha)
    if image.mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return torch.from_numpy(np.repeat(gray[..., None], 3, axis=-1)), None

    has_alpha = image.mode in _ALPHA_MODES or transparency is not None
    # convert() resolves palettes, grey, CMYK and YCbCr, and turns a transparent colour or index into alpha.
    pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    rgb = torch.from_numpy(np.ascontiguousarray(pixels[..., :3]))
    alpha = torch.from_numpy(np.ascontiguousarray(pixels[..., 3:])) if has_alpha else None
    return rgb, alpha


def find_image_file(path: str | Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> Path | None:
    """`path` if it is a file, else the first `path + suffix` that is one (names given without suffix)."""
    path = Path(path)
    if path.is_file():
        return path
    for suffix in suffixes:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    return None


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------

_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def to_uint8(image: Tensor | np.ndarray) -> np.ndarray:
    """Float values in [0, 1] (clipped) or uint8, any leading shape, as rounded uint8."""
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.dtype == np.uint8:
        return array
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError("image contains NaN or infinite values")
    return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_image(path: str | Path, image: Tensor | np.ndarray, alpha: Tensor | np.ndarray | None = None) -> Path:
    """Write an [H, W, 3] (RGB), [H, W, 4] (RGBA) or [H, W, 1] (grey) image atomically.

    Values are floats in [0, 1] (clipped, then rounded to 8 bits) or uint8; `alpha` [H, W, 1] adds an
    alpha channel to an RGB image. The format follows the suffix: .png (default choice), .jpg/.jpeg
    (no alpha).
    """
    path = Path(path)
    pixels = to_uint8(image)
    if alpha is not None:
        pixels = np.concatenate([pixels, to_uint8(alpha).reshape(*pixels.shape[:2], 1)], axis=-1)
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image of shape [H, W, 1|3|4], got {tuple(pixels.shape)}")
    file_format = _PIL_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise ValueError(f"cannot save {path}: use a .png, .jpg or .jpeg file name")
    if file_format == "JPEG" and pixels.shape[-1] == 4:
        raise ValueError(f"cannot save {path}: JPEG has no alpha channel, use .png")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[pixels.shape[-1]]
    picture = Image.fromarray(np.ascontiguousarray(pixels if mode != "L" else pixels[..., 0]), mode=mode)
    return atomic_write(path, lambda tmp: picture.save(tmp, format=file_format))


# ---------------------------------------------------------------------------------------------
# Pixel operations
# ---------------------------------------------------------------------------------------------


def composite_on_background(rgb: Tensor, alpha: Tensor | None, background: Tensor | float | Sequence[float]) -> Tensor:
    """Straight-alpha "over": rgb * alpha + background * (1 - alpha), [..., 3].

    `background` is a grey level, an RGB triple, or a tensor broadcastable to `rgb`. Without alpha the
    colours are returned unchanged.
    """
    if alpha is None:
        return rgb
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
    if bg.dim() == 0:
        bg = bg.expand(3)
    return rgb * alpha + bg * (1.0 - alpha)


def resize_area(image: Tensor, height: int, width: int) -> Tensor:
    """Resample channels-last images [..., H, W, C] to [..., height, width, C] by exact area averaging.

    Each output pixel is the mean of the input it covers, counting partly covered pixels by their
    covered fraction: antialiased for any (also non-integer) factor, and consistent with intrinsics
    scaled by width / W and height / H (`Cameras.resized`). Enlarging repeats pixels (a box filter).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    image = _resample_axis(image, image.dim() - 3, height)
    return _resample_axis(image, image.dim() - 2, width)


def _resample_axis(image: Tensor, dim: int, size: int) -> Tensor:
    source = image.shape[dim]
    if source == size:
        return image
    scale = source / size  # input pixels per output pixel
    # Output pixel i covers [i * scale, (i + 1) * scale) in input pixel units; it touches at most
    # ceil(scale) + 1 input pixels from floor(i * scale) on (one more tap absorbs rounding).
    taps = math.ceil(scale) + 2
    start = torch.arange(size, dtype=torch.float64) * scale
    end = start + scale
    index = torch.floor(start).long()[:, None] + torch.arange(taps)[None, :]  # [size, taps]
    overlap = torch.minimum(end[:, None], index + 1.0) - torch.maximum(start[:, None], index.double())
    weights = (overlap.clamp_min(0.0) / scale).to(image.dtype).to(image.device)
    index = index.clamp_max(source - 1).to(image.device)  # out-of-range taps have zero weight
    gathered = image.index_select(dim, index.reshape(-1)).unflatten(dim, (size, taps))
    weights = weights.reshape((size, taps) + (1,) * (image.dim() - dim - 1))
    return (gathered * weights).sum(dim + 1)


def resize_area_with_alpha(rgb: Tensor, alpha: Tensor | None, height: int, width: int) -> tuple[Tensor, Tensor | None]:
    """`resize_area` of colour and alpha, averaging colour weighted by alpha (premultiplied).

    Compositing the result over any background equals resizing the composited full-size image, so
    transparent pixels' hidden colours do not bleed into the object's edges.
    """
    if alpha is None:
        return resize_area(rgb, height, width), None
    small_alpha = resize_area(alpha, height, width)
    small_premultiplied = resize_area(rgb * alpha, height, width)
    plain = resize_area(rgb, height, width)  # keeps the stored colour where nothing is opaque
    visible = small_alpha > 1e-6
    small_rgb = torch.where(visible, small_premultiplied / small_alpha.clamp_min(1e-6), plain)
    return small_rgb.clamp(0.0, 1.0), small_alpha


def foreground_masks(images: Tensor, tolerance: float) -> Tensor:
    """[B, 1, H, W] 1 where images [B, 3, H, W] differ from their plain backdrop, the median of a
    two-pixel border (a drawing's object rarely fills its border)."""
    border = torch.cat([images[..., :2, :].flatten(2), images[..., -2:, :].flatten(2),
                        images[..., 2:-2, :2].flatten(2), images[..., 2:-2, -2:].flatten(2)], dim=2)
    backdrop = border.median(dim=2).values[:, :, None, None]
    return ((images - backdrop).abs().amax(dim=1, keepdim=True) > tolerance).to(images.dtype)


def close_masks(masks: Tensor, size: int) -> Tensor:
    """[B, 1, H, W] masks closed (dilated, then eroded) by a size x size square: gaps narrower than `size`
    are filled, the outline stays where it was. size 0 or 1: the masks unchanged."""
    if size <= 1:
        return masks
    dilated = F.max_pool2d(masks, size, stride=1, padding=size // 2)
    return -F.max_pool2d(-dilated, size, stride=1, padding=size // 2)  # pads count as inside: the frame does not erode
