"""Exponential moving average of a module's parameters, for the weights a run shows and saves."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """ema <- d ema + (1 - d) model with diffusers' EMAModel warm-up d = min(decay, (1 + step) / (10 + step)),
    so the average follows the model closely while it has seen few steps."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - d)
