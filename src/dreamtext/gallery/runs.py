"""What a workspace has to show: its prompt or input image, videos, named views, mesh and metrics.

Only files are read (no model is loaded), so a gallery is built in a moment from finished runs and
from runs still training alike; whatever a run has not written yet is simply left out.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DreamtextError
from ..scene.cameras import NAMED_VIEWS
from ..utils.images import find_image_file
from ..utils.workspace_files import CONFIG_FILE, DESCRIBE_FILE

# image-to-3D's `dreamtext describe` records the prepared input image here, under one of these keys.
INPUT_IMAGE_KEYS = ("image", "prepared_image", "input_image")
MAX_INPUT_VIEWS = 4  # ours: a fit's first few training views say what it was fitted to


@dataclass
class RunSummary:
    root: Path
    method: str
    title: str
    prompt: str | None = None
    inputs: list[Path] = field(default_factory=list)
    turntable_mp4: Path | None = None
    turntable_gif: Path | None = None
    views: dict[str, Path] = field(default_factory=dict)
    mesh: Path | None = None
    metrics: dict | None = None
    validation: Path | None = None


def _read_json(root: Path, path: Path) -> dict | None:
    """A JSON file of the workspace `root`, read only when `_file` lets it be shown (its values reach the page)."""
    if _file(root, path) is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DreamtextError(f"{path} cannot be read as JSON ({error}); restore or delete it") from None
    return data if isinstance(data, dict) else None


def _file(root: Path, path: Path) -> Path | None:
    """`path` when it is a file inside the workspace `root`, its links resolved; None when it is missing. A
    file outside (an absolute path in describe.json, a link out of the folder) is skipped with a warning:
    every file the gallery reads (config.json, metrics.json: their values reach the page) or copies passes
    here, and a gallery of someone else's workspace must not publish this machine's files."""
    if not path.is_file():
        return None
    real, base = path.resolve(), root.resolve()
    if base not in real.parents:
        print(f"dreamtext gallery: warning: skipping {path}: it lies outside the workspace {root}", file=sys.stderr)
        return None
    return path


def _fit_inputs(root: Path, config: dict) -> list[Path]:
    """The first training images of a fit: its data folder, or the built-in scene's rendered copy."""
    folder = Path(config["data"]) if config.get("data") else root / "input"
    transforms = folder / "transforms.json"
    try:
        frames = json.loads(transforms.read_text()).get("frames", [])
    except (OSError, ValueError, AttributeError):
        return []
    found = (find_image_file(folder / str(frame.get("file_path", ""))) for frame in frames[:MAX_INPUT_VIEWS])
    inside = (_file(root, path) for path in found if path is not None)
    return [path for path in inside if path is not None]


def _described_input(root: Path, described: dict | None) -> list[Path]:
    for key in INPUT_IMAGE_KEYS:
        value = (described or {}).get(key)
        if isinstance(value, str):
            path = _file(root, Path(value) if Path(value).is_absolute() else root / value)
            if path is not None:
                return [path]
    return []


def summarize_run(workspace: str | Path) -> RunSummary:
    """Everything the gallery shows of one workspace. Raises `DreamtextError` for a folder that is
    not a dreamtext workspace."""
    root = Path(workspace)
    if not root.is_dir():
        raise DreamtextError(f"{root} is not a folder; pass the workspaces of finished or running dreamtext runs")
    saved = _read_json(root, root / CONFIG_FILE)
    described = _read_json(root, root / DESCRIBE_FILE)
    if saved is None and described is None:
        raise DreamtextError(f"{root} has no {CONFIG_FILE}; is it a dreamtext workspace?")
    method = (saved or {}).get("method", "image")
    config = (saved or {}).get("config", {})
    prompt = config.get("prompt", {}).get("prompt") if isinstance(config.get("prompt"), dict) else None
    prompt = prompt or (described or {}).get("sentence")
    inputs = _described_input(root, described) or (_fit_inputs(root, config) if method == "fit" else [])
    if prompt:
        title = prompt
    elif method == "fit":
        title = f"fit of {Path(config['data']).name}" if config.get("data") else "fit of the built-in scene"
    else:
        title = root.name
    views = {name: path for name in NAMED_VIEWS if (path := _file(root, root / "views" / f"{name}.png")) is not None}
    return RunSummary(
        root=root, method=method, title=title, prompt=prompt, inputs=inputs,
        turntable_mp4=_file(root, root / "turntable.mp4"), turntable_gif=_file(root, root / "turntable.gif"), views=views,
        mesh=_file(root, root / "mesh.glb"), metrics=_read_json(root, root / "metrics.json"),
        validation=_file(root, root / "validation" / "final.png"),
    )
