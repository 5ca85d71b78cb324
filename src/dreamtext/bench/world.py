"""`dreamtext bench world`: text-to-3D against the procedural world's true objects (issue 4, item 7).

The cases are a fixed list defined here: the first `cases` objects of the split by seed, one per noun
(so the list covers as many nouns as it has cases), each run through text-to-3D with the built-in
preset (`methods.presets.BUILTIN`, read at run time) in its own workspace, then measured by
`world_metrics.evaluate_reconstruction`. The dev split holds attribute combinations the prior never
saw (world.py), and it depends on the world's words only, so the list stays put.

Case kinds: "text" runs the caption through text-to-3D; the image-to-3D kinds (issue 5: "dreamtext",
"realfusion", "dreamtext_ref") start from a true render of the object (world_image.py). The kind
"diversity" is a study, not a case: one prompt, K seeds, `diverse` against text-to-3D (world_diversity.py).
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, get_args

import torch

from ..batch.runner import Task, execute
from ..errors import DreamtextError, RunInterrupted
from ..methods.presets import PRESETS
from ..methods.trained import load_trained
from ..prior.clip_backends import load_clip_backend
from ..utils.images import save_image
from ..utils.preemption import preemption_handlers, raise_if_stopped
from ..utils.workspace import CHECKPOINT_FILE
from ..world.objects import ASYMMETRIC_NOUNS, THIN_PARTS
from .world_cases import WorldCase, benchmark_objects, caption_objects, run_text_case
from .world_config import QUICK_OVERRIDES, TARGET_MEAN_IOU, Start, WorldBenchConfig  # noqa: F401  (the suite's API)
from .world_diversity import STUDIES
from .world_image import IMAGE_CASE_RUNNERS, TRAINED_FOLDERS
from .world_metrics import CaptionCandidates, ClipScorer, evaluate_reconstruction

def benchmark_cases(config: WorldBenchConfig) -> list[WorldCase]:
    unknown = [kind for kind in config.kinds if kind not in CASE_RUNNERS and kind not in STUDIES]
    if unknown:
        raise DreamtextError(f"unknown benchmark case kind(s) {unknown}; known: {', '.join([*CASE_RUNNERS, *STUDIES])}")
    if config.seeds < 1:
        raise DreamtextError(f"--seeds must be at least 1 (runs per case), got {config.seeds}")
    starts = get_args(Start)
    if config.start is not None and config.start not in starts:
        raise DreamtextError(f"--start must be {', '.join(starts[:-1])} or {starts[-1]}, got {config.start!r}")
    if config.start not in (None, "blob", "prior_hull") and set(config.kinds) != {"text"}:
        raise DreamtextError(f"--start {config.start} applies to text-to-3D only; run it with --kinds text")
    objects = caption_objects(config.captions) if config.captions else benchmark_objects(config.cases, config.split)
    kinds = [kind for kind in config.kinds if kind in CASE_RUNNERS]
    cases = [WorldCase(kind, obj, index) for index, (kind, obj) in enumerate(itertools.product(kinds, objects))]
    if config.nouns is not None:  # a case keeps its number (and folder) among all of them
        wanted = {noun for name in config.nouns for noun in (ASYMMETRIC_NOUNS if name == "asymmetric" else (name,))}
        cases = [case for case in cases if case.object.noun in wanted]
        if not cases:
            raise DreamtextError(f"--nouns {' '.join(config.nouns)} matches none of the {config.cases} cases' nouns")
    # Every case with the first seed, then every case with the next: an interrupted run has whole seeds.
    return [replace(case, seed=config.seed + offset) for offset in range(config.seeds) for case in cases]


# ---------------------------------------------------------------------------------------------
# Running the cases
# ---------------------------------------------------------------------------------------------


# kind -> runner(case, workspace, config, device) -> figures; each leaves a trained workspace that
# `methods.trained.load_trained` reads (in the subfolder TRAINED_FOLDERS names, if any).
CASE_RUNNERS: dict[str, Callable[[WorldCase, Path, WorldBenchConfig, torch.device], dict]] = {
    "text": run_text_case, **IMAGE_CASE_RUNNERS}


def run_case(case: WorldCase, root: Path, config: WorldBenchConfig, scorer: ClipScorer, device: torch.device) -> dict:
    workspace = root / case.folder_name
    trained = workspace / TRAINED_FOLDERS.get(case.kind, "")
    resumed = (trained / CHECKPOINT_FILE).is_file()
    attributes = case.object.attributes
    row = {"kind": case.kind, "caption": case.caption, "noun": attributes.noun, "colour": attributes.colour,
           "size": attributes.size, "pattern": attributes.pattern, "seed": case.object.seed, "run_seed": case.seed}
    start = time.perf_counter()
    try:
        figures = CASE_RUNNERS[case.kind](case, workspace, replace(config, seed=case.seed), device)
    except RunInterrupted:
        raise  # a stop request ends the benchmark (a rerun resumes it), not this case alone
    except DreamtextError as error:  # a method that fails on one object (e.g. a sentence without descriptor words) is a result
        return {**row, "error": str(error), "wall_seconds": time.perf_counter() - start, "resumed": resumed}
    wall = time.perf_counter() - start
    start = time.perf_counter()
    evaluation = evaluate_reconstruction(load_trained(trained, device=device.type), case.object, scorer, config.evaluation)
    # What was measured, for a look: the field's albedo and shaded views above the truth's.
    rows = [torch.cat(list(views), dim=1) for views in (evaluation.predicted.albedo, evaluation.predicted.shaded,
                                                        evaluation.truth.albedo, evaluation.truth.shaded)]
    save_image(workspace / "bench_views.png", torch.cat(rows, dim=0))
    return {
        **row, **figures, **{key: _finite_or_none(value) for key, value in evaluation.metrics.items()},
        "wall_seconds": wall, "eval_seconds": time.perf_counter() - start, "resumed": resumed,
    }


def run_cases(bench_cases: list[WorldCase], root: Path, config: WorldBenchConfig, scorer: ClipScorer,
              device: torch.device) -> list[dict]:
    """Each case's row, in the cases' order: in this process, or on the configured engine's workers."""
    if config.engine.engine == "local" and (config.engine.workers or 1) == 1:
        rows = []
        for case in bench_cases:
            raise_if_stopped("the benchmark")  # a stop that came between two cases
            rows.append(run_case(case, root, config, scorer, device))
        return rows
    tasks = [Task(case.folder_name, world_case_task, (case, str(root), config, device.type),
                  {"kind": case.kind, "caption": case.caption, "run_seed": case.seed, "task": case.folder_name})
             for case in bench_cases]
    finished = {row.pop("task"): row for row in execute(tasks, config.engine, root)}
    return [finished[case.folder_name] for case in bench_cases]


