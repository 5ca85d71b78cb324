"""A workspace folder holds everything one run produces; checkpoints in it are written atomically.

Layout (documented in README.md):
    config.json          the run's full resolved config
    checkpoints/last.pt  the latest training state (model, optimiser, step, random streams), with
                         last.pt.sha256 (its size and hash); previous.pt (+ .sha256) the one before it
    progress.json        step, total, losses, it/s and ETA of the run, refreshed while it trains
    validation/          periodic validation renders
    metrics.json         final figures of the run
    mesh.glb             exported mesh (other formats via `dreamtext export`)
    turntable.mp4/.gif   turntable video
    views/               named views as PNG
    .lock                held (an advisory lock) by the run that trains in the workspace

One run at a time: a training run holds the workspace's lock while it writes (`Workspace.held`), and a
second run on the same folder is refused with who holds it. The lock is the operating system's (flock):
it dies with its process, however that process ends, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from ..errors import DreamtextError
from .config import config_to_dict
from .io import atomic_torch_save, atomic_write_json, atomic_write_text, read_json

from .workspace_files import (  # noqa: F401  (the names live there, importable without torch)
    CHECKPOINT_FILE, CONFIG_FILE, LOCK_FILE, METRICS_FILE, PREVIOUS_CHECKPOINT_FILE, PROGRESS_FILE,
)

# The locks this process holds: {resolved workspace: [open lock file, how many holders]}. flock locks belong
# to an open file, so a second open in the same process would be refused by the first: holders share one.
_HELD: dict[Path, list] = {}


def _holder(lock_path: Path) -> str:
    """Who holds a workspace's lock, as its holder wrote it ("pid 4242 on host, since 14:03:10")."""
    try:
        info = json.loads(lock_path.read_text())
        since = time.strftime("%H:%M:%S", time.localtime(info["since"]))
        return f"pid {info['pid']} on {info['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class Workspace:
    """A run's folder. create=True makes it now; create=False with must_exist=False only checks that it
    could be made (its nearest existing parent is a writable folder) and leaves making it to `create()`,
    so a run that fails to start leaves nothing behind."""

    def __init__(self, root: str | Path, create: bool = True, must_exist: bool = True):
        self.root = Path(root)
        if create:
            self.create()
        elif must_exist and not self.root.is_dir():
            raise DreamtextError(f"workspace {self.root} does not exist; pass the folder a run wrote")
        elif not must_exist:
            self._check_creatable()

    def _check_creatable(self) -> None:
        if self.root.exists():
            if not self.root.is_dir():
                raise DreamtextError(f"workspace {self.root} is a file; choose another --workspace")
            if not os.access(self.root, os.W_OK):
                raise DreamtextError(f"workspace {self.root} is not writable; choose another --workspace")
            return
        parent = self.root.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise DreamtextError(f"cannot create workspace {self.root}: {parent} is not a writable folder; choose another --workspace")

    def create(self) -> "Workspace":
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DreamtextError(f"cannot create workspace {self.root}: {error.strerror}; choose another --workspace") from None
        if not os.access(self.root, os.W_OK):
            raise DreamtextError(f"workspace {self.root} is not writable; choose another --workspace")
        return self

    def path(self, relative: str) -> Path:
        return self.root / relative

    def check_free(self) -> None:
        """A one-line error when another process's run holds this workspace (nothing is held or written)."""
        lock_path = self.root / LOCK_FILE
        if self.root.resolve() in _HELD or not lock_path.is_file():
            return
        with open(lock_path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DreamtextError(f"{self.root} is in use by another dreamtext run ({_holder(lock_path)}); wait for it "
                                     "to end or stop it, or choose another --workspace") from None
            fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def held(self) -> Iterator["Workspace"]:
        """The workspace created and locked for this run while the block runs (`check_free`'s error if another
        process holds it); nested holds in one process share the lock."""
        self.create()
        key = self.root.resolve()
        if key not in _HELD:
            lock_path = self.root / LOCK_FILE
            handle = open(lock_path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise DreamtextError(f"{self.root} is in use by another dreamtext run ({_holder(lock_path)}); wait for it "
                                     "to end or stop it, or choose another --workspace") from None
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
            handle.flush()
            _HELD[key] = [handle, 0]
        _HELD[key][1] += 1
        try:
            yield self
        finally:
            _HELD[key][1] -= 1
            if _HELD[key][1] == 0:
                handle = _HELD.pop(key)[0]
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()

    @property
    def checkpoint_path(self) -> Path:
        return self.root / CHECKPOINT_FILE

    @property
    def previous_checkpoint_path(self) -> Path:
        return self.root / PREVIOUS_CHECKPOINT_FILE

    @property
    def progress_path(self) -> Path:
        return self.root / PROGRESS_FILE

    @property
    def metrics_path(self) -> Path:
        return self.root / METRICS_FILE

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file() or self.previous_checkpoint_path.is_file()

    has_run = has_checkpoint

    def latest_checkpoint_problem(self) -> str | None:
        """What is wrong with last.pt against its sidecar ("is missing" when absent); None when it verifies."""
        return verify_checkpoint(self.checkpoint_path) if self.checkpoint_path.is_file() else "is missing"

    def has_config(self) -> bool:
        return (self.root / CONFIG_FILE).is_file()

    def save_config(self, config: Any, method: str) -> None:
        """Save the run's resolved config, tagged with the method that trained it."""
        atomic_write_json(self.root / CONFIG_FILE, {"method": method, "config": config_to_dict(config)})

    def method(self) -> str:
        return self.load_config_dict().get("method", "?")

    def load_config_dict(self) -> dict:
        path = self.root / CONFIG_FILE
        return read_json(path, "restore or delete it", missing=f"is {self.root} a dreamtext workspace?")

    def save_checkpoint(self, state: dict) -> None:
        """Write `state` as last.pt, keeping the one before as previous.pt, each with a .sha256 sidecar
        (size and hash). Every step is a rename, ordered so that a checkpoint never sits beside a sidecar
        of another one: a crash at any point leaves last.pt or previous.pt that verifies and loads
        (test_utils kills the save at each rename)."""
        last, previous = self.checkpoint_path, self.previous_checkpoint_path
        staged = last.with_name(f".{last.name}.new")
        atomic_torch_save(staged, state, shown_as=last)
        atomic_write_text(_sidecar(staged), checkpoint_fingerprint(staged))
        _sidecar(previous).unlink(missing_ok=True)  # previous.pt is about to be replaced
        if last.is_file():
            os.replace(last, previous)
            if _sidecar(last).is_file():
                os.replace(_sidecar(last), _sidecar(previous))
        _sidecar(last).unlink(missing_ok=True)  # a sidecar left by an earlier crash
        os.replace(staged, last)
        os.replace(_sidecar(staged), _sidecar(last))

    def load_checkpoint(self, map_location: str | torch.device = "cpu", latest_only: bool = False) -> dict:
        """The latest checkpoint that verifies and loads: last.pt, else (with a one-line warning) previous.pt.
        `latest_only`: last.pt or an error (a live viewer keeps what it shows rather than go back a step)."""
        if not self.has_checkpoint():
            raise DreamtextError(f"no checkpoint in {self.root}; train first, or check the --workspace path")
        problems = []
        candidates = (self.checkpoint_path,) if latest_only else (self.checkpoint_path, self.previous_checkpoint_path)
        for path in candidates:
            if not path.is_file():
                problems.append(f"checkpoint {path} is missing")
                continue
            problem = verify_checkpoint(path)
            if problem is None:
                try:
                    # weights_only: checkpoints hold tensors, numbers and strings only; no pickled code runs.
                    state = torch.load(path, map_location=map_location, weights_only=True)
                except Exception as error:  # a truncated or foreign file
                    problem = f"cannot be read ({type(error).__name__})"
                else:
                    if problems:
                        print(f"dreamtext: warning: {problems[-1]}; using {path.name} instead", file=sys.stderr)
                    return state
            problems.append(f"checkpoint {path} {problem}")
        raise DreamtextError(f"{'; '.join(problems)}; delete {self.path('checkpoints')} to start over")

    def read_metrics(self) -> dict:
        """metrics.json, or {} when the run has not written it (yet)."""
        try:
            return json.loads(self.metrics_path.read_text()) if self.metrics_path.is_file() else {}
        except json.JSONDecodeError:  # written atomically, so only a foreign file; the run rewrites it
            return {}

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_json(self.metrics_path, {**self.read_metrics(), **metrics})


def _sidecar(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".sha256")


def checkpoint_fingerprint(path: Path) -> str:
    """"<sha256> <size>" of a file (read in 1 MB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{digest.hexdigest()} {path.stat().st_size}\n"


def verify_checkpoint(path: Path) -> str | None:
    """None when `path` matches its sidecar (or has none: a checkpoint written before sidecars, or one
    whose sidecar a crash did not write); else what is wrong with it."""
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        return None
    expected = sidecar.read_text().split()
    if len(expected) != 2 or not expected[1].isdigit():
        return f"has an unreadable {sidecar.name}"
    if path.stat().st_size != int(expected[1]):
        return f"is {path.stat().st_size} bytes, not the {expected[1]} it was written with (cut short?)"
    if checkpoint_fingerprint(path).split()[0] != expected[0]:
        return "does not match the hash it was written with (damaged)"
    return None
