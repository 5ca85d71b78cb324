"""Following a workspace while it trains: what changed on disk, and how far the run has got.

Trainers write `progress.json` (utils/progress.py) and `checkpoints/last.pt` atomically, by rename,
so a reader only ever sees a whole old file or a whole new one; a change of modification time or
size says that a new one is there.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from ..errors import DreamtextError
from ..gallery.runs import summarize_run
from ..methods.registry import scene_workspace
from ..methods.trained import load_trained
from ..utils.progress import format_duration
from ..utils.workspace import CHECKPOINT_FILE, PROGRESS_FILE, Workspace

if TYPE_CHECKING:
    from ..methods.trained import TrainedScene

MESH_FILE = "mesh.glb"
WATCHED_FILES: tuple[str, ...] = (CHECKPOINT_FILE, PROGRESS_FILE, MESH_FILE)

# ours: a progress file from another machine (a shared disk) counts as live while it is this fresh;
# on this machine the writer's process id is checked instead.
STALE_AFTER_S = 120.0


class FileWatcher:
    """Which of a folder's files appeared, changed or vanished since the last `changes()` call."""

    def __init__(self, root: str | Path, names: tuple[str, ...] = WATCHED_FILES):
        self.root = Path(root)
        self.names = names
        self._seen: dict[str, tuple[int, int] | None] = {name: None for name in names}

    def _signature(self, name: str) -> tuple[int, int] | None:
        try:
            stat = (self.root / name).stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def changes(self) -> set[str]:
        changed = set()
        for name in self.names:
            signature = self._signature(name)
            if signature != self._seen[name]:
                self._seen[name] = signature
                changed.add(name)
        return changed


def read_progress(path: str | Path) -> dict | None:
    """The progress a trainer last wrote, or None when there is none (or it cannot be read)."""
    try:
        status = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def run_is_active(status: dict | None, now: float | None = None) -> bool:
    """Whether the run that wrote `status` is still training (not finished, interrupted or killed)."""
    if not status or not status.get("running"):
        return False
    if status.get("host") == socket.gethostname() and isinstance(status.get("pid"), int):
        return _process_alive(status["pid"])
    return (time.time() if now is None else now) - float(status.get("updated", 0.0)) < STALE_AFTER_S


def describe_progress(status: dict | None, now: float | None = None) -> str:
    """One line for the viewer's panel: state, step, losses and ETA."""
    if not status:
        return "no training progress recorded in this workspace"
    step, total = status.get("step", 0), status.get("total", 0)
    scalars = " · ".join(f"{name} {value:.4g}" for name, value in sorted(status.get("scalars", {}).items()))
    if run_is_active(status, now):
        eta = status.get("eta_seconds")
        rate = status.get("rate") or 0.0
        parts = [f"training: step {step} / {total}", scalars, f"{rate:.2f} it/s" if rate else "",
                 f"ETA {format_duration(eta)}" if eta is not None else "ETA ?"]
    else:
        state = "finished" if step >= total else "stopped"
        parts = [f"{state}: step {step} / {total}", scalars]
    return " · ".join(part for part in parts if part)


class LiveWorkspace:
    """A workspace's trained scene, mesh and progress, reloaded whenever the files change.

    `loader(root, device)` rebuilds the scene from the checkpoint (`methods.trained.load_trained`).
    A checkpoint that cannot be loaded keeps the previous scene and reports why in `load_error`.
    """

    def __init__(self, root: str | Path, device: str = "auto", loader: Callable[[Path, str], "TrainedScene"] | None = None):
        self.workspace = Workspace(scene_workspace(root), create=False)  # an image-to-3D workspace: its reconstruction
        self.workspace.load_config_dict()  # a folder without config.json is no workspace
        self.title = summarize_run(self.workspace.root).title  # the run's prompt, or what it was fitted to
        self.device = device
        # last.pt only: a damaged newest checkpoint keeps the scene shown, never an older one.
        self._loader = loader or functools.partial(load_trained, latest_only=True)
        self._watcher = FileWatcher(self.workspace.root)
        self.scene: "TrainedScene | None" = None
        self.scene_step: int | None = None
        self.load_error: str | None = None
        self.progress: dict | None = None
        self.mesh_glb: bytes | None = None

    def refresh(self) -> set[str]:
        """Reload what changed on disk; returns the parts that changed: "scene", "progress", "mesh"."""
        changed = self._watcher.changes()
        updated = set()
        if CHECKPOINT_FILE in changed and self.workspace.has_checkpoint():
            try:
                self.scene = self._loader(self.workspace.root, self.device)
                self.scene_step = self._checkpoint_step()
                self.load_error = None
                updated.add("scene")
            except DreamtextError as error:
                self.load_error = str(error)
        if PROGRESS_FILE in changed:
            self.progress = read_progress(self.workspace.progress_path)
            updated.add("progress")
        if MESH_FILE in changed:
            mesh = self.workspace.path(MESH_FILE)
            self.mesh_glb = mesh.read_bytes() if mesh.is_file() else None
            updated.add("mesh")
        return updated

    def _checkpoint_step(self) -> int | None:
        try:
            # mmap: only the step is read, not every tensor a second time.
            state = torch.load(self.workspace.checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
            return int(state["step"])
        except Exception:  # noqa: BLE001 - the step is shown for information only
            return None

    def summary(self) -> str:
        """Markdown lines for the viewer's panel: what is shown and how training goes."""
        shown = "no checkpoint yet" if self.scene is None else f"checkpoint of step {self.scene_step}"
        lines = [f"**{_plain(self.title)}**", _plain(f"showing the {shown}"), _plain(describe_progress(self.progress))]
        if self.load_error:
            lines.append(_plain(f"last reload failed: {self.load_error}"))
        return "\n\n".join(lines)


def _plain(text: str) -> str:
    """`text` shown literally in Markdown: every punctuation mark that could format it is escaped."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~&])", r"\\\1", text)
