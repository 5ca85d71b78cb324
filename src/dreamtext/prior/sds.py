"""Score distillation sampling (DreamFusion's SDS) on a frozen Stable Diffusion prior.

One step: resize the renders to the prior's input size, VAE-encode them with gradient, noise the
latents at a scheduled t, predict the noise with one batched UNet call for the conditional and the
unconditional prompt, and push the latents along grad = w(t) (eps_hat - eps). The UNet Jacobian is
skipped (thesis 6.1.3): the prior runs without autograd and only the VAE encoder carries gradient.

A camera-aware prior (`prior.camera`) is also told each render's camera, in both halves of the
guidance batch (as MVDream does), so guidance pushes towards the text and the view is the render's
own; a text-only prior (any Stable Diffusion checkpoint) gets no camera and runs exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DreamtextError
from ..scene.cameras import Cameras, cartesian_to_spherical
from .camera import camera_labels
from .camera_classifier import guided_noise_shift
from .latents import images_to_latents
from .perp_neg import PerpNegConfig, perp_neg_direction
from .loading import Prior
from ..utils.schedules import ConstantValue, CosineValue, LinearValue, ScalarSchedule
from .schedules import AnnealedTimesteps, CosineTimesteps, LinearTimesteps, TimestepSchedule, UniformTimesteps

CfgFormula = Literal["standard", "sdf_2023"]
Weighting = Literal["1-alphabar", "sqrt_alphabar_1m", "sqrt_1m_alphabar", "uniform"]


@dataclass(frozen=True)
class SDSConfig:
    """Score distillation settings as plain values (the CLI sets them, config.json stores them exactly); defaults
    are Stable DreamFusion's (March 2023), which the thesis started from (REFERENCE.md 1 and 2).

    guidance, guidance_end, guidance_schedule: the CFG scale, constant (100, thesis 6.1.3) or moving from
        `guidance` to `guidance_end` linearly or along a cosine over the run.
    cfg_formula: "sdf_2023" = cond + s (cond - uncond), stable-dreamfusion's March 2023 form, in which the
        thesis's guidance values (100, 1000) are written; "standard" = uncond + s (cond - uncond) (Ho & Salimans,
        threestudio), the same with s - 1.
    t_min, t_max: thesis 6.1.3, t in [20, 980] of 1000; t_schedule: uniform draws (thesis), or linearly or
        cosine-decreasing t (explored in thesis 6.1.9), or "annealed": uniform draws below an upper bound that
        moves from t_max to t_max_end over the run (threestudio's max_step_percent schedule).
    weighting: w(t). "1-alphabar" = 1 - alphabar_t (thesis 6.1.3, DreamFusion); "sqrt_alphabar_1m" =
        sqrt(alphabar_t) (1 - alphabar_t) (Fantasia3D/threestudio); "sqrt_1m_alphabar" = sqrt(1 - alphabar_t)
        (sigma_t); "uniform" = 1.
    grad_clamp, grad_clamp_end: optional bound on |grad| per element moving linearly from one to the other
        (stable-dreamfusion from 30 March 2023: 2 -> 8); None: no clamp (the thesis's fork).
    sample_posterior: encode with a sample of the VAE posterior (stable-dreamfusion) rather than its mean.
    noise_samples: ours: K draws of (t, noise) per render, their gradients averaged. The same expected
        gradient with 1/K of the variance the draws add, for one render and one backward pass: K UNet
        evaluations instead of one. 1: DreamFusion's single draw.
    camera_guidance: ours: the scale of the prior's camera classifier's guidance (`prior.camera_classifier`)
        towards each render's own camera, added to the guided noise: the score then asks the render to look
        as the object does from that camera. 0: none (and a prior without a classifier has none).
    guidance_form: cfg: classifier-free guidance with the camera's view prompt; perp_neg: Perp-Neg
        (prior/perp_neg.py), the other views' prompts as negatives made perpendicular to it, against Janus (one
        UNet call on 4 rows a render; `perp_neg` holds its settings).
    latent_mode: stable-dreamfusion's latent warm-up: the render's 4 channels in [0, 1] are resized to the
        UNet's latent size and mapped to [-1, 1] as latents; no VAE. Off (thesis).
    """

    guidance: float = 100.0
    guidance_end: float | None = None
    guidance_schedule: Literal["constant", "linear", "cosine"] = "constant"
    cfg_formula: CfgFormula = "sdf_2023"
    t_min: float = 0.02
    t_max: float = 0.98
    t_schedule: Literal["uniform", "annealed", "linear", "cosine"] = "uniform"
    t_max_end: float = 0.5
    weighting: Weighting = "1-alphabar"
    grad_clamp: float | None = None
    grad_clamp_end: float | None = None
    sample_posterior: bool = True
    noise_samples: int = 1
    camera_guidance: float = 0.0
    guidance_form: Literal["cfg", "perp_neg"] = "cfg"
    perp_neg: PerpNegConfig = field(default_factory=PerpNegConfig)
    latent_mode: bool = False

    def __post_init__(self):
        if self.noise_samples < 1:
            raise DreamtextError(f"SDS noise_samples must be at least 1 (draws of t and noise per render), got {self.noise_samples}")

    def guidance_values(self) -> ScalarSchedule:
        """The CFG scale over the run."""
        end = self.guidance if self.guidance_end is None else self.guidance_end
        return {"constant": ConstantValue(self.guidance), "linear": LinearValue(self.guidance, end),
                "cosine": CosineValue(self.guidance, end)}[self.guidance_schedule]

    def timestep_values(self) -> TimestepSchedule:
        """How t is drawn over the run."""
        return {"uniform": UniformTimesteps(self.t_min, self.t_max),
                "annealed": AnnealedTimesteps(self.t_min, self.t_max, self.t_max_end),
                "linear": LinearTimesteps(self.t_min, self.t_max),
                "cosine": CosineTimesteps(self.t_min, self.t_max)}[self.t_schedule]

    def clamp_values(self) -> ScalarSchedule | None:
        """The gradient's bound over the run (None: no clamp)."""
        if self.grad_clamp is None:
            return None
        return LinearValue(self.grad_clamp, self.grad_clamp if self.grad_clamp_end is None else self.grad_clamp_end)


def sds_weight(alphas_cumprod_t: Tensor, weighting: Weighting) -> Tensor:
    """w(t) for a tensor of alphabar_t values."""
    a = alphas_cumprod_t
    if weighting == "1-alphabar":
        return 1.0 - a
    if weighting == "sqrt_alphabar_1m":
        return a.sqrt() * (1.0 - a)
    if weighting == "sqrt_1m_alphabar":
        return (1.0 - a).sqrt()
    if weighting == "uniform":
        return torch.ones_like(a)
    raise ValueError(f"unknown SDS weighting {weighting!r}")


def guided_noise(eps_cond: Tensor, eps_uncond: Tensor, scale: float, formula: CfgFormula,
                 direction: Tensor | None = None) -> Tensor:
    """Classifier-free guidance in the configured form; `direction` replaces cond - uncond (Perp-Neg's)."""
    if formula not in ("standard", "sdf_2023"):
        raise ValueError(f"unknown CFG formula {formula!r}")
    base = eps_uncond if formula == "standard" else eps_cond
    return base + scale * (eps_cond - eps_uncond if direction is None else direction)


@dataclass
class SDSInfo:
    """What one SDS step did, as detached tensors (reading them syncs the GPU: do it rarely)."""

    timesteps: Tensor  # [K B] long, draw k of render b at k B + b
    guidance_scale: float
    weight: Tensor  # [K B] w(t)
    grad: Tensor  # [B, 4, h, w] the gradient applied to the latents (the mean of the K draws), before the 1/B batch mean
    latents: Tensor  # [B, 4, h, w]


class ScoreDistillation:
    """SDS loss of renders under a frozen prior.

    `loss(...)` returns a scalar whose gradient at the latents is w(t) (eps_hat - eps) / B, written as
    0.5 * ||latents - target||^2 / B with a detached target: unlike `latents.backward(grad)`, that
    form is scaled and unscaled correctly by mixed-precision gradient scalers.
    """

    def __init__(self, prior: Prior, config: SDSConfig = SDSConfig()):
        prediction = prior.scheduler.config.get("prediction_type", "epsilon")
        if prediction not in ("epsilon", "v_prediction"):
            raise DreamtextError(f"SDS needs an epsilon or v-prediction prior, this one predicts {prediction!r}")
        self.prior = prior
        self.config = config
        self.timesteps, self.guidance, self.grad_clamp = config.timestep_values(), config.guidance_values(), config.clamp_values()
        self.prediction_type = prediction
        self.alphas_cumprod = prior.scheduler.alphas_cumprod.to(prior.device, torch.float32)

    # -- the pieces -------------------------------------------------------------------------------

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Renders [B, C, H, W] in [0, 1] to latents [B, 4, h, w], differentiably."""
        prior = self.prior
        if self.config.latent_mode:
            if images.shape[1] != 4:
                raise ValueError(f"latent mode needs 4-channel renders, got {images.shape[1]} channels")
            size = prior.latent_size
            return F.interpolate(images, (size, size), mode="bilinear", align_corners=False) * 2 - 1
        if images.shape[1] != 3:
            raise ValueError(f"SDS needs RGB renders [B, 3, H, W], got {tuple(images.shape)}")
        size = prior.image_size
        # stable-dreamfusion upsamples its 64 px renders bilinearly to the VAE's 512.
        resized = F.interpolate(images, (size, size), mode="bilinear", align_corners=False)
        return images_to_latents(prior.vae, resized, prior.dtype, self.config.sample_posterior, generator)

    @torch.no_grad()
    def predict_noise(self, noisy: Tensor, timesteps: Tensor, cond: Tensor, uncond: Tensor,
                      cameras: Cameras | None = None) -> tuple[Tensor, Tensor]:
        """(eps_cond, eps_uncond) from ONE UNet call on the doubled batch, in float32.

        cameras: one per row of `noisy`, for a camera-aware prior (ignored by text-only ones; a
            camera-aware prior without them gets the unknown camera)."""
        eps_cond, eps_uncond = self.predict_noises(noisy, timesteps, [cond, uncond], cameras)
        return eps_cond, eps_uncond

    @torch.no_grad()
    def predict_noises(self, noisy: Tensor, timesteps: Tensor, texts: list[Tensor], cameras: Cameras | None = None) -> list[Tensor]:
        """The noise estimate of `noisy` [B, ...] under each of `texts` (each [B, 77, D]), float32, from ONE
        UNet call on len(texts) x B rows."""
        prior = self.prior
        batch, copies = noisy.shape[0], len(texts)
        labels = camera_labels(prior.unet, cameras, batch, noisy.device, prior.dtype, copies=copies)
        rows = torch.cat([noisy] * copies)  # cat, not repeat: it keeps the latents' memory format (and so the rounding)
        steps = torch.cat([timesteps] * copies)
        output = prior.unet(rows.to(prior.dtype), steps, encoder_hidden_states=torch.cat(texts).to(prior.dtype),
                            **labels).sample.float()
        if self.prediction_type == "v_prediction":
            # v = sqrt(a) eps - sqrt(1 - a) x0 and x_t = sqrt(a) x0 + sqrt(1 - a) eps => eps = sqrt(a) v + sqrt(1 - a) x_t
            a = self.alphas_cumprod[steps].view(-1, 1, 1, 1)
            output = a.sqrt() * output + (1 - a).sqrt() * rows.float()
        return list(output.split(batch))

    # -- the loss ---------------------------------------------------------------------------------

    def loss(
        self,
        images: Tensor,
        cond: Tensor,
        uncond: Tensor,
        step_progress: float,
        generator: torch.Generator | None = None,
        cameras: Cameras | None = None,
        negatives: Tensor | None = None,
        negative_weights: Tensor | None = None,
    ) -> tuple[Tensor, SDSInfo]:
        """SDS loss of `images` [B, 3, H, W] in [0, 1] (4 channels in latent mode).

        cond: [B, 77, D] text embeddings (per view); uncond: [B or 1, 77, D] (negative prompt).
        step_progress: training progress in [0, 1], for the schedules.
        generator: drives t, the noise and the posterior sample (on the prior's device).
        cameras: the B cameras the images were rendered from, told to a camera-aware prior.
        negatives / negative_weights: Perp-Neg's negative prompts [B, K, 77, D] and weights [B, K]
            (`prior.perp_neg`); their directions, made perpendicular to the positive one, join the guidance.
        """
        config = self.config
        batch, draws = images.shape[0], config.noise_samples
        latents = self.encode(images, generator)
        timesteps = self.timesteps(
            step_progress, generator, draws * batch, self.prior.num_train_timesteps, device=latents.device
        )
        repeated = latents.detach().float()
        if draws > 1:  # draw k of render b at row k B + b (one draw keeps the VAE's memory layout, and its rounding)
            repeated = repeated.repeat(draws, 1, 1, 1)
        noise = torch.randn(repeated.shape, generator=generator, device=latents.device, dtype=torch.float32)
        alphabar = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        noisy = alphabar.sqrt() * repeated + (1 - alphabar).sqrt() * noise
        repeated_cameras = None
        if cameras is not None:
            repeated_cameras = cameras if draws == 1 else cameras[torch.arange(batch).repeat(draws)]
        texts = [cond.repeat(draws, 1, 1), uncond.expand(batch, -1, -1).repeat(draws, 1, 1)]
        if negatives is not None:
            texts += [negatives[:, k].repeat(draws, 1, 1) for k in range(negatives.shape[1])]
        eps = self.predict_noises(noisy, timesteps, texts, repeated_cameras)
        eps_cond, eps_uncond = eps[0], eps[1]
        direction = None
        if negatives is not None:
            direction = perp_neg_direction(eps_cond, eps_uncond, torch.stack(eps[2:], dim=1),
                                           negative_weights.to(noisy.device).repeat(draws, 1))

        scale = self.guidance(step_progress, generator)
        eps_hat = guided_noise(eps_cond, eps_uncond, scale, config.cfg_formula, direction)
        if config.camera_guidance > 0 and self.prior.camera_classifier is not None and repeated_cameras is not None:
            _, polar, azimuth = cartesian_to_spherical(repeated_cameras.origins.float())
            eps_hat = eps_hat + guided_noise_shift(self.prior.camera_classifier, noisy, timesteps, self.alphas_cumprod,
                                                   polar, azimuth, config.camera_guidance)
        weight = sds_weight(alphabar.view(-1), config.weighting)
        grad = torch.nan_to_num(weight.view(-1, 1, 1, 1) * (eps_hat - noise), nan=0.0, posinf=0.0, neginf=0.0)
        if draws > 1:
            grad = grad.reshape(draws, *latents.shape).mean(dim=0)
        if self.grad_clamp is not None:
            bound = self.grad_clamp(step_progress, generator)
            grad = grad.clamp(-bound, bound)

        target = (latents.float() - grad).detach()
        loss = 0.5 * F.mse_loss(latents.float(), target, reduction="sum") / batch
        info = SDSInfo(timesteps=timesteps, guidance_scale=scale, weight=weight, grad=grad, latents=latents.detach())
        return loss, info
