"""`dreamtext bench hull`: how good a start hull can be with the builtin preset's view layout, in seconds.

The hull start's drawings are placed at assumed cameras (`ShapeInitConfig.views`), and the drawings' own
cameras are unknown, so what the prior draws and where the hull puts it both limit the start. This suite
removes the first: each view's drawings are exact renders of the dev objects from the very camera the hull
assumes (`truth_drawings`, as `bench world --start truth_hull` uses them), so the hull's figures are the
best that layout of views can carve. It reports per object the volume IoU of the hull (coverage above
`init.threshold`) against the true solid and the share of the true solid inside it (a hull should keep it
all: it is an upper bound), on a grid over the scene cube. With `--set` (e.g. `init.views=[...]`) the variant
is measured beside the preset, on the same objects. Carving better here is necessary for a layout to carve better
from the prior's drawings, not sufficient: those drawings' own shapes and cameras limit the hull too
(docs/experiments.md), so `bench world` has the last word.
"""

from __future__ import annotations

import statistics

import torch

from ..methods.presets import preset_config
from ..methods.text_to_3d.start import hull_of_drawings
from ..metrics import occupancy_grid
from .truth_start import truth_drawings
from .world_cases import benchmark_objects

RESOLUTION = 64  # the grid the hull is compared on (bench world's IoU grid)


def hull_figures(obj, settings: dict, resolution: int = RESOLUTION) -> dict[str, float]:
    """{iou, recall} of the hull of exact renders of `obj` at the preset's (with `settings`) assumed cameras."""
    config = preset_config("builtin", obj.caption(), settings)
    init, cameras = config.init, config.cameras
    drawings = truth_drawings(obj, init, cameras, size=64, seed=config.seed)
    hull = hull_of_drawings(drawings, init, cameras)
    bound = config.field.bound
    inside = occupancy_grid(lambda points: hull.coverage(points) > init.threshold, bound, resolution)
    truth = occupancy_grid(obj.scene.occupancy, bound, resolution)
    common = int((inside & truth).sum())
    return {"iou": common / max(int((inside | truth).sum()), 1), "recall": common / max(int(truth.sum()), 1)}


def layout_figures(settings: dict, objects, resolution: int) -> dict:
    per_object = {obj.noun: hull_figures(obj, settings, resolution) for obj in objects}
    return {"views": [list(view) for view in preset_config("builtin", "", settings).init.views],
            "mean_iou": statistics.fmean(row["iou"] for row in per_object.values()),
            "mean_recall": statistics.fmean(row["recall"] for row in per_object.values()),
            "objects": per_object}


def bench_hull(quick: bool = False, device: torch.device | str = "cpu", overrides: dict | None = None) -> dict:
    """The preset's hull figures over the dev objects (2 with --quick, at a 32 grid), and the variant's beside them."""
    objects = benchmark_objects(2 if quick else 8)
    resolution = 32 if quick else RESOLUTION
    result = {"suite": "hull", "quick": quick, "resolution": resolution, "preset": layout_figures({}, objects, resolution)}
    if overrides:
        result["variant"] = {"settings": overrides, **layout_figures(overrides, objects, resolution)}
    return result
