"""`dreamtext image IMAGE --workspace DIR`: describe -> descriptor -> reconstruct, resumable by stage.

DIR/stage.json records the input image, the method and each stage's state (pending, running, done).
Run the same command again after an interruption and it skips the finished stages and resumes the
interrupted one at its last checkpoint (descriptor training and reconstruction keep theirs).

The baselines are configuration switches over the same code (`METHODS`):
    dreamtext            descriptor tokens, L_real + L_base, no reference losses (the thesis)
    realfusion           noun-only textual inversion (L_real alone) + reference-view RGB and mask losses
    sentence             the whole conditioning embedding trained (the thesis's first approach)
    plain                the chosen sentence as it is, nothing trained (a baseline: what the learning adds)
    dreamtext+reference  DreamText plus RealFusion's reference-view losses (beyond the thesis)
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ...errors import DreamtextError
from ...utils.config import config_to_dict
from ...utils.io import atomic_write_json, read_json
from ...utils.preemption import preemption_handlers
from ...utils.workspace import Workspace
from ...utils.workspace_files import DESCRIBE_FILE, RECONSTRUCTION_DIR, STAGE_FILE
from ...data.input_image import load_input_image
from ..describe.describe import DescribeConfig, describe_image
from ..presets import apply_overrides
from .descriptor import DescriptorConfig, train_descriptor
from .reconstruct import ReconstructConfig, reconstruct, resolve_text, with_text_settings

STAGES = ("describe", "descriptor", "reconstruct")

Method = Literal["dreamtext", "realfusion", "sentence", "plain", "dreamtext+reference"]
# Ours: the thesis's DreamText plus the photo's own view, the best of the methods on every image case measured
# (`bench world --kinds dreamtext,dreamtext_ref`, README); `--method dreamtext` is the thesis's method as it stands.
DEFAULT_METHOD = "dreamtext+reference"

_REFERENCE_ON = {"reconstruct.reference.on": True}  # the weights: the preset's (reconstruct.py REFERENCE_WEIGHTS) unless given
_REFERENCE_OFF = {"reconstruct.reference.on": False}
METHODS: dict[str, dict[str, Any]] = {
    # thesis 5.2: descriptor words trained with eq. 5.4, reconstruction from the sentence alone
    "dreamtext": {"descriptor.trainable": "descriptors", "descriptor.base_loss_weight": 1.0, **_REFERENCE_OFF},
    # RealFusion: textual inversion of the noun (plain diffusion loss), reference RGB and mask losses
    "realfusion": {"descriptor.trainable": "noun", "descriptor.base_loss_weight": 0.0, **_REFERENCE_ON},
    # thesis 6.3.1 "embedding training": the whole conditioning of the sentence, loss eq. 5.4
    "sentence": {"descriptor.trainable": "sentence", "descriptor.base_loss_weight": 1.0, **_REFERENCE_OFF},
    # ours, a baseline: CLIP's sentence as it is, the reconstruction from its plain words
    "plain": {"descriptor.trainable": "none", "descriptor.base_loss_weight": 1.0, **_REFERENCE_OFF},
    # ours: DreamText with RealFusion's reference-view losses (the thesis saw the mask loss help against Janus)
    "dreamtext+reference": {"descriptor.trainable": "descriptors", "descriptor.base_loss_weight": 1.0, **_REFERENCE_ON},
}


@dataclass
class ImageTo3DConfig:
    """The three stages' settings; `method` switches the parts that make the baselines."""

    method: Method = DEFAULT_METHOD  # type: ignore[assignment]
    """dreamtext+reference (`image`'s default): DreamText plus the reference-view losses; dreamtext: descriptor words
    trained and the reconstruction from the sentence alone (the thesis); realfusion: noun-only textual inversion plus
    reference-view RGB and mask losses; sentence: the whole sentence embedding trained (the thesis's first approach);
    plain: the chosen sentence as it is (a baseline)."""
    describe: DescribeConfig = field(default_factory=DescribeConfig)
    descriptor: DescriptorConfig = field(default_factory=DescriptorConfig)
    reconstruct: ReconstructConfig = field(default_factory=ReconstructConfig)


def method_config(config: ImageTo3DConfig) -> ImageTo3DConfig:
    """`config` with its method's switches applied (they win over the stage settings they name)."""
    if config.method not in METHODS:
        raise DreamtextError(f"unknown method {config.method!r}; known: {', '.join(METHODS)}")
    return apply_overrides(config, METHODS[config.method])


@dataclass
class ImageTo3DResult:
    workspace: Path
    prompt: str
    descriptor_metrics: dict
    reconstruction_metrics: dict

    @property
    def reconstruction(self) -> Path:
        return self.workspace / RECONSTRUCTION_DIR


