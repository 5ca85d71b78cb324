"""An occupancy grid over the scene cube that lets the renderer skip empty space (Instant-NGP style).

The grid keeps, per cell, a running maximum of the field's density at random points inside the
cell, decayed at each update so that space the field has emptied is freed again:
    grid = max(decay * grid, density(jittered cell point))     (for the cells evaluated this update)
A cell is occupied when its value is positive and at least the threshold
    min(mean(grid), density_threshold)      (Instant-NGP, torch-ngp; or density_threshold alone).
The occupied mask is then dilated by `dilation` cells: with a coarse grid a cell that the object
only grazes may see zero density at its one jittered point, and skipping it would cut the surface.

Before the first update every cell counts as occupied, so a renderer with a fresh grid renders
exactly like one without. Everything is plain torch and lives in buffers: CPU and GPU behave the
same and `state_dict()` saves the grid with the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _rng
from .protocols import Field


@dataclass
class OccupancyGridConfig:
    """Occupancy grid settings.

    resolution: ours, 64^3 = 262k cells (Instant-NGP uses 128^3): one full update is a density
        query per cell, which a CPU affords every few steps; 32-128 are reasonable.
    """

    resolution: int = 64  # ours: CPU-affordable (see above); Instant-NGP: 128
    update_every: int = 16  # Instant-NGP: every 16 training steps
    decay: float = 0.95  # Instant-NGP
    density_threshold: float = 10.0  # stable-dreamfusion / torch-ngp `density_thresh`
    threshold_from_mean: bool = True  # Instant-NGP: threshold = min(mean density, density_threshold)
    all_cells_steps: int = 256  # Instant-NGP: every cell is evaluated during the first 256 steps
    subset_fraction: float = 0.5  # Instant-NGP: then M/2 cells per update, half uniform, half occupied
    dilation: int = 1  # ours: one-cell safety margin around occupied cells (see module doc)
    chunk_points: int = 65536  # ours: field queries per call during an update, bounds memory


class OccupancyGrid(nn.Module):
    """Occupancy of the cube [-bound, bound]^3 on a resolution^3 grid of cells."""

    def __init__(self, bound: float, config: OccupancyGridConfig = OccupancyGridConfig()):
        super().__init__()
        if config.resolution < 1:
            raise ValueError(f"occupancy resolution must be >= 1, got {config.resolution}")
        self.bound = float(bound)
        self.config = config
        cells = config.resolution**3
        self.register_buffer("density_grid", torch.zeros(cells))
        self.register_buffer("occupied", torch.ones(cells, dtype=torch.bool))  # warm-up: all occupied
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def occupied_fraction(self) -> float:
        return self.occupied.float().mean().item()

    # -- queries -------------------------------------------------------------------------------
    def cell_indices(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Flat cell index of points [..., 3] and whether they lie inside the cube."""
        res = self.resolution
        unit = (points + self.bound) / (2 * self.bound)  # [0, 1] inside the cube
        inside = ((unit >= 0) & (unit <= 1)).all(dim=-1)
        ijk = (unit * res).floor().long().clamp(0, res - 1)
        flat = (ijk[..., 0] * res + ijk[..., 1]) * res + ijk[..., 2]
        return flat, inside

    def query(self, points: Tensor) -> Tensor:
        """Bool mask [...]: points [..., 3] inside the cube and in an occupied cell."""
        flat, inside = self.cell_indices(points)
        return inside & self.occupied[flat]

    # -- updates -------------------------------------------------------------------------------
    def maybe_update(self, field: Field, step: int, generator: torch.Generator | None = None) -> bool:
        """Update when `step` is a multiple of `update_every`; says whether it did."""
        if step % self.config.update_every != 0:
            return False
        self.update(field, all_cells=step < self.config.all_cells_steps, generator=generator)
        return True

    @torch.no_grad()
    def update(self, field: Field, all_cells: bool = True, generator: torch.Generator | None = None) -> None:
        """Decay the grid, evaluate the field at jittered points of some cells, refresh the mask."""
        if abs(field.bound - self.bound) > 1e-6:
            raise ValueError(f"the occupancy grid covers bound {self.bound} but the field has bound {field.bound}")
        cells = self._cells_to_evaluate(all_cells, generator)
        points = self._jittered_points(cells, generator)
        density = torch.cat(
            [field.density(chunk).reshape(-1).float() for chunk in points.split(self.config.chunk_points)]
        ).clamp_min(0.0)
        grid = self.density_grid * self.config.decay
        grid.scatter_reduce_(0, cells, density.to(grid.dtype), reduce="amax", include_self=True)
        self.density_grid.copy_(grid)
        self.occupied.copy_(self._occupied_mask(grid))
        self.num_updates += 1

    def _cells_to_evaluate(self, all_cells: bool, generator: torch.Generator | None) -> Tensor:
        device = self.density_grid.device
        total = self.density_grid.numel()
        if all_cells:
            return torch.arange(total, device=device)
        count = max(1, int(total * self.config.subset_fraction))
        uniform = _rng.integers(total, (count // 2,), generator, device)
        occupied = self.occupied.nonzero().squeeze(1)
        if occupied.numel() == 0:
            return torch.cat([uniform, _rng.integers(total, (count - count // 2,), generator, device)])
        pick = _rng.integers(occupied.numel(), (count - count // 2,), generator, device)
        return torch.cat([uniform, occupied[pick]])

    def _jittered_points(self, cells: Tensor, generator: torch.Generator | None) -> Tensor:
        """A uniformly random point inside each of the given cells, [len(cells), 3]."""
        res = self.resolution
        ijk = torch.stack([cells // (res * res), (cells // res) % res, cells % res], dim=-1)
        jitter = _rng.uniform((cells.numel(), 3), generator, cells.device, self.density_grid.dtype)
        return (ijk.to(jitter.dtype) + jitter) / res * (2 * self.bound) - self.bound

    def _occupied_mask(self, grid: Tensor) -> Tensor:
        threshold = torch.as_tensor(self.config.density_threshold, dtype=grid.dtype, device=grid.device)
        if self.config.threshold_from_mean:
            threshold = torch.minimum(grid.mean(), threshold)
        occupied = (grid > 0) & (grid >= threshold)
        if self.config.dilation > 0:
            res, k = self.resolution, self.config.dilation
            volume = occupied.view(1, 1, res, res, res).float()
            occupied = F.max_pool3d(volume, kernel_size=2 * k + 1, stride=1, padding=k).view(-1) > 0
        return occupied
