"""CLIP models behind one small interface: unit image and text embeddings, strictly offline.

A backend turns images [B, 3, H, W] in [0, 1] and lists of strings into unit vectors of one shared
space, so cosine similarity is a dot product. Three kinds, chosen by `load_clip_backend(spec)`:

- the built-in small CLIP (`prior/small/clip.py`, a transformers `CLIPModel` trained on world renders;
  its images enter as `2 * image - 1`): spec None or "builtin" (the folder `BUILTIN_CLIP_DIR`),
  "small:PATH", or a folder `train_small_clip` wrote (it holds training_metrics.json);
- a transformers CLIP checkpoint (e.g. openai/clip-vit-large-patch14): a local folder, or a hub id
  found in the local Hugging Face cache; images get CLIP's own resize, centre crop and mean/std,
  written in torch (no torchvision on the project's CPU stack);
- open_clip: "open_clip:MODEL" or "open_clip:MODEL:PRETRAINED" (a tag in the local cache or a weights
  file), when the open_clip package imports; otherwise a one-line error.

Each backend names the vocabulary its model knows (`default_vocabulary`): the world's words for the
small CLIP, general English for the others.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DreamtextError
from .builtin import BUILTIN_CLIP_DIR, load_builtin_clip  # the shipped small CLIP (its text tower lives in the shipped pipeline)
from .loading import _is_hub_id
from .small.clip import encode_texts, images_to_pixel_values
from .tokenizer import build_clip_tokenizer

# OpenAI CLIP's preprocessing (its image processor config), used when a checkpoint ships none.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# ours: candidates per text-encoder forward pass; a step of the general vocabulary is ~1600 sentences.
TEXT_CHUNK = 256
SMALL_CLIP_MARKER = "training_metrics.json"  # written by train_small_clip next to the weights


@runtime_checkable
class ClipBackend(Protocol):
    """What sentence selection (and CLIP scores) need from a CLIP model."""

    name: str
    default_vocabulary: str

    def encode_image(self, images: Tensor) -> Tensor:
        """Images [B, 3, H, W] in [0, 1] -> unit embeddings [B, D] (float32)."""
        ...

    def encode_text(self, texts: list[str]) -> Tensor:
        """Strings -> unit embeddings [len(texts), D] (float32), in chunks of TEXT_CHUNK."""
        ...

    def info(self) -> dict:
        """A JSON-able description (kind, name, image size), saved with results."""
        ...


@dataclass(frozen=True)
class ImagePreprocessing:
    """CLIP's input transform: resize the shorter side, centre-crop a square, normalise per channel."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        # The longer side is truncated, as CLIP's processors (and torchvision's Resize) compute it.
        short, long = min(height, width), max(height, width)
        long = max(self.crop, int(self.resize * long / short))
        size = (self.resize, long) if height <= width else (long, self.resize)
        size = (max(size[0], self.crop), max(size[1], self.crop))
        if size != (height, width):
            # CLIP resizes with bicubic filtering; antialias matches PIL's when shrinking.
            images = F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        images = images[..., top : top + self.crop, left : left + self.crop]
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


class _LoadedClip:
    """What every backend shares: the frozen model, its tokenizer and preprocessing, chunked text."""

    default_vocabulary = "general"
    kind = ""

    def __init__(self, model, tokenizer, preprocessing: ImagePreprocessing, name: str):
        self.model = model.float().eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.preprocessing = preprocessing
        self.name = name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _text_features(self, texts: list[str]) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> Tensor:
        if not texts:
            raise ValueError("no texts to encode")
        features = [self._text_features(chunk).float() for chunk in _chunks(list(texts), TEXT_CHUNK)]
        return F.normalize(torch.cat(features), dim=-1)

    def info(self) -> dict:
        return {"kind": self.kind, "name": self.name, "image_size": self.preprocessing.crop}


class TransformersClip(_LoadedClip):
    """A transformers `CLIPModel` with CLIP's mean/std preprocessing."""

    kind = "transformers"

    def pixel_values(self, images: Tensor) -> Tensor:
        return self.preprocessing(images.to(self.device, torch.float32))

    @torch.no_grad()
    def encode_image(self, images: Tensor) -> Tensor:
        pooled = self.model.vision_model(pixel_values=self.pixel_values(images)).pooler_output
        return F.normalize(self.model.visual_projection(pooled).float(), dim=-1)

    def _text_features(self, texts: list[str]) -> Tensor:
        return encode_texts(self.model, self.tokenizer, texts)


class SmallClip(TransformersClip):
    """The built-in small CLIP: images resized to its resolution and mapped to [-1, 1] (its training)."""

    default_vocabulary = "world"
    kind = "small"

    def pixel_values(self, images: Tensor) -> Tensor:
        images = images.to(self.device, torch.float32)
        size = self.preprocessing.crop
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        return images_to_pixel_values(images)


class OpenClip(_LoadedClip):
    """An open_clip model; preprocessing from its own config, in torch."""

    kind = "open_clip"

    @torch.no_grad()
    def encode_image(self, images: Tensor) -> Tensor:
        return F.normalize(self.model.encode_image(self.preprocessing(images.to(self.device, torch.float32))).float(), dim=-1)

    def _text_features(self, texts: list[str]) -> Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {text}".rstrip(": ")


def load_clip_backend(spec: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> ClipBackend:
    """The CLIP model `spec` names (see the module docstring), on `device`, offline."""
    text = "builtin" if spec is None else os.fspath(spec)
    if text == "builtin":
        if not (BUILTIN_CLIP_DIR / "config.json").is_file():
            raise DreamtextError(
                f"the built-in CLIP is not installed ({BUILTIN_CLIP_DIR} is missing); train one with "
                "`dreamtext train-prior clip --out DIR` and pass --clip DIR/clip, or pass a CLIP checkpoint"
            )
        return _small_clip(load_builtin_clip(device), "builtin")
    if text.startswith("small:"):
        return load_small_clip(Path(text[len("small:"):]).expanduser(), device)
    if text.startswith("open_clip:"):
        return load_open_clip(text[len("open_clip:"):], device)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / SMALL_CLIP_MARKER).is_file() and not (path / "preprocessor_config.json").is_file():
            return load_small_clip(path, device)
        return load_transformers_clip(str(path), device)
    if path.exists():
        raise DreamtextError(f"{text!r} is a file; pass a CLIP checkpoint folder (config.json + weights) or a cached hub id")
    if _is_hub_id(text) and "/" in text:
        return load_transformers_clip(text, device)
    raise DreamtextError(f"CLIP model {text!r} not found: pass a folder, a cached hub id, small:PATH or open_clip:MODEL")


def _load_clip_model(source: str, what: str):
    from transformers import CLIPModel

    try:
        return CLIPModel.from_pretrained(source, local_files_only=True)
    except Exception as error:  # transformers raises many types; the user needs one line
        raise DreamtextError(f"could not load the CLIP {what} {source!r} offline: {_first_line(error)}") from error


def load_small_clip(folder: Path, device: torch.device | str = "cpu", name: str | None = None) -> SmallClip:
    if not (folder / "config.json").is_file():
        raise DreamtextError(f"{str(folder)!r} holds no small CLIP (no config.json); train one with `dreamtext train-prior clip`")
    return _small_clip(_load_clip_model(str(folder), "folder").to(device), name or str(folder))


def _small_clip(model, name: str) -> SmallClip:
    """The small CLIP's wrapper: images enter as 2 * image - 1 at the vision tower's size."""
    size = int(model.config.vision_config.image_size)
    preprocessing = ImagePreprocessing(resize=size, crop=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return SmallClip(model, build_clip_tokenizer(), preprocessing, name)


def _local_file(source: str, name: str) -> Path | None:
    """`name` inside the checkpoint folder `source`, or in the local hub cache of hub id `source`."""
    path = Path(source) / name
    if path.is_file():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, name)
    except Exception:  # not a hub id, or huggingface_hub refuses the name
        return None
    return Path(found) if isinstance(found, str) else None


def _read_preprocessor_config(source: str) -> dict:
    """The checkpoint's preprocessor_config.json from its folder or the local hub cache; {} if none."""
    path = _local_file(source, "preprocessor_config.json")
    if path is None:
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DreamtextError(f"{path} is unreadable ({_first_line(error)}); restore the checkpoint's preprocessor config") from None


def _size_value(value: Any, default: int) -> int:
    if isinstance(value, dict):  # {"shortest_edge": 224} or {"height": 224, "width": 224}
        value = value.get("shortest_edge", value.get("height"))
    return int(value) if value is not None else default


def preprocessing_from_config(config: dict, image_size: int) -> ImagePreprocessing:
    """CLIP's transform from an image-processor config; OpenAI's values for what it leaves out."""
    return ImagePreprocessing(
        resize=_size_value(config.get("size"), image_size),
        crop=_size_value(config.get("crop_size"), image_size),
        mean=tuple(config.get("image_mean", CLIP_MEAN)),
        std=tuple(config.get("image_std", CLIP_STD)),
    )


def load_transformers_clip(source: str, device: torch.device | str = "cpu") -> TransformersClip:
    """A transformers CLIP checkpoint by folder or cached hub id; its tokenizer if it ships one, else
    CLIP's BPE tokenizer (the same vocabulary for OpenAI and OpenCLIP models)."""
    from transformers import CLIPTokenizer

    model = _load_clip_model(source, "folder" if Path(source).is_dir() else "model (hub id, local cache only)").to(device)
    tokenizer = None
    if _local_file(source, "vocab.json") is not None:
        try:
            tokenizer = CLIPTokenizer.from_pretrained(source, local_files_only=True)
        except Exception:  # unreadable tokenizer files: CLIP's own BPE below is the same vocabulary
            tokenizer = None
    tokenizer = tokenizer or build_clip_tokenizer()
    preprocessing = preprocessing_from_config(_read_preprocessor_config(source), int(model.config.vision_config.image_size))
    return TransformersClip(model, tokenizer, preprocessing, source)


def load_open_clip(spec: str, device: torch.device | str = "cpu") -> OpenClip:
    """open_clip "MODEL" or "MODEL:PRETRAINED" from the local cache or a weights file."""
    try:
        import open_clip
    except Exception as error:  # ImportError, or its torchvision dependency failing to load
        raise DreamtextError(
            f"open_clip cannot be imported here ({_first_line(error)}); pass a transformers CLIP folder or cached hub id instead"
        ) from None
    name, _, pretrained = spec.partition(":")
    if not name:
        raise DreamtextError("open_clip needs a model name: open_clip:MODEL or open_clip:MODEL:PRETRAINED")
    try:
        model = open_clip.create_model(name, pretrained=pretrained or None, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as error:
        raise DreamtextError(f"could not load open_clip model {spec!r} offline: {_first_line(error)}") from error
    config = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = config.get("size", getattr(model.visual, "image_size", 224))
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    preprocessing = ImagePreprocessing(
        resize=size, crop=size, mean=tuple(config.get("mean", CLIP_MEAN)), std=tuple(config.get("std", CLIP_STD))
    )
    return OpenClip(model, tokenizer, preprocessing, spec)
