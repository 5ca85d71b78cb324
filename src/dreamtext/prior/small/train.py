"""Training the small prior's VAE and UNet on world renders, and the `dreamtext train-prior` stages.

Order (as Stable Diffusion): CLIP (`clip.py`), then the VAE, then the UNet on frozen VAE latents and
frozen CLIP text embeddings, then `assemble` writes the diffusers pipeline folder. Everything is
reproducible from `seed`: model initialisation, the render pool, minibatches, noise, timesteps and
caption dropout all come from seeded generators.

Data: one pool of world renders (`render_pool.py`, traced on CPU worker processes), cached in the
output folder and shared by all three stages.

Schedules (`*.for_device`): on CPU a smoke-sized run (a few hundred steps on a small pool) that shows
the losses falling, not a usable prior; on CUDA the run sized for one H100 within 10 minutes a stage
(issue 4). Every stage also takes `max_seconds`, a safety stop that saves what it has trained.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from ...errors import DreamtextError
from ...utils.device import resolve_device
from ...utils.ema import update_ema
from ...utils.io import atomic_torch_save, atomic_write_json
from ...utils.progress import Progress
from ...utils.schedules import warmup_cosine
from ..builtin import BUILTIN_PIPELINE_DIR, load_builtin_clip, require_builtin_prior
from ..camera import camera_encoding, drop_cameras, takes_camera, with_camera_input
from ..clip_backends import load_small_clip
from ..latents import images_to_latents
from ..loading import BUILTIN_MODEL
from .assemble import (
    assemble_pipeline,
    build_prior_tokenizer,
    load_clip_text_encoder,
    same_model,
    save_pretrained_atomically,
)
from .captions import caption_from_words, caption_word_ids
from .clip import SmallClipConfig, train_small_clip
from .diffusion import (
    SmallUnetConfig,
    SmallVaeConfig,
    build_small_unet,
    build_small_vae,
    build_training_scheduler,
    diffusion_loss,
    distillation_loss,
    drop_captions,
    encode_captions,
    latent_scaling_factor,
    vae_loss,
    with_attention_heads,
)
from .render_pool import PoolSpec, WorldRenderPool, cached_world_pool, render_world_pool
from .train_camera import CameraTrainConfig, encode_pool, train_camera_classifier

Stage = Literal["clip", "vae", "unet", "assemble", "all", "camera"]
STAGE_FOLDERS = {"clip": "clip", "vae": "vae", "unet": "unet", "assemble": "pipeline"}
# ours: the camera classifier's renders on CPU (about 20 minutes of tracing on 2 cores, cached): its held-out
# accuracy was still climbing with data (shared/notes/camera-classifier-probe.md), and tracing is cheap.
CAMERA_POOL_SIZE, CAMERA_HELDOUT_SIZE = 24576, 2048


@dataclass(frozen=True)
class VaeTrainConfig:
    """steps / batch_size: see the module docstring (CPU smoke run, H100 run).
    lr: ours, 5e-4 with AdamW: a 2.7M-parameter autoencoder converges far faster than LDM's (4.5e-6 x batch).
    weight_decay: ours, 0: reconstructions, not generalisation, are the goal; the KL term regularises.
    scale_images: ours, 256 renders (capped by the pool) to estimate the latents' std, as SD used a batch.
    """

    steps: int = 200
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.0
    scale_images: int = 256

    @classmethod
    def for_device(cls, device: torch.device) -> "VaeTrainConfig":
        return cls(steps=6000, batch_size=128) if device.type == "cuda" else cls()


@dataclass(frozen=True)
class UnetTrainConfig:
    """steps / batch_size: see the module docstring.
    lr: ours, 3e-4 (SD: 1e-4 at far larger width; small UNets take larger steps).
    weight_decay: Stable Diffusion's AdamW, 1e-2.
    caption_dropout: Stable Diffusion 1.5 / 2.x, 10% empty prompts for classifier-free guidance.
    plain_caption_prob / partial_caption_prob: ours, 0.25 / 0.1 (as the small CLIP): captions without the
        view suffix, and noun-only or colour-only ones, so the model also answers "a red mug" and "a mug".
    grad_clip: ours, 1.0: guards the first steps of a freshly initialised UNet.
    ema_decay: ours, 0.9995 with diffusers' EMAModel warm-up min(decay, (1 + n) / (10 + n)): the saved
        UNet is the exponential moving average of the trained one, as diffusion models are released.
    warmup_steps / final_lr_fraction: a fresh UNet trains at a constant rate (0 / 1.0, as the shipped one
        was); a continued one (`for_continuing`) warms up, then follows a cosine down to the fraction.
        Under a time limit the cosine follows whichever of steps and time runs out first, so a run
        stopped by the clock still ends annealed.
    camera_dropout: ours, 0.1 (as the caption dropout), for a camera-aware UNet only: the share of images
        trained with the unknown camera (`prior.camera.null_camera_encoding`), so the same UNet still
        serves callers that have no camera (a photo's descriptor training, sampling without one). It is
        drawn independently of the caption dropout, so 1% of images have neither.
    new_input_lr_multiplier: ours, 10 (50 in `for_camera`): the camera input's MLP (`class_embedding`), new and
        starting at zero output, trains at this multiple of the rate. At the base rate (2e-4) its last layer's
        weights had a norm of 0.37 after 273 CPU steps of 32 (the timestep MLP's: 9.4) and samples did not
        change with the camera at all.
    """

    steps: int = 200
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 1e-2
    caption_dropout: float = 0.1
    plain_caption_prob: float = 0.25
    partial_caption_prob: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.9995
    warmup_steps: int = 0
    final_lr_fraction: float = 1.0
    camera_dropout: float = 0.1
    new_input_lr_multiplier: float = 10.0

    @classmethod
    def for_device(cls, device: torch.device) -> "UnetTrainConfig":
        return cls(steps=20000, batch_size=256) if device.type == "cuda" else cls()

    @classmethod
    def for_continuing(cls, device: torch.device) -> "UnetTrainConfig":
        """Continuing a trained UNet (`train-prior unet --init-unet`). ours: batch 512 on CUDA (on an H200 a
        step took 131 ms of which 81 ms GPU work: the step is bound by kernel launches and autocast copies,
        about 2300 launches, so samples are cheap), a lower peak rate than a fresh run (2e-4) with 100
        warm-up steps for the new optimiser state, and a cosine to 5%: the shipped UNet was trained at a
        constant rate, and annealing it is the cheapest gain."""
        base = cls.for_device(device)
        batch = 512 if device.type == "cuda" else base.batch_size
        warmup = 100 if device.type == "cuda" else 10
        return replace(base, batch_size=batch, lr=2e-4, warmup_steps=warmup, final_lr_fraction=0.05)

    @classmethod
    def for_camera(cls, device: torch.device) -> "UnetTrainConfig":
        """Continuing a UNet that gains the camera input (`train-prior unet --init-unet --camera`). ours: the
        camera has to carry the view, so 75% of the captions leave the view out (plain 0.65 + partial 0.1,
        against 0.35), and the new input trains at 50x the rate. Measured on 2 CPU cores (batch 32): with
        the captions of `for_continuing` and 10x, after 950 steps the noise estimates for the front and the
        back camera differed by 0.6% at t = 200 and 0.2% at t = 800, and samples did not turn with the
        camera."""
        return replace(cls.for_continuing(device), plain_caption_prob=0.65, new_input_lr_multiplier=50.0)

    def lr_factor(self, step: int, steps: int, elapsed: float, max_seconds: float | None) -> float:
        """The factor on `lr` at 0-based `step` of a `steps`-step run, `elapsed` seconds in."""
        progress = (step - self.warmup_steps) / max(1, steps - self.warmup_steps)
        if max_seconds is not None:
            progress = max(progress, elapsed / max_seconds)
        return warmup_cosine(step, progress, self.warmup_steps, self.final_lr_fraction)


LOSS_READ_EVERY = 25  # steps between progress reports of the UNet loss; each one syncs the device


def default_pool_size(device: torch.device) -> int:
    """ours: 256 renders for a CPU smoke run; 32768 (about 1.5 per caption the world can say) on CUDA."""
    return 32768 if device.type == "cuda" else 256


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (H100 tensor cores); plain fp32 elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


def _as_device(device: torch.device | str) -> torch.device:
    return resolve_device(device) if isinstance(device, str) else device


def _out_of_time(start: float, max_seconds: float | None) -> bool:
    return max_seconds is not None and time.perf_counter() - start > max_seconds


def _summary(losses: list[float], start: float, out_dir, model, **extra) -> dict:
    return {
        "steps": len(losses), "first_loss": losses[0] if losses else float("nan"),
        "last_loss": sum(losses[-50:]) / len(losses[-50:]) if losses else float("nan"),
        "parameters": sum(p.numel() for p in model.parameters()), "seconds": time.perf_counter() - start,
        "out_dir": str(out_dir), **extra,
    }


def _small_pool(resolution: int, steps: int, batch_size: int, seed: int, progress: bool) -> WorldRenderPool:
    """A pool for direct calls without one: as many renders as the run draws, at most the CPU default."""
    count = min(default_pool_size(torch.device("cpu")), max(1, steps * batch_size))
    return render_world_pool(PoolSpec(count, seed, resolution), progress=progress)


def train_small_vae(
    config: SmallVaeConfig = SmallVaeConfig(),
    out_dir: str | os.PathLike = "prior/vae",
    device: torch.device | str = "cpu",
    progress: bool = True,
    steps: int | None = None,
    seed: int = 0,
    train: VaeTrainConfig | None = None,
    pool: WorldRenderPool | None = None,
    max_seconds: float | None = None,
) -> dict:
    """Train the AutoencoderKL (L1 + LDM's light KL), store 1/std of its latents as `scaling_factor`, save it.

    Returns {"steps", "first_loss", "last_loss", "scaling_factor", "parameters", "seconds", "out_dir"}.
    """
    device = _as_device(device)
    train = train or VaeTrainConfig.for_device(device)
    steps = train.steps if steps is None else steps
    pool = pool or _small_pool(config.image_size, steps, train.batch_size, seed, progress)
    if pool.resolution != config.image_size:
        raise DreamtextError(f"the render pool is {pool.resolution} px but the VAE expects {config.image_size} px")

    torch.manual_seed(seed)
    vae = build_small_vae(config).to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    start = time.perf_counter()
    with Progress(total=steps, description="vae", enabled=progress) as bar:
        for step in range(1, steps + 1):
            if _out_of_time(start, max_seconds):
                bar.log(f"vae: stopped after {step - 1} steps (max_seconds {max_seconds:.0f})")
                break
            images, _ = pool.sample(train.batch_size, generator, device)
            with _autocast(device):
                loss, l1 = vae_loss(vae, images, config.kl_weight, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            bar.update(step, loss=losses[-1], l1=float(l1.detach()))

    vae.eval()
    scale_images = pool.images[: train.scale_images].to(device).float() / 255
    scaling = latent_scaling_factor(vae, scale_images, generator)
    vae.register_to_config(scaling_factor=scaling)
    save_pretrained_atomically(vae, out_dir)
    return _summary(losses, start, out_dir, vae, scaling_factor=scaling)


def unet_image_size(unet_config, vae_config) -> int:
    """The image size a UNet works at: its latent size times the VAE's downsampling (configs as mappings:
    a diffusers model's `.config` or a saved config.json)."""
    return int(unet_config["sample_size"]) * 2 ** (len(vae_config["block_out_channels"]) - 1)


def load_frozen_vae(vae_dir: str | os.PathLike, device: torch.device):
    from diffusers import AutoencoderKL

    if not (Path(vae_dir) / "config.json").is_file():
        raise DreamtextError(f"no trained VAE in {str(vae_dir)!r}; run `dreamtext train-prior vae` first")
    vae = AutoencoderKL.from_pretrained(vae_dir, local_files_only=True, use_safetensors=True)
    return vae.to(device).eval().requires_grad_(False)


def training_captions(words: Tensor, train: UnetTrainConfig, generator: torch.Generator) -> list[str]:
    """A caption for each image: full with its view, plain, or partial (see `UnetTrainConfig`), some dropped."""
    said = caption_word_ids(words, train.plain_caption_prob, train.partial_caption_prob, generator)
    return drop_captions([caption_from_words(row) for row in said.tolist()], train.caption_dropout, generator)


@torch.no_grad()
def training_inputs(vae, text_encoder, tokenizer, images: Tensor, captions: list[str],
                    generator: torch.Generator, token_cache: dict | None = None) -> tuple[Tensor, Tensor]:
    """Scaled VAE latents (sampled from the posterior, as SD) and the captions' text embeddings."""
    latents = images_to_latents(vae, images, sample=True, generator=generator)
    return latents, encode_captions(text_encoder, tokenizer, captions, token_cache)


def unet_parameter_groups(unet, train: UnetTrainConfig) -> list[dict]:
    """The UNet's parameters, the camera input's (`class_embedding`) at `train.new_input_lr_multiplier`."""
    new = [p for name, p in unet.named_parameters() if name.startswith("class_embedding.")]
    rest = [p for name, p in unet.named_parameters() if not name.startswith("class_embedding.")]
    groups = [{"params": rest, "lr_multiplier": 1.0}]
    if new:
        groups.append({"params": new, "lr_multiplier": train.new_input_lr_multiplier})
    return groups


def train_small_unet(
    config: SmallUnetConfig = SmallUnetConfig(),
    out_dir: str | os.PathLike = "prior/unet",
    vae_dir: str | os.PathLike = "prior/vae",
    clip_dir: str | os.PathLike = "prior/clip",
    device: torch.device | str = "cpu",
    progress: bool = True,
    steps: int | None = None,
    seed: int = 0,
    train: UnetTrainConfig | None = None,
    pool: WorldRenderPool | None = None,
    tokenizer_cache: str | os.PathLike | None = None,
    max_seconds: float | None = None,
    unet=None,
    init: str | None = None,
    state_path: str | os.PathLike | None = None,
    checkpoint_seconds: float = 600.0,
    teacher=None,
) -> dict:
    """Train the UNet to predict noise on frozen VAE latents, conditioned on frozen CLIP text embeddings
    (and on each render's camera when the UNet takes one, `prior.camera`); save its EMA weights. Returns
    {"steps", "first_loss", "last_loss", "parameters", "seconds", "out_dir", "schedule", "init"}.

    unet: a trained `UNet2DConditionModel` to continue (default: a fresh one of `config`); it must have
        been trained on this VAE and text tower. `init` names where it came from, for the metrics.
    state_path: where the whole training state (weights, EMA, optimiser, random stream, step, clock) is
        saved every `checkpoint_seconds` and at the end, with the EMA weights written to `out_dir` each
        time; a run that finds this file continues from it (long CPU runs, killed or spread over
        sessions). `max_seconds` then counts the clock of every part of the run together.
    teacher: a frozen UNet on the same VAE and text tower whose noise predictions, plain and guided, are
        the targets (`distillation_loss`), e.g. the UNet `unet` was re-laid out from (`with_attention_heads`).
    """
    device = _as_device(device)
    train = train or UnetTrainConfig.for_device(device)
    steps = train.steps if steps is None else steps
    vae = load_frozen_vae(vae_dir, device)
    text_encoder = load_clip_text_encoder(clip_dir).to(device)
    tokenizer = build_prior_tokenizer(text_encoder, tokenizer_cache)
    text_width = int(text_encoder.config.hidden_size)
    if unet is not None and unet.config.cross_attention_dim != text_width:
        raise DreamtextError(f"the UNet to continue attends to {unet.config.cross_attention_dim}-wide text but the "
                             f"text tower in {str(clip_dir)!r} is {text_width} wide; continue it with its own pipeline")
    image_size = unet_image_size({"sample_size": config.sample_size} if unet is None else unet.config, vae.config)
    pool = pool or _small_pool(image_size, steps, train.batch_size, seed, progress)
    if pool.resolution != image_size:
        raise DreamtextError(f"the render pool is {pool.resolution} px but the UNet's latents need {image_size} px")
    if device.type == "cuda":  # a few hundred MB of uint8: minibatches are then gathered on the GPU
        pool = WorldRenderPool(pool.images.to(device), pool.words, pool.cameras)

    torch.manual_seed(seed)
    unet = (build_small_unet(config, text_width) if unet is None else unet.float()).to(device).train()
    with_camera = takes_camera(unet)
    if with_camera and pool.cameras is None:
        raise DreamtextError("the UNet takes the camera but the render pool has none; render a new pool")
    if teacher is not None:
        if with_camera:
            raise DreamtextError("distilling from a teacher applies to a UNet without the camera input")
        teacher = teacher.float().to(device).eval().requires_grad_(False)
        with torch.no_grad():
            unconditional = encode_captions(text_encoder, tokenizer, [""])
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    scheduler = build_training_scheduler()
    optimizer = torch.optim.AdamW(unet_parameter_groups(unet, train), lr=train.lr, weight_decay=train.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    first_step, clock_before, losses = 1, 0.0, []  # losses: read back at checkpoints, not every step (GPU sync)
    state_path = None if state_path is None else Path(state_path)
    if state_path is not None and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        for group, fresh in zip(optimizer.param_groups, unet_parameter_groups(unet, train)):
            group["lr_multiplier"] = fresh["lr_multiplier"]  # the schedule given now, not the saved one's
        generator.set_state(state["generator"].cpu())
        first_step, clock_before = int(state["step"]) + 1, float(state["seconds"])
        losses = [torch.tensor(value) for value in state["losses"]]
    token_cache: dict = {}
    start = time.perf_counter() - clock_before
    last_checkpoint = time.perf_counter()

    def checkpoint(step: int) -> None:
        save_pretrained_atomically(ema, out_dir)
        if state_path is not None:
            atomic_torch_save(state_path, {
                "unet": unet.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(), "step": step, "seconds": time.perf_counter() - start,
                "losses": torch.stack(losses).float().tolist() if losses else [],
            })

    step = first_step - 1
    with Progress(total=steps, start=first_step - 1, description="unet", enabled=progress) as bar:
        for step in range(first_step, steps + 1):
            if _out_of_time(start, max_seconds):
                bar.log(f"unet: stopped after {step - 1} steps (max_seconds {max_seconds:.0f})")
                step -= 1
                break
            factor = train.lr_factor(step - 1, steps, time.perf_counter() - start, max_seconds)
            for group in optimizer.param_groups:
                group["lr"] = train.lr * factor * group["lr_multiplier"]
            images, words, cameras = pool.sample_with_cameras(train.batch_size, generator, device)
            captions = training_captions(words, train, generator)
            latents, embeddings = training_inputs(vae, text_encoder, tokenizer, images, captions, generator, token_cache)
            labels = None
            if with_camera:
                labels = drop_cameras(camera_encoding(*cameras.cpu().unbind(-1)), train.camera_dropout, generator).to(device)
            with _autocast(device):
                if teacher is None:
                    loss = diffusion_loss(unet, scheduler, latents, embeddings, generator, class_labels=labels)
                else:
                    loss = distillation_loss(unet, teacher, scheduler, latents, embeddings, unconditional, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), train.grad_clip)
            optimizer.step()
            update_ema(ema, unet, train.ema_decay, step)
            losses.append(loss.detach())
            if step % LOSS_READ_EVERY == 0 or step == steps:  # reading a loss waits for the GPU to finish
                bar.update(step, loss=float(losses[-1]))
            if time.perf_counter() - last_checkpoint > checkpoint_seconds:
                checkpoint(step)
                last_checkpoint = time.perf_counter()

    checkpoint(step)
    values = torch.stack(losses).float().tolist() if losses else []
    return _summary(values, start, out_dir, ema, schedule=asdict(replace(train, steps=steps)), init=init,
                    pool_size=len(pool), camera=with_camera, distilled=teacher is not None)


def load_clip_to_continue(source: str):
    """The CLIPModel (fp32, CPU) that `train-prior clip --init-clip` continues: "builtin" (the shipped
    CLIP) or a folder that `train-prior clip` wrote."""
    if source == BUILTIN_MODEL:
        require_builtin_prior()
        model = load_builtin_clip("cpu")
    else:
        model = load_small_clip(Path(source).expanduser()).model.float()  # loaded frozen, for inference
    return model.requires_grad_(True)


def pipeline_to_continue(source: str, flag: str = "--init-unet") -> Path:
    """The Stable Diffusion folder whose UNet `train-prior unet --init-unet` continues: "builtin" (the
    shipped prior) or a pipeline folder that `train-prior` assembled. Its VAE and text encoder stay frozen."""
    if source == BUILTIN_MODEL:
        require_builtin_prior()
        return BUILTIN_PIPELINE_DIR
    folder = Path(source).expanduser()
    missing = [part for part in ("unet", "vae", "text_encoder") if not (folder / part / "config.json").is_file()]
    if missing:
        raise DreamtextError(f"{flag} {source!r} is not a Stable Diffusion folder (no {', '.join(missing)}); "
                             "give builtin or the pipeline/ folder that `dreamtext train-prior` assembled")
    return folder


def pipeline_image_size(pipeline_dir: Path) -> int:
    """The image size a pipeline's UNet works at, read from its saved configs."""
    configs = [json.loads((pipeline_dir / part / "config.json").read_text()) for part in ("unet", "vae")]
    return unet_image_size(*configs)


def load_unet_to_continue(pipeline_dir: Path):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(pipeline_dir / "unet", local_files_only=True, use_safetensors=True)


def train_prior(
    stage: Stage,
    out_root: str | os.PathLike,
    device: str = "auto",
    steps: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = True,
    pool_size: int | None = None,
    workers: int | None = None,
    max_minutes: float | None = None,
    init_clip: str | None = None,
    init_unet: str | None = None,
    camera: bool = False,
    attention_head_dim: tuple[int, ...] | None = None,
    distill: bool = False,
    teacher: str | None = None,
) -> dict[str, dict]:
    """Run one stage (or `all`, in order) with its outputs in `out_root`/{clip,vae,unet,pipeline}.

    The render pool (`pool_size` renders, default by device) is cached in `out_root`/renders and shared
    by the stages; `workers` CPU processes trace it. `max_minutes` is each stage's safety stop.
    `init_clip` ("builtin" or a `train-prior clip` folder): the clip stage continues that CLIP's image
    side against its frozen text tower (`SmallClipConfig.for_continuing`) instead of training a new one.
    `init_unet` ("builtin" or a pipeline folder): the unet stage continues that pipeline's UNet on its own
    frozen VAE and text encoder (`UnetTrainConfig.for_continuing`), then assembles `out_root`/pipeline
    from the three, ready for `package_prior`.
    `camera`: the continued UNet gains the camera input (`prior.camera.with_camera_input`, starting exactly
    as the UNet it continues) and trains on each render's true camera; `attention_head_dim` optionally
    gives it another head layout. `distill`: the continued UNet learns the UNet it continues (its plain
    and guided noise predictions on the same inputs, `distillation_loss`) instead of the renders' noise,
    so that a new head layout keeps the prior's function; `teacher` ("builtin" or a pipeline folder with
    the same VAE and text encoder) is learned instead, e.g. to go on distilling a student continued with
    `init_unet` from the UNet it was distilled from. The unet stage keeps its whole state in
    `out_root`/unet-state.pt every ten minutes and continues from it when run again.
    """
    root = Path(out_root)
    if root.exists() and not root.is_dir():
        raise DreamtextError(f"--out {str(root)!r} is a file; give a folder for the prior's stages")
    if stage == "camera":
        return {"camera": train_camera_stage(root, init_unet or BUILTIN_MODEL, resolve_device(device), steps, seed,
                                             batch_size, pool_size, workers, progress)}
    if init_unet is not None and stage != "unet":
        raise DreamtextError(f"--init-unet continues a UNet; it applies to the unet stage, not {stage!r}")
    if (camera or distill or attention_head_dim is not None) and init_unet is None:
        raise DreamtextError("--camera, --distill and --attention-head-dim apply to a continued UNet; give --init-unet too")
    if camera and distill:
        raise DreamtextError("--distill keeps the prior's function, --camera changes it; give one of them")
    if teacher is not None and not distill:
        raise DreamtextError("--teacher names the UNet that --distill learns; give --distill too")
    source = pipeline_to_continue(init_unet) if init_unet is not None else None
    teacher_dir = None if teacher is None else pipeline_to_continue(teacher, "--teacher")
    if teacher_dir is not None and not all(same_model(teacher_dir / part, source / part) for part in ("vae", "text_encoder")):
        raise DreamtextError(f"--teacher {teacher!r} has another VAE or text encoder than --init-unet {init_unet!r}; "
                             "distil from a pipeline trained on the same ones")
    torch_device = resolve_device(device)
    folders = {name: root / folder for name, folder in STAGE_FOLDERS.items()}
    # the parts the UNet trains on: this run's own stages, or the frozen ones of the pipeline it continues
    vae_dir, text_dir = (folders["vae"], folders["clip"]) if source is None else (source / "vae", source / "text_encoder")
    max_seconds = None if max_minutes is None else 60 * max_minutes
    if stage == "all":
        stages = ("clip", "vae", "unet", "assemble")
    elif source is not None:  # a continued UNet is only usable with the parts it was trained on
        stages = ("unet", "assemble")
    else:
        stages = (stage,)
    pool = None
    if any(s != "assemble" for s in stages):
        resolution = SmallVaeConfig().image_size if source is None else pipeline_image_size(source)
        spec = PoolSpec(pool_size or default_pool_size(torch_device), seed, resolution)
        pool = cached_world_pool(root / "renders", spec, workers, progress)
    results: dict[str, dict] = {}
    for current in stages:
        if current == "clip":
            if init_clip is None:
                continued, clip_config = None, SmallClipConfig.for_device(torch_device)
            else:
                continued = load_clip_to_continue(init_clip)
                clip_config = SmallClipConfig.for_continuing(torch_device).with_shape_of(continued)
            clip_config = replace(clip_config, seed=seed)
            if batch_size is not None:
                clip_config = replace(clip_config, batch_size=batch_size)
            results["clip"] = train_small_clip(clip_config, folders["clip"], torch_device, progress, steps, pool,
                                               max_seconds=max_seconds, model=continued, init=init_clip)
            results["clip"].pop("model")
            results["clip"]["out_dir"] = str(folders["clip"])
        elif current in ("vae", "unet"):
            if current == "vae":
                schedule = VaeTrainConfig.for_device(torch_device)
            elif source is None:
                schedule = UnetTrainConfig.for_device(torch_device)
            elif camera:
                schedule = UnetTrainConfig.for_camera(torch_device)
            else:
                schedule = UnetTrainConfig.for_continuing(torch_device)
            if batch_size is not None:
                schedule = replace(schedule, batch_size=batch_size)
            if current == "vae":
                results["vae"] = train_small_vae(SmallVaeConfig(), folders["vae"], torch_device, progress, steps,
                                                 seed, schedule, pool, max_seconds)
            else:
                continued = None if source is None else load_unet_to_continue(source)
                if not distill:
                    teacher_unet = None
                else:  # the UNet it continues, before any re-layout, unless --teacher names another
                    teacher_unet = copy.deepcopy(continued) if teacher_dir is None else load_unet_to_continue(teacher_dir)
                if continued is not None and camera and not takes_camera(continued):
                    continued = with_camera_input(continued, attention_head_dim)
                elif continued is not None and attention_head_dim is not None:
                    continued = with_attention_heads(continued, attention_head_dim)
                results["unet"] = train_small_unet(SmallUnetConfig(), folders["unet"], vae_dir, text_dir, torch_device,
                                                   progress, steps, seed, schedule, pool, max_seconds=max_seconds,
                                                   unet=continued, init=init_unet, state_path=root / "unet-state.pt",
                                                   teacher=teacher_unet)
        elif camera and source is not None:  # the text-only UNet it continued stays the pipeline's `unet`
            out = assemble_pipeline(vae_dir, source / "unet", text_dir, folders["assemble"], camera_unet_dir=folders["unet"])
            results["assemble"] = {"out_dir": str(out)}
        else:
            out = assemble_pipeline(vae_dir, folders["unet"], text_dir, folders["assemble"])
            results["assemble"] = {"out_dir": str(out)}
        if current in ("vae", "unet"):  # the CLIP stage writes its own training_metrics.json
            atomic_write_json(folders[current] / "training_metrics.json", results[current])
    return results


def train_camera_stage(root: Path, pipeline: str, device: torch.device, steps: int | None, seed: int,
                       batch_size: int | None, pool_size: int | None, workers: int | None, progress: bool) -> dict:
    """`train-prior camera`: the camera classifier of `pipeline` ("builtin" or a pipeline folder), on its frozen
    VAE's latents of a cached pool of world renders (train split) and a held-out one (dev split); writes
    `root`/camera_classifier (copy it into the pipeline folder, or pass it as --camera-classifier) and its
    training_metrics.json."""
    source = pipeline_to_continue(pipeline)
    resolution = pipeline_image_size(source)
    vae = load_frozen_vae(source / "vae", device)
    size = pool_size or CAMERA_POOL_SIZE
    pools = [cached_world_pool(root / "renders", PoolSpec(count, seed * 2 + offset, resolution, split=split), workers, progress)
             for count, offset, split in ((size, 0, "train"), (min(CAMERA_HELDOUT_SIZE, size), 1, "dev"))]
    train, heldout = (encode_pool(vae, pool, progress=progress) for pool in pools)
    config = CameraTrainConfig(seed=seed)
    config = replace(config, steps=steps or config.steps, batch_size=batch_size or config.batch_size)
    summary = train_camera_classifier(train, heldout, _pipeline_scheduler(source).alphas_cumprod, root, config, progress=progress)
    summary["pipeline"] = str(source)
    summary["out_dir"] = summary["folder"]
    atomic_write_json(Path(summary["folder"]) / "training_metrics.json", summary)
    return summary


def _pipeline_scheduler(source: Path):
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_pretrained(source, subfolder="scheduler")