def world_case_task(case: WorldCase, root: str, config: WorldBenchConfig, device: str, *, threads: int | None = None) -> dict:
    """`run_case` as an engine's task (a worker process or a Ray task): loads its own CLIP scorer."""
    if threads is not None:
        torch.set_num_threads(threads)
    scorer = ClipScorer(load_clip_backend("builtin", torch.device(device)), CaptionCandidates.for_split(config.split, config.captions))
    return {**run_case(case, Path(root), config, scorer, torch.device(device)), "task": case.folder_name}


def _finite_or_none(value):
    """NaN (e.g. an albedo error with no pixel to measure) as None: strict JSON has no NaN."""
    return None if isinstance(value, float) and value != value else value


MEAN_KEYS = ("iou", "occupancy_precision", "occupancy_recall", "start_iou", "chamfer", "fscore_002", "fscore_005",
             "precision_005", "recall_005", "albedo_error",
             "albedo_error_overlap", "clip_similarity", "r_precision_caption", "r_precision_noun", "r_precision_colour",
             "truth_clip_similarity", "truth_r_precision_caption", "truth_r_precision_noun", "truth_r_precision_colour",
             "reference_psnr", "descriptor_loss_words", "descriptor_loss_learned", "wall_seconds")


def mean_figures(rows: list[dict]) -> dict:
    """The mean of each figure over the cases that have it (a failed mesh has no Chamfer distance)."""
    means: dict[str, Any] = {}
    for key in MEAN_KEYS:
        values = [row[key] for row in rows if row.get(key) is not None]
        means[key] = statistics.fmean(values) if values else None
    # Every named thin part of every case counts once (a teapot's spout and handle are two)
    thin = [row["part_recall"][name] for row in rows for name in THIN_PARTS.get(row.get("noun", ""), ())
            if name in row.get("part_recall", {})]
    means["thin_part_recall"] = statistics.fmean(thin) if thin else None
    means["thin_parts"] = len(thin)
    means["cases"] = len(rows)
    means["failed_cases"] = sum("error" in row for row in rows)
    # Janus (issue 30): the share of decided asymmetric cases whose front and back are where the truth's are
    decided = [row["front_back"] for row in rows if row.get("front_back") is not None]
    means["front_back_correct"] = statistics.fmean(decided) if decided else None
    means["front_back_cases"] = len(decided)
    means["chamfer_cases"] = sum(row.get("chamfer") is not None for row in rows)
    return means


