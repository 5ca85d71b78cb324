"""Training the camera classifier (`prior/camera_classifier.py`) on world renders with their true cameras.

Data: a pool of world renders (`render_pool.py`; train split) and a held-out pool (dev split: attribute
combinations the prior never saw), both encoded once by the prior's frozen VAE (the posterior's mean times
its scaling factor, as SDS and the UNet see them) and kept beside the classifier. Each step noises a
minibatch of latents to random timesteps of the SDS range with fresh noise, as the UNet's training does,
and fits the smoothed bins of each render's camera: the polar angle always, the azimuth where the object
has a front (`world.objects.ASYMMETRIC_NOUNS`).

The held-out figure is the share of asymmetric renders whose predicted azimuth lies within 30 degrees of
the true one (the pose measure's tolerance; chance: 5 of 12 bins would be 0.25), at several noise levels.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ...utils.progress import Progress
from ...world.objects import ASYMMETRIC_NOUNS
from ...world.vocabulary import NOUNS
from ..camera_classifier import CAMERA_CLASSIFIER_FOLDER, CameraClassifier, CameraClassifierConfig
from ..latents import images_to_latents
from .render_pool import WorldRenderPool

ASYMMETRIC_IDS = tuple(NOUNS.index(noun) for noun in ASYMMETRIC_NOUNS)


@dataclass(frozen=True)
class CameraTrainConfig:
    """steps / batch_size / lr / weight_decay: ours, AdamW at 2e-3 (a 0.2M-parameter net) with a cosine decay;
    weight decay 0.05 against memorising the pool (the probe of shared/notes: a small net memorised 1.4k
    renders). t_range: the SDS range of thesis 6.1.3 (20 to 980 of 1000), where guidance is asked for.
    eval_timesteps: the noise levels the held-out accuracy is reported at."""

    steps: int = 4000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    t_range: tuple[int, int] = (20, 980)
    eval_timesteps: tuple[int, ...] = (20, 200, 500, 800)
    seed: int = 0


@dataclass
class PoseLatents:
    """VAE latents [N, C, h, w] of renders with their cameras' polar and azimuth angles [N] and whether
    their object has a front [N] (bool)."""

    latents: Tensor
    polar: Tensor
    azimuth: Tensor
    asymmetric: Tensor

    def __len__(self) -> int:
        return int(self.latents.shape[0])


@torch.no_grad()
def encode_pool(vae, pool: WorldRenderPool, batch_size: int = 256, progress: bool = False) -> PoseLatents:
    """The pool's renders as latents with their cameras (`render_pool.CAMERA_COLUMNS`: polar, azimuth, ...)."""
    if pool.cameras is None:
        raise ValueError("this render pool has no cameras (saved before cameras were kept); render it again")
    device = next(vae.parameters()).device
    latents = []
    with Progress(total=len(pool), description="encoding renders", enabled=progress) as bar:
        for start in range(0, len(pool), batch_size):
            images = pool.images[start : start + batch_size].to(device).float() / 255
            latents.append(images_to_latents(vae, images, next(vae.parameters()).dtype).cpu())
            bar.update(min(start + batch_size, len(pool)))
    asymmetric = torch.isin(pool.words[:, 0], torch.tensor(ASYMMETRIC_IDS))
    return PoseLatents(torch.cat(latents), pool.cameras[:, 0].float().clone(), pool.cameras[:, 1].float().clone(), asymmetric)


def noised(latents: Tensor, timesteps: Tensor, alphas_cumprod: Tensor, generator: torch.Generator) -> Tensor:
    alphabar = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    noise = torch.randn(latents.shape, generator=generator)
    return alphabar.sqrt() * latents + (1 - alphabar).sqrt() * noise


