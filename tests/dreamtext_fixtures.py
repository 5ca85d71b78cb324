"""Shared pieces of the DreamText tests: a described workspace, a tiny prior, a scripted CLIP, toy
text-to-3D sizes."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dreamtext.export.mesh import MeshExportConfig
from dreamtext.export.outputs import ExportConfig
from dreamtext.prior import Prior
from dreamtext.scene.field import FieldConfig
from dreamtext.scene.hash_encoding import HashGridConfig
from dreamtext.utils.images import save_image

from tiny_sd import build_tiny_sd_pipeline

SENTENCE = {"sentence": "An image of red, striped, a mug", "noun": "mug", "descriptors": ["red", "striped"],
            "quantifier": "a", "base_sentence": "An image of a mug", "image": "input.png", "mask": "input_mask.png"}

# Toy text-to-3D sizes for reconstructions in tests (as tests/test_text_to_3d.py's small_config).
TOY_TEXT_TO_3D = {
    "field": FieldConfig(encoding=HashGridConfig(log2_hashmap_size=12, max_resolution=64), hidden_dim=16, num_blocks=1),
    "renderer.num_samples": 16, "validation_size": 16, "validation_views": 2, "eval_every": 2, "checkpoint_every": 2,
    "shading.albedo_only_epochs": 0,
    "export": ExportConfig(mesh=MeshExportConfig(resolution=24, density_threshold=5.0), video_frames=2, video_size=16,
                           views=("front",), views_size=16),
}


def red_mug_picture() -> tuple[torch.Tensor, torch.Tensor]:
    """A red box with a light stripe, its alpha: (rgb [32, 32, 3], alpha [32, 32, 1])."""
    image = torch.ones(32, 32, 3)
    image[8:24, 10:22] = torch.tensor([0.8, 0.1, 0.1])
    image[12:14, 10:22] = 0.9
    alpha = torch.zeros(32, 32, 1)
    alpha[8:24, 10:22] = 1.0
    return image, alpha


def write_described_workspace(root: Path, described: dict = SENTENCE) -> Path:
    """What `dreamtext describe` leaves: a square image on white, its mask and describe.json."""
    root.mkdir(parents=True, exist_ok=True)
    image, alpha = red_mug_picture()
    save_image(root / "input.png", image)
    save_image(root / "input_mask.png", alpha)
    (root / "describe.json").write_text(json.dumps(described))
    return root


def tiny_prior(seed: int = 0) -> Prior:
    return Prior.from_pipeline(build_tiny_sd_pipeline(seed=seed))


class ScriptedClip:
    """A CLIP backend whose image-text cosine is a bag-of-words score: "mug" is the best noun, "red"
    helps, every other word costs a little; so selection ends at "An image of red, a mug"."""

    name = "scripted"
    default_vocabulary = "world"

    def encode_image(self, images):
        return torch.eye(2)[:1].expand(images.shape[0], 2)

    def score(self, words: list[str], noun: str) -> float:
        return (0.3 if noun == "mug" else 0.1) + sum(0.05 if w == "red" else -0.01 for w in words if w not in ("a", "an"))

    def encode_text(self, texts):
        scores = []
        for text in texts:
            *words, noun = text.removeprefix("An image of ").replace(",", " ").split()
            scores.append(self.score(words, noun))
        s = torch.tensor(scores, dtype=torch.float64)
        return torch.stack([s, (1 - s**2).sqrt()], dim=1).float()

    def info(self):
        return {"kind": "scripted", "name": self.name, "image_size": 8}
