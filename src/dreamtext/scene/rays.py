"""Rays and their intersection with the scene's bounding cube."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class RayBundle:
    """Rays with any leading shape: origins and unit directions [..., 3]."""

    origins: Tensor
    directions: Tensor

    def flatten(self) -> "RayBundle":
        return RayBundle(self.origins.reshape(-1, 3), self.directions.reshape(-1, 3))

    def __len__(self) -> int:
        return self.origins.shape[0]

    def __getitem__(self, index) -> "RayBundle":
        return RayBundle(self.origins[index], self.directions[index])


def ray_aabb_intersect(rays: RayBundle, bound: float, min_near: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Near and far distances of rays through the cube [-bound, bound]^3, and a hit mask.

    Rays that miss get near = far (zero length), so renderers can treat every ray the same way.
    """
    inv = 1.0 / torch.where(rays.directions.abs() < 1e-9, torch.full_like(rays.directions, 1e-9), rays.directions)
    t0 = (-bound - rays.origins) * inv
    t1 = (bound - rays.origins) * inv
    near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(min_near)
    far = torch.maximum(t0, t1).amin(dim=-1)
    hit = far > near
    far = torch.where(hit, far, near)
    return near, far, hit
