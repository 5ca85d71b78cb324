"""The small Stable Diffusion-format model of the built-in prior (issue 4, item 4): parts and losses.

The architecture is Stable Diffusion's (diffusers `AutoencoderKL` + `UNet2DConditionModel`, epsilon
prediction on SD's scaled-linear betas), shrunk to 64 px images and 16x16x4 latents so the whole model
fits in a few megabytes and trains on one GPU in minutes. Training loops live in `train.py`; the saved
pipeline is put together in `assemble.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..camera import plain_config
from ..latents import to_vae_range

# Stable Diffusion 1.x/2.x noise schedule (the `scheduler_config.json` of SD 1.5 and 2.1-base).
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


@dataclass(frozen=True)
class SmallVaeConfig:
    """AutoencoderKL for 64 px world renders.

    image_size: issue 4 (the prior's native size, 64 px suggested).
    block_out_channels: ours, 3 levels = 2 downsamples, so 64 px -> 16x16 latents (SD: 4 levels, 8x);
        widths (32, 64, 128) keep it at 2.7M parameters (5.4 MB in fp16) while renders are flat-shaded
        objects on plain backdrops that need far less capacity than photographs.
    layers_per_block: ours, 1 (SD: 2): the same reasoning, half the parameters.
    latent_channels: Stable Diffusion, 4, so the UNet sees SD-shaped latents.
    norm_num_groups: Stable Diffusion, 32 (every width above is a multiple of it).
    kl_weight: LDM's autoencoder config (kl_weight 1e-6 on per-image sums): a light pull towards N(0, I)
        that keeps the latents smooth without blurring reconstructions.
    """

    image_size: int = 64
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 32
    kl_weight: float = 1e-6

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.block_out_channels) - 1)


@dataclass(frozen=True)
class SmallUnetConfig:
    """UNet2DConditionModel on 16x16x4 latents, conditioned on the small CLIP's text tokens.

    sample_size: 16, the latent size of `SmallVaeConfig` (64 px / 4).
    block_out_channels: ours, (64, 128, 128) at 16, 8 and 4 latent pixels: 5.8M parameters with the small
        CLIP's 64-wide text (11.7 MB in fp16), so VAE + UNet stay under 20 MB and the package's prior under issue 4's 30 MB.
    layers_per_block: ours, 1 (SD: 2), for the size budget above.
    down_block_types / up_block_types: Stable Diffusion's pattern (cross-attention at the fine levels,
        plain ResNets at the coarsest), with three levels instead of four.
    attention_head_dim: diffusers' name, which `UNet2DConditionModel` reads as the number of heads (its
        Stable Diffusion compatibility quirk; SD 2.x's (5, 10, 20, 20) are 64 channels a head). 32 was
        meant as 32 channels a head but gives 32 heads: 2 channels a head at width 64, 4 at 128, and the
        shipped UNet was trained so (its config.json keeps 32). Side by side on 2 CPU cores, per-level
        head counts of width / 32, (2, 4, 4), the same 5.8M parameters, run the UNet's forward (batch 2)
        1.7x faster (91 -> 54 ms) and a batch-32 training step 2.4x faster (3.8 -> 1.6 s): the layout for
        the next prior trained from scratch, once its quality is measured against this one's. The shipped
        UNet re-laid out as (4, 8, 8) and distilled from itself (`train-prior unet --init-unet builtin
        --attention-head-dim 4 8 8 --distill`) runs its forward in 25 against 47 ms at batch 2 and makes the
        main command 29% faster, but it cost 3D quality (docs/experiments.md): SDS multiplies its guidance
        direction by 100, and two distillation losses over 140 minutes on 2 cores left that direction 16-21%
        off.
    norm_num_groups: Stable Diffusion, 32.
    """

    sample_size: int = 16
    block_out_channels: tuple[int, ...] = (64, 128, 128)
    layers_per_block: int = 1
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    up_block_types: tuple[str, ...] = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
    attention_head_dim: int | tuple[int, ...] = 32
    norm_num_groups: int = 32


def build_small_vae(config: SmallVaeConfig = SmallVaeConfig()):
    """A randomly initialised diffusers `AutoencoderKL` (seed torch's generator first for reproducibility)."""
    from diffusers import AutoencoderKL

    levels = len(config.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(config.block_out_channels),
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        latent_channels=config.latent_channels,
        layers_per_block=config.layers_per_block,
        norm_num_groups=config.norm_num_groups,
        sample_size=config.image_size,
    )


def build_small_unet(config: SmallUnetConfig, cross_attention_dim: int):
    """A randomly initialised `UNet2DConditionModel`; cross_attention_dim = the text encoder's hidden size."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=config.sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        down_block_types=tuple(config.down_block_types),
        up_block_types=tuple(config.up_block_types),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
    )


def with_attention_heads(unet, attention_head_dim: tuple[int, ...]):
    """A copy of a `UNet2DConditionModel` with another head layout (diffusers' `attention_head_dim`, the
    number of heads per level): the same weights, split into heads differently, so its outputs change."""
    from diffusers import UNet2DConditionModel

    other = UNet2DConditionModel.from_config(dict(plain_config(unet), attention_head_dim=tuple(attention_head_dim)))
    other.load_state_dict(unet.state_dict())
    return other.to(device=unet.device, dtype=unet.dtype)


def build_training_scheduler():
    """DDPM with SD's betas: `add_noise` for training (epsilon prediction)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SD_SCHEDULE, prediction_type="epsilon", clip_sample=False)


def build_sampling_scheduler():
    """DDIM with SD's betas and SD's shipped settings (no sample clipping, steps_offset 1)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        **SD_SCHEDULE, prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1
    )


def vae_loss(vae, images: Tensor, kl_weight: float, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(total loss, L1 reconstruction) of a batch of [0, 1] images.

    LDM's weighting: L1 and KL both summed per image, KL scaled by `kl_weight`; the total is divided
    by the pixel count so the learning rate does not depend on the image size.
    """
    target = to_vae_range(images)
    posterior = vae.encode(target).latent_dist
    latents = posterior.sample(generator=generator)
    reconstruction = vae.decode(latents).sample
    l1 = (reconstruction - target).abs().mean()
    kl_per_image = posterior.kl().mean()  # diffusers sums KL over latent elements, per image
    return l1 + kl_weight * kl_per_image / target[0].numel(), l1


@torch.no_grad()
def latent_scaling_factor(vae, images: Tensor, generator: torch.Generator | None = None) -> float:
    """1 / std of sampled latents, as Stable Diffusion chose 0.18215: the UNet then sees unit-variance latents."""
    latents = vae.encode(to_vae_range(images)).latent_dist.sample(generator=generator)
    return float(1.0 / latents.float().std())


def caption_token_ids(tokenizer, captions: list[str], cache: dict[str, Tensor] | None = None) -> Tensor:
    """Padded token ids [B, L]. With `cache`, each distinct caption is tokenized once: training draws its
    captions from a few thousand word combinations, and tokenizing a 512-caption batch took 40 ms on a
    2-core CPU, half the GPU work of a 512-image step on an H200 (81 ms)."""
    def tokenize(texts: list[str]) -> Tensor:
        return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids

    if cache is None:
        return tokenize(captions)
    missing = sorted(set(captions) - cache.keys())
    if missing:
        cache.update(zip(missing, tokenize(missing)))
    return torch.stack([cache[caption] for caption in captions])


@torch.no_grad()
def encode_captions(text_encoder, tokenizer, captions: list[str], cache: dict[str, Tensor] | None = None) -> Tensor:
    """Per-token text embeddings [B, L, D] (the last hidden state, as Stable Diffusion 1.x conditions on)."""
    device = next(text_encoder.parameters()).device
    return text_encoder(caption_token_ids(tokenizer, captions, cache).to(device))[0]


def drop_captions(captions: list[str], probability: float, generator: torch.Generator) -> list[str]:
    """Replace each caption with "" with `probability` (classifier-free guidance training)."""
    dropped = torch.rand(len(captions), generator=generator) < probability
    return ["" if drop else caption for caption, drop in zip(captions, dropped.tolist())]


def _noised(scheduler, latents: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(noise, timesteps, noisy latents) at uniformly drawn timesteps, drawn from `generator` on its device."""
    noise = torch.randn(latents.shape, generator=generator, device=generator.device, dtype=latents.dtype).to(latents.device)
    steps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator,
                          device=generator.device).to(latents.device)
    return noise, steps, scheduler.add_noise(latents, noise, steps)


def diffusion_loss(unet, scheduler, latents: Tensor, text_embeddings: Tensor, generator: torch.Generator,
                   class_labels: Tensor | None = None) -> Tensor:
    """Epsilon-prediction MSE at uniformly drawn timesteps (DDPM / Stable Diffusion's objective).

    Noise and timesteps come from `generator` (drawn on its device, then moved) so a run is reproducible by seed.
    class_labels: the camera encodings of a camera-aware UNet (`prior.camera`), else None.
    """
    noise, steps, noisy = _noised(scheduler, latents, generator)
    extra = {} if class_labels is None else {"class_labels": class_labels}
    prediction = unet(noisy, steps, encoder_hidden_states=text_embeddings, **extra).sample
    return F.mse_loss(prediction.float(), noise.float())


def conditional_and_plain(unet, noisy: Tensor, steps: Tensor, text_embeddings: Tensor,
                          unconditional: Tensor) -> tuple[Tensor, Tensor]:
    """A UNet's noise predictions (fp32) with each row's caption and with the empty caption's embedding
    `unconditional` [1, L, D], in one call of twice the rows."""
    rows, times = torch.cat([noisy, noisy]), torch.cat([steps, steps])
    text = torch.cat([text_embeddings, unconditional.expand_as(text_embeddings)])
    conditional, plain = unet(rows, times, encoder_hidden_states=text).sample.float().chunk(2)
    return conditional, plain


# the drawings' guidance scale (`SampleConfig.guidance`) and the builtin preset's SDS guidance
DISTILLATION_GUIDANCE = (7.5, 100.0)


def relative_squared_error(prediction: Tensor, target: Tensor) -> Tensor:
    """sum (prediction - target)^2 / sum target^2: the error measured on the target's own scale."""
    return ((prediction - target) ** 2).sum() / (target ** 2).sum()


def distillation_loss(student, teacher, scheduler, latents: Tensor, text_embeddings: Tensor, unconditional: Tensor,
                      generator: torch.Generator, guidance: tuple[float, ...] = DISTILLATION_GUIDANCE) -> Tensor:
    """The student's noise predictions against a frozen teacher's on the same noisy latents and timesteps,
    each with its caption and with the empty caption's embedding `unconditional` [1, L, D]: the relative
    squared error of the unconditional prediction plus that of the guided one, u + s (c - u), at each
    scale s of `guidance` (the figures `eval-prior --reference` reports).

    The guided terms are what the prior is used through: classifier-free guidance multiplies c - u (by 7.5
    in the drawings, 100 in SDS), a small difference of two large predictions that a loss on c and u alone
    learns only to their own precision. Each term is relative to its target's size, so the guided-100 one
    does not drown the others by s^2. Noise and timesteps come from `generator`, as in `diffusion_loss`.
    """
    _, steps, noisy = _noised(scheduler, latents, generator)
    conditional, plain = conditional_and_plain(student, noisy, steps, text_embeddings, unconditional)
    with torch.no_grad():
        target_conditional, target_plain = conditional_and_plain(teacher, noisy, steps, text_embeddings, unconditional)
    loss = relative_squared_error(plain, target_plain)
    for scale in guidance:
        loss = loss + relative_squared_error(plain + scale * (conditional - plain),
                                             target_plain + scale * (target_conditional - target_plain))
    return loss
