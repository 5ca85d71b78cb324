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


# ours: where a surface point's colour is gathered along its inward normal: from about one sample spacing of the
# builtin preset's renders outside (a learned surface is soft across about that much) to three inside, so that
# the opacity gathered is nearly the ray's whole (the gathered colour is divided by it), in steps of 0.005.
SURFACE_ALBEDO_RANGE = (0.05, -0.15)
SURFACE_ALBEDO_SAMPLES = 40


@torch.no_grad()
def surface_albedo(field: Field, points: np.ndarray | Tensor, normals: np.ndarray | Tensor, chunk_size: int,
                   along: tuple[float, float] = SURFACE_ALBEDO_RANGE, samples: int = SURFACE_ALBEDO_SAMPLES) -> np.ndarray:
    """The colour a camera facing a surface point sees [N, 3] (float32 in [0, 1]): the field's albedo composited
    as the volume renderer composites it, along the normal from `along[0]` to `along[1]` (outside to inside),
    divided by the opacity gathered; the point's own albedo where almost nothing is gathered.

    Why: a mesh is drawn where the density crosses the export threshold, the outer edge of a learned surface,
    whose albedo the renders barely show (they composite it with the albedo behind it). Measured on a trained
    orange cone: the albedo at the vertices averaged (0.89, 0.64, 0.04), the rendered front view (1.0, 0.41,
    0.05), this (1.0, 0.37, 0.0)."""
    device = field_device(field)
    points_t = torch.as_tensor(np.asarray(points, dtype=np.float32) if not isinstance(points, Tensor) else points)
    normals_t = torch.as_tensor(np.asarray(normals, dtype=np.float32) if not isinstance(normals, Tensor) else normals)
    points_t, normals_t = points_t.to(device, torch.float32), torch.nn.functional.normalize(normals_t.to(device, torch.float32), dim=-1)
    if points_t.shape[0] == 0:
        return np.zeros((0, 3), dtype=np.float32)
    offsets = torch.linspace(along[0], along[1], samples, device=device)  # outside to inside, along the normal
    step = (along[0] - along[1]) / (samples - 1)
    middle = int((offsets.abs()).argmin())  # the point itself
    colours = []
    for chunk_points, chunk_normals in zip(points_t.split(max(1, chunk_size // samples)), normals_t.split(max(1, chunk_size // samples))):
        ray = chunk_points[:, None, :] + offsets[None, :, None] * chunk_normals[:, None, :]  # [n, samples, 3]
        out = field(ray.reshape(-1, 3), with_normals=False)
        density, albedo = out.density.reshape(-1, samples).float(), out.albedo.reshape(-1, samples, 3).float()
        alpha = -torch.expm1(-density * step)
        transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], dim=1), dim=1)
        weights = transmittance * alpha
        opacity = weights.sum(dim=1, keepdim=True)
        gathered = (weights[..., None] * albedo).sum(dim=1) / opacity.clamp_min(1e-6)
        own = albedo[:, middle]
        colours.append(torch.where(opacity > 1e-3, gathered, own))
    return torch.cat(colours).clamp(0.0, 1.0).cpu().numpy()


def to_rgba8(colors: np.ndarray) -> np.ndarray:
    """Float colours [N, 3] in [0, 1] to opaque uint8 RGBA [N, 4]."""
    rgb = np.clip(np.rint(colors * 255.0), 0, 255).astype(np.uint8)
    alpha = np.full((rgb.shape[0], 1), 255, dtype=np.uint8)
    return np.concatenate([rgb, alpha], axis=1)
