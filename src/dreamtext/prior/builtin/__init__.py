"""The built-in prior shipped inside the package (issue 4): the small Stable Diffusion-format pipeline and
the small CLIP trained on the procedural world.

Layout (package data):
- `pipeline/`: a diffusers Stable Diffusion folder (fp16 safetensors); any code that loads a real
  checkpoint loads it, diffusers' own `from_pretrained` included. Beside its components (outside
  model_index.json), `camera_classifier/`: the camera classifier of its latents (`prior/camera_classifier.py`,
  `train-prior camera`: 12k steps on 24k renders, held-out azimuth within 30 degrees 75% of the time at t=20).
- `clip/`: the small CLIP's config and every weight except its text tower. The text tower is the
  pipeline's text encoder (Stable Diffusion's frozen CLIP text model), so it is stored once and
  `load_builtin_clip` puts the two together.

`package_prior` writes this layout from the folder `dreamtext train-prior all` fills.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ...errors import DreamtextError
from ..camera_classifier import CAMERA_CLASSIFIER_FOLDER
from ..small.assemble import same_model, write_directory_atomically

BUILTIN_DIR = Path(__file__).resolve().parent
BUILTIN_PIPELINE_DIR = BUILTIN_DIR / "pipeline"
BUILTIN_CLIP_DIR = BUILTIN_DIR / "clip"
CLIP_WEIGHTS = "heads.safetensors"  # the CLIP minus its text tower
TEXT_TOWER_PREFIX = "text_model."


def builtin_prior_available() -> bool:
    return (BUILTIN_PIPELINE_DIR / "model_index.json").is_file() and (BUILTIN_CLIP_DIR / "config.json").is_file()


def require_builtin_prior() -> None:
    if not builtin_prior_available():
        raise DreamtextError(
            f"the built-in prior is not installed ({BUILTIN_DIR} has no pipeline/ and clip/); "
            "train one with `dreamtext train-prior all --out DIR` and pass --model DIR/pipeline"
        )


def load_builtin_clip(device: torch.device | str = "cpu", clip_dir: str | os.PathLike = BUILTIN_CLIP_DIR,
                      text_encoder_dir: str | os.PathLike | None = None):
    """The small CLIP as one `transformers.CLIPModel` (fp32, eval): heads from `clip_dir`, text tower from
    the pipeline's text encoder."""
    from safetensors.torch import load_file
    from transformers import CLIPConfig, CLIPModel

    clip_dir = Path(clip_dir)
    text_dir = Path(text_encoder_dir) if text_encoder_dir is not None else clip_dir.parent / "pipeline" / "text_encoder"
    if not (clip_dir / "config.json").is_file() or not (text_dir / "model.safetensors").is_file():
        raise DreamtextError(f"no built-in CLIP in {str(clip_dir)!r} (with its text tower in {str(text_dir)!r})")
    model = CLIPModel(CLIPConfig.from_pretrained(str(clip_dir)))
    state = {k: v.float() for k, v in load_file(str(clip_dir / CLIP_WEIGHTS)).items()}
    for key, value in load_file(str(text_dir / "model.safetensors")).items():
        state[_text_tower_key(key)] = value.float()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise DreamtextError(f"the built-in CLIP in {str(clip_dir)!r} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.to(device).eval()


def _text_tower_key(key: str) -> str:
    """A text tower weight's name inside a CLIPModel (transformers 5 saves a CLIPTextModel without the prefix)."""
    return key if key.startswith(TEXT_TOWER_PREFIX) else TEXT_TOWER_PREFIX + key


def _text_tower_weights(path: Path) -> dict[str, torch.Tensor]:
    """The text tower's weights, named as inside a CLIPModel, from a whole CLIP's or a text encoder's file."""
    from safetensors.torch import load_file

    weights = load_file(str(path))
    if any(key.startswith("vision_model.") for key in weights):  # a whole CLIP: its text side only
        return {k: v for k, v in weights.items() if k.startswith(TEXT_TOWER_PREFIX)}
    return {_text_tower_key(k): v for k, v in weights.items()}


def _require_text_tower(trained_weights: Path, text_encoder_weights: Path, what: str) -> None:
    """The text tower in `trained_weights` must equal (in fp16) the shipped text encoder: the shipped CLIP heads
    and the shipped UNet were both trained with that tower, so a part shipped alone must be too."""
    if not text_encoder_weights.is_file():
        raise DreamtextError(f"no shipped text encoder at {str(text_encoder_weights)!r} to package the {what} with; "
                             "package a whole trained prior (clip/ and pipeline/)")
    shipped, trained = _text_tower_weights(text_encoder_weights), _text_tower_weights(trained_weights)
    if shipped.keys() != trained.keys() or not all(torch.equal(v.half(), trained[k].half()) for k, v in shipped.items()):
        raise DreamtextError(f"{str(trained_weights)!r} has another text tower than the shipped pipeline; package the "
                             f"{what} with its own {'pipeline' if what == 'CLIP' else 'CLIP'} (train-prior all), or "
                             "continue the shipped one (--init-clip builtin / --init-unet builtin)")


def package_prior(trained_root: str | os.PathLike, out_dir: str | os.PathLike = BUILTIN_DIR) -> dict:
    """Copy `trained_root`/pipeline and the non-text part of `trained_root`/clip into `out_dir` (the shipped
    layout above). Returns the bytes of each part.

    A root with clip/ only (`train-prior clip --init-clip builtin`) replaces the CLIP alone, and one with
    pipeline/ only (`train-prior unet --init-unet builtin`) the pipeline alone; the part's text tower must
    then be the one `out_dir` already ships, since the part left in place was trained with that tower.
    A camera classifier (`root`/camera_classifier, `train-prior camera`) goes into pipeline/camera_classifier
    (fp16); without one, the classifier shipped before stays only if the new pipeline has the same VAE (it
    reads that VAE's latents). A root with camera_classifier/ alone replaces just the classifier.
    """
    from safetensors.torch import load_file, save_file

    root, out_dir = Path(trained_root), Path(out_dir)
    pipeline, clip, classifier = root / "pipeline", root / "clip", root / CAMERA_CLASSIFIER_FOLDER
    with_pipeline, with_clip = (pipeline / "model_index.json").is_file(), (clip / "config.json").is_file()
    with_classifier = (classifier / "config.json").is_file()
    if not (with_pipeline or with_clip or with_classifier):
        raise DreamtextError(f"{str(root)!r} holds no trained prior (clip/, pipeline/ or camera_classifier/); run "
                             "`dreamtext train-prior all` first")
    shipped_classifier = out_dir / "pipeline" / CAMERA_CLASSIFIER_FOLDER
    same_vae = same_model(pipeline / "vae", out_dir / "pipeline" / "vae")
    if with_classifier:
        classifier_source = classifier
    elif with_pipeline and same_vae and (shipped_classifier / "config.json").is_file():
        classifier_source = shipped_classifier
    else:
        classifier_source = None
    shipped_text = out_dir / "pipeline" / "text_encoder" / "model.safetensors"
    if with_clip and not with_pipeline:
        _require_text_tower(clip / "model.safetensors", shipped_text, "CLIP")
    if with_pipeline and not with_clip:
        _require_text_tower(pipeline / "text_encoder" / "model.safetensors", shipped_text, "pipeline")

    def write_classifier(staging: Path) -> None:
        weights = load_file(str(classifier_source / "model.safetensors"))
        save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, str(staging / "model.safetensors"))
        shutil.copy(classifier_source / "config.json", staging / "config.json")

    def write_pipeline(staging: Path) -> None:
        shutil.copytree(pipeline, staging, dirs_exist_ok=True)
        if classifier_source is not None:
            (staging / CAMERA_CLASSIFIER_FOLDER).mkdir(exist_ok=True)
            write_classifier(staging / CAMERA_CLASSIFIER_FOLDER)

    def write_clip(staging: Path) -> None:
        weights = load_file(str(clip / "model.safetensors"))
        heads = {k: v.to(torch.float16).contiguous() for k, v in weights.items() if not k.startswith(TEXT_TOWER_PREFIX)}
        save_file(heads, str(staging / CLIP_WEIGHTS))
        shutil.copy(clip / "config.json", staging / "config.json")
        if (clip / "training_metrics.json").is_file():
            metrics = json.loads((clip / "training_metrics.json").read_text())
            metrics.pop("loss_curve", None)
            (staging / "training_metrics.json").write_text(json.dumps(metrics, indent=2))

    if with_pipeline:
        write_directory_atomically(out_dir / "pipeline", write_pipeline)
    elif with_classifier:
        write_directory_atomically(shipped_classifier, write_classifier)
    if with_clip:
        write_directory_atomically(out_dir / "clip", write_clip)
    for path in (out_dir / "pipeline", out_dir / "clip", *(out_dir / "pipeline").rglob("*"), *(out_dir / "clip").rglob("*")):
        if path.exists():
            path.chmod(0o755 if path.is_dir() else 0o644)  # staging folders are private; shipped files are not
    sizes = {part: sum(f.stat().st_size for f in (out_dir / part).rglob("*.safetensors")) for part in ("pipeline", "clip")}
    return {**sizes, "total": sum(sizes.values())}
