"""Write an analytic scene as a posed image set: RGBA PNGs plus an Instant-NGP/nerfstudio transforms.json."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..data.posed_images import save_posed_images
from ..scene.cameras import CameraSamplerConfig, sample_training_cameras

if TYPE_CHECKING:
    from .analytic import AnalyticScene


def write_scene_views(
    scene: "AnalyticScene",
    folder: str | Path,
    views: int = 32,
    size: int = 64,
    seed: int = 0,
    fovy_deg: float = 50.0,
    shading: str = "albedo",
    radius_range: tuple[float, float] = CameraSamplerConfig.radius_range,
) -> Path:
    """Render `views` sphere-traced RGBA images of `scene` from the thesis's training camera distribution.

    Writes RGBA PNGs (straight alpha) and transforms.json through `save_posed_images`; returns the json path.
    The fovy is fixed (ours: 50, the middle of the sampler's 40-70 range) because transforms.json holds
    one set of intrinsics; radius and angles follow `sample_training_cameras` with `seed`.
    """
    folder = Path(folder)
    generator = torch.Generator().manual_seed(seed)
    config = CameraSamplerConfig(fovy_range_deg=(fovy_deg, fovy_deg), radius_range=radius_range)
    cameras = sample_training_cameras(views, size, size, config=config, generator=generator).cameras
    images = scene.render_sphere_traced(cameras, shading=shading, background=(0.0, 0.0, 0.0))
    # Rendered over black, rgb is premultiplied by alpha; PNG wants the straight colour.
    straight = (images["rgb"] / images["alpha"].clamp_min(1e-6)).clamp(0, 1)
    return save_posed_images(folder, straight, cameras, alphas=images["alpha"])
