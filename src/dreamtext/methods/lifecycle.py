"""One lifecycle for every training run: fit, text-to-3D and the descriptor supply a trainer, this owns the rest.

A method's trainer has `step`, `train_step()` (its losses; nan for a skipped step),
`state_dict()` / `load_state_dict()`, and may have `evaluate_at(step)` for periodic validation. Around it:

- `train_run`: the rest of every training run once it has started (the one driver fit, text-to-3D and the
  descriptor share): the workspace created and held, the config saved, a checkpoint resumed, the training,
  the method's own outputs, metrics.json with each stage's time.
- `start_run`: the workspace guard (a workspace holds one run of one method; an existing run is continued
  only with `resume`), the resumed config (`resumed_config`, one rule for every method), and whether the
  run already finished. It creates nothing: a run that fails to start (a bad model, a bad image) leaves
  no workspace behind (`Workspace.create` comes after the method's own checks and loads).
- `train_loop`: progress with ETA, evaluation and checkpoint cadence (every `checkpoint_every` steps, every
  `checkpoint_minutes` of wall time, and at the end), and preemption (utils/preemption.py): SIGTERM (what
  Slurm and Ray send) and a first Ctrl-C end the run at the end of the current step with a checkpoint and
  `RunInterrupted` (exit status 143 or 130); `--resume` then continues bit-identically.
- checkpoints themselves are rotated and verified by `utils.workspace.Workspace`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, TypeVar

from ..errors import DreamtextError, RunInterrupted
from ..utils.config import config_from_dict, config_to_dict, differing_keys, get_dotted, set_dotted
from ..utils.preemption import preemption_handlers
from ..utils.progress import Progress, timed
from ..utils.workspace import Workspace
from .registry import METHODS, foreign_markers

C = TypeVar("C")

# Settings a resumed run takes as requested: none changes what the run computes.
RESUMABLE_KEYS: tuple[str, ...] = (
    "device", "model", "renderer.max_samples_per_chunk", "checkpoint_every", "checkpoint_minutes",
)


class Trainer(Protocol):
    step: int

    def train_step(self) -> Any: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclasses.dataclass
class RunStart:
    """What `start_run` found: the workspace (not created yet), the config to run, whether a checkpoint
    is continued, and the finished run's metrics when there is nothing left to train."""

    workspace: Workspace
    config: Any
    resuming: bool
    finished: dict | None


def resumed_config(saved: C, requested: C, taken: Sequence[str] = RESUMABLE_KEYS) -> C:
    """The config a resumed run goes on with: its saved one (the same schedules, the same random stream),
    with a larger iteration count extending it (a smaller one keeps the saved count) and the `taken`
    settings as requested (they change no result). Other differences are reported, not applied."""
    merged = dataclasses.replace(saved, iters=max(saved.iters, requested.iters))
    for key in taken:
        try:
            merged = set_dotted(merged, key, get_dotted(requested, key))
        except AttributeError:  # a method without that setting
            continue
    ignored = differing_keys(config_to_dict(merged), config_to_dict(dataclasses.replace(requested, iters=merged.iters)))
    if ignored:
        print(f"dreamtext: warning: --resume keeps the saved config; ignoring changed {', '.join(ignored)}", file=sys.stderr)
    return merged


def start_run(root: str | Path, method: str, config: C, resume: bool, taken: Sequence[str] = RESUMABLE_KEYS) -> RunStart:
    """Check that `root` may hold this run and work out the config it runs with (see the module docstring);
    `taken`: the settings a resumed run takes as requested (`resumed_config`)."""
    workspace = Workspace(root, create=False, must_exist=False)
    workspace.check_free()  # another process's run holds it: refused before anything loads
    foreign = foreign_markers(workspace.root, method)  # another kind's workspace (image to 3D's stages): not for this run
    if foreign:
        kind, marker = foreign[0]
        raise DreamtextError(f"{workspace.root} holds another kind of workspace ({kind}: {METHODS[kind].summary}; {marker}), "
                             f"not a {method} run; choose another --workspace")
    if workspace.has_run() and not resume:
        raise DreamtextError(f"{workspace.root} already holds a run; pass --resume to continue it or choose another --workspace")
    if not workspace.has_config():
        return RunStart(workspace, config, resuming=False, finished=None)
    saved = workspace.load_config_dict()
    if saved.get("method") != method:
        raise DreamtextError(f"{workspace.root} holds a {saved.get('method')!r} run, not a {method} one; choose another --workspace")
    if not workspace.has_run():  # a config without a checkpoint: a run that stopped before its first step
        return RunStart(workspace, config, resuming=False, finished=None)
    config = resumed_config(config_from_dict(type(config), saved["config"]), config, taken)
    finished = workspace.read_metrics()
    done = finished if finished.get("iters") == config.iters else None
    problem = None if done is None else workspace.latest_checkpoint_problem()  # reads and hashes last.pt
    if problem is not None:
        # A finished run whose last checkpoint is damaged or gone: train again from the one before it, so
        # the workspace ends with a whole checkpoint of the last step (and fresh outputs from it).
        print(f"dreamtext: warning: the finished run's checkpoints/last.pt {problem}; "
              "training its last steps again from previous.pt", file=sys.stderr)
        done = None
    return RunStart(workspace, config, resuming=True, finished=done)


