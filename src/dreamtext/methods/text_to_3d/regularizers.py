"""Optional regularisers of a text-to-3D render (all off by default; weights in `TextTo3DConfig`).

- opacity: mean accumulated opacity, i.e. the sum of weights along each ray (thesis 6.1.8 mentions it:
  small weights gave empty scenes below guidance 250, large ones smaller objects). Scale: the SDS loss
  is a sum over the prior's latents, so its gradient per render pixel is O(1) to O(10) while the mean
  opacity's is 1 / pixels; a weight must be in the thousands to matter at a 32 px render (measured on
  the built-in prior: 50 left a frame-filling fog unchanged, 3000 carved it into a table).
  With `opacity_inner_radius` the mean is weighted by each pixel's distance from the image centre
  (`opacity_inner_weight`, 0 by default, inside that fraction of the half-frame, rising linearly to 1 at
  the frame's edge), so the penalty carves masses that reach the frame's border harder than the object
  in the middle of it. With `opacity_free_area` only the opacity beyond the fraction of each frame that
  an object of that apparent area at the scene's centre covers is penalised, a hinge in the form of
  Dream Fields' transmittance loss -min(tau, mean transmittance), here per render and scaled by the
  camera's distance and field of view, so an object of a typical size is not pushed to shrink.
- entropy: binary entropy of each sample's weight, pushing samples to be empty or opaque
  (stable-dreamfusion's lambda_entropy, 1e-4 in March 2023), against semi-transparent fog.
- orientation: Ref-NeRF's sum_i w_i max(0, n_i . d)^2, penalising visible normals that face away from
  the camera (stable-dreamfusion's lambda_orient, 1e-2); only defined where normals were computed. A
  deferred-shading render has one normal a ray (scene/renderer.py): there the term is opacity max(0, n . d)^2,
  the same sum for an opaque surface whose samples share its normal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import DreamtextError
from ...utils.schedules import LinearValue
from ...scene.renderer import RenderOutputs

_EPS = 1e-5  # keeps log() finite at weights of exactly 0 or 1


@dataclass(frozen=True)
class RegularizerWeights:
    """Loss weights; 0 disables a term (ours: all off, the thesis's runs used none by default)."""

    opacity: float = 0.0
    entropy: float = 0.0
    orientation: float = 0.0
    opacity_end: float | None = None
    """ours: the opacity weight moves linearly from `opacity` to this (None: constant) ..."""
    opacity_end_progress: float = 1.0
    """... reached at this fraction of the run and kept after it (1: at the end)."""
    opacity_inner_radius: float | None = None
    """ours: None weighs every pixel alike; r in [0, 1) weighs a pixel by its distance d from the image
    centre (in half-frames): `opacity_inner_weight` for d <= r, then linearly up to 1 at d = 1 (the
    edge's midpoints) and 1 beyond (the corners)."""
    opacity_inner_weight: float = 0.0
    """ours: the weight inside that radius (0: the middle of the frame is free; 1: the plain mean)."""
    opacity_free_area: float | None = None
    """ours: None penalises all opacity; A > 0 (world units squared) penalises a render's mean opacity only
    beyond A / (the frame's area at the depth of the scene's centre): what an object of apparent area A
    there covers. Needs the cameras (`regularization(..., frame_areas=)`)."""

    def __post_init__(self):
        for name in ("opacity", "entropy", "orientation", "opacity_end"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise DreamtextError(f"the {name} regulariser's weight must be >= 0 (0 turns it off), got {value}")
        if not 0 < self.opacity_end_progress <= 1:
            raise DreamtextError(f"opacity_end_progress must lie in (0, 1], got {self.opacity_end_progress}")
        if self.opacity_inner_radius is not None and not 0 <= self.opacity_inner_radius < 1:
            raise DreamtextError(f"opacity_inner_radius must lie in [0, 1) (a fraction of the half-frame), got {self.opacity_inner_radius}")
        if not 0 <= self.opacity_inner_weight <= 1:
            raise DreamtextError(f"opacity_inner_weight must lie in [0, 1], got {self.opacity_inner_weight}")
        if self.opacity_free_area is not None and not self.opacity_free_area > 0:
            raise DreamtextError(f"opacity_free_area must be > 0 (an apparent area in world units squared; None turns it off), got {self.opacity_free_area}")

    @property
    def needs_samples(self) -> bool:
        """Whether the render must keep its per-sample tensors (weights, sample normals)."""
        return self.entropy > 0 or self.orientation > 0

    @property
    def any_enabled(self) -> bool:
        return max(self.opacity, self.opacity_end or 0.0, self.entropy, self.orientation) > 0

    def at(self, progress: float) -> "RegularizerWeights":
        """The weights at training progress in [0, 1] (the opacity schedule applied; constant ones as they are)."""
        if self.opacity_end is None:
            return self
        opacity = LinearValue(self.opacity, self.opacity_end)(min(progress / self.opacity_end_progress, 1.0))
        return dataclasses.replace(self, opacity=opacity, opacity_end=None)


def border_weights(height: int, width: int, inner_radius: float, inner_weight: float = 0.0, device=None) -> Tensor:
    """[H, W] pixel weights: `inner_weight` within `inner_radius` half-frames of the image centre, then
    rising linearly to 1 at the edge's midpoints, and 1 beyond (the corners)."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 - 1
    distance = (ys[:, None].square() + xs[None, :].square()).sqrt()
    ramp = ((distance - inner_radius) / (1 - inner_radius)).clamp(0, 1)
    return inner_weight + (1 - inner_weight) * ramp


def opacity_loss(opacity: Tensor, inner_radius: float | None = None, inner_weight: float = 0.0, free_fraction: Tensor | None = None) -> Tensor:
    """Mean opacity of renders [N, H, W, 1]; with `inner_radius`, each pixel weighted by `border_weights`;
    with `free_fraction` [N], each render's mean counts only above its own free fraction (a hinge)."""
    per_pixel = opacity[..., 0]
    if inner_radius is not None:
        height, width = opacity.shape[-3], opacity.shape[-2]
        per_pixel = per_pixel * border_weights(height, width, inner_radius, inner_weight, opacity.device).to(opacity.dtype)
    if free_fraction is None:
        return per_pixel.mean()
    per_render = per_pixel.flatten(1).mean(dim=1)
    return (per_render - free_fraction.to(per_render)).clamp_min(0).mean()


def entropy_loss(weights: Tensor) -> Tensor:
    w = weights.clamp(_EPS, 1 - _EPS)
    return (-w * torch.log2(w) - (1 - w) * torch.log2(1 - w)).mean()


def orientation_loss(weights: Tensor, sample_normals: Tensor, directions: Tensor) -> Tensor:
    """weights [..., S], sample_normals [..., S, 3], ray directions [..., 3] (unit, camera to scene)."""
    facing_away = (sample_normals * directions[..., None, :]).sum(dim=-1).clamp_min(0.0)
    return (weights.detach() * facing_away.square()).sum(dim=-1).mean()


def regularization(
    out: RenderOutputs, directions: Tensor | None, weights: RegularizerWeights, frame_areas: Tensor | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the enabled terms and each term (detached) by name.

    frame_areas [N]: each camera's frame area at the depth of the scene's centre (`Cameras.frame_area_at`),
    needed by `opacity_free_area`.
    """
    terms: dict[str, Tensor] = {}
    if weights.opacity > 0:
        free_fraction = None
        if weights.opacity_free_area is not None:
            if frame_areas is None:
                raise DreamtextError("opacity_free_area needs the cameras' frame areas; pass frame_areas to regularization()")
            free_fraction = weights.opacity_free_area / frame_areas
        terms["opacity"] = opacity_loss(out.opacity, weights.opacity_inner_radius, weights.opacity_inner_weight, free_fraction)
    if weights.entropy > 0 and out.weights is not None:
        terms["entropy"] = entropy_loss(out.weights)
    if weights.orientation > 0 and directions is not None:
        if out.sample_normals is not None and out.weights is not None:
            terms["orientation"] = orientation_loss(out.weights, out.sample_normals, directions)
        elif out.normals is not None:  # deferred shading: one normal a ray, faded with its opacity
            unit = torch.nn.functional.normalize(out.normals, dim=-1, eps=1e-12)
            terms["orientation"] = orientation_loss(out.opacity, unit[..., None, :], directions)
    total = sum((getattr(weights, name) * value for name, value in terms.items()), torch.zeros((), device=out.rgb.device))
    return total, {name: value.detach() for name, value in terms.items()}
