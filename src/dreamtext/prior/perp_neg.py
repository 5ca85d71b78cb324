"""Perp-Neg guidance (Armandpour et al. 2023, "Re-imagine the Negative Prompt Algorithm"), against Janus.

A text prior asked for "..., side view" still drifts towards the front it has seen most (the Janus
problem: a face on every side). Perp-Neg asks for the camera's view and pushes away from the other
views, removing from each negative direction its part along the positive one, so the push cannot undo
what the positive prompt asks for:

    e_pos = eps(x, view prompt) - eps(x, "")
    e_i   = eps(x, other view prompt i) - eps(x, "")
    eps   = eps(x, "") + s (e_pos + sum_i w_i perp(e_i, e_pos)),   perp(x, y) = x - (<x, y> / <y, y>) y

with w_i <= 0. The positive prompt and the weights follow the camera's azimuth a (0 = the object's front):
on the front-side arc (|a| < 90) r = 1 - |a| / 90 (1 at the front, 0 at the side), the positive embedding
is r front + (1 - r) side, and the negatives are front (w = -f_fs(r)) and side (w = -f_sf(1 - r)); on the
side-back arc r = 2 - |a| / 90 (1 at the side, 0 at the back), the positive is r side + (1 - r) back and
the negatives side (-f_sb(r)) and front (-f_fsb(r)). Overhead and bottom cameras keep their own prompt and
no negatives. Each f is a e^(-b r) + c. With no negatives (every w 0) this is ordinary classifier-free
guidance exactly.

Values: the paper's interpolation scheme as threestudio ships it (`perp_neg_f_*` of its prompt
processors, also stable-dreamfusion's since mid-2023). f_fs(1) = 0: at the very front nothing pushes
away from "front"; f_sb(1) is about 0 (at the side nothing pushes away from "side").

One step makes ONE UNet call on 4B rows (positive, unconditional, two negatives), against 2B for CFG.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..scene.cameras import VIEW_LABELS

FRONT, SIDE, BACK = (VIEW_LABELS.index(label) for label in ("front", "side", "back"))
NEGATIVES = 2  # negative prompts per camera


@dataclass(frozen=True)
class PerpNegConfig:
    """The weight functions a e^(-b r) + c (module docstring); defaults: threestudio's Perp-Neg values."""

    f_fs: tuple[float, float, float] = (4.0, 0.5, -2.426)
    f_sf: tuple[float, float, float] = (4.0, 0.5, -2.426)
    f_sb: tuple[float, float, float] = (1.0, 0.5, -0.606)
    f_fsb: tuple[float, float, float] = (1.0, 0.5, 0.967)


def decay(abc: tuple[float, float, float], r: Tensor) -> Tensor:
    a, b, c = abc
    return a * torch.exp(-b * r) + c


@dataclass
class PerpNegPlan:
    """Per camera: the positive embedding's mix of the front / side / back view prompts [B, 3], the label
    ids of the two negative prompts [B, 2] and their weights [B, 2] (<= 0); `own` [B] marks cameras that
    keep their own view prompt (overhead, bottom) with no negatives."""

    mix: Tensor
    negative_ids: Tensor
    weights: Tensor
    own: Tensor


def perp_neg_plan(azimuth_deg: Tensor, view_ids: Tensor, config: PerpNegConfig = PerpNegConfig()) -> PerpNegPlan:
    """What Perp-Neg asks for at each camera (azimuth from the front, its thesis view label id)."""
    azimuth = ((azimuth_deg.float() + 180.0) % 360.0 - 180.0).abs()  # |a| in [0, 180]
    front_arc = azimuth < 90.0
    r = torch.where(front_arc, 1.0 - azimuth / 90.0, 2.0 - azimuth / 90.0)
    zero = torch.zeros_like(r)
    mix = torch.stack([torch.where(front_arc, r, zero),  # front
                       torch.where(front_arc, 1.0 - r, r),  # side
                       torch.where(front_arc, zero, 1.0 - r)], dim=-1)  # back
    negative_ids = torch.stack([torch.where(front_arc, FRONT, SIDE), torch.where(front_arc, SIDE, FRONT)], dim=-1)
    weights = -torch.stack([torch.where(front_arc, decay(config.f_fs, r), decay(config.f_sb, r)),
                            torch.where(front_arc, decay(config.f_sf, 1.0 - r), decay(config.f_fsb, r))], dim=-1)
    own = ~torch.isin(view_ids.cpu(), torch.tensor([FRONT, SIDE, BACK]))
    weights = torch.where(own[:, None], torch.zeros_like(weights), weights)
    return PerpNegPlan(mix=mix, negative_ids=negative_ids.long(), weights=weights, own=own)


def perpendicular_component(x: Tensor, y: Tensor) -> Tensor:
    """x minus its projection on y, per sample ([B, ...] each; a zero y leaves x as it is)."""
    dims = tuple(range(1, x.dim()))
    along = (x * y).sum(dims, keepdim=True) / (y * y).sum(dims, keepdim=True).clamp_min(1e-12)
    return x - along * y


def perp_neg_direction(eps_positive: Tensor, eps_unconditional: Tensor, eps_negatives: Tensor, weights: Tensor) -> Tensor:
    """e_pos + sum_i w_i perp(e_i, e_pos): eps_negatives [B, K, ...], weights [B, K]."""
    positive = eps_positive - eps_unconditional
    direction = positive
    for index in range(eps_negatives.shape[1]):
        negative = eps_negatives[:, index] - eps_unconditional
        shape = (-1,) + (1,) * (positive.dim() - 1)
        direction = direction + weights[:, index].view(shape).to(positive) * perpendicular_component(negative, positive)
    return direction
