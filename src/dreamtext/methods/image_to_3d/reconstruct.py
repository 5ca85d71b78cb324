"""3D reconstruction from the learned sentence (thesis 5.2.3), with optional reference-view losses.

The learned tokens are loaded into the prior's tokenizer and text encoder, and the text-to-3D trainer
runs on the full sentence with the usual view suffixes ("An image of <dt-red>, a mug, front view").
The whole-sentence baseline conditions every view on its trained embedding instead (no suffixes: its
output is the encoder's output). RealFusion's reference-view losses (and "DreamText + reference", the
default method) add, at every step, an MSE between the render from a fixed input camera and the input
image, and between that render's opacity and the image's mask (on builtin: the photo at 64 px, a random
1024 of its pixels a step).

The reconstruction is an ordinary text-to-3D workspace, DIR/reconstruction: `dreamtext render` and
`dreamtext export` work on it as on any other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor

from ...data.input_image import InputImage
from ...errors import DreamtextError
from ...prior import Prior, load_prior
from ...prior.prompts import PromptConfig, PromptEmbeddings
from ...scene.cameras import Cameras, look_at, spherical_to_cartesian
from ...utils.device import precision_dtype, resolve_device
from ...utils.workspace_files import EMBEDDINGS_DIR, RECONSTRUCTION_DIR
from ..presets import apply_overrides, default_preset, preset_config
from ..text_to_3d import TextTo3DConfig, TextTo3DResult, TextTo3DTrainer, check_text_config, text_to_3d
from ..text_to_3d.start import DrawingSource, draw_views
from .descriptor import encode_prompts
from .inputs import workspace_input
from .learned import LearnedSentence
from .sentence import read_described_image

# The reference-view losses' (RGB, mask) weights by preset, on the SDS loss's scale (0.5 * sum of squares / batch).
# Stable Diffusion presets: stable-dreamfusion's image-conditioned defaults (lambda_rgb 1000, lambda_mask 500).
# builtin, ours: thirty times those; at 32 px and the small prior's 16 x 16 latents SDS outweighed them (`bench world
# --kinds dreamtext_ref --cases 6`: 1x -> 10x -> 30x measured, docs/experiments.md).
REFERENCE_WEIGHTS: dict[str, tuple[float, float]] = {"dreamfusion": (1000.0, 500.0), "fitfusion": (1000.0, 500.0),
                                                     "builtin": (30000.0, 15000.0)}
# The reference view's resolution by preset (absent: the run's render size). builtin, ours: the small prior's native
# 64 px, the size its photos are described at; SDS renders at 32 px for the prior's cost, but the input-view losses
# need no prior, so they see the photo at twice the detail for the same rays a step (`ReferenceViewConfig.rays`).
REFERENCE_SIZES: dict[str, int] = {"builtin": 64}


@dataclass(frozen=True)
class ReferenceViewConfig:
    """The fixed input camera and its losses (off: the thesis's DreamText; RealFusion mode switches them on)."""

    on: bool = False
    rgb_weight: float | None = None  # None: the preset's (REFERENCE_WEIGHTS)
    mask_weight: float | None = None  # None: the preset's (REFERENCE_WEIGHTS)
    polar_deg: float = 90.0  # ours: the photo is taken as the front view, at the horizon (RealFusion: a fixed front camera)
    azimuth_deg: float = 0.0  # front (scene/cameras.py: azimuth 0 looks at the object's front)
    radius: float = 1.25  # ours: the middle of the training radius range [1.0, 1.5] (thesis 6.1.5)
    fovy_deg: float = 55.0  # ours: the middle of the training field-of-view range [40, 70]
    size: int | None = None  # the input view's side in pixels; None: the preset's (REFERENCE_SIZES), else the render size
    rays: int | None = None  # the input view's pixels rendered a step, drawn at random; None: a training render's count

    def __post_init__(self):
        if (self.size is not None and self.size < 1) or (self.rays is not None and self.rays < 1):
            raise DreamtextError("reconstruct.reference.size and reconstruct.reference.rays must be positive (or unset)")

    def resolution(self, preset: str, render_size: int) -> tuple[int, int]:
        """(side, rays a step) of the input view on `preset` for a run rendering `render_size` px."""
        size = self.size if self.size is not None else REFERENCE_SIZES.get(preset, render_size)
        rays = self.rays if self.rays is not None else render_size ** 2
        return size, min(rays, size ** 2)

    def weights(self, preset: str) -> tuple[float, float]:
        """(RGB, mask) weights on `preset`: 0 and 0 when off."""
        if not self.on:
            return 0.0, 0.0
        rgb, mask = REFERENCE_WEIGHTS[preset]
        return (rgb if self.rgb_weight is None else self.rgb_weight), (mask if self.mask_weight is None else self.mask_weight)


# Thesis 8.1 (`main.py -O --h 256 --w 256 --iters 10100 --load_token 1`) and 6.3.3 (about 10k iterations): the
# reconstruction's size and length on a Stable Diffusion preset.
THESIS_RECONSTRUCTION: dict[str, Any] = {"render_size": 256, "iters": 10_000}
# ours: on builtin the start's drawings keep 20 DDIM steps for image to 3D: the preset's 15 (better for text) measured
# F@0.05 0.798 -> 0.785 (-0.013 +- 0.008 over the 6 image cases x 2 seeds, docs/experiments.md); and 4 candidates a
# drawing, the setting image to 3D's figures were measured with (the preset's 3 is measured for text only)
BUILTIN_RECONSTRUCTION: dict[str, Any] = {"init.steps": 20, "init.camera_candidates": 4}


@dataclass(frozen=True)
class ReconstructConfig:
    """A reconstruction: a text-to-3D run from the learned sentence, plus the reference-view losses. Its text-to-3D
    config is nested whole (`text`), so every text-to-3D setting has the one name `text` gives it."""

    preset: Literal["builtin", "dreamfusion", "fitfusion"] | None = None
    """Where `text` starts when it is not given: builtin on the built-in prior (its size, length and start shape, the
    hull of the prior's drawings drawn from the learned sentence), else dreamfusion at thesis 8.1's 256 px for 6.3.3's
    10k iterations (no --g: Stable DreamFusion's guidance). None: the model's (builtin or dreamfusion)."""
    text: Annotated[TextTo3DConfig | None, tyro.conf.arg(name="")] = None
    """The text-to-3D run, every setting of it (`--reconstruct.iters`, `--reconstruct.sds.guidance`, ...); its prompt
    is replaced by the learned sentence. None: the preset's (`resolve_text`)."""
    reference: ReferenceViewConfig = dataclasses.field(default_factory=ReferenceViewConfig)
    start_sentence: Literal["learned", "words"] = "learned"
    """ours: what a hull start's drawings are drawn from: the learned sentence (as SDS), or the words it was learned
    from (CLIP's sentence as plain text, e.g. "An image of flat, blue, a car"); SDS hears the learned sentence either
    way. A whole-sentence conditioning has no words to draw from and keeps its own."""


def reconstruction_preset(config: ReconstructConfig) -> str:
    """The text-to-3D preset a reconstruction runs on: the one named, else its model's (builtin or dreamfusion)."""
    return config.preset or default_preset(None if config.text is None else config.text.model)


def preset_text_config(preset: str) -> TextTo3DConfig:
    """A reconstruction's text-to-3D config on `preset` (no prompt yet): the preset with the
    thesis's size and length (THESIS_RECONSTRUCTION) on a Stable Diffusion preset; BUILTIN_RECONSTRUCTION on builtin."""
    return preset_config(preset, "", BUILTIN_RECONSTRUCTION if preset == "builtin" else THESIS_RECONSTRUCTION)


def resolve_text(config: ReconstructConfig, model: str | None = None) -> ReconstructConfig:
    """`config` with its text-to-3D config in place: the one given, else its preset's (the preset named, else
    `model`'s: a model decides the preset before any text-to-3D setting is given)."""
    if config.text is not None:
        return config
    preset = config.preset or default_preset(model)
    return dataclasses.replace(config, text=preset_text_config(preset))


def with_text_settings(config: ReconstructConfig, settings: dict[str, Any], model: str | None = None) -> ReconstructConfig:
    """`config` with dotted text-to-3D keys set on its (resolved) text config; None values are skipped."""
    config = resolve_text(config, model)
    given = {key: value for key, value in settings.items() if value is not None}
    return dataclasses.replace(config, text=apply_overrides(config.text, given))


class FixedConditioning:
    """One trained conditioning embedding for every view (the whole-sentence baseline), the `PromptEmbeddings` interface."""

    def __init__(self, conditional: Tensor, unconditional: Tensor):
        self._conditional = conditional.reshape(1, *conditional.shape[-2:])
        self._unconditional = unconditional.reshape(1, *unconditional.shape[-2:])

    def conditional(self, view_ids: Tensor) -> Tensor:
        return self._conditional.expand(view_ids.shape[0], -1, -1)

    def unconditional(self, batch: int) -> Tensor:
        return self._unconditional.expand(batch, -1, -1)


def reference_camera(config: ReferenceViewConfig, size: int, device: torch.device | str) -> Cameras:
    eye = spherical_to_cartesian(
        torch.tensor([config.radius], device=device), torch.tensor([config.polar_deg], device=device),
        torch.tensor([config.azimuth_deg], device=device),
    )
    return Cameras.from_fovy(look_at(eye), config.fovy_deg, size, size)


def reference_losses(rgb: Tensor, opacity: Tensor, image: InputImage) -> tuple[Tensor, Tensor]:
    """(RGB MSE, mask MSE) of a render [1, S, S, 3] over white and its opacity [1, S, S, 1] against the input."""
    target_rgb = image.image.permute(1, 2, 0).unsqueeze(0).to(rgb)
    target_mask = image.mask.permute(1, 2, 0).unsqueeze(0).to(opacity)
    return F.mse_loss(rgb, target_rgb), F.mse_loss(opacity, target_mask)


def drawn_from(embeddings) -> DrawingSource:
    """A hull start's drawing source that draws from `embeddings` whatever conditioning the run itself has."""
    def draw(prior, _run_embeddings, init, **kwargs):
        return draw_views(prior, embeddings, init, **kwargs)
    return draw


class ImageTo3DTrainer(TextTo3DTrainer):
    """Text-to-3D with a learned sentence, plus the reference-view losses when they are on."""

    def __init__(self, config: TextTo3DConfig, workspace, prior=None, embeddings=None,
                 reference: ReferenceViewConfig = ReferenceViewConfig(), workspace_root: Path | None = None,
                 preset: str = "builtin", drawings: DrawingSource | None = None):
        super().__init__(config, workspace, prior=prior, embeddings=embeddings, drawings=drawings)
        self.reference = reference
        self.rgb_weight, self.mask_weight = reference.weights(preset)
        self.reference_image: InputImage | None = None
        if self.rgb_weight > 0 or self.mask_weight > 0:
            if workspace_root is None:
                raise DreamtextError("reference-view losses need the input image; run `dreamtext describe` first")
            described = read_described_image(workspace_root)
            size, self.reference_rays = reference.resolution(preset, config.render_size)
            image = workspace_input(workspace_root, described.image, described.mask, size)
            image.image, image.mask = image.image.to(self.device), image.mask.to(self.device)
            self.reference_image = image
            self.reference_cameras = reference_camera(reference, size, self.device)
            self.white = torch.ones(3, device=self.device)
            if self.reference_rays < size * size:  # a share of the view a step: its rays and targets flattened once
                rays = self.reference_cameras.generate_rays()
                self.reference_pixels = (rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3),
                                         image.image.reshape(3, -1).T, image.mask.reshape(1, -1).T)

    def extra_loss(self) -> Tensor | None:
        if self.reference_image is None:
            return None
        camera = self.reference_cameras
        if self.reference_rays >= camera.width * camera.height:  # the whole view
            out = self.renderer.render(self.field, camera, background=self.white, shading="albedo",
                                       generator=self.generator, perturb=True, requires_grad=True)
            rgb_loss, mask_loss = reference_losses(out.rgb, out.opacity, self.reference_image)
        else:  # a random share of its pixels: the same losses in expectation, at a training render's cost
            origins, directions, target_rgb, target_mask = self.reference_pixels
            pixels = torch.randperm(origins.shape[0], generator=self.generator,
                                    device=self.generator.device)[:self.reference_rays].to(self.device)
            out = self.renderer.render_rays(self.field, origins[pixels], directions[pixels], background=self.white,
                                            shading="albedo", generator=self.generator, perturb=True,
                                            chunk=self.renderer.config.chunk_rays, keep_samples=False)
            rgb_loss = F.mse_loss(out.rgb, target_rgb[pixels].to(out.rgb))
            mask_loss = F.mse_loss(out.opacity, target_mask[pixels].to(out.opacity))
        return self.rgb_weight * rgb_loss + self.mask_weight * mask_loss


