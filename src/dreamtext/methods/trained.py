"""Rebuild what a workspace trained, whatever method trained it, for rendering and export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import DreamtextError
from ..export.formats import mesh_format
from ..export.outputs import ExportConfig, export_mesh, render_outputs
from ..scene.background import Background as BackgroundModule
from ..scene.field import RadianceField
from ..scene.renderer import Background, VolumeRenderer
from ..utils.config import config_from_dict
from ..utils.device import resolve_device
from ..utils.workspace import Workspace
from .fit import FitConfig
from .registry import loadable_methods, scene_loader, scene_workspace
from .text_to_3d import TextTo3DConfig


@dataclass
class TrainedScene:
    field: nn.Module
    renderer: VolumeRenderer
    background: Background
    export: ExportConfig


def _trained_field(config, workspace: Workspace, device: torch.device, latest_only: bool) -> tuple[nn.Module, VolumeRenderer, dict]:
    """The field and renderer (with its occupancy grid) of a run's config, loaded from its checkpoint."""
    field = RadianceField(config.field).to(device)
    renderer = VolumeRenderer(config.renderer, occupancy=config.occupancy, bound=field.bound).to(device)
    state = workspace.load_checkpoint(map_location=device, latest_only=latest_only)
    field.load_state_dict(state.get("ema_field", state["field"]))  # the moving average when the run kept one
    renderer.load_state_dict(state["renderer"])
    field.eval()
    return field, renderer, state


def load_fit_scene(workspace: Workspace, config_dict: dict, device: torch.device, latest_only: bool) -> TrainedScene:
    config = config_from_dict(FitConfig, config_dict)
    field, renderer, _ = _trained_field(config, workspace, device, latest_only)
    background = torch.tensor(config.background, dtype=torch.float32, device=device)
    return TrainedScene(field=field, renderer=renderer, background=background, export=config.export)


def load_text_scene(workspace: Workspace, config_dict: dict, device: torch.device, latest_only: bool) -> TrainedScene:
    """A text-to-3D workspace: field, renderer and the trained background network (no prior needed)."""
    config = config_from_dict(TextTo3DConfig, config_dict)
    field, renderer, state = _trained_field(config, workspace, device, latest_only)
    background = BackgroundModule(config.background).to(device)
    background.load_state_dict(state["background"])
    background.eval()
    return TrainedScene(field=field, renderer=renderer, background=background, export=config.export)


def load_trained(workspace: str | Path, device: str = "auto", latest_only: bool = False) -> TrainedScene:
    """The trained scene of a workspace (an image-to-3D workspace's reconstruction), from last.pt (or previous.pt
    when last.pt is damaged, unless `latest_only`); its method's loader comes from `registry.METHODS`."""
    ws = Workspace(scene_workspace(workspace), create=False)
    saved = ws.load_config_dict()
    method = saved.get("method")
    loader = scene_loader(method)
    if loader is None:
        raise DreamtextError(f"{ws.root}/config.json names method {method!r}, which holds no scene this version can load; "
                             f"pass a workspace of {', '.join(loadable_methods())}")
    return loader(ws, saved["config"], resolve_device(device), latest_only)


def render_workspace(workspace: str | Path, frames: int = 60, size: int = 256, device: str = "auto",
                     progress: bool = True) -> list[Path]:
    """The turntable (mp4 and gif) and named views of a trained workspace, written into it again."""
    return render_outputs(load_trained(workspace, device), Path(workspace), frames=frames, size=size, progress=progress)


def export_workspace(workspace: str | Path, path: str | Path | None = None, format: str | None = None,
                     resolution: int | None = None, texture: bool | None = None, device: str = "auto",
                     progress: bool = True) -> list[Path]:
    """The mesh of a trained workspace as GLB, OBJ or PLY (by `format`, else `path`'s suffix, else GLB), with
    vertex colours or, with texture=True, a baked UV texture; returns every file written."""
    fmt = mesh_format(format, path)
    target = Path(path) if path is not None else Path(workspace) / f"mesh.{fmt}"
    return export_mesh(load_trained(workspace, device), str(target), fmt, resolution=resolution, texture=texture,
                       progress=progress)
