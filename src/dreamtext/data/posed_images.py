"""Posed image sets: photos plus camera poses in the transforms.json format.

The format is Instant-NGP's, which NeRF-synthetic and nerfstudio share:

    {"camera_angle_x": 0.69, "w": 800, "h": 800,             # or fl_x, fl_y, cx, cy (pixels)
     "frames": [{"file_path": "./train/r_0",                  # relative to the folder; suffix optional
                 "transform_matrix": [[...4 numbers...] x 4]}]} # camera-to-world, OpenGL axes

`transform_matrix` is camera-to-world with the camera looking along -z, x right, y up: the same
convention as `dreamtext.scene.cameras`, so matrices are used as they are. Intrinsics may sit at the
top level or in each frame (a frame's value wins). Loading only reads; every problem with the input
is a one-line `DreamtextError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import DreamtextError
from ..scene.cameras import Cameras
from ..utils.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    composite_on_background,
    file_error,
    find_image_file,
    load_image,
    resize_area_with_alpha,
    save_image,
)
from ..utils.io import atomic_write_json

TRANSFORMS_FILE = "transforms.json"
FORMAT_HINT = (
    "expected a transforms.json (Instant-NGP/nerfstudio format) with intrinsics "
    "(camera_angle_x, or fl_x/fl_y/cx/cy) and frames of {file_path, transform_matrix 4x4 camera-to-world}"
)
# Keys this module reads or writes itself; everything else at the top level travels in `extra`.
INTRINSIC_KEYS = ("camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy", "w", "h")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
PINHOLE_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")
_RESERVED_KEYS = set(INTRINSIC_KEYS) | set(DISTORTION_KEYS) | {"frames", "camera_model"}


@dataclass
class PosedImages:
    """N images of one size with their cameras, in memory, float32 in [0, 1]."""

    images: Tensor  # [N, H, W, 3], straight (not premultiplied) colour
    alphas: Tensor | None  # [N, H, W, 1], None when no file had transparency
    cameras: Cameras
    paths: list[str]  # the image files, as found on disk
    extra: dict[str, Any] = field(default_factory=dict)  # unrecognised top-level keys (aabb_scale, ...)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def subset(self, indices: Sequence[int] | Tensor) -> "PosedImages":
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        return replace(
            self,
            images=self.images[index],
            alphas=None if self.alphas is None else self.alphas[index],
            cameras=self.cameras[index],
            paths=[self.paths[i] for i in index.tolist()],
        )

    def split(self, holdout_every: int) -> tuple["PosedImages", "PosedImages"]:
        """(train, held out): every `holdout_every`-th view from the first on is held out (LLFF's rule)."""
        if holdout_every < 2:
            raise ValueError(f"holdout_every must be >= 2 to leave training views, got {holdout_every}")
        if len(self) < 2:
            raise DreamtextError(f"a set of {len(self)} image cannot be split into training and held-out views")
        held_out = torch.arange(len(self)) % holdout_every == 0
        return self.subset(torch.nonzero(~held_out).squeeze(1)), self.subset(torch.nonzero(held_out).squeeze(1))

    def composited(self, background: Tensor | float | Sequence[float]) -> Tensor:
        """Images over `background` (grey level, RGB, or a tensor broadcastable to [N, H, W, 3])."""
        return composite_on_background(self.images, self.alphas, background)

    def to(self, device: torch.device | str) -> "PosedImages":
        return replace(
            self,
            images=self.images.to(device),
            alphas=None if self.alphas is None else self.alphas.to(device),
            cameras=self.cameras.to(device),
        )


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_posed_images(
    folder: str | Path,
    max_images: int | None = None,
    downscale: float | tuple[int, int] = 1,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> PosedImages:
    """Read a posed image set: a folder holding transforms.json, or the path of the JSON file itself
    (NeRF-synthetic ships transforms_train.json and transforms_test.json).

    max_images: keep this many frames, evenly spaced through the file (ours: keeps the coverage).
    downscale: a factor >= 1 dividing width and height, or a target (width, height); images are
        area-averaged and intrinsics scaled to match.
    """
    folder, transforms_path = _locate(Path(folder))
    meta = _read_json(transforms_path)
    frames = _frames(transforms_path, meta)
    indices = list(range(len(frames)))
    if max_images is not None:
        if max_images < 1:
            raise ValueError(f"max_images must be positive, got {max_images}")
        evenly_spaced = np.linspace(0, len(frames) - 1, min(max_images, len(frames)))
        indices = np.unique(np.round(evenly_spaced)).astype(int).tolist()

    c2w = torch.stack([_matrix(transforms_path, i, frames[i]) for i in indices])
    image_paths = [_image_path(transforms_path, folder, i, frames[i]) for i in indices]

    rgbs: list[Tensor] = []
    alphas: list[Tensor | None] = []
    intrinsics: list[tuple[float, float, float, float]] = []
    full_size = target = (0, 0)
    for i, path in zip(indices, image_paths):
        rgb, alpha = load_image(path, max_pixels=max_pixels)
        height, width = rgb.shape[:2]
        if rgbs and (width, height) != full_size:
            raise file_error(
                path,
                f"image is {width}x{height} but {image_paths[0]} is {full_size[0]}x{full_size[1]}",
                "all images of a set must have the same size",
            )
        full_size = (width, height)
        intrinsics.append(_intrinsics(transforms_path, meta, i, frames[i], path, width, height))
        target = _target_size(full_size, downscale)
        # Resize right away: holding every full-size photo in float32 would cost far more memory.
        if target != full_size:
            rgb, alpha = resize_area_with_alpha(rgb, alpha, target[1], target[0])
        rgbs.append(rgb)
        alphas.append(alpha)

    fx, fy, cx, cy = torch.tensor(intrinsics, dtype=torch.float32).unbind(1)
    cameras = Cameras(c2w=c2w, fx=fx, fy=fy, cx=cx, cy=cy, width=full_size[0], height=full_size[1])
    cameras = cameras.resized(*target) if target != full_size else cameras
    stacked_alphas = None
    if any(alpha is not None for alpha in alphas):  # frames without transparency are fully opaque
        opaque = [torch.ones_like(rgb[..., :1]) if alpha is None else alpha for rgb, alpha in zip(rgbs, alphas)]
        stacked_alphas = torch.stack(opaque)
    extra = {key: value for key, value in meta.items() if key not in _RESERVED_KEYS}
    return PosedImages(torch.stack(rgbs), stacked_alphas, cameras, [str(p) for p in image_paths], extra)


def _locate(path: Path) -> tuple[Path, Path]:
    """(folder, transforms file) from the user's path, or a one-line error saying what is wrong."""
    if not path.exists():
        raise file_error(path, "no such folder", "pass a folder holding images and a transforms.json")
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise file_error(path, "is a file, not a folder of posed images", FORMAT_HINT)
        return path.parent, path
    transforms = path / TRANSFORMS_FILE
    if transforms.is_file():
        return path, transforms
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        raise file_error(path, "the folder is empty", FORMAT_HINT)
    alternatives = [name for name in entries if name.startswith("transforms") and name.endswith(".json")]
    if alternatives:
        raise file_error(
            path, f"no {TRANSFORMS_FILE} here, but there is {', '.join(alternatives)}", "pass that file's path instead"
        )
    n_images = sum(1 for p in path.iterdir() if p.suffix in IMAGE_SUFFIXES)
    found = f"{n_images} image(s) but no {TRANSFORMS_FILE}" if n_images else f"no {TRANSFORMS_FILE} and no images"
    raise file_error(path, found, FORMAT_HINT + " (COLMAP poses convert with Instant-NGP's colmap2nerf.py)")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise file_error(path, f"not UTF-8 text ({error.reason} at byte {error.start})", FORMAT_HINT) from error
    except OSError as error:
        raise file_error(path, f"cannot be read ({error.strerror})", "check its permissions") from error
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        raise file_error(
            path, f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}", "fix the JSON syntax"
        ) from error
    if not isinstance(meta, dict):
        raise file_error(path, f"the top level is a JSON {type(meta).__name__}, not an object", FORMAT_HINT)
    model = meta.get("camera_model", "OPENCV")
    if model not in PINHOLE_MODELS:
        raise file_error(
            path, f"camera_model {model!r} is not a pinhole model", "undistort the images to a pinhole camera first"
        )
    return meta


def _frames(path: Path, meta: dict[str, Any]) -> list[dict[str, Any]]:
    frames = meta.get("frames")
    if frames is None:
        raise file_error(path, "missing key 'frames'", FORMAT_HINT)
    if not isinstance(frames, list):
        raise file_error(path, f"'frames' is a JSON {type(frames).__name__}, not a list", FORMAT_HINT)
    if not frames:
        raise file_error(path, "'frames' is empty: the set has no images", "add one frame per image")
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise file_error(path, f"frame {i} is a JSON {type(frame).__name__}, not an object", FORMAT_HINT)
        for key in ("file_path", "transform_matrix"):
            if key not in frame:
                raise file_error(path, f"frame {i} has no '{key}'", FORMAT_HINT)
    return frames


def _matrix(path: Path, index: int, frame: dict[str, Any]) -> Tensor:
    where = f"frame {index} ({frame['file_path']})"
    try:
        matrix = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise file_error(path, f"{where}: transform_matrix is not a 4x4 array of numbers", FORMAT_HINT) from error
    if matrix.shape != (4, 4):
        raise file_error(path, f"{where}: transform_matrix has shape {matrix.shape}, expected 4x4", FORMAT_HINT)
    if not np.isfinite(matrix).all():
        raise file_error(path, f"{where}: transform_matrix has NaN or infinite entries", "fix or drop this frame")
    if not np.allclose(matrix[3], (0.0, 0.0, 0.0, 1.0), atol=1e-4):
        last_row = matrix[3].tolist()
        raise file_error(path, f"{where}: transform_matrix's last row is {last_row}, not 0 0 0 1", FORMAT_HINT)
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-8:
        raise file_error(path, f"{where}: transform_matrix's rotation is singular", "fix or drop this frame")
    return torch.from_numpy(matrix).float()


def _image_path(transforms_path: Path, folder: Path, index: int, frame: dict[str, Any]) -> Path:
    name = frame["file_path"]
    if not isinstance(name, str) or not name.strip():
        raise file_error(transforms_path, f"frame {index}: file_path {name!r} is not a file name", FORMAT_HINT)
    found = find_image_file(folder / name)
    if found is None:
        has_suffix = Path(name).suffix.lower() in IMAGE_SUFFIXES
        tried = "" if has_suffix else f" (also tried {', '.join(IMAGE_SUFFIXES[:4])}...)"
        raise file_error(
            folder / name,
            f"image of frame {index} in {transforms_path.name} does not exist{tried}",
            "check file_path, which is relative to the transforms file's folder",
        )
    return found


def _number(path: Path, where: str, values: dict[str, Any], key: str, positive: bool = True) -> float | None:
    """`values[key]` checked to be a finite (positive) number, or None when absent."""
    value = values.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise file_error(path, f"{where}: {key} = {value!r} is not a finite number", FORMAT_HINT)
    if positive and value <= 0:
        raise file_error(path, f"{where}: {key} = {value!r} must be positive", FORMAT_HINT)
    return float(value)


def _intrinsics(
    path: Path, meta: dict[str, Any], index: int, frame: dict[str, Any], image_path: Path, width: int, height: int
) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels of the image as found on disk; a frame's own values win."""
    merged = {key: meta[key] for key in INTRINSIC_KEYS + DISTORTION_KEYS if key in meta}
    merged.update(frame)
    where = f"frame {index}"
    for key in DISTORTION_KEYS:
        if _number(path, where, merged, key, positive=False):
            raise file_error(
                path, f"{where}: lens distortion {key} = {merged[key]} is not supported",
                "undistort the images first (e.g. COLMAP image_undistorter) and set the distortion to 0",
            )
    declared_w, declared_h = _number(path, where, merged, "w"), _number(path, where, merged, "h")
    if (declared_w is not None and declared_w != width) or (declared_h is not None and declared_h != height):
        raise file_error(
            image_path,
            f"image is {width}x{height} but {path.name} says w={merged.get('w')}, h={merged.get('h')}",
            "fix w/h or use the images the poses were computed for",
        )
    fx = _number(path, where, merged, "fl_x")
    fy = _number(path, where, merged, "fl_y")
    angle_x = _number(path, where, merged, "camera_angle_x")
    angle_y = _number(path, where, merged, "camera_angle_y")
    for key, angle in (("camera_angle_x", angle_x), ("camera_angle_y", angle_y)):
        if angle is not None and angle >= math.pi:
            raise file_error(path, f"{where}: {key} = {angle} radians is not below pi", FORMAT_HINT)
    fx = fx if fx is not None else (None if angle_x is None else 0.5 * width / math.tan(0.5 * angle_x))
    fy = fy if fy is not None else (None if angle_y is None else 0.5 * height / math.tan(0.5 * angle_y))
    if fx is None and fy is None:
        raise file_error(
            path, f"{where} has no intrinsics (camera_angle_x, camera_angle_y, fl_x or fl_y)", FORMAT_HINT
        )
    fx, fy = fx or fy, fy or fx  # one axis given: square pixels, as Instant-NGP assumes
    cx = _number(path, where, merged, "cx", positive=False)
    cy = _number(path, where, merged, "cy", positive=False)
    return fx, fy, width / 2 if cx is None else cx, height / 2 if cy is None else cy


def _target_size(size: tuple[int, int], downscale: float | tuple[int, int]) -> tuple[int, int]:
    if isinstance(downscale, (tuple, list)):
        width, height = (int(v) for v in downscale)
        if width <= 0 or height <= 0:
            raise ValueError(f"target size must be positive, got {downscale}")
        return width, height
    if not downscale >= 1:
        raise ValueError(f"downscale must be a factor >= 1 or a (width, height), got {downscale}")
    return max(1, round(size[0] / downscale)), max(1, round(size[1] / downscale))


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


def save_posed_images(
    folder: str | Path,
    images: Tensor | np.ndarray,
    cameras: Cameras,
    alphas: Tensor | np.ndarray | None = None,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write images [N, H, W, 3] in [0, 1] (RGBA PNGs when `alphas` [N, H, W, 1] is given) and a
    transforms.json that `load_posed_images`, Instant-NGP and nerfstudio read. Returns the JSON's path.

    Refuses to write into a non-empty folder unless `overwrite`. transforms.json is written last (and
    an old one removed first), so an interrupted save never leaves a file describing missing images.
    """
    folder = Path(folder)
    images = torch.as_tensor(images).detach().cpu()
    n = images.shape[0]
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3], got {tuple(images.shape)}")
    if len(cameras) != n or (cameras.width, cameras.height) != (images.shape[2], images.shape[1]):
        raise ValueError(
            f"{len(cameras)} cameras of {cameras.width}x{cameras.height} do not match {n} images of "
            f"{images.shape[2]}x{images.shape[1]}"
        )
    if alphas is not None:
        alphas = torch.as_tensor(alphas).detach().cpu()
        if alphas.shape != (*images.shape[:3], 1):
            raise ValueError(f"alphas must be [N, H, W, 1] matching the images, got {tuple(alphas.shape)}")
    clashes = sorted(set(extra or {}) & _RESERVED_KEYS)
    if clashes:
        raise ValueError(f"extra keys {clashes} are written by save_posed_images itself")

    if folder.exists() and not folder.is_dir():
        raise file_error(folder, "exists and is not a folder", "choose another output path")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise file_error(folder, "the folder is not empty", "choose an empty folder or pass overwrite=True")
    transforms_path = folder / TRANSFORMS_FILE
    if transforms_path.exists():
        os.remove(transforms_path)

    cams = cameras.to("cpu")
    digits = max(4, len(str(n - 1)))
    frames = []
    for i in range(n):
        name = f"images/frame_{i:0{digits}d}.png"
        save_image(folder / name, images[i], None if alphas is None else alphas[i])
        frame: dict[str, Any] = {"file_path": name, "transform_matrix": cams.c2w[i].tolist()}
        frames.append(frame)

    meta: dict[str, Any] = {"camera_model": "OPENCV", "w": cams.width, "h": cams.height}
    per_camera = {
        "fl_x": cams.fx, "fl_y": cams.fy, "cx": cams.cx, "cy": cams.cy,
        "camera_angle_x": 2 * torch.atan(0.5 * cams.width / cams.fx),
        "camera_angle_y": 2 * torch.atan(0.5 * cams.height / cams.fy),
    }
    for key, values in per_camera.items():
        if bool((values == values[0]).all()):  # shared by every camera: once at the top level
            meta[key] = values[0].item()
        else:
            for frame, value in zip(frames, values.tolist()):
                frame[key] = value
    meta.update(extra or {})
    meta["frames"] = frames
    return atomic_write_json(transforms_path, meta)


__all__ = ["PosedImages", "load_posed_images", "save_posed_images", "TRANSFORMS_FILE"]
