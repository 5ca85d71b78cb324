"""Load a Stable Diffusion 1.x/2.x checkpoint as the 2D prior, strictly offline and without pickle.

Accepted `model` values:
- a local diffusers folder (with `model_index.json`, as written by `save_pretrained`);
- a single `.safetensors` checkpoint in the original Stable Diffusion layout (`from_single_file`);
  its component configurations come from `config` (a diffusers folder or a cached hub id), or from
  the hub repository diffusers infers for the checkpoint, which must then be in the local cache;
- a hub id, resolved only from the local Hugging Face cache;
- None: `DEFAULT_MODEL_ID` if it is cached, else the built-in prior shipped in the package;
- "builtin": the built-in prior (`prior/builtin`: a small Stable Diffusion trained on the procedural world).
Weights are read with safetensors only; remote code is never run.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import DreamtextError
from ..utils.device import use_fast_cpu_math
from .builtin import BUILTIN_PIPELINE_DIR, require_builtin_prior
from .camera import CAMERA_UNET_FOLDER, takes_camera
from .camera_classifier import CAMERA_CLASSIFIER_FOLDER, CameraClassifier

# Issue 3 / thesis 6.1.3: the thesis's prior is Stable Diffusion 2.1-base.
DEFAULT_MODEL_ID = "stabilityai/stable-diffusion-2-1-base"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")


@dataclass
class Prior:
    """The frozen parts of a Stable Diffusion pipeline that score distillation needs."""

    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL
    text_encoder: Any | None  # transformers CLIPTextModel; None once freed
    tokenizer: Any  # transformers CLIPTokenizer
    scheduler: Any  # a diffusers noise scheduler (its alphas_cumprod define the noise levels)
    device: torch.device
    dtype: torch.dtype
    camera_classifier: Any | None = None  # prior.camera_classifier.CameraClassifier, for camera guidance

    @classmethod
    def from_pipeline(cls, pipeline: Any, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> "Prior":
        """Take the components of a diffusers `StableDiffusionPipeline`, frozen, on `device`."""
        device = torch.device(device)
        dtype = resolve_dtype(device, dtype)
        for module in (pipeline.unet, pipeline.vae, pipeline.text_encoder):
            module.to(device=device)
            if module.dtype != dtype:  # loaders pass dtype already; this covers pipelines built in memory
                module.to(dtype=dtype)
            module.eval()
            module.requires_grad_(False)
        return cls(
            unet=pipeline.unet,
            vae=pipeline.vae,
            text_encoder=pipeline.text_encoder,
            tokenizer=pipeline.tokenizer,
            scheduler=pipeline.scheduler,
            device=device,
            dtype=dtype,
        )

    @property
    def vae_scale_factor(self) -> int:
        """How many image pixels one latent covers per side (8 for Stable Diffusion)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def image_size(self) -> int:
        """The resolution the prior was trained at (512 for SD 2.1-base): renders are resized to it."""
        return self.latent_size * self.vae_scale_factor

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    def free_text_encoder(self) -> None:
        """Drop the text encoder once every prompt embedding is cached (saves ~340M parameters for SD 2.1)."""
        self.text_encoder = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def resolve_dtype(device: torch.device, dtype: torch.dtype | None) -> torch.dtype:
    """fp32 on CPU (half precision is slow or unsupported there); fp16 by default on CUDA, bf16 on request."""
    if device.type != "cuda":
        return torch.float32
    if dtype is None:
        return torch.float16
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise DreamtextError(f"unsupported prior dtype {dtype}; use float16, bfloat16 or float32")
    return dtype


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


_PIPELINE_KWARGS = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)


