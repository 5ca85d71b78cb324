"""A noise-aware camera classifier over a prior's latents, and the classifier guidance it gives.

Why (ours): a text-only prior hears the view only through the prompt's suffix ("..., side view"), which
names a range of 60 to 120 degrees, so its drawings and its score for a render do not say where the camera
is within it. A camera-aware UNet would, but costs GPU days to train; this small network costs CPU
minutes. It reads noisy latents z_t at timestep t and predicts the camera that sees the object so:
its azimuth from the object's front (`azimuth_bins` bins around the circle) and its polar angle
(`polar_bins` bins over `polar_range_deg`). Trained on world renders with their true cameras
(`prior/small/train_camera.py`), it steers any sampler or score towards a chosen camera by classifier
guidance (Dhariwal and Nichol 2021):

    eps(z_t, c) = eps(z_t) - scale * sqrt(1 - alphabar_t) * grad_z log p(c | z_t, t)

(RecDreamer, 2025, uses such a pose classifier over noisy states against score distillation's pose bias.)
The log-probability of a continuous camera is that of a smoothed bin: the predicted distribution over bins
weighted by a von Mises kernel around the camera (`kernel_concentration`), the same kernel the classifier
is trained against, so its gradient moves smoothly with the camera. Objects without a front (a sphere)
train only the polar head.

A folder holds `config.json` and `model.safetensors` (diffusers' layout); a prior folder may carry one in
`camera_classifier/` beside its UNet, which the prior loader picks up.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DreamtextError
from ..utils.io import atomic_write, atomic_write_json

CAMERA_CLASSIFIER_FOLDER = "camera_classifier"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


@dataclass(frozen=True)
class CameraClassifierConfig:
    """latent_channels: the prior's latent channels (4). width / blocks: ours, a 48-wide conv net of 4 residual
    blocks, the first two halving the latent's side (16 -> 4 at the built-in prior's 16 x 16 latents; early, so a
    CPU trains it in minutes), then a global mean. azimuth_bins: ours, 12 (every 30 degrees, the pose measure's tolerance). polar_bins /
    polar_range_deg: ours, 4 over the training cameras' polar angles (thesis 6.1.5: 0 to 120 degrees).
    kernel_concentration: ours, the von Mises concentration of the smoothed bins: 8 spreads a camera over about
    +-20 degrees, most of it on its own bin and its two neighbours. num_train_timesteps: the prior's (1000)."""

    latent_channels: int = 4
    width: int = 48
    blocks: int = 4
    azimuth_bins: int = 12
    polar_bins: int = 4
    polar_range_deg: tuple[float, float] = (0.0, 120.0)
    kernel_concentration: float = 8.0
    num_train_timesteps: int = 1000


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embeddings [B, dim] of timesteps [B] (the DDPM / diffusers form)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device, dtype=torch.float32) / half)
    angles = timesteps.float()[:, None] * frequencies[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class _Block(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, scaled and shifted by the timestep (FiLM), added to the input; optionally
    halving the side."""

    def __init__(self, width: int, downsample: bool):
        super().__init__()
        self.norm = nn.GroupNorm(8, width)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.film = nn.Linear(width, 2 * width)
        self.down = nn.AvgPool2d(2) if downsample else nn.Identity()

    def forward(self, x: Tensor, time: Tensor) -> Tensor:
        scale, shift = self.film(time)[:, :, None, None].chunk(2, dim=1)
        return self.down(x + self.conv(F.silu(self.norm(x)) * (1 + scale) + shift))


class CameraClassifier(nn.Module):
    """logits over azimuth bins [B, azimuth_bins] and polar bins [B, polar_bins] of latents [B, C, h, w] at
    timesteps [B]."""

    def __init__(self, config: CameraClassifierConfig = CameraClassifierConfig()):
        super().__init__()
        self.config = config
        width = config.width
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.stem = nn.Conv2d(config.latent_channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(_Block(width, downsample=index < 2) for index in range(config.blocks))
        self.head = nn.Sequential(nn.GroupNorm(8, width), nn.SiLU())
        self.azimuth = nn.Linear(width, config.azimuth_bins)
        self.polar = nn.Linear(width, config.polar_bins)

    def forward(self, latents: Tensor, timesteps: Tensor) -> tuple[Tensor, Tensor]:
        time = self.time(timestep_embedding(timesteps.expand(latents.shape[0]), self.config.width).to(latents.dtype))
        x = self.stem(latents)
        for block in self.blocks:
            x = block(x, time)
        pooled = self.head(x).mean(dim=(2, 3))
        return self.azimuth(pooled), self.polar(pooled)

    # -- bins ---------------------------------------------------------------------------------------
    def bin_weights(self, polar_deg: Tensor, azimuth_deg: Tensor) -> tuple[Tensor, Tensor]:
        """The smoothed bins of cameras [B]: weights [B, azimuth_bins] and [B, polar_bins], each row summing to 1."""
        config = self.config
        azimuth_centres = torch.arange(config.azimuth_bins, device=azimuth_deg.device) * (360.0 / config.azimuth_bins)
        low, high = config.polar_range_deg
        polar_width = (high - low) / config.polar_bins
        polar_centres = low + polar_width * (torch.arange(config.polar_bins, device=polar_deg.device) + 0.5)
        kappa = config.kernel_concentration
        azimuth = torch.softmax(kappa * torch.cos(torch.deg2rad(azimuth_deg.float()[:, None] - azimuth_centres)), dim=-1)
        # the same kernel along the polar angle, its degrees scaled so that a bin spans what an azimuth bin does
        scaled = (polar_deg.float()[:, None] - polar_centres) * (360.0 / config.azimuth_bins) / polar_width
        polar = torch.softmax(kappa * torch.cos(torch.deg2rad(scaled).clamp(-math.pi, math.pi)), dim=-1)
        return azimuth, polar

    def log_prob(self, latents: Tensor, timesteps: Tensor, polar_deg: Tensor, azimuth_deg: Tensor,
                 azimuth_known: Tensor | None = None) -> Tensor:
        """log p(camera | z_t, t) [B]: the log of the predicted probability under each camera's smoothed bins,
        azimuth plus polar (`azimuth_known` [B] bool: where False, the polar term alone)."""
        azimuth_logits, polar_logits = self(latents, timesteps)
        azimuth_weights, polar_weights = self.bin_weights(polar_deg.to(latents.device), azimuth_deg.to(latents.device))
        azimuth = torch.logsumexp(F.log_softmax(azimuth_logits.float(), -1) + azimuth_weights.clamp_min(1e-12).log(), -1)
        polar = torch.logsumexp(F.log_softmax(polar_logits.float(), -1) + polar_weights.clamp_min(1e-12).log(), -1)
        if azimuth_known is not None:
            azimuth = azimuth * azimuth_known.to(azimuth)
        return azimuth + polar

    # -- diffusers-style folders ------------------------------------------------------------------------
    def save_pretrained(self, folder: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {name: value.detach().contiguous().cpu() for name, value in self.state_dict().items()}
        atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(tensors, str(tmp)))
        atomic_write_json(folder / CONFIG_NAME, {"_class_name": type(self).__name__, **asdict(self.config)})

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: torch.device | str = "cpu") -> "CameraClassifier":
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            settings = json.loads((folder / CONFIG_NAME).read_text())
        except (OSError, ValueError) as error:
            raise DreamtextError(f"{folder} is not a camera classifier folder (config.json: {error}); "
                                 "train one with `dreamtext train-prior camera`") from None
        settings.pop("_class_name", None)
        settings["polar_range_deg"] = tuple(settings.get("polar_range_deg", (0.0, 120.0)))
        model = cls(CameraClassifierConfig(**settings))
        try:
            model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
        except (OSError, RuntimeError) as error:
            raise DreamtextError(f"{folder / WEIGHTS_NAME} cannot be read as a camera classifier: {error}") from None
        return model.to(device).eval().requires_grad_(False)


def guided_noise_shift(classifier: CameraClassifier, noisy: Tensor, timesteps: Tensor, alphas_cumprod: Tensor,
                       polar_deg: Tensor, azimuth_deg: Tensor, scale: float, azimuth_known: Tensor | None = None) -> Tensor:
    """The classifier-guidance term -scale sqrt(1 - alphabar_t) grad_z log p(c | z_t, t) [B, C, h, w] to add to
    a noise prediction of `noisy` z_t [B, C, h, w] at `timesteps` [B] for cameras (polar, azimuth) [B]."""
    with torch.enable_grad():
        latents = noisy.detach().float().requires_grad_(True)
        dtype = next(classifier.parameters()).dtype
        log_prob = classifier.log_prob(latents.to(dtype), timesteps, polar_deg, azimuth_deg, azimuth_known)
        (gradient,) = torch.autograd.grad(log_prob.sum(), latents)
    sigma = (1.0 - alphas_cumprod.to(noisy.device)[timesteps.long()]).sqrt().view(-1, 1, 1, 1)
    return -scale * sigma * gradient
