"""`bench world --start truth`: text-to-3D that begins from the true object instead of the density blob.

A diagnostic. When a benchmark case ends far from its object, either the distillation cannot get there
from the blob, or it does not stay there even when it starts there (its objective, or the noise of its
updates, pulls a right shape apart). Starting from the truth tells the two apart: the field is fitted to
the object by 3D supervision (density and albedo at random points of the scene cube) and then the
preset's SDS run proceeds as usual; its final IoU is compared with the fitted one (`start_iou`).

`bench world --start truth_hull` asks the same of the hull start: the preset's prior hull and hold, carved
from exact renders of the true object seen from the hull's assumed cameras in place of the prior's
drawings. It bounds what better drawings could give: a prior that draws the object perfectly, and from the
camera the hull assumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..methods.text_to_3d.start import FieldFitConfig, ShapeInitConfig, assumed_camera, fit_field
from ..methods.text_to_3d import TextTo3DTrainer
from ..metrics import field_iou
from ..scene.cameras import CameraSamplerConfig, orbit_cameras
from ..world.analytic import AnalyticScene
from ..world.renders import RenderConfig, shade_views, trace_views
from ..world.world import WorldObject


@dataclass(frozen=True)
class TruthFitConfig(FieldFitConfig):
    """The 3D fit's settings (steps, points, lr, inside_density: `FieldFitConfig`'s) and surface_width: the
    target falls from inside_density to 0 across this width of the SDF (a sigmoid)."""

    surface_width: float = 0.01


def fit_field_to_scene(field: torch.nn.Module, scene: AnalyticScene, config: TruthFitConfig = TruthFitConfig(),
                       seed: int = 0) -> None:
    """Fit `field`'s density and albedo to `scene` in place (its own optimiser; the caller's is untouched)."""
    def targets(points: torch.Tensor):
        sdf, nearest_part = scene.part_sdfs(points).min(dim=-1)  # once for the density and the albedo target
        density = config.inside_density * torch.sigmoid(-sdf / config.surface_width)
        # Albedo only where it shows: inside and within a surface width outside.
        shows = (sdf < 2 * config.surface_width).to(points.dtype)
        return density, sdf < 0, scene.part_albedo(points, nearest_part), shows

    fit_field(field, targets, scene.bound, config, seed=seed)


def truth_start_trainer(run_config, workspace, scene: AnalyticScene, prior=None, fit: TruthFitConfig = TruthFitConfig(),
                        iou_resolution: int = 128, density_threshold: float = 10.0):
    """A text-to-3D trainer whose field starts as `scene`, and the fitted field's IoU against it. A resumed
    run loads its checkpoint over the fitted field, as over any initial one."""
    trainer = TextTo3DTrainer(run_config, workspace, prior=prior)
    fit_field_to_scene(trainer.field, scene, fit, seed=run_config.seed)
    if trainer.ema_field is not None:
        trainer.ema_field.load_state_dict(trainer.field.state_dict())
    return trainer, field_iou(trainer.field, scene, resolution=iou_resolution, density_threshold=density_threshold)


def truth_drawings(obj: WorldObject, init: ShapeInitConfig, cameras: CameraSamplerConfig, size: int,
                   seed: int = 0) -> list[torch.Tensor]:
    """Exact stand-ins for the prior's drawings: each of `init.views` [drawings_per_view, 3, size, size],
    the true object from the camera the hull assumes for that view (`assumed_camera`), shaded as the prior's
    training renders are (a random light, ambient level and plain backdrop per image, from `seed`)."""
    radius, fovy = assumed_camera(init, cameras)
    render = RenderConfig(resolution=size)
    generator = torch.Generator().manual_seed(seed)
    drawings = []
    for _, polar, azimuth in init.views:
        camera = orbit_cameras(1, size, size, radius=radius, polar_deg=polar, fovy_deg=fovy, start_azimuth_deg=azimuth).cameras
        albedo, alpha, normals = trace_views(obj, camera, render)  # traced once, shaded per drawing
        repeat = [init.drawings_per_view, 1, 1, 1]
        drawings.append(shade_views(albedo.repeat(repeat), alpha.repeat(repeat), normals.repeat(repeat),
                                    camera[torch.zeros(init.drawings_per_view, dtype=torch.long)], render, generator))
    return drawings
