"""Write an analytic scene as a posed image set: RGBA PNGs plus an Instant-NGP/nerfstudio transforms.json."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..scene.cameras import CameraSamplerConfig, Cameras, sample_training_cameras
from ..utils.images import save_image
from ..utils.io import atomic_write_json

if TYPE_CHECKING:
    from .analytic import AnalyticScene


def transforms_dict(cameras: Cameras, file_paths: list[str]) -> dict:
    """transforms.json content: shared intrinsics (the first camera's) and one OpenGL c2w per frame."""
    if not torch.allclose(cameras.fx, cameras.fx[0]) or not torch.allclose(cameras.fy, cameras.fy[0]):
        raise ValueError("transforms_dict writes one set of intrinsics; the cameras' focal lengths differ")
    fx, fy = float(cameras.fx[0]), float(cameras.fy[0])
    return {
        "camera_angle_x": 2 * math.atan(0.5 * cameras.width / fx),
        "camera_angle_y": 2 * math.atan(0.5 * cameras.height / fy),
        "fl_x": fx,
        "fl_y": fy,
        "cx": float(cameras.cx[0]),
        "cy": float(cameras.cy[0]),
        "w": cameras.width,
        "h": cameras.height,
        "frames": [
            {"file_path": path, "transform_matrix": c2w.tolist()}
            for path, c2w in zip(file_paths, cameras.c2w.double())
        ],
    }


def write_scene_views(
    scene: "AnalyticScene",
    folder: str | Path,
    views: int = 32,
    size: int = 64,
    seed: int = 0,
    fovy_deg: float = 50.0,
    shading: str = "albedo",
) -> Path:
    """Render `views` sphere-traced RGBA images of `scene` from the thesis's training camera distribution.

    Writes folder/images/r_XXX.png (straight alpha) and folder/transforms.json; returns the json path.
    The fovy is fixed (ours: 50, the middle of the sampler's 40-70 range) because transforms.json holds
    one set of intrinsics; radius and angles follow `sample_training_cameras` with `seed`.
    """
    folder = Path(folder)
    generator = torch.Generator().manual_seed(seed)
    config = CameraSamplerConfig(fovy_range_deg=(fovy_deg, fovy_deg))
    cameras = sample_training_cameras(views, size, size, config=config, generator=generator).cameras
    images = scene.render_sphere_traced(cameras, shading=shading, background=(0.0, 0.0, 0.0))
    # Rendered over black, rgb is premultiplied by alpha; PNG wants the straight colour.
    straight = images["rgb"] / images["alpha"].clamp_min(1e-6)
    paths = [f"images/r_{i:03d}.png" for i in range(views)]
    for path, rgb, alpha in zip(paths, straight, images["alpha"]):
        save_image(folder / path, rgb, alpha=alpha)
    return atomic_write_json(folder / "transforms.json", transforms_dict(cameras, paths))
