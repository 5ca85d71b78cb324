"""How good the built-in prior is (issue 4, item 6; issue 26, item 4): images sampled for held-out
captions, classified by the small CLIP, and matched against true renders for their pose.

Words: for each of `count` dev-split objects (attribute combinations never trained on) the diffusion model
samples an image of its plain caption ("a small striped blue cube"), with no camera; the small CLIP then
classifies the image among every noun ("a mug") and every colour ("a blue object"). Noun and colour top-1
accuracy say whether the prior draws what it is asked for. The same classification of true renders of the
same objects is reported beside it (`clip_on_renders`): the ceiling the classifier itself allows.

Pose: for each of `pose_count` dev objects a camera is drawn (polar angle in `pose_polar_range_deg`, any
azimuth, at the middle of the training cameras' distance and field of view) and the prior draws the
object's caption with that camera's view suffix ("..., side view"), and, if it takes one, the camera
itself. The drawing's silhouette (told from its plain backdrop) is compared, by IoU, with the true
object's silhouette from a grid of candidate cameras (`pose_azimuths` azimuths x `pose_polars_deg`);
the best candidate is the pose the drawing shows. It is right when it lies within `pose_tolerance_deg`
of the true camera's direction, or when the true object looks the same from both (their silhouettes
agree to IoU `alike_iou`: a sphere has no pose to get wrong). The true camera is one of the
candidates, so an exact drawing matches it exactly. `pose_top1_asymmetric` counts the world's
asymmetric nouns only (a mug, a chair, ...), where the azimuth is visible.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ...scene.cameras import VIEW_LABELS, Cameras, orbit_cameras, view_label_ids
from ...utils.images import close_masks, foreground_masks, save_image
from ...world.objects import ASYMMETRIC_NOUNS
from ...world.renders import RenderConfig, sample_render_batch, trace_views
from ...world.vocabulary import NOUNS
from ...world.world import sample_object
from ..builtin import CLIP_WEIGHTS, load_builtin_clip
from ..camera import takes_camera
from ..loading import load_prior
from ..latents import images_to_latents
from ..prompts import TextEmbeddingCache
from ..sampling import best_at_cameras, ddim_sample, initial_noise
from ..tokenizer import build_clip_tokenizer
from .clip import COLOUR_NAMES, colour_prompts, noun_prompts, rank_captions
from .diffusion import DISTILLATION_GUIDANCE, conditional_and_plain, relative_squared_error


@dataclass(frozen=True)
class PriorEvalConfig:
    """How a small prior is measured: captions drawn and classified, and drawings at known cameras matched
    to true renders for their pose."""

    count: int = 256
    """Held-out (dev) objects whose plain captions are drawn and classified, noun and colour top-1 (ours: about
    12 per noun)."""
    steps: int = 30
    """DDIM steps of each drawing (ours)."""
    guidance: float = 7.5
    """Classifier-free guidance (Stable Diffusion's usual)."""
    batch_size: int = 64
    """Images per UNet call (ours)."""
    seed: int = 0
    pose_count: int = 64
    """Held-out objects drawn at known cameras and matched against true renders for their pose (ours; 0: skip)."""
    pose_azimuths: int = 12
    """Candidate poses every 360 / this many degrees of azimuth (ours: every 30)..."""
    pose_polars_deg: tuple[float, ...] = (45.0, 70.0, 95.0)
    """... at these polar angles (ours: three heights)."""
    pose_polar_range_deg: tuple[float, float] = (40.0, 100.0)
    """The drawings' cameras, from 50 degrees above the horizon to 10 below (ours)."""
    pose_tolerance_deg: float = 30.0
    """A pose counts as right within this angle (issue 26)."""
    backdrop_tolerance: float = 0.08
    """Silhouettes as the builtin preset cuts them (`ShapeInitConfig`)."""
    mask_closing: int = 9
    """Silhouettes as the builtin preset cuts them (`ShapeInitConfig`)."""
    camera_guidance: float = 0.0
    """The pose drawings' guidance by the prior's camera classifier towards their cameras (0: none;
    `prior.camera_classifier`)."""
    camera_classifier: str | None = None
    """A camera classifier folder for that guidance (None: the pipeline folder's own, if it has one)."""
    camera_candidates: int = 1
    """Each pose drawing the best of this many (different noise), chosen by the camera classifier for its camera
    (1: the one drawing)."""
    alike_iou: float = 0.9
    """A wrong pose still counts when the true object's silhouettes from it and from the true camera agree this
    much (a sphere has no pose to get wrong; ours)."""


def dev_objects(count: int, seed: int) -> list:
    return [sample_object(seed * 100_003 + i, "dev") for i in range(count)]


def _accuracy(model, tokenizer, images: Tensor, objects: list) -> tuple[Tensor, Tensor]:
    """Per-image noun and colour hits (bool) of CLIP's zero-shot classification."""
    nouns = torch.tensor([NOUNS.index(o.noun) for o in objects], device=images.device)
    colours = torch.tensor([COLOUR_NAMES.index(o.colour) for o in objects], device=images.device)
    noun_hits = rank_captions(model, tokenizer, images, noun_prompts()).argmax(1) == nouns
    colour_hits = rank_captions(model, tokenizer, images, colour_prompts()).argmax(1) == colours
    return noun_hits.cpu(), colour_hits.cpu()


def _draw(prior, captions: list[str], seeds: list[int], config: PriorEvalConfig, cameras=None) -> Tensor:
    """Images [N, 3, H, W] of `captions` (image i from the noise of seeds[i], at cameras[i] if given; with several
    camera candidates, the best of drawings from seeds[i] * candidates + k)."""
    candidates = config.camera_candidates if cameras is not None and prior.camera_classifier is not None else 1
    if candidates > 1:
        index = torch.arange(len(captions)).repeat_interleave(candidates)
        drawn = _draw(prior, [captions[i] for i in index.tolist()], [seeds[i] * candidates + k for i in range(len(captions))
                                                                     for k in range(candidates)],
                      replace(config, camera_candidates=1), cameras[index])
        return best_at_cameras(prior, drawn, cameras, candidates)
    cache = TextEmbeddingCache(prior)
    uncond = cache.encode([""])
    images = []
    for start in range(0, len(captions), config.batch_size):
        stop = min(start + config.batch_size, len(captions))
        batch_cameras = None if cameras is None else cameras[torch.arange(start, stop)].to(prior.device)
        images.append(ddim_sample(prior, cache.encode(captions[start:stop]), uncond, initial_noise(prior, seeds[start:stop]),
                                  config.steps, config.guidance, cameras=batch_cameras,
                                  camera_guidance=config.camera_guidance if cameras is not None else 0.0).cpu())
    return torch.cat(images)


def _silhouette_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boolean masks a [..., H, W] and b [..., H, W] (broadcast)."""
    union = (a | b).flatten(-2).sum(-1)
    return (a & b).flatten(-2).sum(-1) / union.clamp_min(1)


def pose_accuracy(draw: Callable[[list, list[str], Cameras], Tensor], size: int,
                  config: PriorEvalConfig = PriorEvalConfig()) -> dict:
    """{"pose_top1", "pose_top1_asymmetric", "pose_count", "pose_asymmetric_count"} (module docstring).

    draw(objects, captions, cameras): the images [N, 3, size, size] in [0, 1] to judge, one per object (a
    prior's drawings of the captions; the tests pass true renders)."""
    objects = dev_objects(config.pose_count, config.seed + 1)
    generator = torch.Generator().manual_seed(config.seed)
    low, high = config.pose_polar_range_deg
    polar = low + (high - low) * torch.rand(len(objects), generator=generator)
    azimuth = 360.0 * torch.rand(len(objects), generator=generator)
    render = RenderConfig(resolution=size, supersample=1)
    radius, fovy = sum(render.cameras.radius_range) / 2, sum(render.cameras.fovy_range_deg) / 2
    true_cameras = [orbit_cameras(1, size, size, radius, float(p), fovy, float(a)).cameras for p, a in zip(polar, azimuth)]
    labels = view_label_ids(polar, azimuth)
    captions = [o.caption(VIEW_LABELS[i]) for o, i in zip(objects, labels.tolist())]
    drawings = draw(objects, captions, Cameras.cat(true_cameras))
    drawn = close_masks(foreground_masks(drawings, config.backdrop_tolerance), config.mask_closing)[:, 0] > 0.5

    grid = [(p, 360.0 * k / config.pose_azimuths) for p in config.pose_polars_deg for k in range(config.pose_azimuths)]
    candidates = Cameras.cat([orbit_cameras(1, size, size, radius, p, fovy, a).cameras for p, a in grid])
    hits = []
    for obj, camera, mask in zip(objects, true_cameras, drawn):
        # the true camera is a candidate too: an exact drawing then matches it exactly
        options = Cameras.cat([camera, candidates])
        directions = options.origins / options.origins.norm(dim=-1, keepdim=True)
        # the true silhouettes closed as the drawing's are, so that filled gaps (a mug's handle) do not count
        seen = close_masks((trace_views(obj, options, render)[1] > 0.5).float(), config.mask_closing)[:, 0] > 0.5
        truth = seen[0]
        best = int(_silhouette_iou(mask, seen).argmax())
        angle = math.degrees(math.acos(float((directions[best] * directions[0]).sum().clamp(-1, 1))))
        alike = float(_silhouette_iou(truth, seen[best])) >= config.alike_iou
        hits.append(angle <= config.pose_tolerance_deg or alike)
    hits = torch.tensor(hits, dtype=torch.float32)
    asymmetric = torch.tensor([o.noun in ASYMMETRIC_NOUNS for o in objects])
    return {"pose_top1": float(hits.mean()), "pose_top1_asymmetric": float(hits[asymmetric].mean()),
            "pose_count": len(objects), "pose_asymmetric_count": int(asymmetric.sum())}


@torch.no_grad()
def evaluate_prior(pipeline_dir: str | os.PathLike, clip_dir: str | os.PathLike, config: PriorEvalConfig = PriorEvalConfig(),
                   device: torch.device | str = "cpu") -> dict:
    """{"noun_top1", "colour_top1", "clip_on_renders": {...}, "per_noun": {noun: top1}, "count", "pose_top1",
    "pose_top1_asymmetric", "camera_aware"} (see the module docstring)."""
    from transformers import CLIPModel

    device = torch.device(device)
    prior = load_prior(pipeline_dir, device, camera_classifier=config.camera_classifier)
    if (Path(clip_dir) / CLIP_WEIGHTS).is_file():  # the shipped layout: the text tower is the pipeline's text encoder
        clip = load_builtin_clip(device, clip_dir, Path(pipeline_dir) / "text_encoder")
    else:
        clip = CLIPModel.from_pretrained(clip_dir, local_files_only=True, use_safetensors=True, dtype=torch.float32).to(device).eval()
    tokenizer = build_clip_tokenizer()
    size = prior.image_size
    objects = dev_objects(config.count, config.seed)
    drawings = _draw(prior, [o.caption() for o in objects], [config.seed * 100_003 + i for i in range(len(objects))], config)

    sampled_noun, sampled_colour, render_noun, render_colour = [], [], [], []
    for start in range(0, config.count, config.batch_size):
        batch = objects[start : start + config.batch_size]
        hits = _accuracy(clip, tokenizer, drawings[start : start + len(batch)].to(device), batch)
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
    result = {
        "noun_top1": float(noun_hits.mean()), "colour_top1": float(colour_hits.mean()),
        "clip_on_renders": {"noun_top1": float(torch.cat(render_noun).float().mean()),
                            "colour_top1": float(torch.cat(render_colour).float().mean())},
        "per_noun": per_noun, "count": config.count, "steps": config.steps, "guidance": config.guidance,
        "camera_aware": takes_camera(prior.unet),
        "camera_guidance": config.camera_guidance if prior.camera_classifier is not None else 0.0,
    }
    if config.pose_count > 0:
        def draw(pose_objects, captions, cameras):
            return _draw(prior, captions, [config.seed * 7919 + i for i in range(len(captions))], config, cameras)

        result.update(pose_accuracy(draw, size, config))
    return result


def contact_sheet(pipeline_dir: str | os.PathLike, prompts: list[str], out_path: str | os.PathLike, per_prompt: int = 4,
                  device: torch.device | str = "cpu", steps: int = 30, guidance: float = 7.5, seed: int = 0) -> None:
    """A grid PNG: one row per prompt, `per_prompt` samples each."""
    from diffusers import StableDiffusionPipeline

    device = torch.device(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(pipeline_dir, local_files_only=True, use_safetensors=True, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    images = pipe([p for p in prompts for _ in range(per_prompt)], num_inference_steps=steps, guidance_scale=guidance,
                  height=size, width=size, generator=torch.Generator().manual_seed(seed), output_type="pt").images.float()
    rows = images.reshape(len(prompts), per_prompt, 3, size, size).permute(0, 3, 1, 4, 2)  # [P, H, K, W, 3]
    save_image(out_path, rows.reshape(len(prompts) * size, per_prompt * size, 3).cpu())


DISTANCE_TIMESTEPS = (20, 200, 500, 800)


def prediction_distance(pipeline_dir: str | os.PathLike, reference_dir: str | os.PathLike, count: int = 128,
                        seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """How far a prior's noise predictions lie from a reference prior's on the same inputs (a UNet distilled
    or continued from the reference, `train-prior unet --init-unet REFERENCE`): `count` dev-split renders,
    encoded by the reference's VAE (posterior means), each noised at every timestep of DISTANCE_TIMESTEPS with
    the same noise for both, with their plain captions and with the empty one. Returns {timestep: {"cond",
    "uncond", "guided <s>" for s in DISTILLATION_GUIDANCE}}: the relative squared error sum (e - e_ref)^2 /
    sum e_ref^2 of each prediction, the guided ones u + s (c - u) (what the drawings and SDS use; the terms
    `distillation_loss` sums). Both priors must share the VAE and the text encoder (the reference's are used
    for both)."""
    device = torch.device(device)
    reference = load_prior(reference_dir, device, dtype=torch.float32, camera=False)
    other = load_prior(pipeline_dir, device, dtype=torch.float32, camera=False)
    renders = sample_render_batch(count, seed * 7919, "dev", RenderConfig(resolution=reference.image_size), device="cpu")
    texts = TextEmbeddingCache(reference)
    cond, uncond = texts.encode([o.caption() for o in renders.objects]), texts.encode([""])
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        latents = images_to_latents(reference.vae, renders.images.to(device), dtype=torch.float32)
        result = {}
        for t in DISTANCE_TIMESTEPS:
            noise = torch.randn(latents.shape, generator=generator).to(device)
            steps = torch.full((len(latents),), t, device=device)
            noisy = reference.scheduler.add_noise(latents, noise, steps)
            predictions = []
            for prior in (other, reference):
                c, u = conditional_and_plain(prior.unet, noisy, steps, cond, uncond)
                predictions.append({"cond": c, "uncond": u, **{f"guided {s:g}": u + s * (c - u) for s in DISTILLATION_GUIDANCE}})
            mine, theirs = predictions
            result[t] = {k: float(relative_squared_error(mine[k], theirs[k])) for k in theirs}
    return result
