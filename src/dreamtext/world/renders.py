"""Batches of captioned renders of world objects, for training the built-in prior (issue 4, item 2).

Each image shows one object from a camera of the SDS training distribution (`sample_training_cameras`:
random radius, elevation, azimuth and field of view), sphere traced with lambertian shading under a
random light over a plain random light background. Its caption carries the view suffix SDS prompts
use for that camera (", front view", ...), relative to the object's front (+z).

All the views of one object are sphere traced in one call (vectorised over their rays); objects differ
in their SDF trees, so the batch loops over objects. Tracing returns flat albedo and normals; shading
(a light, an ambient level and a background per image) is then applied to the whole batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..scene.cameras import CameraSample, Cameras, CameraSamplerConfig, ViewLabelConfig, VIEW_LABELS, sample_training_cameras
from .world import Split, WorldConfig, WorldObject, sample_object


@dataclass(frozen=True)
class RenderConfig:
    """How world renders look.

    resolution: issue 4 (the prior's native size, 64 px suggested).
    cameras: thesis 6.1.5 via `CameraSamplerConfig` (the SDS camera distribution).
    view_labels: thesis 6.1.7 via `ViewLabelConfig` (the same thresholds as the SDS prompts).
    views_per_object: ours, 1: every image a different object, the most varied batch.
    supersample: ours, 2x2 rays per pixel, smooth silhouettes at 64 px (as `render_sphere_traced`).
    ambient_range: ours, [0.15, 0.35]: shadowed sides stay readable yet shading still shows shape.
    light_min_facing: ours, 0.3: the light is at least this much towards the camera (cosine), so the
        visible side is mostly lit.
    background_range: ours, each channel uniform in [0.75, 1.0]: plain light backdrops, like the
        white of the thesis's image pipeline but never one fixed colour to rely on.
    """

    resolution: int = 64
    cameras: CameraSamplerConfig = field(default_factory=CameraSamplerConfig)
    view_labels: ViewLabelConfig = field(default_factory=ViewLabelConfig)
    views_per_object: int = 1
    supersample: int = 2
    ambient_range: tuple[float, float] = (0.15, 0.35)
    light_min_facing: float = 0.3
    background_range: tuple[float, float] = (0.75, 1.0)


@dataclass
class RenderBatch:
    images: Tensor  # [B, 3, H, W] in [0, 1]
    alpha: Tensor  # [B, 1, H, W]: the object's pixel coverage (0 on the background)
    captions: list[str]  # with the view suffix of each image's camera
    view_ids: Tensor  # [B], indices into VIEW_LABELS
    objects: list[WorldObject]  # the object of each image
    cameras: CameraSample  # the camera of each image, with its spherical position


def random_light_directions(to_camera: Tensor, min_facing: float, generator: torch.Generator | None) -> Tensor:
    """Unit light directions [N, 3] (pointing towards the light) within acos(min_facing) of `to_camera`.

    Uniform directions are drawn and the ones facing away are reflected or blended towards the
    camera, which keeps the draw vectorised and the light on the visible side.
    """
    random = F.normalize(torch.randn(to_camera.shape, generator=generator, device=to_camera.device, dtype=to_camera.dtype), dim=-1)
    facing = (random * to_camera).sum(-1, keepdim=True)
    random = torch.where(facing < 0, random - 2 * facing * to_camera, random)  # mirror into the camera's hemisphere
    facing = facing.abs()
    # Blend just enough of the camera direction in to reach the minimum facing.
    weight = ((min_facing - facing) / (1 - facing).clamp_min(1e-6)).clamp(0, 1)
    return F.normalize(random + weight * (to_camera - random), dim=-1)


def _uniform(shape: Sequence[int], low: float, high: float, generator, device) -> Tensor:
    return low + (high - low) * torch.rand(*shape, generator=generator, device=device)


def render_objects(
    objects: Sequence[WorldObject],
    config: RenderConfig = RenderConfig(),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> RenderBatch:
    """`config.views_per_object` random views of each object: B = len(objects) * views_per_object."""
    views, size = config.views_per_object, config.resolution
    sample = sample_training_cameras(len(objects) * views, size, size, config.cameras, generator, device)
    traced = [trace_views(obj, sample.cameras[index * views : (index + 1) * views], config)
              for index, obj in enumerate(objects)]
    albedo, alpha, normals = (torch.cat(parts) for parts in zip(*traced))
    images = shade_views(albedo, alpha, normals, sample.cameras, config, generator)
    view_ids = sample.view_label_ids(config.view_labels)
    per_image = [obj for obj in objects for _ in range(views)]
    captions = [obj.caption(VIEW_LABELS[i]) for obj, i in zip(per_image, view_ids.tolist())]
    return RenderBatch(images=images, alpha=alpha, captions=captions, view_ids=view_ids, objects=per_image,
                       cameras=sample)


def trace_views(obj: WorldObject, cameras: Cameras, config: RenderConfig = RenderConfig()) -> tuple[Tensor, Tensor, Tensor]:
    """(albedo, alpha, normals) [N, C, H, W] of one object from `cameras`, unshaded: the albedo over black,
    so already weighted by each pixel's coverage."""
    out = obj.scene.render_sphere_traced(cameras, shading="albedo", background=(0.0, 0.0, 0.0), supersample=config.supersample)
    return tuple(out[key].permute(0, 3, 1, 2) for key in ("rgb", "alpha", "normals"))


def shade_views(albedo: Tensor, alpha: Tensor, normals: Tensor, cameras: Cameras, config: RenderConfig = RenderConfig(),
                generator: torch.Generator | None = None) -> Tensor:
    """Traced views [N, 3, H, W] in [0, 1] as the prior's training images look: lambertian under a random
    light towards each camera, a random ambient level, over a plain random backdrop (drawn in that order)."""
    count, device = albedo.shape[0], albedo.device
    lights = random_light_directions(F.normalize(cameras.origins, dim=-1), config.light_min_facing, generator)
    ambients = _uniform((count,), *config.ambient_range, generator, device)
    backgrounds = _uniform((count, 3), *config.background_range, generator, device)
    lit = (normals * lights[:, :, None, None]).sum(1, keepdim=True).clamp_min(0)
    ambient = ambients[:, None, None, None]
    shaded = albedo * (ambient + (1 - ambient) * lit) + (1 - alpha) * backgrounds[:, :, None, None]
    return shaded.clamp(0, 1).contiguous()


def sample_render_batch(
    batch_size: int,
    seed: int,
    split: Split = "train",
    config: RenderConfig = RenderConfig(),
    world: WorldConfig = WorldConfig(),
    device: torch.device | str = "cpu",
) -> RenderBatch:
    """A reproducible batch: objects of seeds seed * batch_size + [0, batch_size), cameras from `seed`."""
    if batch_size % config.views_per_object:
        raise ValueError(f"batch_size {batch_size} is not a multiple of views_per_object {config.views_per_object}")
    count = batch_size // config.views_per_object
    objects = [sample_object(seed * count + i, split, world) for i in range(count)]
    generator = torch.Generator(device=device).manual_seed(seed)
    return render_objects(objects, config, generator, device)
