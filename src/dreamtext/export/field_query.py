"""Batched, gradient-free queries of a `Field` at many points, as the exporters need them."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..scene.protocols import Field


def field_device(field: Field) -> torch.device:
    """Where the field's parameters (or, failing those, buffers) live; CPU for plain analytic fields."""
    for name in ("parameters", "buffers"):
        tensors = getattr(field, name, None)
        if callable(tensors):
            for tensor in tensors():
                return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def evaluate_in_chunks(fn: Callable[[Tensor], Tensor], points: Tensor, chunk_size: int) -> Tensor:
    """`fn` over points [N, 3] in chunks of `chunk_size` rows, so peak memory does not grow with N."""
    return torch.cat([fn(chunk) for chunk in torch.split(points, chunk_size)], dim=0)


# ours: a pixel this transparent cannot move its displayed normal or shade by half a uint8 step (both
# are blended with the background by opacity), so its surface normal is not queried.
MIN_SHOWN_OPACITY = 1 / 512


def visible_surface_normals(field: Field, surface: Tensor, opacity: Tensor, chunk_size: int,
                            min_opacity: float = MIN_SHOWN_OPACITY) -> Tensor:
    """The field's normals [N, 3] at rendered surface points [N, 3], queried only where the pixel's opacity
    [N] (or [N, 1]) exceeds `min_opacity`; zero elsewhere. Finite-difference normals cost six field
    evaluations a point and most of a turntable frame is background: this was three quarters of its time."""
    shown = opacity.reshape(-1) > min_opacity
    normals = torch.zeros_like(surface)
    if shown.any():
        normals[shown] = evaluate_in_chunks(lambda points: field(points, with_normals=True).normals, surface[shown], chunk_size).to(normals.dtype)
    return normals


def albedo_at(field: Field, points: np.ndarray | Tensor, chunk_size: int) -> np.ndarray:
    """The field's albedo at world points [N, 3], as float32 [N, 3] clamped to [0, 1]."""
    device = field_device(field)
    points_t = torch.as_tensor(np.asarray(points, dtype=np.float32) if not isinstance(points, Tensor) else points)
    points_t = points_t.to(device=device, dtype=torch.float32)
    if points_t.shape[0] == 0:
        return np.zeros((0, 3), dtype=np.float32)
    albedo = evaluate_in_chunks(lambda chunk: field(chunk, with_normals=False).albedo, points_t, chunk_size)
    return albedo.clamp(0.0, 1.0).float().cpu().numpy()


def to_rgba8(colors: np.ndarray) -> np.ndarray:
    """Float colours [N, 3] in [0, 1] to opaque uint8 RGBA [N, 4]."""
    rgb = np.clip(np.rint(colors * 255.0), 0, 255).astype(np.uint8)
    alpha = np.full((rgb.shape[0], 1), 255, dtype=np.uint8)
    return np.concatenate([rgb, alpha], axis=1)