def text_config_for(learned: LearnedSentence, config: ReconstructConfig) -> TextTo3DConfig:
    """The text-to-3D config of a reconstruction: its text config with the learned prompt."""
    text = reconstruction_text_config(learned.prompt, config)
    if learned.conditioning is not None:  # one trained embedding for every view: no view suffixes
        text = dataclasses.replace(text, prompt=PromptConfig(prompt=learned.prompt, view_dependent=False))
    return text


def check_reconstruct_config(config: ReconstructConfig) -> None:
    """One-line errors for reconstruction settings that cannot run, before any stage does."""
    check_text_config(reconstruction_text_config("a placeholder sentence", config))


def reconstruction_text_config(prompt: str, config: ReconstructConfig) -> TextTo3DConfig:
    """The reconstruction's text-to-3D config (`resolve_text`) for `prompt`, its negative prompt kept."""
    text = resolve_text(config).text
    return dataclasses.replace(text, prompt=dataclasses.replace(text.prompt, prompt=prompt))


def reconstruct(
    workspace: str | Path, config: ReconstructConfig = ReconstructConfig(), resume: bool = False, progress: bool = True,
    prior: Prior | None = None,
) -> TextTo3DResult:
    """Reconstruct the object of workspace DIR from its learned sentence into DIR/reconstruction.

    prior: an already loaded prior (it gains the learned tokens).
    """
    root = Path(workspace)
    learned = LearnedSentence.load(root / EMBEDDINGS_DIR)
    text = text_config_for(learned, config)
    if prior is None:
        device = resolve_device(text.device)
        prior = load_prior(text.model, device=device, dtype=precision_dtype(text.precision), camera=text.prior_camera)
    if prior.text_encoder is None:
        raise DreamtextError("reconstruction needs the prior's text encoder to load the learned tokens; load the prior afresh")
    learned.install(prior.tokenizer, prior.text_encoder)
    drawings = None
    if config.start_sentence == "words" and learned.conditioning is None and learned.tokens:
        words = PromptEmbeddings(prior, dataclasses.replace(text.prompt, prompt=learned.template.format(*learned.words)))
        drawings = drawn_from(words)
    embeddings = None
    if learned.conditioning is not None:
        unconditional = encode_prompts(prior, [text.prompt.negative_prompt])
        embeddings = FixedConditioning(learned.conditioning.to(prior.device, prior.dtype), unconditional)
        prior.free_text_encoder()
    make_trainer = partial(ImageTo3DTrainer, embeddings=embeddings, reference=config.reference, workspace_root=root,
                           preset=reconstruction_preset(config), drawings=drawings)
    return text_to_3d(text, root / RECONSTRUCTION_DIR, resume=resume, progress=progress, prior=prior, make_trainer=make_trainer)
