"""Saving the small prior's stages and putting them together as a Stable Diffusion pipeline folder.

The result is an ordinary diffusers folder (`model_index.json`, one sub-folder per component, fp16
safetensors), so it loads through exactly the code path of a real checkpoint: diffusers'
`StableDiffusionPipeline.from_pretrained` and `dreamtext.prior.loading.load_prior`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from ...errors import DreamtextError
from ...utils.io import staging_folder
from ..camera import CAMERA_UNET_FOLDER
from ..tokenizer import build_clip_tokenizer, shipped_vocabulary_folder
from .diffusion import build_sampling_scheduler


def replace_directory(staging: Path, target: Path) -> None:
    """Move the finished `staging` folder to `target`, replacing an older one with two renames."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_directory_atomically(out_dir: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call `write(staging_folder)` and rename the folder to `out_dir`: a killed run leaves no half folder."""
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise DreamtextError(f"{str(target)!r} exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(target)
    try:
        write(staging)
        replace_directory(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def save_pretrained_atomically(model, out_dir: str | os.PathLike) -> Path:
    """`model.save_pretrained` (safetensors) into a staging folder renamed to `out_dir`."""
    return write_directory_atomically(out_dir, lambda staging: model.save_pretrained(staging, safe_serialization=True))


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise DreamtextError(f"{str(folder)!r} holds no config.json; train that stage first")
    return json.loads(path.read_text())


def same_model(folder: Path, other: Path) -> bool:
    """Whether two diffusers model folders hold the same weights (byte for byte) and the same config, apart from
    the bookkeeping keys diffusers and transformers write on saving ("_name_or_path", "_diffusers_version",
    "transformers_version")."""
    if not (folder / "config.json").is_file() or not (other / "config.json").is_file():
        return False

    def config(path: Path) -> dict:
        saved = json.loads((path / "config.json").read_text())
        return {k: v for k, v in saved.items() if not k.startswith("_") and k != "transformers_version"}

    weights = sorted(f.name for f in folder.glob("*.safetensors"))
    return (bool(weights) and weights == sorted(f.name for f in other.glob("*.safetensors"))
            and config(folder) == config(other)
            and all((folder / name).read_bytes() == (other / name).read_bytes() for name in weights))


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix):] if key.startswith(prefix) else key: value for key, value in state.items()}


def load_clip_text_encoder(clip_dir: str | os.PathLike):
    """The text tower of a saved CLIP as a transformers `CLIPTextModel` (frozen, fp32, eval mode).

    `clip_dir` may hold a whole `CLIPModel` (the small CLIP's training output) or a `CLIPTextModel`.
    For a CLIPModel a `CLIPTextModel` is built from its `text_config` and given the `text_model`
    weights; the `text_model.` key level is matched either way (transformers moved it in 5.x).
    """
    from transformers import CLIPModel, CLIPTextModel

    folder = Path(clip_dir)
    model_type = _read_config(folder).get("model_type")
    try:
        if model_type == "clip_text_model":
            text = CLIPTextModel.from_pretrained(folder, local_files_only=True)
        elif model_type == "clip":
            full = CLIPModel.from_pretrained(folder, local_files_only=True)
            text = CLIPTextModel(full.config.text_config)
            weights = _strip_prefix(full.text_model.state_dict(), "text_model.")
            expected = set(text.state_dict())
            if not expected.issuperset(weights):  # this CLIPTextModel keeps the `text_model.` level
                weights = {f"text_model.{key}": value for key, value in weights.items()}
            text.load_state_dict(weights, strict=True)
        else:
            raise DreamtextError(f"{str(folder)!r} is a {model_type!r} model, not a CLIP model or CLIP text model")
    except DreamtextError:
        raise
    except Exception as error:  # transformers raises many types; the user needs one line
        first = (str(error).strip().splitlines() or [""])[0]
        raise DreamtextError(f"could not load the CLIP text tower from {str(folder)!r}: {type(error).__name__}: {first}") from error
    return text.float().eval().requires_grad_(False)


def text_hidden_size(clip_dir: str | os.PathLike) -> int:
    """The CLIP text tower's width: the UNet's cross_attention_dim."""
    config = _read_config(Path(clip_dir))
    return int(config["text_config"]["hidden_size"] if config.get("model_type") == "clip" else config["hidden_size"])


