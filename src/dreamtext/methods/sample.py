"""`dreamtext sample "PROMPT" --workspace DIR -n 4`: images from the 2D prior (the thesis's sample script).

DDIM sampling (deterministic with eta 0) with classifier-free guidance on any prior `load_prior`
reads, the built-in one included. Image i starts from the noise of seed `seed + i`, so an image does
not depend on how many are drawn or how they are batched: `-n 2` gives the first two of `-n 4`.
Diversity augmentation (thesis 5.3) samples this way and turns each image into 3D.

Writes DIR/samples/sample_000.png ... (each as soon as its batch is done), DIR/samples/contact_sheet.png
and DIR/samples/samples.json ({prompt, negative_prompt, model, steps, guidance, eta, seed, files:
[{file, seed}]}).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import torch
import tyro
from torch import Tensor

from ..errors import DreamtextError
from ..prior.camera import takes_camera
from ..prior.loading import Prior, load_prior
from ..prior.sampling import ddim_sample, initial_noise
from ..prior.prompts import TextEmbeddingCache
from ..scene.cameras import Cameras, orbit_cameras
from ..utils.device import Device, resolve_device
from ..utils.images import save_image
from ..utils.io import atomic_write_json
from ..utils.progress import Progress
from ..utils.workspace import Workspace

SAMPLES_DIR = "samples"
CONTACT_SHEET = "contact_sheet.png"
SAMPLES_FILE = "samples.json"


@dataclass(frozen=True)
class SampleConfig:
    """What to draw from the 2D prior, and how (DDIM with classifier-free guidance)."""

    prompt: Annotated[str, tyro.conf.Suppress]  # what to draw, e.g. "An image of a dog" (the thesis's example)
    n: Annotated[int, tyro.conf.arg(aliases=("-n",))] = 4
    """Number of images (issue 5: 4); image i uses seed + i."""
    model: str | None = None
    """Stable Diffusion 1.x/2.x: a diffusers folder, a .safetensors file or a cached hub id (None: the default model)."""
    steps: int = 50
    """DDIM steps (diffusers' StableDiffusionPipeline default)."""
    guidance: float = 7.5
    """Classifier-free guidance scale, uncond + s (cond - uncond) (diffusers' default)."""
    negative_prompt: str = ""
    eta: float = 0.0
    """DDIM's eta (Song et al. 2021); 0: deterministic, so a seed fixes the image."""
    seed: int = 0
    batch_size: int = 4
    """Images per UNet call (x2 for guidance); lower it on a small GPU."""
    device: Device = "auto"
    elevation: float | None = None
    """Camera-aware priors (`prior.camera`; the built-in one): draw from this many degrees above the horizon
    (None: the unknown camera)."""
    azimuth: float | None = None
    """Camera-aware priors: draw from this many degrees around the object, from its front towards its right."""
    radius: float = 1.25
    """The camera's distance: the middle of the training cameras' range (thesis 6.1.5: 1 to 1.5)."""
    fovy: float = 55.0
    """The camera's vertical field of view in degrees: the middle of the training range (thesis 6.1.5: 40 to 70)."""

    def camera(self, size: int) -> Cameras | None:
        """The one camera every image is drawn from, or None when no angle is given."""
        if self.elevation is None and self.azimuth is None:
            return None
        elevation = 0.0 if self.elevation is None else self.elevation
        azimuth = 0.0 if self.azimuth is None else self.azimuth
        return orbit_cameras(1, size, size, radius=self.radius, polar_deg=90.0 - elevation, fovy_deg=self.fovy,
                             start_azimuth_deg=azimuth).cameras


CONTACT_SHEET_GAP = 4  # white pixels around and between a contact sheet's images


def contact_sheet(images: Tensor, columns: int | None = None, gap: int = CONTACT_SHEET_GAP) -> Tensor:
    """Images [N, 3, H, W] on a white grid [H', W', 3] (channels last, for save_image); columns
    default to ceil(sqrt(N))."""
    count, _, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    sheet = torch.ones(3, rows * height + (rows + 1) * gap, columns * width + (columns + 1) * gap, dtype=images.dtype)
    for index, image in enumerate(images.cpu()):
        row, column = divmod(index, columns)
        top, left = gap + row * (height + gap), gap + column * (width + gap)
        sheet[:, top : top + height, left : left + width] = image
    return sheet.permute(1, 2, 0)


def check_sample_config(config: SampleConfig) -> None:
    if not config.prompt.strip():
        raise DreamtextError("the prompt is empty: describe the image to draw")
    if config.n <= 0 or config.steps <= 0 or config.batch_size <= 0:
        raise DreamtextError(f"-n, --steps and --batch-size must be positive (got {config.n}, {config.steps}, {config.batch_size})")
    if config.elevation is not None and not -90.0 <= config.elevation <= 90.0:
        raise DreamtextError(f"--elevation is in degrees above the horizon, in [-90, 90]; got {config.elevation}")
    if config.radius <= 0 or not 0 < config.fovy < 180:
        raise DreamtextError(f"--radius must be positive and --fovy in (0, 180) degrees; got {config.radius}, {config.fovy}")


def check_prior_takes_camera(prior: Prior, config: SampleConfig) -> None:
    if config.camera(prior.image_size) is not None and not takes_camera(prior.unet):
        raise DreamtextError("--elevation / --azimuth need a camera-aware prior (the built-in one); this model only "
                             "reads text: put the view in the prompt instead (\"..., side view\")")


def sample_images(prior: Prior, config: SampleConfig, on_batch=None, progress: bool = True) -> Tensor:
    """`config.n` images [n, 3, H, W] in [0, 1]; `on_batch(first_index, images)` sees each batch."""
    check_sample_config(config)
    check_prior_takes_camera(prior, config)
    camera = config.camera(prior.image_size)
    camera = None if camera is None else camera.to(prior.device)
    embeddings = TextEmbeddingCache(prior).encode([config.prompt, config.negative_prompt])
    cond, uncond = embeddings[:1], embeddings[1:]
    seeds = [config.seed + i for i in range(config.n)]
    batches = [seeds[start : start + config.batch_size] for start in range(0, config.n, config.batch_size)]
    images = []
    with Progress(total=config.steps * len(batches), description="sample", log_every=config.steps, enabled=progress) as bar:
        for number, batch_seeds in enumerate(batches):
            done = number * config.steps
            batch = ddim_sample(prior, cond, uncond, initial_noise(prior, batch_seeds), config.steps, config.guidance,
                                config.eta, torch.Generator().manual_seed(batch_seeds[0]), lambda k: bar.update(done + k),
                                cameras=camera)
            if on_batch is not None:
                on_batch(number * config.batch_size, batch)
            images.append(batch.cpu())
    return torch.cat(images)


def sample_to_workspace(config: SampleConfig, workspace: str | Path, progress: bool = True, prior: Prior | None = None) -> list[Path]:
    """Sample, write each image as soon as it exists, then the contact sheet and samples.json."""
    check_sample_config(config)  # before the prior loads
    folder = Workspace(workspace).path(SAMPLES_DIR)
    if prior is None:
        prior = load_prior(config.model, resolve_device(config.device))
    files: list[Path] = []

    def write(first: int, batch: Tensor) -> None:
        for offset, image in enumerate(batch):
            files.append(save_image(folder / f"sample_{first + offset:03d}.png", image.permute(1, 2, 0)))

    images = sample_images(prior, config, on_batch=write, progress=progress)
    sheet = save_image(folder / CONTACT_SHEET, contact_sheet(images))
    record = {**asdict(config), "files": [{"file": f.name, "seed": config.seed + i} for i, f in enumerate(files)]}
    atomic_write_json(folder / SAMPLES_FILE, record)
    return [*files, sheet]
