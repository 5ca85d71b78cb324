"""The interface every radiance field implements, learned or analytic.

The renderer, the occupancy grid, mesh export and the metrics only talk to fields through this
protocol, so the learned hash-grid field and the analytic ground-truth scenes are interchangeable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor


@dataclass
class FieldOutputs:
    """What a field says about a batch of points [..., 3]."""

    density: Tensor  # [...], >= 0, in inverse scene units
    albedo: Tensor  # [..., 3], in [0, 1]
    normals: Tensor | None = None  # [..., 3], unit, pointing out of the object (requested only)


@runtime_checkable
class Field(Protocol):
    """A scene inside the cube [-bound, bound]^3."""

    bound: float

    def density(self, points: Tensor) -> Tensor:
        """Density [...] at points [..., 3] (cheap path used by the occupancy grid and mesh export)."""
        ...

    def __call__(self, points: Tensor, with_normals: bool = False) -> FieldOutputs:
        """Density, albedo and, when asked, normals at points [..., 3]."""
        ...