def build_prior_tokenizer(text_encoder, tokenizer_cache: str | os.PathLike | None = None):
    """CLIP's BPE tokenizer, its length capped at the text tower's positions (SD's 77 when it has them)."""
    tokenizer = build_clip_tokenizer(tokenizer_cache)
    tokenizer.model_max_length = min(tokenizer.model_max_length, int(text_encoder.config.max_position_embeddings))
    return tokenizer


def assemble_pipeline(
    vae_dir: str | os.PathLike,
    unet_dir: str | os.PathLike,
    clip_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    tokenizer_cache: str | os.PathLike | None = None,
    camera_unet_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the small prior as a Stable Diffusion pipeline folder, fp16 safetensors, atomically.

    Components: the trained VAE and UNet, the CLIP text tower, the CLIP BPE tokenizer and a DDIM
    scheduler with SD's betas; no safety checker or feature extractor.
    camera_unet_dir: a camera-aware UNet trained on the same VAE and text tower, written beside the
    others as `CAMERA_UNET_FOLDER` (outside model_index.json, so diffusers' pipeline loads the text-only
    `unet`, which its sampling loop can drive; dreamtext loads the camera-aware one in its place).
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

    for name, folder in (("VAE", vae_dir), ("UNet", unet_dir)):
        _read_config(Path(folder))  # a clear error before diffusers' long one
    vae = AutoencoderKL.from_pretrained(vae_dir, local_files_only=True, use_safetensors=True)
    unet = UNet2DConditionModel.from_pretrained(unet_dir, local_files_only=True, use_safetensors=True)
    text_encoder = load_clip_text_encoder(clip_dir)
    if unet.config.cross_attention_dim != text_encoder.config.hidden_size:
        raise DreamtextError(
            f"the UNet in {str(unet_dir)!r} attends to {unet.config.cross_attention_dim}-wide text but the CLIP in "
            f"{str(clip_dir)!r} is {text_encoder.config.hidden_size} wide; retrain the UNet on this CLIP"
        )
    pipeline = StableDiffusionPipeline(
        vae=vae.half(),
        unet=unet.half(),
        text_encoder=text_encoder.half(),
        tokenizer=build_prior_tokenizer(text_encoder, tokenizer_cache),
        scheduler=build_sampling_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    camera_unet = None
    if camera_unet_dir is not None:
        camera_unet = UNet2DConditionModel.from_pretrained(camera_unet_dir, local_files_only=True, use_safetensors=True)

    def write(staging: Path) -> None:
        pipeline.save_pretrained(staging, safe_serialization=True)
        if camera_unet is not None:
            camera_unet.half().save_pretrained(staging / CAMERA_UNET_FOLDER, safe_serialization=True)
        make_portable(staging)

    return write_directory_atomically(out_dir, write)


def make_portable(folder: str | os.PathLike) -> None:
    """Make a saved pipeline folder load the same with every diffusers + transformers user, in place:

    - the text encoder's weights keep CLIPTextModel's `text_model.` key level (transformers 5 saves them
      without it, which transformers 4 would not match, loading random weights with only a warning; 5
      reads both) and its config says float32, the dtype diffusers gives the other parts by default (the
      weights stay fp16 on disk and are widened on load; a float16 config made plain sampling fail with
      mixed dtypes);
    - the tokenizer folder also carries CLIP's vocab.json and merges.txt, which every transformers
      version's CLIPTokenizer reads (tokenizer.json alone needs the fast tokenizer of transformers 5).
    """
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    weights_path, config_path = folder / "text_encoder" / "model.safetensors", folder / "text_encoder" / "config.json"
    weights = load_file(str(weights_path))
    prefixed = {key if key.startswith("text_model.") else f"text_model.{key}": value for key, value in weights.items()}
    save_file(prefixed, str(weights_path), metadata={"format": "pt"})
    config = json.loads(config_path.read_text())
    config["dtype"] = "float32"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer = folder / "tokenizer"
    source = shipped_vocabulary_folder()
    if source is not None and source.resolve() != tokenizer.resolve():
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(source / name, tokenizer / name)


def safetensors_bytes(folder: str | os.PathLike, component: str | None = None) -> int:
    """Total size of the `.safetensors` files under `folder` (or its `component` sub-folder)."""
    root = Path(folder) / component if component else Path(folder)
    return sum(path.stat().st_size for path in root.rglob("*.safetensors"))
