"""A workspace folder holds everything one run produces; checkpoints in it are written atomically.

Layout (documented in README.md):
    config.json          the run's full resolved config
    checkpoints/last.pt  the latest training state (model, optimiser, step, random streams)
    progress.json        step, total, losses, it/s and ETA of the run, refreshed while it trains
    validation/          periodic validation renders
    metrics.json         final figures of the run
    mesh.glb             exported mesh (other formats via `dreamtext export`)
    turntable.mp4/.gif   turntable video
    views/               named views as PNG
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import DreamtextError
from .config import config_to_dict
from .io import atomic_torch_save, atomic_write_json

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoints/last.pt"
PROGRESS_FILE = "progress.json"
METRICS_FILE = "metrics.json"


class Workspace:
    def __init__(self, root: str | Path, create: bool = True):
        self.root = Path(root)
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DreamtextError(f"cannot create workspace {self.root}: {error.strerror}; choose another --workspace") from None
            if not os.access(self.root, os.W_OK):
                raise DreamtextError(f"workspace {self.root} is not writable; choose another --workspace")
        elif not self.root.is_dir():
            raise DreamtextError(f"workspace {self.root} does not exist; pass the folder a run wrote")

    def path(self, relative: str) -> Path:
        return self.root / relative

    @property
    def checkpoint_path(self) -> Path:
        return self.root / CHECKPOINT_FILE

    @property
    def progress_path(self) -> Path:
        return self.root / PROGRESS_FILE

    @property
    def metrics_path(self) -> Path:
        return self.root / METRICS_FILE

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def save_config(self, config: Any, method: str) -> None:
        """Save the run's resolved config, tagged with the method that trained it."""
        atomic_write_json(self.root / CONFIG_FILE, {"method": method, "config": config_to_dict(config)})

    def method(self) -> str:
        return self.load_config_dict().get("method", "?")

    def load_config_dict(self) -> dict:
        path = self.root / CONFIG_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise DreamtextError(f"{path} is missing; is {self.root} a dreamtext workspace?") from None
        except json.JSONDecodeError as error:
            raise DreamtextError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); restore or delete it") from None

    def save_checkpoint(self, state: dict) -> None:
        atomic_torch_save(self.checkpoint_path, state)

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict:
        if not self.has_checkpoint():
            raise DreamtextError(f"no checkpoint in {self.root}; train first, or check the --workspace path")
        try:
            # weights_only: checkpoints hold tensors, numbers and strings only; no pickled code runs.
            return torch.load(self.checkpoint_path, map_location=map_location, weights_only=True)
        except Exception as error:  # a truncated or foreign file
            raise DreamtextError(f"checkpoint {self.checkpoint_path} cannot be read ({type(error).__name__}); delete it to start over") from None

    def read_metrics(self) -> dict:
        """metrics.json, or {} when the run has not written it (yet)."""
        try:
            return json.loads(self.metrics_path.read_text()) if self.metrics_path.is_file() else {}
        except json.JSONDecodeError:  # written atomically, so only a foreign file; the run rewrites it
            return {}

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_json(self.metrics_path, {**self.read_metrics(), **metrics})
