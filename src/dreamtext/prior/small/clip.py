"""A small CLIP trained contrastively on captioned renders of the procedural world (issue 4, item 3).

The model is a stock transformers `CLIPModel` with the real CLIP BPE vocabulary (49408 tokens), so
`build_clip_tokenizer()` serves it and its text tower loads as Stable Diffusion's frozen
`CLIPTextModel` straight from the saved folder. Only the widths and depths are small.

Training: symmetric InfoNCE with CLIP's learnable temperature. A caption may be true of several images
in a batch ("a red mug" with no view, "a mug", two views of one object), so the targets are soft: each
row's probability mass is spread uniformly over every pairing that is true, read from the words of
caption and image (noun, colour, size, pattern, view) rather than from string equality alone.

Rendering dominates the cost on CPU (about 0.1-0.2 s per 64 px image on 2 cores against a few ms of
model time), so images live in a pool: filled once, then `renders_per_step` fresh renders replace the
oldest each step and batches are drawn from the pool. With `pool_size == renders_per_step ==
batch_size` every step sees only fresh renders; on a GPU that is the cheap setting.

Images enter the vision tower as `pixel_values = 2 * image - 1` (`images_to_pixel_values`), not with
OpenAI's mean/std: the renders are our own, and the diffusion side uses the same [-1, 1] range.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ...utils.io import atomic_write_json, staging_folder
from ...utils.progress import Progress
from ...utils.schedules import warmup_cosine
from ...world.renders import RenderConfig, sample_render_batch
from ...world.vocabulary import NOUNS, describe
from ...world.world import Split
from .captions import (  # noqa: F401  (re-exported: the CLIP's words of images and captions)
    COLOUR_NAMES, SIZE_NAMES, WILDCARD, WORD_FIELDS, caption_from_words, caption_word_ids, image_word_ids, truth_matrix,
)
from .render_pool import WorldRenderPool, render_seed
from ..tokenizer import CLIP_MAX_LENGTH, CLIP_VOCAB_SIZE, build_clip_tokenizer

BOS_TOKEN_ID = CLIP_VOCAB_SIZE - 2  # <|startoftext|>
EOS_TOKEN_ID = CLIP_VOCAB_SIZE - 1  # <|endoftext|>, also the padding token (Stable Diffusion 1.x style)


@dataclass(frozen=True)
class SmallClipConfig:
    """The small CLIP's shape and its training schedule.

    Text tower. vocab_size / max_position: CLIP's BPE (49408 tokens, 77 positions), so the project's
    offline tokenizer and Stable Diffusion's prompt handling work unchanged.
    text_hidden: ours, 64: the token table (49408 x width) is most of the model; at 64 it is 6.3 MB in
        fp16 (12.6 MB at 128), and the world's vocabulary is ~40 words, so width is not the limit.
        It is also the UNet's cross-attention width.
    text_layers / text_heads / text_mlp: ours, 4 / 4 / 4x width (CLIP's ratio): captions are short.
    projection_dim: ours, 128: the shared embedding; small next to the token table.

    Vision tower. image_size: issue 4 (the prior's native 64 px). patch_size: ours, 8: 64 tokens per
    image, enough to tell a mug's handle at 64 px. vision_hidden / layers / heads / mlp: ours,
    128 / 4 / 4 / 4x width (CLIP's ratio), about 0.8 M parameters.

    Training. steps / batch_size: ours, 3000 x 64: a CPU run of tens of minutes; contrastive learning
    wants large batches but the world has only 22 nouns x 12 colours to separate.
    lr: ours, 5e-4 with AdamW betas (0.9, 0.98) and eps 1e-6 (CLIP's, for small transformers).
    weight_decay: CLIP's 0.2 (on matrices only, not on gains, biases or the temperature).
    warmup_steps: ours, 100, then cosine decay to `final_lr_fraction` (CLIP: warmup + cosine).
    plain_caption_prob: ours, 0.25: captions without the view suffix, so "a red mug" alone means the
        object (the diffusion model is prompted both ways).
    partial_caption_prob: ours, 0.2: "a mug" or "a red object", so single words carry meaning on their
        own (zero-shot classification prompts with them).
    pool_size / renders_per_step / render_supersample: ours, 1024 / 8 / 1: see the module docstring;
        1x supersampling is 4x cheaper on CPU and keeps 64 px edges sharp enough.
    seed: ours, 0: weights, render seeds and batch draws all derive from it.
    """

    vocab_size: int = CLIP_VOCAB_SIZE
    max_position: int = CLIP_MAX_LENGTH
    text_hidden: int = 64
    text_layers: int = 4
    text_heads: int = 4
    text_mlp: int = 256
    projection_dim: int = 128
    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    vision_mlp: int = 512
    steps: int = 3000
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.2
    warmup_steps: int = 100
    final_lr_fraction: float = 0.05
    plain_caption_prob: float = 0.25
    partial_caption_prob: float = 0.2
    pool_size: int = 1024
    renders_per_step: int = 8
    render_supersample: int = 1
    seed: int = 0
    freeze_text_tower: bool = False
    """ours: train only the image side (vision tower, projections, temperature) against a fixed text
    tower, e.g. to improve the CLIP after a diffusion model was trained on its text embeddings."""

    @classmethod
    def for_device(cls, device: torch.device) -> "SmallClipConfig":
        """CUDA: batch 256 (contrastive learning wants large batches) for 15000 steps on the stages' shared
        pool (ours: sized for one H100 within 10 minutes); elsewhere the CPU defaults above."""
        return cls(batch_size=256, steps=15000, renders_per_step=0) if device.type == "cuda" else cls()

    @classmethod
    def for_continuing(cls, device: torch.device) -> "SmallClipConfig":
        """Continuing a trained CLIP (`train-prior clip --init-clip`): its image side only, against its
        frozen text tower, so a diffusion model conditioned on that tower stays valid. lr / warmup_steps:
        ours, 3e-4 after 50 steps (the run resumes a trained model, not a random one)."""
        return replace(cls.for_device(device), lr=3e-4, warmup_steps=50, freeze_text_tower=True)

    def with_shape_of(self, model) -> "SmallClipConfig":
        """This schedule with the shape of an existing CLIPModel (one that training continues)."""
        text, vision = model.config.text_config, model.config.vision_config
        return replace(
            self, vocab_size=text.vocab_size, max_position=text.max_position_embeddings, text_hidden=text.hidden_size,
            text_layers=text.num_hidden_layers, text_heads=text.num_attention_heads, text_mlp=text.intermediate_size,
            projection_dim=model.config.projection_dim, image_size=vision.image_size, patch_size=vision.patch_size,
            vision_hidden=vision.hidden_size, vision_layers=vision.num_hidden_layers,
            vision_heads=vision.num_attention_heads, vision_mlp=vision.intermediate_size,
        )

    def render_config(self) -> RenderConfig:
        return RenderConfig(resolution=self.image_size, supersample=self.render_supersample)


def build_small_clip(config: SmallClipConfig = SmallClipConfig()):
    """A randomly initialised `transformers.CLIPModel` of this shape (seeded by `config.seed`)."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(
        vocab_size=config.vocab_size, hidden_size=config.text_hidden, intermediate_size=config.text_mlp,
        num_hidden_layers=config.text_layers, num_attention_heads=config.text_heads,
        max_position_embeddings=config.max_position, projection_dim=config.projection_dim,
        pad_token_id=EOS_TOKEN_ID, bos_token_id=BOS_TOKEN_ID, eos_token_id=EOS_TOKEN_ID,
    )
    vision = CLIPVisionConfig(
        image_size=config.image_size, patch_size=config.patch_size, num_channels=3,
        hidden_size=config.vision_hidden, intermediate_size=config.vision_mlp,
        num_hidden_layers=config.vision_layers, num_attention_heads=config.vision_heads,
        projection_dim=config.projection_dim,
    )
    clip_config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=config.projection_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = CLIPModel(clip_config)
    return model


def images_to_pixel_values(images: Tensor) -> Tensor:
    """Renders in [0, 1] -> the vision tower's input in [-1, 1]."""
    return images * 2 - 1


def encode_images(model, images: Tensor) -> Tensor:
    """Unit image embeddings [B, D] of renders [B, 3, H, W] in [0, 1]."""
    pooled = model.vision_model(pixel_values=images_to_pixel_values(images)).pooler_output
    return F.normalize(model.visual_projection(pooled), dim=-1)


def tokenize(tokenizer, captions: list[str], device) -> Tensor:
    """Token ids padded to the longest caption: with CLIP's causal mask and pooling at the first
    end token, padding never changes the embedding, so no attention mask is needed."""
    return tokenizer(captions, padding=True, truncation=True, max_length=CLIP_MAX_LENGTH, return_tensors="pt").input_ids.to(device)


def encode_texts(model, tokenizer, captions: list[str]) -> Tensor:
    """Unit text embeddings [C, D]."""
    device = next(model.parameters()).device
    pooled = model.text_model(input_ids=tokenize(tokenizer, captions, device)).pooler_output
    return F.normalize(model.text_projection(pooled), dim=-1)


@torch.no_grad()
def rank_captions(model, tokenizer, images: Tensor, captions: list[str]) -> Tensor:
    """Cosine similarities [B, C] of each image with each caption (higher ranks first)."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    return encode_images(model, images.to(device, dtype)).float() @ encode_texts(model, tokenizer, captions).float().T


def soft_contrastive_loss(logits: Tensor, truth: Tensor) -> Tensor:
    """Symmetric InfoNCE of image-by-caption logits [B, C] with targets spread over true pairs.

    truth: [C, B]; its diagonal is always true (each caption was drawn for its own image).
    """
    targets = truth.T.float()  # [B, C]
    image_to_text = -(targets / targets.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    text_to_image = -(targets.T / targets.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


# ---------------------------------------------------------------------------------------------
# The render pool
# ---------------------------------------------------------------------------------------------


@dataclass
class RenderPool:
    """Renders and their word ids; `replace` overwrites the oldest entries (a ring)."""

    images: Tensor  # [P, 3, H, W] in [0, 1]
    words: Tensor  # [P, 5]
    cursor: int = 0

    def __len__(self) -> int:
        return self.images.shape[0]

    def replace(self, images: Tensor, words: Tensor) -> None:
        index = (self.cursor + torch.arange(images.shape[0])) % len(self)
        self.images[index] = images.to(self.images)
        self.words[index] = words
        self.cursor = int(index[-1] + 1) % len(self)


def render_words(count: int, seed: int, split: Split, render: RenderConfig, device) -> tuple[Tensor, Tensor]:
    """`count` renders (on `device`) and their word ids."""
    batch = sample_render_batch(count, seed, split, render, device=device)
    return batch.images, image_word_ids(batch.objects, batch.view_ids)


def fill_pool(config: SmallClipConfig, device, split: Split = "train", chunk: int = 32, progress: Progress | None = None) -> RenderPool:
    """A pool of `config.pool_size` renders, rendered `chunk` at a time (chunk seeds 0, 1, ...)."""
    images, words, done = [], [], 0
    for index in range(math.ceil(config.pool_size / chunk)):
        count = min(chunk, config.pool_size - done)
        batch_images, batch_words = render_words(count, render_seed(config.seed, index), split, config.render_config(), device)
        images.append(batch_images)
        words.append(batch_words)
        done += count
        if progress is not None:
            progress.log(f"render pool {done}/{config.pool_size}")
    return RenderPool(torch.cat(images), torch.cat(words))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def learning_rate_factor(step: int, config: SmallClipConfig, total: int) -> float:
    """Linear warmup, then cosine decay to `final_lr_fraction` at `total`."""
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return warmup_cosine(step, progress, config.warmup_steps, config.final_lr_fraction)


def make_optimizer(model, config: SmallClipConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (CLIP's choice: not on gains, biases or temperature)."""
    if config.freeze_text_tower:
        model.text_model.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6)


MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clips the learned temperature at 1/100


def contrastive_step(model, tokenizer, images: Tensor, words: Tensor, config: SmallClipConfig, generator: torch.Generator) -> Tensor:
    """The loss of one batch: a caption is drawn for each image, then soft symmetric InfoNCE."""
    caption_words = caption_word_ids(words, config.plain_caption_prob, config.partial_caption_prob, generator)
    captions = [caption_from_words(row) for row in caption_words.tolist()]
    logits = model.logit_scale.exp() * encode_images(model, images) @ encode_texts(model, tokenizer, captions).T
    return soft_contrastive_loss(logits, truth_matrix(caption_words, words).to(logits.device))


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_small_clip(model, tokenizer, out_dir: str | Path, metrics: dict | None = None) -> Path:
    """fp16 safetensors + config + tokenizer files, written to a temporary sibling folder and renamed
    into place, so `out_dir` is never half written (an older `out_dir` is replaced whole)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(out_dir)
    try:
        copy.deepcopy(model).to("cpu", torch.float16).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if metrics is not None:
            atomic_write_json(staging / "training_metrics.json", metrics)
        for written in (staging, *staging.iterdir()):  # temp files are private (0600/0700); ship readable ones
            written.chmod(0o755 if written.is_dir() else 0o644)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.replace(out_dir, old / "previous")
            os.replace(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def train_small_clip(
    config: SmallClipConfig = SmallClipConfig(),
    out_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    steps: int | None = None,
    pool: RenderPool | WorldRenderPool | None = None,
    curve_every: int = 50,
    max_seconds: float | None = None,
    model=None,
    init: str | None = None,
) -> dict:
    """Train a small CLIP on train-split renders and save it to `out_dir` (skipped when None).

    pool: renders to start from (e.g. shared by tests); rendered from `config` when None. A
        `WorldRenderPool` (the stages' shared pool) is used as it is: no fresh renders replace it.
    max_seconds: a safety stop; the model trained so far is saved and "steps" says how far it got.
    model: a CLIPModel to continue training (default: a fresh one of `config`'s shape); `init` names
        where it came from, for the metrics.
    Returns metrics: first/last losses (mean of the first/last tenth of steps), a loss curve
    [(step, mean loss since the previous point)], the final temperature, the parameter count, the fp16
    bytes and the seconds spent rendering and in total. The trained model is under "model".
    """
    total = requested = config.steps if steps is None else steps
    device = torch.device(device)
    start = time.perf_counter()
    tokenizer = build_clip_tokenizer()
    model = (build_small_clip(config) if model is None else model).to(device).train()
    optimizer = make_optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: learning_rate_factor(s, config, total))
    generator = torch.Generator().manual_seed(config.seed)

    with Progress(total=total, description="small clip", enabled=progress) as bar:
        render_seconds = time.perf_counter()
        renders_per_step = config.renders_per_step
        if isinstance(pool, WorldRenderPool):
            pool, renders_per_step = RenderPool(pool.images.float() / 255, pool.words.clone()), 0
        pool = pool if pool is not None else fill_pool(config, device, progress=bar)
        pool.images = pool.images.to(device)
        next_chunk = math.ceil(len(pool) / 32)  # chunk seeds after the ones `fill_pool` used
        render_seconds = time.perf_counter() - render_seconds
        losses: list[float] = []
        for step in range(total):
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                bar.log(f"small clip: stopped at step {step} after {max_seconds:.0f} s (max_seconds)")
                break
            if renders_per_step:
                tick = time.perf_counter()
                pool.replace(*render_words(renders_per_step, render_seed(config.seed, next_chunk + step), "train", config.render_config(), device))
                render_seconds += time.perf_counter() - tick
            index = torch.randperm(len(pool), generator=generator)[: config.batch_size]
            loss = contrastive_step(model, tokenizer, pool.images[index.to(device)], pool.words[index], config, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            losses.append(float(loss.detach()))
            bar.update(step + 1, loss=losses[-1], temperature=float(model.logit_scale.detach().exp()))

    total = len(losses)
    tenth = max(1, total // 10)
    metrics = {
        "steps": total,
        "loss_first": sum(losses[:tenth]) / tenth,
        "loss_last": sum(losses[-tenth:]) / tenth,
        "loss_curve": [(min(s + curve_every, total), sum(losses[s : s + curve_every]) / len(losses[s : s + curve_every])) for s in range(0, total, curve_every)],
        "logit_scale": float(model.logit_scale.detach().exp()),
        "parameters": parameter_count(model),
        "fp16_bytes": 2 * parameter_count(model),
        "render_seconds": render_seconds,
        "seconds": time.perf_counter() - start,
        "config": asdict(replace(config, steps=requested, pool_size=len(pool), renders_per_step=renders_per_step)),
        "init": init,
    }
    model.eval()
    if out_dir is not None:
        save_small_clip(model, tokenizer, out_dir, metrics)
    return {**metrics, "model": model}


# ---------------------------------------------------------------------------------------------
# Zero-shot evaluation
# ---------------------------------------------------------------------------------------------


def noun_prompts() -> list[str]:
    return [describe(noun, "") for noun in NOUNS]  # "a mug"


def colour_prompts() -> list[str]:
    return [describe("object", colour) for colour in COLOUR_NAMES]  # "a red object", "an orange object"


@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, n: int, seed: int, split: Split = "dev", render: RenderConfig | None = None, chunk: int = 32) -> dict:
    """Top-1 accuracy of classifying `n` renders of `split` objects among all nouns ("a mug") and all
    colours ("a red object"); renders at the model's image size (1x supersampling unless `render`)."""
    device = next(model.parameters()).device
    render = render or RenderConfig(resolution=model.config.vision_config.image_size, supersample=1)
    noun_hits = colour_hits = 0
    nouns_text, colours_text = noun_prompts(), colour_prompts()
    for index in range(math.ceil(n / chunk)):
        count = min(chunk, n - index * chunk)
        batch = sample_render_batch(count, render_seed(seed, index), split, render, device=device)
        words = image_word_ids(batch.objects, batch.view_ids).to(device)
        noun_hits += int((rank_captions(model, tokenizer, batch.images, nouns_text).argmax(1) == words[:, 0]).sum())
        colour_hits += int((rank_captions(model, tokenizer, batch.images, colours_text).argmax(1) == words[:, 1]).sum())
    return {"noun_top1": noun_hits / n, "colour_top1": colour_hits / n, "count": n}
