"""Image-to-3D cases of `dreamtext bench world` (issue 5, item 8).

Each case starts from a true render of the held-out object: sphere traced by the world's renderer,
lambertian with a headlight on white, at the prior's native size, from a fixed front-ish camera. It is
saved as the case's input.png and runs through the image-to-3D pipeline (describe -> descriptor ->
reconstruct, `methods.image_to_3d.pipeline`) with one of its methods:

    dreamtext      the thesis's DreamText (learned descriptor words, no reference losses)
    realfusion     RealFusion mode (noun-only textual inversion + reference-view RGB and mask losses)
    dreamtext_ref  DreamText plus the reference-view losses
    plain_sentence the chosen sentence as it is (nothing learned): what the learning adds

The reconstruction's schedule is the benchmark's text-to-3D preset (the same field, renders and
iterations as the text cases), and the descriptor trains as many iterations (the thesis runs about 10k
of each, 6.3.3 and 8.1). The reference-view losses use the input render's own camera, so the input is
exactly what the field should show from there. Besides the figures every case gets (world.py), a case
reports the chosen sentence, whether it names the object's noun and colour, and the reference-view
PSNR: the field's albedo render over white from the input camera against the input image.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..export.field_query import field_device
from ..methods.describe import SentenceConfig
from ..methods.image_to_3d.pipeline import ImageTo3DConfig, with_stage_settings
from ..methods.image_to_3d.pipeline import image_to_3d
from ..methods.image_to_3d.reconstruct import BUILTIN_RECONSTRUCTION, ReconstructConfig, ReferenceViewConfig, reference_camera
from ..methods.presets import preset_config
from ..methods.registry import METHODS
from ..methods.trained import load_trained
from ..metrics import psnr
from ..prior import load_prior
from ..prior.clip_backends import load_clip_backend
from .world_config import ImageBenchConfig, WorldBenchConfig
from ..utils.images import save_image
from ..utils.images import load_image
from ..utils.workspace_files import DESCRIBE_FILE

if TYPE_CHECKING:
    from ..methods.image_to_3d.pipeline import ImageTo3DConfig
    from ..world.world import WorldObject
    from .world_cases import WorldCase

# case kind -> the pipeline's method (methods/image_to_3d/pipeline.py METHODS)
IMAGE_KINDS: dict[str, str] = {"dreamtext": "dreamtext", "realfusion": "realfusion", "dreamtext_ref": "dreamtext+reference",
                               "plain_sentence": "plain"}
INPUT_FILE = "input.png"  # describe's own name for the prepared image: the render is already prepared
PSNR_CAP_DB = 100.0  # ours: an identical image has infinite PSNR, which strict JSON cannot hold



@lru_cache(maxsize=4)
def prior_image_size(model: str | None, device: str) -> int:
    """The prior's native image size (64 for the built-in prior), read from the loaded model."""
    return load_prior(model, device=torch.device(device)).image_size


@lru_cache(maxsize=2)
def describe_clip(device: str):
    """The built-in small CLIP that chooses the sentences (`dreamtext describe`'s default), loaded once."""
    return load_clip_backend("builtin", torch.device(device))


@torch.no_grad()
def input_render(obj: "WorldObject", settings: ImageBenchConfig, size: int) -> Tensor:
    """The case's input [size, size, 3]: the true object from the reference camera, lambertian with a
    headlight, on white."""
    camera = reference_camera(settings.reference, size, "cpu")
    out = obj.scene.render_sphere_traced(camera, shading="lambertian", background=(1.0, 1.0, 1.0),
                                         supersample=settings.supersample, ambient=settings.ambient)
    return out["rgb"][0].clamp(0, 1)


def capped_psnr(pred: Tensor, target: Tensor) -> float:
    """PSNR in dB, at most PSNR_CAP_DB (identical images)."""
    return min(psnr(pred, target), PSNR_CAP_DB)


