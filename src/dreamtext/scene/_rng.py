"""Random draws from an optional seeded generator, on any device.

torch refuses a CPU generator for a CUDA tensor (and the reverse), so the draw happens on the
generator's own device and is moved afterwards: a run seeded with a CPU generator renders and
updates its occupancy grid the same way on CPU and GPU.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _draw_device(generator: torch.Generator | None, device: torch.device | str) -> torch.device:
    return generator.device if generator is not None else torch.device(device)


def uniform(shape: tuple[int, ...], generator: torch.Generator | None, device, dtype=torch.float32) -> Tensor:
    """U[0, 1) samples of `shape` on `device`."""
    return torch.rand(shape, generator=generator, device=_draw_device(generator, device), dtype=dtype).to(device)


def normal(shape: tuple[int, ...], generator: torch.Generator | None, device, dtype=torch.float32) -> Tensor:
    """N(0, 1) samples of `shape` on `device`."""
    return torch.randn(shape, generator=generator, device=_draw_device(generator, device), dtype=dtype).to(device)


def integers(high: int, shape: tuple[int, ...], generator: torch.Generator | None, device) -> Tensor:
    """Integers uniform in [0, high) of `shape` on `device`."""
    return torch.randint(high, shape, generator=generator, device=_draw_device(generator, device)).to(device)
