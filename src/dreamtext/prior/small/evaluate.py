"""How good the built-in prior is (issue 4, item 6): images sampled for held-out captions, classified
by the small CLIP.

For each of `count` dev-split objects (attribute combinations never trained on) the diffusion model
samples an image of its plain caption ("a small striped blue cube"); the small CLIP then classifies the
image among every noun ("a cube") and every colour ("a blue object"). Noun and colour top-1 accuracy
say whether the prior draws what it is asked for. The same classification of true renders of the same
objects is reported beside it (`clip_on_renders`): the ceiling the classifier itself allows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ...world.renders import RenderConfig, sample_render_batch
from ...world.vocabulary import NOUNS
from ...world.world import sample_object


@dataclass(frozen=True)
class PriorEvalConfig:
    """count: ours, 256 dev objects (about 12 per noun). steps: ours, 30 DDIM steps. guidance: Stable
    Diffusion's usual 7.5. batch_size: ours, 64 images per pipeline call. seed: ours, 0."""

    count: int = 256
    steps: int = 30
    guidance: float = 7.5
    batch_size: int = 64
    seed: int = 0


def dev_objects(count: int, seed: int) -> list:
    return [sample_object(seed * 100_003 + i, "dev") for i in range(count)]


def _accuracy(model, tokenizer, images: Tensor, objects: list) -> tuple[Tensor, Tensor]:
    """Per-image noun and colour hits (bool) of CLIP's zero-shot classification."""
    from .clip import COLOUR_NAMES, colour_prompts, noun_prompts, rank_captions

    nouns = torch.tensor([NOUNS.index(o.noun) for o in objects], device=images.device)
    colours = torch.tensor([COLOUR_NAMES.index(o.colour) for o in objects], device=images.device)
    noun_hits = rank_captions(model, tokenizer, images, noun_prompts()).argmax(1) == nouns
    colour_hits = rank_captions(model, tokenizer, images, colour_prompts()).argmax(1) == colours
    return noun_hits.cpu(), colour_hits.cpu()


@torch.no_grad()
def evaluate_prior(pipeline_dir: str | os.PathLike, clip_dir: str | os.PathLike, config: PriorEvalConfig = PriorEvalConfig(),
                   device: torch.device | str = "cpu") -> dict:
    """{"noun_top1", "colour_top1", "clip_on_renders": {...}, "per_noun": {noun: top1}, "count"} (see module doc)."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPModel

    from ..builtin import CLIP_WEIGHTS, load_builtin_clip
    from ..tokenizer import build_clip_tokenizer

    device = torch.device(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(pipeline_dir, local_files_only=True, use_safetensors=True, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    if (Path(clip_dir) / CLIP_WEIGHTS).is_file():  # the shipped layout: the text tower is the pipeline's text encoder
        clip = load_builtin_clip(device, clip_dir, Path(pipeline_dir) / "text_encoder")
    else:
        clip = CLIPModel.from_pretrained(clip_dir, local_files_only=True, use_safetensors=True, dtype=torch.float32).to(device).eval()
    tokenizer = build_clip_tokenizer()
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    objects = dev_objects(config.count, config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    sampled_noun, sampled_colour, render_noun, render_colour = [], [], [], []
    for start in range(0, config.count, config.batch_size):
        batch = objects[start : start + config.batch_size]
        images = pipe([o.caption() for o in batch], num_inference_steps=config.steps, guidance_scale=config.guidance,
                      height=size, width=size, generator=generator, output_type="pt").images.float()
        hits = _accuracy(clip, tokenizer, images.to(device), batch)
        sampled_noun.append(hits[0]), sampled_colour.append(hits[1])
        renders = sample_render_batch(len(batch), config.seed * 7919 + start, "dev",
                                      RenderConfig(resolution=size), device="cpu")
        hits = _accuracy(clip, tokenizer, renders.images.to(device), renders.objects)
        render_noun.append(hits[0]), render_colour.append(hits[1])

    noun_hits, colour_hits = torch.cat(sampled_noun).float(), torch.cat(sampled_colour).float()
    per_noun = {}
    for noun in NOUNS:
        mask = torch.tensor([o.noun == noun for o in objects])
        if mask.any():
            per_noun[noun] = round(float(noun_hits[mask].mean()), 3)
    return {
        "noun_top1": float(noun_hits.mean()), "colour_top1": float(colour_hits.mean()),
        "clip_on_renders": {"noun_top1": float(torch.cat(render_noun).float().mean()),
                            "colour_top1": float(torch.cat(render_colour).float().mean())},
        "per_noun": per_noun, "count": config.count, "steps": config.steps, "guidance": config.guidance,
    }


def contact_sheet(pipeline_dir: str | os.PathLike, prompts: list[str], out_path: str | os.PathLike, per_prompt: int = 4,
                  device: torch.device | str = "cpu", steps: int = 30, guidance: float = 7.5, seed: int = 0) -> None:
    """A grid PNG: one row per prompt, `per_prompt` samples each."""
    from diffusers import StableDiffusionPipeline

    from ...utils.images import save_image

    device = torch.device(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(pipeline_dir, local_files_only=True, use_safetensors=True, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    images = pipe([p for p in prompts for _ in range(per_prompt)], num_inference_steps=steps, guidance_scale=guidance,
                  height=size, width=size, generator=torch.Generator().manual_seed(seed), output_type="pt").images.float()
    rows = images.reshape(len(prompts), per_prompt, 3, size, size).permute(0, 3, 1, 4, 2)  # [P, H, K, W, 3]
    save_image(out_path, rows.reshape(len(prompts) * size, per_prompt * size, 3).cpu())