def train_run(run: RunStart, method: str, make: Callable[[Workspace], tuple[Any, Trainer]],
              finish: Callable[[Trainer, Any, Workspace, float], dict], progress: bool) -> dict:
    """Train a started run to its end and return its metrics (also written to metrics.json).

    make(workspace) -> (config, trainer): what trains, built once the workspace is held (a method may still
        complete its config there: fit frames its views by the data it renders into the workspace); a method
        that loads models builds them before (`start_run` to here writes nothing).
    finish(trainer, config, workspace, training_seconds) -> metrics: the method's outputs (renders, mesh,
        embeddings) and figures, given the wall time this process trained for.
    The workspace is held for the whole run (a second run on it is refused) and SIGTERM or Ctrl-C stops any
    stage cleanly (utils/preemption.py)."""
    with run.workspace.held() as workspace, preemption_handlers():
        config, trainer = make(workspace)
        workspace.save_config(config, method=method)
        if run.resuming:
            trainer.load_state_dict(workspace.load_checkpoint(map_location=trainer.device))
        seconds: dict[str, float] = {}
        with timed(seconds, "training"):  # this process's share: a resumed run counts only what it trained
            trainer.train(progress=progress)
        metrics = finish(trainer, config, workspace, seconds["training"])
        workspace.write_metrics(metrics)
    return metrics


def train_loop(trainer: Trainer, workspace: Workspace, iters: int, description: str, progress: bool,
               checkpoint_every: int, checkpoint_minutes: float, eval_every: int | None = None,
               scalars: Callable[[Any], dict[str, float]] = lambda loss: {"loss": loss}) -> None:
    """Train until step `iters`, showing progress, evaluating every `eval_every` steps (before the last)
    through `trainer.evaluate_at(step)`, checkpointing by steps, by time and at the end; on SIGTERM or a
    first Ctrl-C, checkpoint at the end of the current step and raise `RunInterrupted`.
    scalars: names what `train_step` returns for the progress line (default: one loss)."""
    last_save = time.monotonic()
    with Progress(total=iters, start=trainer.step, description=description, enabled=progress,
                  status_path=workspace.progress_path, stop_between_steps=False) as bar, preemption_handlers() as preempted:
        while trainer.step < iters:
            shown = scalars(trainer.train_step())
            step = trainer.step
            bar.update(step, **shown)
            if eval_every and step % eval_every == 0 and step < iters:
                message = trainer.evaluate_at(step)
                if message:
                    bar.log(message)
            due = step % checkpoint_every == 0 or step == iters
            if due or time.monotonic() - last_save >= 60 * checkpoint_minutes or preempted.signal is not None:
                workspace.save_checkpoint(trainer.state_dict())
                last_save = time.monotonic()
            if preempted.signal is not None and step < iters:
                raise RunInterrupted(f"{preempted.name}: stopped after step {step} of {iters} with a checkpoint; "
                                     "continue with --resume", preempted.exit_code)


def check_schedule(iters: int, checkpoint_every: int, checkpoint_minutes: float, eval_every: int | None = None) -> None:
    """One-line errors for a schedule that cannot run, before any work."""
    if iters < 1:
        raise DreamtextError(f"--iters must be at least 1 (the training steps), got {iters}")
    if checkpoint_every < 1:
        raise DreamtextError(f"checkpoint_every must be at least 1 step, got {checkpoint_every}")
    if not checkpoint_minutes > 0:
        raise DreamtextError(f"checkpoint_minutes must be positive (minutes of wall time between checkpoints), got {checkpoint_minutes}")
    if eval_every is not None and eval_every < 1:
        raise DreamtextError(f"eval_every must be at least 1 step, got {eval_every}")


# torch seeds generators with any integer in [0, 2^64); a negative one wraps around (-1 becomes 2^64 - 1), so a
# run's config would not say the seed it ran with.
MAX_SEED = 2**63 - 1


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise DreamtextError(f"--seed must be an integer from 0 to {MAX_SEED}, got {seed}")
