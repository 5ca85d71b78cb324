"""The diversity study of `dreamtext bench world` (issue 5, item 8; thesis 5.3).

One prompt, the caption of the benchmark's first object, and K seeds: K plain text-to-3D runs (seed
s + i) against `dreamtext diverse` (K prior samples from seeds s + i, one DreamText reconstruction
each). The figure is how far apart the K results of each method are, averaged over the K(K-1)/2 pairs:

    occupancy_distance  1 - voxel IoU of the two fields' occupancies (density above the mesh threshold)
    clip_distance       1 - cosine of the small CLIP's embeddings of their front renders

0 means K identical objects (text-to-3D's collapse to one generic object, which diversity
augmentation is meant to break). The mean IoU of the results against the true object says what the
diversity costs in fidelity.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from ..errors import DreamtextError
from ..methods.image_to_3d.diverse import DiverseConfig, diverse
from ..methods.image_to_3d.reconstruct import reference_camera
from ..methods.sample import SampleConfig
from ..methods.trained import load_trained
from ..metrics import occupancy_grid, voxel_iou
from .world_cases import WorldCase, benchmark_objects, run_text_case
from .world_image import describe_clip, image_pipeline_config
from .world_config import WorldBenchConfig
from .world_metrics import ClipScorer, field_views

DIVERSITY_DIR = "diversity"


def _pair_mean(values: Tensor) -> float:
    """The mean of a symmetric [K, K] matrix over its K(K-1)/2 pairs (above the diagonal)."""
    k = values.shape[0]
    if k < 2:
        raise DreamtextError(f"diversity needs at least 2 results, got {k}")
    upper = torch.triu_indices(k, k, offset=1)
    return values[upper[0], upper[1]].double().mean().item()


def mean_pairwise_occupancy_distance(grids: Tensor) -> float:
    """Mean 1 - IoU over the pairs of K bool occupancy grids [K, ...] (two empty grids count as equal)."""
    flat = grids.reshape(grids.shape[0], -1).double()
    intersection = flat @ flat.T
    sizes = flat.sum(dim=1)
    union = sizes[:, None] + sizes[None, :] - intersection
    iou = torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))
    return _pair_mean(1 - iou)


def mean_pairwise_embedding_distance(embeddings: Tensor) -> float:
    """Mean 1 - cosine over the pairs of K embeddings [K, D]."""
    unit = torch.nn.functional.normalize(embeddings.double(), dim=-1)
    return _pair_mean(1 - unit @ unit.T)


@torch.no_grad()
def result_features(workspaces: list[Path], obj, scorer: "ClipScorer", config: "WorldBenchConfig",
                    device: torch.device) -> tuple[Tensor, Tensor, list[float]]:
    """For K trained workspaces: occupancy grids [K, R, R, R], CLIP embeddings of front renders [K, D],
    and each one's IoU against the true object."""
    evaluation, grids, views = config.evaluation, [], []
    bound, resolution = obj.scene.bound, evaluation.iou_resolution  # the grid of the benchmark's IoU
    camera = reference_camera(config.image.reference, evaluation.view_size, device)
    for workspace in workspaces:
        trained = load_trained(workspace, device=device.type)
        field, threshold = trained.field, trained.export.mesh.density_threshold
        grids.append(occupancy_grid(lambda p: field.density(p) > threshold, bound, resolution, device=device).cpu())
        views.append(field_views(field, trained.renderer, camera, evaluation).shaded.cpu())
    truth = occupancy_grid(obj.scene.occupancy, bound, resolution)
    embeddings = scorer.backend.encode_image(torch.cat(views).permute(0, 3, 1, 2)).cpu()
    return torch.stack(grids), embeddings, [voxel_iou(grid, truth) for grid in grids]


def diversity_figures(workspaces: list[Path], obj, scorer: "ClipScorer", config: "WorldBenchConfig", device: torch.device,
                      seconds: float) -> dict:
    grids, embeddings, ious = result_features(workspaces, obj, scorer, config, device)
    return {
        "occupancy_distance": mean_pairwise_occupancy_distance(grids),
        "clip_distance": mean_pairwise_embedding_distance(embeddings),
        "mean_iou": sum(ious) / len(ious), "ious": ious, "wall_seconds": seconds,
    }


def run_diversity_study(config: "WorldBenchConfig", root: Path, scorer: "ClipScorer", device: torch.device) -> dict:
    """K text-to-3D runs and `diverse` with K images of the first benchmark object's caption, in
    root/diversity (resumed when present); their diversity figures."""
    k = config.image.diversity_k
    if k < 2:
        raise DreamtextError(f"the diversity study needs K >= 2 results per method, got {k}")
    obj = benchmark_objects(1, config.split)[0]
    prompt, seeds, folder = obj.caption(), [config.seed + i for i in range(k)], root / DIVERSITY_DIR

    start = time.perf_counter()
    text_workspaces = [folder / f"text_seed_{seed}" for seed in seeds]
    for seed, workspace in zip(seeds, text_workspaces):
        run_text_case(WorldCase("text", obj, 0), workspace, replace(config, seed=seed), device)
    text_seconds = time.perf_counter() - start

    start = time.perf_counter()
    # The prompt names the noun: fixed in every sentence (thesis 8.1's --noun), the descriptors chosen per image.
    image_config = image_pipeline_config("dreamtext", config, device, noun=obj.noun)
    sample = SampleConfig(prompt=prompt, n=k, model=image_config.descriptor.model, steps=config.image.sample_steps,
                          seed=config.seed, device=device.type)
    try:
        results = diverse(prompt, folder / "diverse", k, DiverseConfig(sample=sample, image=image_config),
                          progress=False, clip=describe_clip(device.type))
        diverse_figures = {**diversity_figures([r.reconstruction for r in results], obj, scorer, config, device,
                                               time.perf_counter() - start), "prompts": [r.prompt for r in results]}
    except DreamtextError as error:  # e.g. a sample the prior drew that cannot be read as an image
        diverse_figures = {"error": str(error)}
    return {
        "prompt": prompt, "k": k, "seeds": seeds,
        "text": diversity_figures(text_workspaces, obj, scorer, config, device, text_seconds),
        "diverse": diverse_figures,
    }


STUDIES = {"diversity": run_diversity_study}