@torch.no_grad()
def reference_view(trained, reference: ReferenceViewConfig, size: int) -> Tensor:
    """The field's albedo over white from the reference camera [size, size, 3], as the reference loss sees it."""
    device = field_device(trained.field)
    camera = reference_camera(reference, size, device)
    out = trained.renderer.render(trained.field, camera, background=torch.ones(3, device=device), shading="albedo")
    return out.rgb[0].clamp(0, 1).cpu()


def reference_psnr(trained, image: Tensor, reference: ReferenceViewConfig) -> float:
    """PSNR of the reference-view render of a trained scene against the input image [S, S, 3]."""
    return capped_psnr(reference_view(trained, reference, image.shape[0]), image)


def image_pipeline_config(method: str, config: "WorldBenchConfig", device: torch.device,
                          noun: str | None = None) -> "ImageTo3DConfig":
    """The pipeline's config for `method` on the benchmark's preset: its reconstruction is the text cases' run (the
    preset with the benchmark's overrides and start), its descriptor as long. noun: fixed instead of chosen by CLIP
    (`--noun`)."""
    settings = config.image
    start = {} if config.start is None else {"init.kind": config.start}
    own = BUILTIN_RECONSTRUCTION if config.preset == "builtin" else {}  # what the image command's reconstruction changes
    text = preset_config(config.preset, "", {**own, **config.overrides, "seed": config.seed, "device": device.type, **start})
    size = prior_image_size(text.model, device.type)
    image = ImageTo3DConfig(method=method)  # type: ignore[arg-type]
    image.describe = dataclasses.replace(image.describe, device=device.type, sentence=SentenceConfig(noun=noun),
                                         image=dataclasses.replace(image.describe.image, size=size))
    iters = settings.descriptor_iters if settings.descriptor_iters is not None else text.iters
    image.descriptor = dataclasses.replace(image.descriptor, iters=iters, compile=settings.compile)
    image.reconstruct = ReconstructConfig(preset=config.preset, text=text, reference=settings.reference,  # type: ignore[arg-type]
                                          start_sentence=settings.start_sentence)
    return with_stage_settings(image, model=text.model, seed=config.seed, device=device.type)


def write_input(obj: "WorldObject", workspace: Path, settings: ImageBenchConfig, size: int) -> Path:
    """The case's input.png (kept when present: a resumed case reads the same file)."""
    path = workspace / INPUT_FILE
    if not path.is_file():
        save_image(path, input_render(obj, settings, size))
    return path


def run_image_case(case: "WorldCase", workspace: Path, config: "WorldBenchConfig", device: torch.device) -> dict:
    """Image-to-3D of the case's input render with the case kind's method; returns its own figures."""
    method = IMAGE_KINDS[case.kind]
    image_config = image_pipeline_config(method, config, device)
    workspace.mkdir(parents=True, exist_ok=True)
    image_path = write_input(case.object, workspace, config.image, image_config.describe.image.size)
    result = image_to_3d(image_path, workspace, image_config, progress=False, clip=describe_clip(device.type))
    described = json.loads((workspace / DESCRIBE_FILE).read_text())
    trained = load_trained(result.reconstruction, device=device.type)
    reconstruction = result.reconstruction_metrics
    obj = case.object
    fixed = result.descriptor_metrics.get("fixed_noise_loss") or {}  # absent when nothing was learned
    return {
        "method": method, "sentence": described["sentence"], "learned_prompt": result.prompt,
        "sentence_noun_correct": described["noun"] == obj.noun,
        "sentence_colour_correct": obj.colour in described["descriptors"],
        "descriptor_iters": result.descriptor_metrics.get("iters"), "iters": reconstruction.get("iters"),
        "final_loss": reconstruction.get("final_loss"),
        "descriptor_loss_words": fixed.get("words", {}).get("real"), "descriptor_loss_learned": fixed.get("learned", {}).get("real"),
        "reference_psnr": reference_psnr(trained, load_image(image_path)[0], config.image.reference),
    }


IMAGE_CASE_RUNNERS = {kind: run_image_case for kind in IMAGE_KINDS}
TRAINED_FOLDERS = {kind: METHODS["image"].scene_folder for kind in IMAGE_KINDS}  # where each kind's trained scene lives

