"""The input image as descriptor training and the reference-view losses read it back from a workspace.

`dreamtext describe` frames the user's photo (`data.input_image`: square, on white, alpha as mask)
and records the prepared files in describe.json; here they are read again at the size a stage needs.
Without a mask file, pixels that are not near white stand in for the object's mask.
"""

from __future__ import annotations

from pathlib import Path

from ...data.input_image import InputImage, InputImageConfig, load_input_image
from ...errors import DreamtextError

# ours: without a mask, pixels this close to white in every channel count as background.
WHITE_THRESHOLD = 0.96


def workspace_path(workspace: str | Path, recorded: str | None, what: str = "input image") -> Path:
    """A file describe recorded (relative to the workspace, or absolute)."""
    if recorded is None:
        raise DreamtextError(f"{Path(workspace) / 'describe.json'} names no {what}; run `dreamtext describe` again")
    path = Path(recorded)
    return path if path.is_absolute() else Path(workspace) / path


def load_workspace_image(image: Path, mask: Path | None, size: int) -> InputImage:
    """The prepared image at `size` x `size`, with a mask always present (from the mask file, the image's
    own alpha, or its non-white pixels)."""
    config = InputImageConfig(size=size)
    prepared = load_input_image(image, config)
    if mask is not None:
        prepared.mask = load_input_image(mask, config).image[:1]
    elif prepared.mask is None:
        prepared.mask = (prepared.image < WHITE_THRESHOLD).any(dim=0, keepdim=True).float()
    return prepared


def workspace_input(workspace: str | Path, image: str | None, mask: str | None, size: int) -> InputImage:
    """The image and mask describe recorded for `workspace` (describe.json's fields), at `size`."""
    mask_path = None if mask is None else workspace_path(workspace, mask, "mask")
    return load_workspace_image(workspace_path(workspace, image), mask_path, size)
