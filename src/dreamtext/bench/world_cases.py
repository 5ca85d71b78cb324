"""The benchmark's cases: which world objects it runs, and how a text case is run (shared by the
benchmark itself, `world.py`, and the diversity study, `world_diversity.py`)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import DreamtextError
from ..methods.presets import preset_config
from ..methods.text_to_3d import TextTo3DTrainer, text_to_3d
from ..metrics import field_iou
from ..world.world import Split, WorldObject, attributes_from_caption, build_object, sample_attributes, split_combinations
from .truth_start import truth_drawings, truth_start_trainer
from .world_config import WorldBenchConfig


@dataclass(frozen=True)
class WorldCase:
    kind: str
    object: WorldObject
    index: int
    seed: int = 0  # the run's seed (not the object's)

    @property
    def caption(self) -> str:
        return self.object.caption()

    @property
    def folder_name(self) -> str:
        """"03_text_a_cyan_sphere"; runs with another seed than 0 add "_seed1" (so seed 0's folders resume
        whatever the number of seeds)."""
        name = f"{self.index:02d}_{self.kind}_{re.sub(r'[^a-z0-9]+', '_', self.caption.lower()).strip('_')}"
        return name if self.seed == 0 else f"{name}_seed{self.seed}"


def caption_objects(captions: tuple[str, ...]) -> list[WorldObject]:
    """The world's objects named by `captions` ("a red mug"), each built from seed None (a caption's object
    does not depend on a seed)."""
    return [build_object(attributes_from_caption(caption)) for caption in captions]


def benchmark_objects(count: int, split: Split = "dev") -> list[WorldObject]:
    """The first `count` objects of `split` by seed with a noun not drawn before: a fixed, varied list."""
    nouns = {a.noun for a in split_combinations(split)}
    if not 1 <= count <= len(nouns):
        raise DreamtextError(f"--cases must be between 1 and {len(nouns)} (one object per noun), got {count}")
    chosen: dict[str, tuple] = {}
    for seed in itertools.count():
        attributes = sample_attributes(seed, split)
        chosen.setdefault(attributes.noun, (attributes, seed))
        if len(chosen) == count:
            return [build_object(attributes, seed) for attributes, seed in chosen.values()]
    raise AssertionError("unreachable")


def run_text_case(case: WorldCase, workspace: Path, config: "WorldBenchConfig", device: torch.device) -> dict:
    """Text-to-3D of the case's caption with the preset; returns the run's own figures."""
    overrides = {**config.overrides, "seed": config.seed, "device": device.type}
    if config.start == "truth":
        overrides["init.kind"] = "blob"  # the field is fitted to the truth below, not to a hull
    elif config.start == "truth_hull":
        overrides["init.kind"] = "prior_hull"  # carved from exact renders below, not from the prior's drawings
    elif config.start is not None:  # None: the preset's own start
        overrides["init.kind"] = config.start
    run_config = preset_config(config.preset, case.caption, overrides)
    figures: dict[str, Any] = {}
    make_trainer = TextTo3DTrainer
    if run_config.init.kind == "prior_hull":
        def exact_renders(prior, embeddings, init, seed, cameras, progress):
            return truth_drawings(case.object, init, cameras, prior.image_size, seed)

        def make_trainer(run_config, run_workspace, prior=None):
            drawings = exact_renders if config.start == "truth_hull" else None
            trainer = TextTo3DTrainer(run_config, run_workspace, prior=prior, drawings=drawings)
            if not run_workspace.has_checkpoint():  # a resumed run loads its checkpoint instead
                trainer.initialise_shape()
                figures["start_iou"] = field_iou(trainer.field, case.object.scene, resolution=config.evaluation.iou_resolution,
                                                 density_threshold=run_config.export.mesh.density_threshold)
            return trainer
    elif config.start == "truth":
        def make_trainer(run_config, run_workspace, prior=None):
            trainer, figures["start_iou"] = truth_start_trainer(  # absent when a finished run is resumed (no trainer is made)
                run_config, run_workspace, case.object.scene, prior=prior, fit=config.truth_fit,
                iou_resolution=config.evaluation.iou_resolution, density_threshold=run_config.export.mesh.density_threshold)
            return trainer
    result = text_to_3d(run_config, workspace, resume=True, progress=False, make_trainer=make_trainer)
    return {"iters": result.metrics["iters"], "final_loss": result.metrics["final_loss"], **figures}
