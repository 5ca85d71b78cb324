"""Schedules as data: the diffusion timestep as a function of training progress in [0, 1] (the scalar
settings' schedules, a guidance scale or a gradient bound, live in utils/schedules.py).

Every schedule is a small frozen dataclass, so a run's config records it exactly and presets override
it by value. Timestep schedules return integer training timesteps of the prior's noise scheduler;
their bounds are fractions of its `num_train_timesteps` (0.02 and 0.98 of 1000 = 20 and 980).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor

from ..utils.schedules import LinearValue, check_progress, cosine_ramp


# ---------------------------------------------------------------------------------------------
# Timesteps
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UniformTimesteps:
    """t drawn uniformly from the integers in [t_min, t_max] at every step, whatever the progress.

    Defaults: thesis 6.1.3 and stable-dreamfusion (March 2023), t = randint(20, 980) of 1000.
    """

    t_min: float = 0.02
    t_max: float = 0.98

    def __call__(
        self, progress: float, generator: torch.Generator | None = None, batch: int = 1,
        num_train_timesteps: int = 1000, device: torch.device | str = "cpu",
    ) -> Tensor:
        check_progress(progress)
        low, high = round(self.t_min * num_train_timesteps), round(self.t_max * num_train_timesteps)
        return torch.randint(low, high + 1, (batch,), generator=generator, device=device)


@dataclass(frozen=True)
class AnnealedTimesteps:
    """t drawn uniformly from [t_min, t_max(progress)], the upper bound moving linearly from `t_max` to
    `t_max_end`: every noise level early (shape), only the lower ones late (surface and detail).

    threestudio's `max_step_percent` schedule (0.98 -> 0.5 in its Magic3D and ProlificDreamer configs).
    """

    t_min: float = 0.02
    t_max: float = 0.98
    t_max_end: float = 0.5

    def __call__(
        self, progress: float, generator: torch.Generator | None = None, batch: int = 1,
        num_train_timesteps: int = 1000, device: torch.device | str = "cpu",
    ) -> Tensor:
        upper = LinearValue(self.t_max, self.t_max_end)(progress)
        return UniformTimesteps(self.t_min, max(upper, self.t_min))(progress, generator, batch, num_train_timesteps, device)


@dataclass(frozen=True)
class LinearTimesteps:
    """t falls linearly from t_max at progress 0 to t_min at progress 1 (coarse shape first, then detail).

    One of the schedules the thesis explored (6.1.9); same bounds as the uniform default.
    """

    t_min: float = 0.02
    t_max: float = 0.98

    def fraction(self, progress: float) -> float:
        return self.t_max + (self.t_min - self.t_max) * check_progress(progress)

    def __call__(
        self, progress: float, generator: torch.Generator | None = None, batch: int = 1,
        num_train_timesteps: int = 1000, device: torch.device | str = "cpu",
    ) -> Tensor:
        t = round(self.fraction(progress) * num_train_timesteps)
        return torch.full((batch,), t, dtype=torch.long, device=device)


@dataclass(frozen=True)
class CosineTimesteps(LinearTimesteps):
    """t falls from t_max to t_min along half a cosine: it lingers at high and at low noise.

    One of the schedules the thesis explored (6.1.9).
    """

    def fraction(self, progress: float) -> float:
        return self.t_max + (self.t_min - self.t_max) * cosine_ramp(check_progress(progress))


TimestepSchedule = Union[UniformTimesteps, AnnealedTimesteps, LinearTimesteps, CosineTimesteps]