def read_stage_file(root: Path) -> dict | None:
    path = root / STAGE_FILE
    if not path.is_file():
        return None
    return read_json(path, "delete it and the workspace's stages start over")


def image_to_3d(
    image: str | Path, workspace: str | Path, config: ImageTo3DConfig = ImageTo3DConfig(), progress: bool = True,
    prior=None, clip=None,
) -> ImageTo3DResult:
    """Turn one image into a 3D object in `workspace`; a second call continues where the first stopped.

    prior / clip: already loaded models (tests, `diverse`).
    """
    config = method_config(config)
    image = Path(image).expanduser().resolve()
    if not image.is_file():
        raise DreamtextError(f"{image}: no such image file; check the path")
    load_input_image(image, config.describe.image)  # a bad image is refused before anything is written
    space = Workspace(workspace, create=False, must_exist=False)
    space.check_free()
    root = space.root
    saved = read_stage_file(root)
    if saved is None and space.has_config():
        raise DreamtextError(f"{root} holds a {space.method()!r} run, not an image-to-3D one; choose another --workspace")
    if saved is not None and saved.get("stages", {}).get("describe") != "done" and not (root / DESCRIBE_FILE).exists():
        saved = None  # a run that failed before describing anything: nothing to keep, the folder is free again
    continuing = saved is not None
    if continuing:
        if saved.get("image") != str(image):
            raise DreamtextError(f"{root} holds a run for {saved.get('image')}; choose another --workspace for {image}")
        if saved.get("method") != config.method:
            raise DreamtextError(f"{root} holds a {saved.get('method')!r} run; pass --method {saved.get('method')} or another --workspace")
        state = saved
    else:
        if (root / DESCRIBE_FILE).exists() or (root / RECONSTRUCTION_DIR).exists():
            raise DreamtextError(f"{root} already holds DreamText stages without {STAGE_FILE}; choose another --workspace")
        state = {"image": str(image), "method": config.method, "stages": {name: "pending" for name in STAGES},
                 "config": config_to_dict(config)}

    def mark(stage: str, status: str, **extra: Any) -> None:
        state["stages"][stage] = status
        state.update(extra)
        atomic_write_json(root / STAGE_FILE, state)

    descriptor_metrics: dict = saved.get("descriptor_metrics", {}) if continuing else {}
    # created and locked for the whole pipeline (a second run here is refused meanwhile); SIGTERM or Ctrl-C
    # stops any stage cleanly and the next run resumes it
    with space.held(), preemption_handlers():
        for stage in STAGES:
            if state["stages"].get(stage) == "done":
                continue
            resume = state["stages"].get(stage) == "running"
            if resume and progress:
                print(f"dreamtext: resuming the {stage} stage in {root}", file=sys.stderr)
            mark(stage, "running")
            if stage == "describe":
                describe_image(image, root, config.describe, backend=clip)
                mark(stage, "done")
            elif stage == "descriptor":
                result = train_descriptor(root, config.descriptor, resume=resume, progress=progress, prior=prior)
                descriptor_metrics = result.metrics
                mark(stage, "done", prompt=result.learned.prompt, descriptor_metrics=result.metrics)
            else:
                reconstruction = reconstruct(root, config.reconstruct, resume=resume, progress=progress, prior=prior)
                mark(stage, "done", reconstruction_metrics=_jsonable(reconstruction.metrics))
    return ImageTo3DResult(
        workspace=root, prompt=state.get("prompt", ""), descriptor_metrics=descriptor_metrics,
        reconstruction_metrics=state.get("reconstruction_metrics", {}),
    )


def _jsonable(metrics: dict) -> dict:
    return json.loads(json.dumps(metrics, default=str))


def with_settings(config: ImageTo3DConfig, settings: dict[str, Any]) -> ImageTo3DConfig:
    """`config` with dotted settings set (`descriptor.iters`, `reconstruct.text.iters`, ...): the others first, then
    the reconstruction's text-to-3D ones on its text config, started from the preset they and the model imply."""
    text = {key: value for key, value in settings.items() if key.startswith("reconstruct.text.")}
    config = apply_overrides(config, {key: value for key, value in settings.items() if key not in text})
    model = text.get("reconstruct.text.model", config.descriptor.model)
    return apply_overrides(dataclasses.replace(config, reconstruct=resolve_text(config.reconstruct, model)), text)


def with_stage_settings(config: ImageTo3DConfig, **settings: Any) -> ImageTo3DConfig:
    """Set what the learning stages share (device, model, precision, seed) in both, where given (not None). The
    reconstruction's text-to-3D config, when not yet given, starts from the preset of the model given here."""
    shared = {key: value for key, value in settings.items() if value is not None}
    return dataclasses.replace(config, descriptor=dataclasses.replace(config.descriptor, **shared),
                               reconstruct=with_text_settings(config.reconstruct, shared, model=shared.get("model")))
