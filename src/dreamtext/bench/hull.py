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

With `--workspace W`, a `bench world` workspace, each text run in it also has the hull of its own start drawings
(init/drawings.png, with the layout that run used) measured the same way, beside the exact renders' hull of that
layout: the gap between the two is what the prior's drawings cost the start.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from ..methods.presets import preset_config
from ..methods.sample import CONTACT_SHEET_GAP
from ..methods.text_to_3d import TextTo3DConfig
from ..methods.text_to_3d.start import hull_of_drawings
from ..metrics import occupancy_grid
from ..utils.config import config_from_dict
from ..utils.images import load_image
from ..utils.workspace import Workspace
from .truth_start import truth_drawings
from .world_cases import benchmark_objects

RESOLUTION = 64  # the grid the hull is compared on (bench world's IoU grid)


def carve(obj, drawings: list[torch.Tensor], config: TextTo3DConfig, resolution: int) -> dict[str, float]:
    """{iou, recall} of the hull of `drawings` (one batch per view of `config.init.views`) against `obj`'s solid."""
    init = config.init
    hull = hull_of_drawings(drawings, init, config.cameras)
    bound = config.field.bound
    inside = occupancy_grid(lambda points: hull.coverage(points) > init.threshold, bound, resolution)
    truth = occupancy_grid(obj.scene.occupancy, bound, resolution)
    common = int((inside & truth).sum())
    return {"iou": common / max(int((inside | truth).sum()), 1), "recall": common / max(int(truth.sum()), 1)}


def exact_figures(obj, config: TextTo3DConfig, resolution: int) -> dict[str, float]:
    """The hull of exact renders of `obj` at `config`'s assumed cameras (its drawings' size: the prior's 64 px)."""
    return carve(obj, truth_drawings(obj, config.init, config.cameras, size=64, seed=config.seed), config, resolution)


def hull_figures(obj, settings: dict, resolution: int = RESOLUTION) -> dict[str, float]:
    """{iou, recall} of the hull of exact renders of `obj` at the preset's (with `settings`) assumed cameras."""
    return exact_figures(obj, preset_config("builtin", obj.caption(), settings), resolution)


def sheet_drawings(path: Path, views: int, per_view: int) -> list[torch.Tensor]:
    """A run's init/drawings.png (`contact_sheet` of its drawings, a row per view) back as one [per_view, 3, S, S]
    batch per view."""
    sheet, gap = load_image(path)[0], CONTACT_SHEET_GAP  # [H, W, 3]
    size = (sheet.shape[1] - gap * (per_view + 1)) // per_view
    step = size + gap
    tiles = [sheet[gap + row * step:gap + row * step + size, gap + column * step:gap + column * step + size]
             for row in range(views) for column in range(per_view)]
    return list(torch.stack(tiles).permute(0, 3, 1, 2).split(per_view))


def drawn_figures(workspace: Path, objects, resolution: int) -> list[dict]:
    """For each text run of a `bench world` workspace with start drawings: the hull of its drawings and the hull of
    exact renders at the same cameras (the run's own config), against its object."""
    by_caption = {obj.caption(): obj for obj in objects}
    rows = []
    for run in sorted(path for path in Path(workspace).iterdir() if (path / "init" / "drawings.png").is_file()):
        config = config_from_dict(TextTo3DConfig, Workspace(run, create=False).load_config_dict()["config"])
        obj = by_caption.get(config.prompt.prompt)
        if obj is None or config.init.kind != "prior_hull":
            continue
        drawings = sheet_drawings(run / "init" / "drawings.png", len(config.init.views), config.init.drawings_per_view)
        rows.append({"run": run.name, "noun": obj.noun, "drawn": carve(obj, drawings, config, resolution),
                     "exact": exact_figures(obj, config, resolution)})
    return rows


def layout_figures(settings: dict, objects, resolution: int) -> dict:
    per_object = {obj.noun: hull_figures(obj, settings, resolution) for obj in objects}
    return {"views": [list(view) for view in preset_config("builtin", "", settings).init.views],
            "mean_iou": statistics.fmean(row["iou"] for row in per_object.values()),
            "mean_recall": statistics.fmean(row["recall"] for row in per_object.values()),
            "objects": per_object}


def bench_hull(quick: bool = False, device: torch.device | str = "cpu", overrides: dict | None = None,
               workspace: str | Path | None = None) -> dict:
    """The preset's hull figures over the dev objects (2 with --quick, at a 32 grid), the variant's beside them, and
    with `workspace` each of its runs' drawn hull beside the exact one."""
    objects = benchmark_objects(2 if quick else 8)
    resolution = 32 if quick else RESOLUTION
    result = {"suite": "hull", "quick": quick, "resolution": resolution, "preset": layout_figures({}, objects, resolution)}
    if overrides:
        result["variant"] = {"settings": overrides, **layout_figures(overrides, objects, resolution)}
    if workspace is not None:
        rows = drawn_figures(Path(workspace), objects, resolution)
        result["drawn"] = {"runs": rows, **({"mean_iou": statistics.fmean(row["drawn"]["iou"] for row in rows),
                                             "mean_exact_iou": statistics.fmean(row["exact"]["iou"] for row in rows),
                                             "mean_recall": statistics.fmean(row["drawn"]["recall"] for row in rows)} if rows else {})}
    return result
