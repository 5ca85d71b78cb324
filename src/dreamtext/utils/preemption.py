"""Stopping a run cleanly: SIGTERM (what Slurm, Ray and `kill` send) or a first Ctrl-C asks the run to stop
at the next step boundary of whatever stage it is in; a second Ctrl-C stops at once (KeyboardInterrupt).

A run installs the handlers once for its whole life (`preemption_handlers`, reentrant: an image pipeline
holds them around its stages, a batch around its jobs), and every stage asks at its step boundaries:
the training loop checkpoints first and then stops (methods/lifecycle.py), the other stages (the start's
drawings and fit, the exports) call `raise_if_stopped`, which ends the run with `RunInterrupted` (exit
status 143 for SIGTERM, 130 for Ctrl-C); `--resume` then redoes only the stage that was cut short.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from ..errors import RunInterrupted

EXIT_SIGTERM, EXIT_SIGINT = 128 + signal.SIGTERM, 128 + signal.SIGINT  # the shell's convention: 143, 130


class Preemption:
    """What arrived: None, or the signal number of the first stop request."""

    def __init__(self):
        self.signal: int | None = None

    def handle(self, number, frame) -> None:
        if number == signal.SIGINT and self.signal == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = number

    @property
    def exit_code(self) -> int:
        return EXIT_SIGTERM if self.signal == signal.SIGTERM else EXIT_SIGINT

    @property
    def name(self) -> str:
        return "SIGTERM" if self.signal == signal.SIGTERM else "Ctrl-C"


_STATE = Preemption()
_DEPTH = 0


@contextmanager
def preemption_handlers() -> Iterator[Preemption]:
    """The handlers installed for the duration of the block (main thread only: Python delivers signals there;
    elsewhere the block runs without them). Nested blocks share the outermost one's state; a stop request
    is forgotten when the outermost block ends."""
    global _DEPTH
    if threading.current_thread() is not threading.main_thread():
        yield Preemption()
        return
    previous = {}
    if _DEPTH == 0:
        _STATE.signal = None
        previous = {number: signal.signal(number, _STATE.handle) for number in (signal.SIGTERM, signal.SIGINT)}
    _DEPTH += 1
    try:
        yield _STATE
    finally:
        _DEPTH -= 1
        if _DEPTH == 0:
            for number, handler in previous.items():
                signal.signal(number, handler)
            _STATE.signal = None


def stop_requested() -> Preemption | None:
    """The stop request a signal made during a `preemption_handlers` block, if any."""
    return _STATE if _DEPTH > 0 and _STATE.signal is not None else None


def raise_if_stopped(during: str) -> None:
    """End the run here (a stage's step boundary) if a stop was requested."""
    request = stop_requested()
    if request is not None:
        raise RunInterrupted(f"{request.name}: stopped during {during}; continue with --resume", request.exit_code)
