"""Every kind of workspace dreamtext writes, in one table.

For each: the name its config.json gives it (or, for a workspace of stages, the files that mark it), how its
trained scene loads, which of its folders holds that scene, and whether `dreamtext batch` runs it as a job
kind. `load_trained` (and with it render, export and view), batch's job kinds and gallery, the benchmark and
a run's refusal to move into another kind's workspace all read it. Torch-free: a loader is named
("module:function") and imported when a scene is loaded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..utils.io import read_json
from ..utils.workspace_files import CONFIG_FILE, DIVERSE_FILE, IMAGE_WORKSPACE_MARKERS, RECONSTRUCTION_DIR


@dataclass(frozen=True)
class MethodEntry:
    summary: str
    scene_loader: str | None = None
    """"module:function" that rebuilds its trained scene from (Workspace, config dict, device, latest_only); None: it
    trains no scene of its own."""
    markers: tuple[str, ...] = ()
    """Files that mark its workspace (one without a config.json of its own: a workspace of stages)."""
    scene_folder: str | None = None
    """The folder inside its workspace that holds its trained scene (None: the workspace itself)."""
    batch_job: bool = False
    """A `dreamtext batch` job kind."""


METHODS: dict[str, MethodEntry] = {
    "text": MethodEntry("text to 3D by score distillation", scene_loader="dreamtext.methods.trained:load_text_scene",
                        batch_job=True),
    "fit": MethodEntry("a radiance field fitted to posed images", scene_loader="dreamtext.methods.trained:load_fit_scene"),
    "descriptor": MethodEntry("image to 3D's descriptor stage: learned tokens, no scene"),
    "image": MethodEntry("an image-to-3D workspace: describe, descriptor, reconstruction", markers=IMAGE_WORKSPACE_MARKERS,
                         scene_folder=RECONSTRUCTION_DIR, batch_job=True),
    "diverse": MethodEntry("diversity augmentation: K prior images, one image-to-3D workspace each",
                           markers=(DIVERSE_FILE,), batch_job=True),
}
BATCH_JOB_KINDS: tuple[str, ...] = tuple(name for name, entry in METHODS.items() if entry.batch_job)


def workspace_method(root: str | Path) -> str | None:
    """The method a folder's workspace holds: its config.json's, else the one whose marker files it has; None."""
    root = Path(root)
    if (root / CONFIG_FILE).is_file():
        return read_json(root / CONFIG_FILE, "restore or delete it").get("method")
    return next((name for name, entry in METHODS.items() if any((root / marker).is_file() for marker in entry.markers)), None)


def scene_workspace(root: str | Path) -> Path:
    """The folder that holds a workspace's trained scene: the workspace itself, or its method's scene folder
    (an image-to-3D workspace's reconstruction)."""
    root = Path(root)
    method = None if (root / CONFIG_FILE).is_file() else workspace_method(root)
    folder = METHODS[method].scene_folder if method is not None else None
    return root / folder if folder is not None else root


def foreign_markers(root: str | Path, method: str) -> list[tuple[str, str]]:
    """(method, marker file) of other methods' workspaces in `root` (a `method` run must not move into one)."""
    return [(name, marker) for name, entry in METHODS.items() if name != method for marker in entry.markers
            if (Path(root) / marker).is_file()]


def scene_loader(method: str | None) -> Callable | None:
    """The function that loads `method`'s trained scene, or None when it trains none (or is unknown)."""
    entry = METHODS.get(method or "")
    if entry is None or entry.scene_loader is None:
        return None
    module, name = entry.scene_loader.split(":")
    return getattr(importlib.import_module(module), name)


def loadable_methods() -> list[str]:
    return [name for name, entry in METHODS.items() if entry.scene_loader is not None or entry.scene_folder is not None]
