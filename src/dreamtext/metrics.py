"""Image and 3D metrics against ground truth: PSNR, voxel IoU, Chamfer distance, surface F-score and per-part
recall, albedo error, R-precision.

Every metric returns a Python float (ready for metrics.json and the benchmarks' JSON).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import Tensor

from .scene.protocols import Field

if TYPE_CHECKING:
    import trimesh

    from .world.analytic import AnalyticScene

# ours: 2^22 points (48 MB of float32 coordinates) per call keeps grid evaluation within a few
# hundred MB even for a learned field's activations, and 128^3 grids in one call.
DEFAULT_POINT_CHUNK = 1 << 22
# ours: 2^24 pairwise distances (64 MB) per block of the Chamfer nearest-neighbour search.
DEFAULT_DISTANCE_BLOCK = 1 << 24
# stable-dreamfusion's marching-cubes density threshold: the surface of a learned field.
DEFAULT_DENSITY_THRESHOLD = 10.0


def psnr(pred: Tensor, target: Tensor, max_val: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all elements (inf when the images are identical)."""
    if pred.shape != target.shape:
        raise ValueError(f"psnr needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
    mse = torch.mean((pred.double() - target.double()) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(max_val**2 / mse)


def albedo_error(pred_rgb: Tensor, true_rgb: Tensor, mask: Tensor | None = None) -> float:
    """Mean absolute error of colours [..., 3]; with a bool `mask` [...], only over the masked entries."""
    if pred_rgb.shape != true_rgb.shape:
        raise ValueError(f"albedo_error needs equal shapes, got {tuple(pred_rgb.shape)} and {tuple(true_rgb.shape)}")
    error = (pred_rgb.double() - true_rgb.double()).abs()
    if mask is not None:
        error = error[mask.reshape(error.shape[:-1]).bool()]
    return error.mean().item() if error.numel() else math.nan


# ---------------------------------------------------------------------------------------------
# Voxel occupancy
# ---------------------------------------------------------------------------------------------


def cell_centres(bound: float, resolution: int, device: torch.device | str = "cpu") -> Tensor:
    """Centres [R, R, R, 3] of the cells of a regular grid over [-bound, bound]^3, indexed [x, y, z]."""
    step = 2 * bound / resolution
    axis = -bound + step * (torch.arange(resolution, dtype=torch.float32, device=device) + 0.5)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)


@torch.no_grad()
def occupancy_grid(
    fn: Callable[[Tensor], Tensor],
    bound: float,
    resolution: int,
    chunk_size: int = DEFAULT_POINT_CHUNK,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Bool grid [R, R, R] (indexed [x, y, z]) of `fn` ([M, 3] -> bool [M]) at the cell centres.

    `fn` is an occupancy test, e.g. `scene.occupancy` or `lambda p: field.density(p) > threshold`.
    """
    points = cell_centres(bound, resolution, device).reshape(-1, 3)
    values = []
    for chunk in points.split(chunk_size):
        value = fn(chunk)
        if value.dtype != torch.bool:
            raise TypeError(f"occupancy_grid needs a function returning bool, got {value.dtype}; threshold it first")
        values.append(value.reshape(-1))
    return torch.cat(values).view(resolution, resolution, resolution)


def voxel_iou(occ_a: Tensor, occ_b: Tensor) -> float:
    """Intersection over union of two bool grids of the same shape (1 when both are empty)."""
    return voxel_overlap(occ_a, occ_b)["iou"]


def voxel_overlap(predicted: Tensor, truth: Tensor) -> dict[str, float]:
    """IoU and its two halves for bool grids of the same shape: precision (the share of the predicted
    cells that are truly occupied; low for a mass or floaters) and recall (the share of the true cells
    that are predicted; low for a shrunk or hollow object). An empty grid's share is nan (nothing to
    divide); IoU is 1 when both are empty."""
    if predicted.shape != truth.shape:
        raise ValueError(f"voxel_overlap needs grids of equal shapes, got {tuple(predicted.shape)} and {tuple(truth.shape)}")
    predicted, truth = predicted.bool(), truth.bool()
    both = (predicted & truth).sum().item()
    union, n_predicted, n_true = (predicted | truth).sum().item(), predicted.sum().item(), truth.sum().item()
    return {
        "iou": 1.0 if union == 0 else both / union,
        "precision": both / n_predicted if n_predicted else math.nan,
        "recall": both / n_true if n_true else math.nan,
    }


def field_iou(
    field: Field,
    scene: "AnalyticScene",
    resolution: int = 64,
    density_threshold: float = DEFAULT_DENSITY_THRESHOLD,
    bound: float | None = None,
) -> float:
    """Voxel IoU of `field`'s density > threshold against the scene's true occupancy.

    The grid covers [-bound, bound]^3 (the scene's cube by default) and is evaluated on the field's device.
    """
    return field_overlap(field, scene, resolution, density_threshold, bound)["iou"]


def field_overlap(
    field: Field,
    scene: "AnalyticScene",
    resolution: int = 64,
    density_threshold: float = DEFAULT_DENSITY_THRESHOLD,
    bound: float | None = None,
) -> dict[str, float]:
    """`voxel_overlap` (IoU, precision, recall) of `field`'s density > threshold against the scene's occupancy."""
    bound = scene.bound if bound is None else bound
    device = _device_of(field)
    predicted = occupancy_grid(lambda p: field.density(p) > density_threshold, bound, resolution, device=device)
    truth = occupancy_grid(scene.occupancy, bound, resolution, device=device)
    return voxel_overlap(predicted, truth)


def _device_of(field: Field) -> torch.device:
    parameters = getattr(field, "parameters", None)
    if callable(parameters):
        first = next(iter(parameters()), None)
        if first is not None:
            return first.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Chamfer distance
# ---------------------------------------------------------------------------------------------


def _nearest_distances(points: Tensor, others: Tensor, block: int) -> Tensor:
    """Distance from each of `points` [N, 3] to its nearest neighbour in `others` [M, 3]."""
    rows = max(1, block // max(1, others.shape[0]))
    # The direct difference formula: the matrix-product shortcut loses ~1e-3 to cancellation.
    return torch.cat([
        torch.cdist(chunk, others, compute_mode="donot_use_mm_for_euclid_dist").amin(dim=1)
        for chunk in points.split(rows)
    ])


@torch.no_grad()
def chamfer_distance(points_a: Tensor, points_b: Tensor, block: int = DEFAULT_DISTANCE_BLOCK) -> float:
    """Symmetric Chamfer distance: the average of the two directions' mean nearest-neighbour distance.

    Distances are Euclidean (not squared), so shifting a sparse point set by a small vector gives its length.
    """
    if points_a.shape[0] == 0 or points_b.shape[0] == 0:
        raise ValueError("chamfer_distance needs two non-empty point sets")
    a, b = points_a.double(), points_b.double()
    return 0.5 * (_nearest_distances(a, b, block).mean() + _nearest_distances(b, a, block).mean()).item()


def mesh_chamfer(mesh_a: "trimesh.Trimesh", mesh_b: "trimesh.Trimesh", n_samples: int = 10_000, seed: int = 0) -> float:
    """Chamfer distance between `n_samples` area-uniform surface points of each mesh (seeded).

    A mesh without faces (an empty reconstruction) is infinitely far: returns inf.
    """
    import trimesh

    if len(mesh_a.faces) == 0 or len(mesh_b.faces) == 0:
        return math.inf
    # One seed for both meshes: identical meshes give identical samples, hence exactly 0.
    samples = [
        torch.from_numpy(np.asarray(trimesh.sample.sample_surface(mesh, n_samples, seed=seed)[0], dtype=np.float64))
        for mesh in (mesh_a, mesh_b)
    ]
    return chamfer_distance(*samples)


@torch.no_grad()
def sdf_mesh(
    sdf: Callable[[Tensor], Tensor], bound: float, resolution: int = 128, chunk_size: int = DEFAULT_POINT_CHUNK
) -> "trimesh.Trimesh":
    """The zero level set of a signed distance function (negative inside), e.g. a ground-truth scene's.

    Marching cubes on a `resolution`^3 grid spanning [-bound, bound]^3 (ends included, as mesh export's
    grid). The SDF is smooth across the surface, so linear interpolation places vertices far more
    exactly than on a density grid. Faces point outwards; the shape must lie strictly inside the bound.
    """
    import mcubes
    import trimesh

    axis = torch.linspace(-bound, bound, resolution)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    values = torch.cat([sdf(chunk).reshape(-1) for chunk in points.split(chunk_size)]).view(resolution, resolution, resolution)
    # PyMCubes winds triangles from values above the level towards values below: -sdf is high inside.
    vertices, faces = mcubes.marching_cubes(-values.double().numpy(), 0.0)
    vertices = vertices * (2.0 * bound / (resolution - 1)) - bound
    return trimesh.Trimesh(vertices=vertices, faces=faces.astype(np.int64), process=True)


# ---------------------------------------------------------------------------------------------
# Surface F-score and per-part recall
# ---------------------------------------------------------------------------------------------

# Tatarchenko et al. 2019 ("What Do Single-view 3D Reconstruction Networks Learn?") recommend the F-score at
# a distance threshold over volume IoU, which misjudges hollow and thin objects. Thresholds in the units of the
# [-1, 1] scene cube: 0.02 about a 64 px pixel's footprint at the cameras' distance, 0.05 about a 32 px one's;
# parts at 0.03 (ours: a thin part is 0.05-0.06 across, so 0.03 asks that the mesh reach its middle).
SURFACE_THRESHOLDS = (0.02, 0.05)
PART_THRESHOLD = 0.03
# ours: 200k points a surface: their spacing (about 0.003 on the world's objects) adds at most half of it to
# a measured distance, a tenth of the finest threshold.
SURFACE_SAMPLES = 200_000


@dataclass(frozen=True)
class SurfaceSamples:
    """Points on a true surface [N, 3] (float64) and the index [N] of the part each lies on."""

    points: np.ndarray
    parts: np.ndarray
    part_names: tuple[str, ...]


def mesh_surface_points(mesh: "trimesh.Trimesh", count: int = SURFACE_SAMPLES, seed: int = 0) -> np.ndarray:
    """`count` area-uniform points [count, 3] on a mesh (seeded); empty for a mesh without faces."""
    import trimesh

    if len(mesh.faces) == 0:
        return np.zeros((0, 3))
    return np.asarray(trimesh.sample.sample_surface(mesh, count, seed=seed)[0], dtype=np.float64)


@torch.no_grad()
def scene_surface_samples(scene: "AnalyticScene", count: int = SURFACE_SAMPLES, resolution: int = 160,
                          seed: int = 0, projection_steps: int = 3) -> SurfaceSamples:
    """Points on a scene's true surface with their parts: area-uniform on the marching-cubes mesh of its SDF,
    then moved onto the zero level set by Newton steps p - sdf(p) grad / |grad|^2 (a surface point of the
    mesh lies within a grid cell of the true one; three steps bring it to float precision). A point's part is
    the one whose own SDF is smallest there (the albedo's rule, analytic.py)."""
    points = torch.from_numpy(mesh_surface_points(sdf_mesh(scene.sdf, scene.bound, resolution), count, seed))
    points = points.float()
    for _ in range(projection_steps):
        with torch.enable_grad():
            leaf = points.detach().requires_grad_(True)
            distance = scene.sdf(leaf)
            (gradient,) = torch.autograd.grad(distance.sum(), leaf)
        step = distance.detach()[:, None] * gradient / gradient.square().sum(-1, keepdim=True).clamp_min(1e-12)
        points = points - step
    parts = scene.part_sdfs(points).argmin(dim=-1)
    return SurfaceSamples(points.double().numpy(), parts.numpy(), tuple(part.name for part in scene.parts))


def nearest_distances(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Distance from each of `points` [N, 3] to its nearest neighbour in `others` [M, 3] (inf when M = 0)."""
    from scipy.spatial import cKDTree

    if len(others) == 0:
        return np.full(len(points), np.inf)
    return cKDTree(others).query(points, k=1)[0]


def surface_scores(predicted: np.ndarray, truth: SurfaceSamples, thresholds: tuple[float, ...] = SURFACE_THRESHOLDS,
                   part_threshold: float = PART_THRESHOLD) -> dict:
    """F-score of points on a reconstructed surface against a true surface, and each part's recall.

    At each threshold d: precision = the share of `predicted` [N, 3] within d of the true surface, recall =
    the share of the true points within d of the predicted ones, F = their harmonic mean (0 when both are 0).
    Keys `precision_002`, `recall_002`, `fscore_002` for d = 0.02; `part_recall`: {part name: the share of the
    points nearest that part within `part_threshold` of the prediction} (parts of one name pooled)."""
    to_truth = nearest_distances(predicted, truth.points)
    to_prediction = nearest_distances(truth.points, predicted)
    scores: dict = {}
    for threshold in thresholds:
        key = f"{threshold:.2f}".replace(".", "")
        precision = float((to_truth < threshold).mean()) if len(predicted) else 0.0
        recall = float((to_prediction < threshold).mean())
        scores[f"precision_{key}"] = precision
        scores[f"recall_{key}"] = recall
        scores[f"fscore_{key}"] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    reached = to_prediction < part_threshold
    names = np.asarray(truth.part_names)[truth.parts]
    scores["part_recall"] = {name: float(reached[names == name].mean()) for name in dict.fromkeys(truth.part_names)
                             if (names == name).any()}
    return scores


# ---------------------------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------------------------


def r_precision(similarity: Tensor, true_index: Tensor | int) -> float:
    """Fraction of rows of `similarity` [B, C] (query x candidates) whose true candidate scores highest.

    `true_index`: one candidate index per row [B], or one for all rows. With a single true candidate per
    query, R-precision is top-1 accuracy. A tie with a wrong candidate counts as a miss.
    """
    if similarity.dim() != 2 or similarity.shape[0] == 0:
        raise ValueError(f"r_precision needs a non-empty [queries, candidates] matrix, got {tuple(similarity.shape)}")
    rows = torch.arange(similarity.shape[0], device=similarity.device)
    truth = torch.as_tensor(true_index, device=similarity.device).expand(similarity.shape[0])
    true_scores = similarity[rows, truth]
    others = similarity.clone()
    others[rows, truth] = -math.inf
    return (true_scores > others.amax(dim=1)).double().mean().item()