def classifier_loss(classifier: CameraClassifier, batch: PoseLatents, timesteps: Tensor, alphas_cumprod: Tensor,
                    generator: torch.Generator) -> Tensor:
    """Cross-entropy against each camera's smoothed bins: polar for every render, azimuth for those with a front."""
    azimuth_logits, polar_logits = classifier(noised(batch.latents, timesteps, alphas_cumprod, generator), timesteps)
    azimuth_target, polar_target = classifier.bin_weights(batch.polar, batch.azimuth)
    polar_loss = -(polar_target * F.log_softmax(polar_logits, -1)).sum(-1).mean()
    azimuth_each = -(azimuth_target * F.log_softmax(azimuth_logits, -1)).sum(-1)
    known = batch.asymmetric.float()
    azimuth_loss = (azimuth_each * known).sum() / known.sum().clamp_min(1)
    return azimuth_loss + polar_loss


@torch.no_grad()
def azimuth_accuracy(classifier: CameraClassifier, data: PoseLatents, timestep: int, alphas_cumprod: Tensor,
                     seed: int = 0, tolerance_deg: float = 30.0) -> float:
    """The share of `data`'s asymmetric renders, noised to `timestep`, whose most likely azimuth bin's centre
    lies within `tolerance_deg` of the true azimuth."""
    subset = PoseLatents(*(field[data.asymmetric] for field in (data.latents, data.polar, data.azimuth, data.asymmetric)))
    generator = torch.Generator().manual_seed(seed)
    hits = []
    for start in range(0, len(subset), 512):
        latents = subset.latents[start : start + 512]
        steps = torch.full((latents.shape[0],), timestep, dtype=torch.long)
        logits, _ = classifier(noised(latents, steps, alphas_cumprod, generator), steps)
        centres = logits.argmax(-1).float() * (360.0 / classifier.config.azimuth_bins)
        error = (centres - subset.azimuth[start : start + 512] + 180.0) % 360.0 - 180.0
        hits.append(error.abs() <= tolerance_deg)
    return float(torch.cat(hits).float().mean()) if hits else float("nan")


def train_camera_classifier(train: PoseLatents, heldout: PoseLatents, alphas_cumprod: Tensor, out_dir: str | Path,
                            config: CameraTrainConfig = CameraTrainConfig(),
                            model: CameraClassifierConfig = CameraClassifierConfig(), progress: bool = True) -> dict:
    """Train a classifier, save it to `out_dir/camera_classifier`, return its held-out accuracy by timestep."""
    torch.manual_seed(config.seed)
    classifier = CameraClassifier(model)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    generator = torch.Generator().manual_seed(config.seed)
    alphas_cumprod = alphas_cumprod.float().cpu()
    low, high = config.t_range
    start, losses = time.perf_counter(), []
    with Progress(total=config.steps, description="camera classifier", log_every=500, enabled=progress) as bar:
        for step in range(1, config.steps + 1):
            index = torch.randint(len(train), (config.batch_size,), generator=generator)
            batch = PoseLatents(train.latents[index], train.polar[index], train.azimuth[index], train.asymmetric[index])
            timesteps = torch.randint(low, high + 1, (config.batch_size,), generator=generator)
            loss = classifier_loss(classifier, batch, timesteps, alphas_cumprod, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            bar.update(step)
    classifier.eval()
    folder = Path(out_dir) / CAMERA_CLASSIFIER_FOLDER
    classifier.save_pretrained(folder)
    accuracy = {str(t): azimuth_accuracy(classifier, heldout, t, alphas_cumprod) for t in config.eval_timesteps}
    train_accuracy = {str(t): azimuth_accuracy(classifier, train, t, alphas_cumprod) for t in config.eval_timesteps[:1]}
    return {"folder": str(folder), "steps": config.steps, "train_renders": len(train), "heldout_renders": len(heldout),
            "final_loss": sum(losses[-100:]) / len(losses[-100:]), "seconds": time.perf_counter() - start,
            "heldout_azimuth_within_30": accuracy, "train_azimuth_within_30": train_accuracy, "config": asdict(config)}
