"""Shading modes, the light near the camera and the thesis's shading schedule (section 6.1.4).

Lambertian shading with a light that moves with the camera shows the prior the object's geometry;
textureless shading (Lambertian on a white object) keeps the field from painting a flat picture
on a blob. Light is directional: one unit vector per ray pointing *towards* the light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from . import _rng

ShadingMode = Literal["albedo", "lambertian", "textureless", "normal"]
SHADING_MODES: tuple[ShadingMode, ...] = get_args(ShadingMode)
_MODES_WITH_NORMALS = frozenset({"lambertian", "textureless", "normal"})

DEFAULT_AMBIENT = 0.1  # stable-dreamfusion's ambient_ratio for its lambertian/textureless passes


def needs_normals(mode: ShadingMode) -> bool:
    """Whether `shade` needs surface normals for this mode."""
    check_shading_mode(mode)
    return mode in _MODES_WITH_NORMALS


def check_shading_mode(mode: str) -> None:
    if mode not in SHADING_MODES:
        raise ValueError(f"unknown shading mode {mode!r}; known: {list(SHADING_MODES)}")


def diffuse_intensity(normals: Tensor, light_dirs: Tensor, ambient: float) -> Tensor:
    """ambient + (1 - ambient) max(0, n . l), shape [..., 1]."""
    cosine = (normals * light_dirs).sum(dim=-1, keepdim=True).clamp_min(0.0)
    return ambient + (1.0 - ambient) * cosine


def shade(
    albedo: Tensor,
    normals: Tensor | None,
    light_dirs: Tensor | None,
    mode: ShadingMode,
    ambient: float = DEFAULT_AMBIENT,
) -> Tensor:
    """Colour [..., 3] of points with `albedo` [..., 3] and unit `normals` [..., 3].

    albedo: the albedo itself. lambertian: albedo (ambient + (1 - ambient) max(0, n . l)).
    textureless: the same with a white albedo (grey levels, thesis 6.1.4). normal: (n + 1) / 2, the
    usual way to look at normals. `light_dirs` [..., 3] (or [3]) are unit vectors towards the light.
    """
    check_shading_mode(mode)
    if mode == "albedo":
        return albedo
    if normals is None:
        raise ValueError(f"shading mode {mode!r} needs normals")
    if mode == "normal":
        return (normals + 1.0) / 2.0
    if light_dirs is None:
        raise ValueError(f"shading mode {mode!r} needs light directions")
    intensity = diffuse_intensity(normals, light_dirs, ambient)
    if mode == "lambertian":
        return albedo * intensity
    return intensity.expand(*intensity.shape[:-1], 3)  # textureless: white albedo


def light_directions_near_camera(
    camera_origins: Tensor, std: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """One light direction per camera [N, 3]: the camera's direction from the object plus Gaussian noise.

    Thesis 6.1.4 places the light around the ray origin so the visible side is lit. The camera
    origin is normalised before the noise is added, so `std` means the same at every camera radius.
    std = 1 matches stable-dreamfusion's N(0, 1) offset of cameras at radius 1-1.5 in spirit.
    """
    towards_camera = camera_origins / camera_origins.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    noise = _rng.normal(tuple(camera_origins.shape), generator, camera_origins.device, camera_origins.dtype)
    light = towards_camera + std * noise
    return light / light.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@dataclass(frozen=True)
class ShadingScheduleConfig:
    """Which shading mode each training step uses (thesis 6.1.4).

    Epochs count from 0: epochs 0 .. albedo_only_epochs-1 (the thesis's "first 10 epochs") always
    use albedo; later epochs draw albedo / textureless / lambertian with the given probabilities.
    """

    albedo_only_epochs: int = 10  # thesis 6.1.4
    albedo_probability: float = 0.2  # thesis 6.1.4
    textureless_probability: float = 0.4  # thesis 6.1.4
    lambertian_probability: float = 0.4  # thesis 6.1.4

    def __post_init__(self) -> None:
        probabilities = (self.albedo_probability, self.textureless_probability, self.lambertian_probability)
        if min(probabilities) < 0 or abs(sum(probabilities) - 1.0) > 1e-6:
            raise ValueError(f"shading probabilities must be >= 0 and sum to 1, got {probabilities}")

    def sample_mode(self, epoch: int, generator: torch.Generator | None = None) -> ShadingMode:
        """The shading mode of one training step in `epoch` (draws from `generator`)."""
        if epoch < self.albedo_only_epochs:
            return "albedo"
        draw = float(_rng.uniform((1,), generator, "cpu" if generator is None else generator.device).item())
        if draw < self.albedo_probability:
            return "albedo"
        if draw < self.albedo_probability + self.textureless_probability:
            return "textureless"
        return "lambertian"
