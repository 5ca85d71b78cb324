"""Optional regularisers of a text-to-3D render (all off by default; weights in `TextTo3DConfig`).

- opacity: mean accumulated opacity, i.e. the sum of weights along each ray (thesis 6.1.8 mentions it:
  small weights gave empty scenes below guidance 250, large ones smaller objects).
- entropy: binary entropy of each sample's weight, pushing samples to be empty or opaque
  (stable-dreamfusion's lambda_entropy, 1e-4 in March 2023), against semi-transparent fog.
- orientation: Ref-NeRF's sum_i w_i max(0, n_i . d)^2, penalising visible normals that face away from
  the camera (stable-dreamfusion's lambda_orient, 1e-2); only defined where normals were computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..scene.renderer import RenderOutputs

_EPS = 1e-5  # keeps log() finite at weights of exactly 0 or 1


@dataclass(frozen=True)
class RegularizerWeights:
    """Loss weights; 0 disables a term (ours: all off, the thesis's runs used none by default)."""

    opacity: float = 0.0
    entropy: float = 0.0
    orientation: float = 0.0

    @property
    def needs_samples(self) -> bool:
        """Whether the render must keep its per-sample tensors (weights, sample normals)."""
        return self.entropy > 0 or self.orientation > 0


def opacity_loss(opacity: Tensor) -> Tensor:
    return opacity.mean()


def entropy_loss(weights: Tensor) -> Tensor:
    w = weights.clamp(_EPS, 1 - _EPS)
    return (-w * torch.log2(w) - (1 - w) * torch.log2(1 - w)).mean()


def orientation_loss(weights: Tensor, sample_normals: Tensor, directions: Tensor) -> Tensor:
    """weights [..., S], sample_normals [..., S, 3], ray directions [..., 3] (unit, camera to scene)."""
    facing_away = (sample_normals * directions[..., None, :]).sum(dim=-1).clamp_min(0.0)
    return (weights.detach() * facing_away.square()).sum(dim=-1).mean()


def regularization(out: RenderOutputs, directions: Tensor | None, weights: RegularizerWeights) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the enabled terms and each term (detached) by name."""
    terms: dict[str, Tensor] = {}
    if weights.opacity > 0:
        terms["opacity"] = opacity_loss(out.opacity)
    if weights.entropy > 0 and out.weights is not None:
        terms["entropy"] = entropy_loss(out.weights)
    if weights.orientation > 0 and out.sample_normals is not None and out.weights is not None and directions is not None:
        terms["orientation"] = orientation_loss(out.weights, out.sample_normals, directions)
    total = sum((getattr(weights, name) * value for name, value in terms.items()), torch.zeros((), device=out.rgb.device))
    return total, {name: value.detach() for name, value in terms.items()}