def seed_spread(rows: list[dict]) -> dict:
    """How much the runs of one case differ between seeds: the mean IoU and F@0.05 of each seed's runs, and
    each case's per seed ("text: a cyan sphere": [0.70, 0.74])."""
    seeds = sorted({row["run_seed"] for row in rows})
    spread: dict = {}
    for key in ("iou", "fscore_005"):
        by_case: dict[str, list] = {}
        for row in rows:
            by_case.setdefault(f"{row['kind']}: {row['caption']}", []).append(row.get(key))
        spread[f"mean_{key}_by_seed"] = [mean_figures([r for r in rows if r["run_seed"] == seed])[key] for seed in seeds]
        spread[f"{key}_by_case"] = by_case
    return spread


def bench_world(config: WorldBenchConfig, device: torch.device | str = "cpu", quick: bool = False) -> dict:
    """Run the benchmark `config` describes (`WorldBenchConfig.quick()`: the plumbing check) and return its figures."""
    config.engine.check()
    device = torch.device(device)
    bench_cases = benchmark_cases(config)
    scorer = ClipScorer(load_clip_backend("builtin", device), CaptionCandidates.for_split(config.split, config.captions))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dreamtext-bench-world-") as tmp:
        root = Path(config.workspace) if config.workspace is not None else Path(tmp)
        # SIGTERM or Ctrl-C stops the case in progress with a checkpoint (on every worker) and the benchmark
        # with it; without the handlers here a killed benchmark left its worker processes running cases.
        try:
            with preemption_handlers():
                rows = run_cases(bench_cases, root, config, scorer, device)
        except RunInterrupted as stop:
            where = (f"rerun it with --workspace {config.workspace} to resume" if config.workspace is not None
                     else "its runs were in a temporary folder; pass --workspace to keep and resume them")
            raise RunInterrupted(f"{stop}; the benchmark stopped with it: {where}", stop.exit_code) from None
        studies = {kind: STUDIES[kind](config, root, scorer, device) for kind in config.kinds if kind in STUDIES}
    means = mean_figures(rows)
    by_kind = {kind: mean_figures([row for row in rows if row["kind"] == kind]) for kind in config.kinds if kind in CASE_RUNNERS}
    text_iou = by_kind.get("text", {}).get("iou")  # issue 4's target is text-to-3D's
    preset = {**PRESETS[config.preset], **config.overrides}
    return {
        "suite": "world",
        "quick": quick,
        "device": str(device),
        "split": config.split,
        "kinds": list(config.kinds),
        "preset": config.preset,
        "iters": preset.get("iters"),
        "overrides": {key: list(value) if isinstance(value, tuple) else value for key, value in config.overrides.items()},
        "seeds": config.seeds,
        "start": config.start or preset.get("init.kind", "blob"),
        "cases": rows,
        "mean": means,
        **({"seed_spread": seed_spread(rows)} if config.seeds > 1 else {}),
        "mean_by_kind": by_kind,
        **studies,
        "target_mean_iou": TARGET_MEAN_IOU,
        "meets_target": text_iou is not None and text_iou >= TARGET_MEAN_IOU,
        "threads": torch.get_num_threads(),
        "engine": {"engine": config.engine.engine, "workers": config.engine.workers or 1},
        "total_seconds": time.perf_counter() - start,
        "workspace": config.workspace,
    }
