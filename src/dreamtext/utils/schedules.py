"""Values that move over a run, as functions of its progress in [0, 1]: the scalar schedules (a guidance scale,
a learning-rate factor, a gradient bound), each a small frozen dataclass so that a config records it exactly,
and the learning-rate shape of the prior's training stages."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import torch


def warmup_cosine(step: int, progress: float, warmup_steps: int, final_fraction: float) -> float:
    """The factor on the peak learning rate: linear over the first `warmup_steps`, then a cosine from 1
    down to `final_fraction` as `progress` (the fraction of the run after warm-up, clamped to [0, 1]) ends."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, max(0.0, progress))
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def check_progress(progress: float) -> float:
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must lie in [0, 1], got {progress}")
    return float(progress)


def cosine_ramp(progress: float) -> float:
    """0 at progress 0, 1 at progress 1, following half a cosine (slow at both ends)."""
    return (1.0 - math.cos(math.pi * progress)) / 2.0


# ---------------------------------------------------------------------------------------------
# Scalars: guidance scale, gradient clamp, learning-rate factor
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstantValue:
    """The same value throughout. Default: stable-dreamfusion's guidance scale 100 (thesis 6.1.3)."""

    value: float = 100.0

    def __call__(self, progress: float, generator: torch.Generator | None = None) -> float:
        check_progress(progress)
        return float(self.value)


@dataclass(frozen=True)
class LinearValue:
    """From `start` at progress 0 to `end` at progress 1, linearly.

    Example: stable-dreamfusion's (30 March 2023) gradient clamp 2 + 6 step/iters = LinearValue(2, 8).
    """

    start: float
    end: float

    def __call__(self, progress: float, generator: torch.Generator | None = None) -> float:
        return self.start + (self.end - self.start) * check_progress(progress)


@dataclass(frozen=True)
class CosineValue:
    """From `start` at progress 0 to `end` at progress 1 along half a cosine."""

    start: float
    end: float

    def __call__(self, progress: float, generator: torch.Generator | None = None) -> float:
        return self.start + (self.end - self.start) * cosine_ramp(check_progress(progress))


@dataclass(frozen=True)
class ExponentialValue:
    """From `start` at progress 0 to `end` at progress 1 geometrically: start (end / start)^progress.
    Both must be positive. Example: a learning rate falling tenfold over a run, ExponentialValue(1, 0.1)."""

    start: float
    end: float

    def __post_init__(self):
        if not (self.start > 0 and self.end > 0):
            raise ValueError(f"ExponentialValue needs positive start and end, got {self.start}, {self.end}")

    def __call__(self, progress: float, generator: torch.Generator | None = None) -> float:
        return self.start * (self.end / self.start) ** check_progress(progress)


ScalarSchedule = Union[ConstantValue, LinearValue, CosineValue, ExponentialValue]
