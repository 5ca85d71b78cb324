"""The `dreamtext` commands that run many jobs: `batch` (a list of jobs) and `bench` (the benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..batch import BatchConfig, run_batch
from ..bench import SUITES, run_benchmark
from ..bench.world_config import WorldBenchConfig
from ..errors import DreamtextError
from ..utils.config import parse_settings
from ..utils.device import Device
from .positionals import JobsFile

Suite = Literal[tuple(SUITES)]  # type: ignore[valid-type]  # the benchmark table's own names
EXIT_JOBS_FAILED = 1  # dreamtext batch: some jobs failed (each one's error is in summary.json)


@dataclass
class BatchCommand:
    """Run a list of jobs (prompts, or JSON Lines of text, image and diverse jobs), one workspace each.

    JOBS is a text file of prompts (one per line) or JSON Lines (kind text / image / diverse, prompt or
    image, preset, overrides by config name, seeds). One workspace per job under --workspace;
    finished jobs are skipped and interrupted ones resume when run again; DIR/summary.json and a gallery of
    every finished job at the end."""

    jobs: JobsFile
    workspace: str = "out/batch"
    quiet: bool = False
    config: Annotated[BatchConfig, tyro.conf.arg(name="")] = field(default_factory=BatchConfig)

    def run(self) -> None:
        summary = run_batch(self.jobs, self.workspace, self.config, progress=not self.quiet)
        counts = summary["counts"]
        print(f"{counts['done']} done ({summary['skipped']} already finished), {counts['failed']} failed; "
              f"summary in {Path(self.workspace) / 'summary.json'}")
        return EXIT_JOBS_FAILED if counts["failed"] else 0


@dataclass
class BenchCommand:
    """Run a benchmark and print its figures (JSON with --json)."""

    suite: tyro.conf.Positional[Suite]
    json: bool = False
    quick: bool = False
    """A small, fast version of the suite (for tests and smoke checks)."""
    device: Device = "auto"
    split: Literal["train", "dev"] | None = None
    """world: the split the objects come from (None: dev, held out from the prior's training)."""
    cases: int | None = None
    """world: how many objects (one per noun; None: 8, 1 with --quick)."""
    nouns: tuple[str, ...] | None = None
    """world: only the cases of these nouns among them ("asymmetric": the nouns with a front and a back)."""
    captions: tuple[str, ...] | None = None
    """world: the world's objects of these captions instead of the dev list ("a red mug": the main command's)."""
    workspace: str | None = None
    """world: keep the runs in this folder (one subfolder per case; an interrupted benchmark resumes). hull: such a
    folder, whose text runs' start drawings are carved as well, beside exact renders at the same cameras."""
    kinds: str | None = None
    """world: comma-separated case kinds (None: text): text, dreamtext, realfusion, dreamtext_ref, plain_sentence
    (image-to-3D from a true render), diversity (diverse vs text-to-3D over K seeds)."""
    seeds: int | None = None
    """world: runs per case, with seeds 0, 1, ... (None: 1); the means are over every run."""
    start: Literal["blob", "prior_hull", "truth", "truth_hull"] | None = None
    """world: what text-to-3D starts from (None: the preset's; builtin's is prior_hull, held near it;
    the image cases' reconstruction: its own, `--reconstruct.init.kind`). blob: the density blob. prior_hull:
    the visual hull of the prior's own drawings (as `text --init prior_hull`). Text cases only,
    diagnostics: truth, the field first fitted to the true object; truth_hull, the prior hull carved
    from exact renders of the true object at the hull's assumed cameras. `start_iou` beside the final IoU
    says how near the start was and whether the distillation keeps it."""

    engine: Literal["local", "ray"] | None = None
    """world: where the cases run, as `dreamtext batch` runs jobs (None: one after another in this process)."""
    workers: int | None = None
    """world: cases at once (local processes or Ray tasks)."""
    address: str | None = None
    """world, Ray: the cluster to join (None: start a local one)."""
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """world, step, hull: a KEY=VALUE text-to-3D setting on top of the preset, by config name (e.g.
    sds.guidance_form=perp_neg; the value read as JSON, else as text); repeat --set for several; step and hull
    measure the preset and the preset with them side by side."""

    def run(self) -> None:
        given = [name for name in WORLD_FLAGS if getattr(self, name) is not None
                 and not (self.suite == "hull" and name == "workspace")]
        if self.suite != "world" and given:
            raise DreamtextError(f"{', '.join('--' + name for name in given)} does not apply to the {self.suite} suite; leave "
                                 f"it out (these flags are the world suite's)")
        if self.set and self.suite not in ("world", "step", "hull"):
            raise DreamtextError(f"--set does not apply to the {self.suite} suite; leave it out (world, step and hull take it)")
        settings = parse_settings(self.set) if self.set else {}
        world = self.world_config(settings) if self.suite == "world" else None
        run_benchmark(self.suite, as_json=self.json, quick=self.quick, device=self.device, world=world, overrides=settings or None,
                      workspace=self.workspace if self.suite == "hull" else None)

    def world_config(self, settings: dict) -> WorldBenchConfig:
        """The world suite's config: its quick or full defaults with the flags given, each set by its own name."""
        base = WorldBenchConfig.defaults(self.quick)
        changes = {name: getattr(self, name) for name in ("split", "cases", "nouns", "captions", "workspace", "seeds", "start")
                   if getattr(self, name) is not None}
        if self.kinds is not None:
            changes["kinds"] = tuple(kind.strip() for kind in self.kinds.split(",") if kind.strip())
        if self.engine is not None or self.workers is not None or self.address is not None:
            changes["engine"] = BatchConfig(engine=self.engine or "local", workers=self.workers, address=self.address, gallery=False)
        return replace(base, **changes, overrides={**base.overrides, **settings})


# The flags of BenchCommand that set the world suite's config (None: not given).
WORLD_FLAGS = ("split", "cases", "nouns", "captions", "workspace", "kinds", "seeds", "start", "engine", "workers", "address")


