"""Progress of every stage of a run: a bar with step, it/s, ETA and the latest losses, or, for a stage
with no steps to count (a mesh, a texture bake), its start and its time (`stage`).

Rich draws a live bar on a terminal; elsewhere (CI logs, pipes) it prints one line every
`log_every` steps so that logs stay readable. With `status_path`, the same figures also go to a small
JSON file, written atomically at most every `status_every_s` seconds, that other processes (the
browser viewer) read while the run goes on.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .io import atomic_write_json
from .preemption import raise_if_stopped


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


@dataclass
class Progress:
    """Progress of steps `start..total`; `update(step, **scalars)` after each step."""

    total: int
    start: int = 0
    description: str = "training"
    log_every: int = 50
    enabled: bool = True
    status_path: str | Path | None = None
    status_every_s: float = 1.0  # ours: fresh enough for a viewer, negligible next to any training step
    log_seconds: float = 30.0
    """Off a terminal, a line also when this long has passed since the last one (ours: a log shows a slow
    stage moving at least twice a minute)."""
    stop_between_steps: bool = True
    """A stop request (SIGTERM, Ctrl-C; utils/preemption.py) ends the stage at its next update; False for a
    loop that stops by itself after a checkpoint (the training loop)."""
    _t0: float = field(default=0.0, init=False)
    _status_written: float = field(default=-math.inf, init=False)
    _live: object = field(default=None, init=False)
    _task: object = field(default=None, init=False)
    _last: dict = field(default_factory=dict, init=False)
    _line_written: float = field(default=0.0, init=False)

    def __enter__(self) -> "Progress":
        self._t0 = self._line_written = time.perf_counter()
        if self.enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

            self._live = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                TextColumn("{task.fields[scalars]}"), transient=False,
            )
            self._live.start()
            self._task = self._live.add_task(self.description, total=self.total, completed=self.start, rate="", scalars="")
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self._live is not None:
            self._live.stop()
        try:
            self._write_status(running=False)
        except Exception:
            if kind is None:
                raise
            # best effort while another error ends the run (a full disk): that error is the one to report
            print(f"dreamtext: warning: could not mark {self.status_path} stopped", file=sys.stderr)

    @property
    def rate(self) -> float:
        """Steps per second since this process started (resumed steps do not count)."""
        done = self._last.get("step", self.start) - self.start
        elapsed = time.perf_counter() - self._t0
        return done / elapsed if elapsed > 0 and done > 0 else 0.0

    @property
    def eta_seconds(self) -> float:
        rate = self.rate
        return (self.total - self._last.get("step", self.start)) / rate if rate > 0 else float("nan")

    def update(self, step: int, **scalars: float) -> None:
        """Report that `step` steps are done (and stop the stage here if a stop was requested)."""
        if self.stop_between_steps:
            raise_if_stopped(f"the {self.description} (step {step} of {self.total})")
        self._last = {"step": step, **scalars}
        if self.status_path is not None and (time.monotonic() - self._status_written >= self.status_every_s or step == self.total):
            self._write_status(running=True)
        if not self.enabled:
            return
        text = " ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        if self._live is not None:
            self._live.update(self._task, completed=step, rate=f"{self.rate:.1f} it/s", scalars=text)
        elif step % self.log_every == 0 or step == self.total or time.perf_counter() - self._line_written >= self.log_seconds:
            eta = format_duration(self.eta_seconds) if self.rate > 0 else "?"
            print(f"{self.description} {step}/{self.total} {self.rate:.1f} it/s ETA {eta} {text}", file=sys.stderr, flush=True)
            self._line_written = time.perf_counter()

    def _write_status(self, running: bool) -> None:
        """The run's progress as JSON; `pid` and `host` let a reader tell a live run from a killed one."""
        if self.status_path is None:
            return
        eta = self.eta_seconds
        scalars = {k: float(v) for k, v in self._last.items() if k != "step" and math.isfinite(float(v))}
        atomic_write_json(self.status_path, {
            "description": self.description, "step": self._last.get("step", self.start), "total": self.total,
            "rate": self.rate, "eta_seconds": eta if math.isfinite(eta) else None, "scalars": scalars,
            "running": running, "pid": os.getpid(), "host": socket.gethostname(), "updated": time.time(),
        })
        self._status_written = time.monotonic()

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self._live is not None:
            self._live.console.print(message)
        else:
            print(message, file=sys.stderr, flush=True)


@contextmanager
def timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the block to `seconds[name]` (a run's `stage_seconds` in metrics.json)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def stage(description: str, enabled: bool = True) -> Iterator[None]:
    """A stage with no steps to count: a spinner on a terminal, else a line at its start; its time at the end."""
    if not enabled:
        yield
        return
    start = time.perf_counter()
    if sys.stderr.isatty():
        from rich.console import Console

        console = Console(stderr=True)
        with console.status(f"{description} ..."):
            yield
        console.print(f"{description}: done in {format_duration(time.perf_counter() - start)}")
        return
    print(f"{description} ...", file=sys.stderr, flush=True)
    yield
    print(f"{description}: done in {format_duration(time.perf_counter() - start)}", file=sys.stderr, flush=True)
