"""Choosing the torch device a run uses."""

from __future__ import annotations

import torch

from ..errors import DreamtextError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DreamtextError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
    return torch.device(name)