@contextlib.contextmanager
def _without_loading_bars():
    """diffusers' "Loading pipeline components" and transformers' "Loading weights" bars hidden (no
    environment variable turns them off); dreamtext's own progress says what loads. The libraries' settings
    are restored afterwards."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libraries = [library for library in (diffusers_logging, transformers_logging) if library.is_progress_bar_enabled()]
    for library in libraries:
        library.disable_progress_bar()
    try:
        yield
    finally:
        for library in libraries:
            library.enable_progress_bar()


def _load_from_pretrained(source: str, what: str, dtype: torch.dtype):
    from diffusers import StableDiffusionPipeline

    try:
        with _without_loading_bars():
            return StableDiffusionPipeline.from_pretrained(
                source, local_files_only=True, use_safetensors=True, dtype=dtype, **_PIPELINE_KWARGS
            )
    except Exception as error:  # diffusers raises many types; the user needs one line
        raise DreamtextError(f"could not load Stable Diffusion {what} {source!r}: {_one_line(error)}") from error


def _load_camera_unet(folder: Path, dtype: torch.dtype):
    from diffusers import UNet2DConditionModel

    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder=CAMERA_UNET_FOLDER, local_files_only=True,
                                                    use_safetensors=True, dtype=dtype)
    except Exception as error:
        raise DreamtextError(f"could not load the camera-aware UNet in {str(folder / CAMERA_UNET_FOLDER)!r}: "
                             f"{_one_line(error)}") from error
    if not takes_camera(unet):
        raise DreamtextError(f"{str(folder / CAMERA_UNET_FOLDER)!r} is not a camera-aware UNet (its config has no "
                             "camera input); remove the folder or retrain it with `train-prior unet --camera`")
    return unet


def check_safetensors(path: Path) -> None:
    """A one-line error for a .safetensors file whose header cannot be read (cut short, damaged, not one)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as error:  # safetensors raises its own types, OSError and ValueError
        raise DreamtextError(f"{str(path)!r} is not a readable .safetensors file ({_one_line(error)}); it may be cut "
                             "short or damaged: download or export it again") from None


def check_pipeline_folder(folder: Path) -> None:
    """One-line errors, before diffusers' own, for a pipeline folder that misses a component model_index.json
    names, or whose weights are damaged."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError) as error:
        raise DreamtextError(f"{str(folder / 'model_index.json')!r} cannot be read ({error}); restore it") from None
    for component in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if component not in index:
            continue
        sub = folder / component
        if not sub.is_dir():
            raise DreamtextError(f"{str(folder)!r} has no {component}/ folder although model_index.json names it; "
                                 "the model folder is incomplete")
        if component in ("unet", "vae", "text_encoder"):
            if not (sub / "config.json").is_file():
                raise DreamtextError(f"{str(sub)!r} has no config.json; the model folder is incomplete")
            for weights in sub.glob("*.safetensors"):
                check_safetensors(weights)


def _inferred_config_repo(path: Path) -> str | None:
    """The hub repository diffusers would take a single file's configs from (read from key names and shapes)."""
    try:
        from diffusers.loaders.single_file_utils import fetch_diffusers_config
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            shapes = {key: torch.empty(handle.get_slice(key).get_shape(), device="meta") for key in handle.keys()}
        return fetch_diffusers_config(shapes)["pretrained_model_name_or_path"]
    except Exception:  # an internal diffusers helper: if it moves, fall through to diffusers' own error
        return None


def _load_single_file(path: Path, config: str | None, dtype: torch.dtype):
    from diffusers import StableDiffusionPipeline

    if config is None:
        # Without configs diffusers would download them; dreamtext stays offline, so they must be cached.
        repo = _inferred_config_repo(path)
        if repo is None or not is_cached_hub_model(repo):
            raise DreamtextError(
                f"the single-file checkpoint {str(path)!r} needs its component configs offline: pass --model-config with "
                f"a diffusers folder of the same architecture, or put {repo or 'its base model'} in the local Hugging "
                "Face cache"
            )
        config = repo

    try:
        with _without_loading_bars():
            return StableDiffusionPipeline.from_single_file(
                str(path), config=config, local_files_only=True, dtype=dtype, **_PIPELINE_KWARGS
            )
    except Exception as error:
        raise DreamtextError(f"could not load the single-file checkpoint {str(path)!r}: {_one_line(error)}") from error


