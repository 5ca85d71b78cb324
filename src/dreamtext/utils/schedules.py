"""Learning-rate shapes shared by the prior's training stages."""

from __future__ import annotations

import math


def warmup_cosine(step: int, progress: float, warmup_steps: int, final_fraction: float) -> float:
    """The factor on the peak learning rate: linear over the first `warmup_steps`, then a cosine from 1
    down to `final_fraction` as `progress` (the fraction of the run after warm-up, clamped to [0, 1]) ends."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, max(0.0, progress))
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
