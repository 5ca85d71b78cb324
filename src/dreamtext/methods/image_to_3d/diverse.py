"""`dreamtext diverse "PROMPT" --workspace DIR -n K`: diversity augmentation (thesis 5.3).

Text-to-3D collapses to one generic object per prompt. The thesis's remedy: let the prior draw K
different images of the prompt (different seeds), then run DreamText on each, so each 3D object is a
specific instance. Layout:

    DIR/samples/           the K prior images (`dreamtext sample`'s files, contact sheet, samples.json)
    DIR/object_XX/         one DreamText workspace per image (describe, descriptor, reconstruction)
    DIR/diverse_sheet.png  one row per object: the image, then the reconstruction's validation views
    DIR/diverse.json       the prompt, seeds, and each object's learned prompt and workspace

Every part resumes: existing samples are kept and each object's stages continue where they stopped.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ...errors import DreamtextError
from ...utils.images import load_image, save_image
from ...utils.io import atomic_write_json
from ...utils.workspace import Workspace
from ...utils.workspace_files import DIVERSE_FILE
from ..sample import CONTACT_SHEET, SAMPLES_DIR, SAMPLES_FILE, SampleConfig, contact_sheet, sample_to_workspace
from .pipeline import ImageTo3DConfig, ImageTo3DResult, image_to_3d

SHEET_FILE = "diverse_sheet.png"
# Each image goes through DreamText as the thesis has it (5.3): a drawing's camera is unknown, so no reference view.
DIVERSE_METHOD = "dreamtext"
SUMMARY_FILE = DIVERSE_FILE  # utils/workspace_files.py: the methods registry marks a diversity workspace by it
VALIDATION_STRIP = "validation/final.png"  # text-to-3D's fixed orbit views of the final field


@dataclass
class DiverseConfig:
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(prompt=""))  # issue 5 item 7: the sample script's settings
    image: ImageTo3DConfig = field(default_factory=lambda: ImageTo3DConfig(method=DIVERSE_METHOD))


def object_dir(root: Path, index: int) -> Path:
    return root / f"object_{index:02d}"


def _samples(root: Path, config: SampleConfig, progress: bool) -> list[Path]:
    """The K sample files, drawn now unless an earlier run already wrote them for the same settings."""
    folder = root / SAMPLES_DIR
    record_path = folder / SAMPLES_FILE
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        same = all(record.get(key) == value for key, value in dataclasses.asdict(config).items() if key not in ("device", "batch_size"))
        if not same:
            raise DreamtextError(f"{folder} holds samples of other settings; choose another --workspace")
        return [folder / entry["file"] for entry in record["files"]]
    files = sample_to_workspace(config, root, progress=progress)
    return [f for f in files if f.name != CONTACT_SHEET]


def diverse(
    prompt: str, workspace: str | Path, k: int = 4, config: DiverseConfig = DiverseConfig(), progress: bool = True,
    clip=None,
) -> list[ImageTo3DResult]:
    """K prior samples of `prompt` and one DreamText reconstruction each, plus a contact sheet.

    The prior is loaded from the configured model for sampling and again by each object's stages (a
    stage changes its prior: learned tokens, a freed text encoder). clip: a loaded CLIP backend for
    sentence selection.
    """
    if not prompt.strip():
        raise DreamtextError('the prompt is empty: describe the object, e.g. dreamtext diverse "An image of a dog"')
    if k <= 0:
        raise DreamtextError(f"-n must be positive, got {k}")
    root = Workspace(workspace).root
    model = config.sample.model if config.sample.model is not None else config.image.descriptor.model
    sample_config = dataclasses.replace(config.sample, prompt=prompt, n=k, model=model)
    files = _samples(root, sample_config, progress)

    results = [
        image_to_3d(image, object_dir(root, index), config.image, progress=progress, clip=clip)
        for index, image in enumerate(files)
    ]
    sheet = save_image(root / SHEET_FILE, diverse_sheet(files, [r.reconstruction / VALIDATION_STRIP for r in results]))
    atomic_write_json(root / SUMMARY_FILE, {
        "prompt": prompt, "k": k, "seeds": [sample_config.seed + i for i in range(k)],
        "objects": [{"image": str(f.relative_to(root)), "workspace": str(r.workspace.relative_to(root)), "prompt": r.prompt}
                    for f, r in zip(files, results)],
        "sheet": sheet.name,
    })
    return results


def diverse_sheet(images: list[Path], strips: list[Path], gap: int = 4) -> torch.Tensor:
    """One row per object, the sample then its reconstruction's validation views, all at the strip's
    height: [H, W, 3] on white."""
    rows = []
    for image_path, strip_path in zip(images, strips):
        strip = load_image(strip_path)[0].permute(2, 0, 1)
        height = strip.shape[1]
        image = load_image(image_path)[0].permute(2, 0, 1)
        image = F.interpolate(image[None], size=(height, height), mode="bilinear", antialias=True, align_corners=False)[0]
        rows.append(torch.cat([image.clamp(0, 1), torch.ones(3, height, gap), strip], dim=2))
    width = max(row.shape[2] for row in rows)
    rows = [F.pad(row, (0, width - row.shape[2]), value=1.0) for row in rows]
    return contact_sheet(torch.stack(rows), columns=1, gap=gap)