def load_prior(
    model: str | os.PathLike | None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    config: str | os.PathLike | None = None,
    camera: bool = True,
    camera_classifier: str | os.PathLike | None = None,
) -> Prior:
    """Load a Stable Diffusion prior offline; see the module docstring for what `model` may be.

    config: only for a single `.safetensors` file: where its component configurations come from.
    camera: a folder with a camera-aware UNet (`prior.camera.CAMERA_UNET_FOLDER`, the built-in prior) is
        loaded with it in place of its text-only `unet`; False keeps the text-only one.
    camera_classifier: a camera classifier folder (`prior.camera_classifier`) for camera guidance; None: the
        model folder's own `camera_classifier/` when it has one (the built-in prior does), else none.
    """
    kind, source = locate_model(model)
    use_fast_cpu_math(torch.device(device))
    dtype = resolve_dtype(torch.device(device), dtype)
    path = Path(source)
    if kind == "folder":
        pipeline = _load_from_pretrained(source, "folder", dtype)
        if camera and (path / CAMERA_UNET_FOLDER / "config.json").is_file():
            pipeline.unet = _load_camera_unet(path, dtype)
    elif kind == "file":
        pipeline = _load_single_file(path, None if config is None else os.fspath(config), dtype)
    else:
        pipeline = _load_from_pretrained(source, "model (hub id, local cache only)", dtype)
    prior = Prior.from_pipeline(pipeline, device=device, dtype=dtype)
    if camera_classifier is None and path.is_dir() and (path / CAMERA_CLASSIFIER_FOLDER / "config.json").is_file():
        camera_classifier = path / CAMERA_CLASSIFIER_FOLDER
    if camera_classifier is not None:
        prior.camera_classifier = CameraClassifier.from_pretrained(camera_classifier, prior.device)
    return prior


def locate_model(model: str | os.PathLike | None) -> tuple[str, str]:
    """("folder" | "file" | "hub", where) of a model the module docstring accepts, checked without loading it:
    a one-line error for a pickle file, a folder that is not a (whole) diffusers pipeline, a damaged
    .safetensors file, a path that does not exist or a hub id not in the local cache."""
    text = os.fspath(resolve_model(model))
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise DreamtextError(f"{text!r} is a pickle checkpoint, which dreamtext never loads; convert it to .safetensors")
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise DreamtextError(f"{text!r} is not a diffusers model folder (no model_index.json)")
        check_pipeline_folder(path)
        return "folder", str(path)
    if path.is_file():
        if suffix != ".safetensors":
            raise DreamtextError(f"{text!r} is not a .safetensors checkpoint or a diffusers folder")
        check_safetensors(path)
        return "file", str(path)
    if _is_hub_id(text):
        if not is_cached_hub_model(text):
            raise DreamtextError(
                f"{text!r} is not in the local Hugging Face cache (local cache only: dreamtext never downloads); fetch it "
                f"on a connected machine (huggingface-cli download {text}) and copy the cache here, or pass --model with a "
                "diffusers folder or a .safetensors file")
        return "hub", text
    raise DreamtextError(f"model path {text!r} does not exist")


BUILTIN_MODEL = "builtin"


def resolve_model(model: str | os.PathLike | None) -> str:
    """What `model` loads: None is `DEFAULT_MODEL_ID` when it is cached, else the built-in prior;
    "builtin" is the built-in prior's pipeline folder shipped in the package."""
    if model is None:
        model = DEFAULT_MODEL_ID if is_cached_hub_model(DEFAULT_MODEL_ID) else BUILTIN_MODEL
    if os.fspath(model) == BUILTIN_MODEL:
        require_builtin_prior()
        return str(BUILTIN_PIPELINE_DIR)
    return os.fspath(model)


def is_builtin_model(model: str | os.PathLike | None) -> bool:
    return Path(resolve_model(model)).resolve() == BUILTIN_PIPELINE_DIR


def _is_hub_id(text: str) -> bool:
    """`owner/name` or `name` with hub-legal characters and no file suffix we know."""
    parts = text.split("/")
    legal = all(part and all(c.isalnum() or c in "-_." for c in part) for part in parts)
    return legal and len(parts) <= 2 and not text.startswith(".") and Path(text).suffix.lower() != ".safetensors"


def is_cached_hub_model(repo_id: str) -> bool:
    """Whether `repo_id`'s pipeline index is in the local Hugging Face cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, "model_index.json")
    return isinstance(found, str) and Path(found).is_file()
