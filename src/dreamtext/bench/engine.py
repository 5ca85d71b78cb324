"""`dreamtext bench engine`: throughput of the field + renderer, empty-space skipping, and the fit benchmark.

Figures (all measured in one process, side by side):
- rays/s of a training step (render + photometric loss + backward) through the thesis's field
  (6-level hash grid, 4 residual blocks of 96) at 64 and 256 px, for every hash-grid implementation
  that runs on the device (the torch reference and the fused torch path everywhere; Triton on CUDA), and each
  fast path's ratio to the reference;
- samples per ray that the field evaluates without and with the occupancy grid, on a fitted scene;
- on that fitted scene, a shaded training step (lambertian render + loss + backward) with normals at
  every sample and with normals only at visible samples (`RendererConfig.normals_min_weight`), taking
  turns, and the share of samples that got normals;
- held-out PSNR, mesh IoU and the surface F-score and part recall of the exported mesh against the true
  surface (`metrics.surface_scores`), of fitting the built-in scene, with its wall time (training and
  evaluation only: a benchmark writes no mesh, video or views);
- peak memory (CUDA allocator peak, or the process's peak resident set on CPU).
"""

from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from ..methods.fit import BuiltinSceneConfig, FitConfig, Fitter, load_fit_data
from ..export.mesh import extract_mesh
from ..metrics import field_iou, mesh_surface_points, scene_surface_samples, surface_scores
from ..scene.cameras import sample_training_cameras
from ..scene.field import FieldConfig, RadianceField
from ..scene.hash_encoding import HashGridConfig, available_implementations
from ..scene.renderer import RendererConfig, VolumeRenderer
from ..utils.workspace import Workspace
from ..world.analytic import default_scene


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def training_rays_per_second(implementation: str, size: int, device: torch.device, repeats: int, max_rays: int) -> dict:
    """Rays/s of render + loss + backward for one image of `size`^2 rays (at most `max_rays` per step)."""
    torch.manual_seed(0)
    field = RadianceField(FieldConfig(encoding=HashGridConfig(implementation=implementation))).to(device)
    renderer = VolumeRenderer(RendererConfig(use_occupancy_grid=False)).to(device)
    cameras = sample_training_cameras(1, size, size, generator=torch.Generator().manual_seed(0)).cameras.to(device)
    rays = cameras.generate_rays().flatten()
    rays = rays[: min(len(rays), max_rays)]
    background = torch.ones(3, device=device)
    target = torch.rand(len(rays), 3, device=device, generator=torch.Generator(device).manual_seed(0))

    def step() -> None:
        out = renderer.render_rays(field, rays.origins, rays.directions, background=background, perturb=True)
        F.mse_loss(out.rgb, target).backward()

    step()  # warm-up: allocations, kernel compilation
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / repeats
    return {
        "implementation": field.encoding.resolved_implementation,
        "image_size": size,
        "rays_per_step": len(rays),
        "samples_per_ray": renderer.config.num_samples,
        # Training renders above the renderer's sample budget checkpoint their field queries (recomputed in backward).
        "checkpointed_field_queries": renderer.checkpoint_chunk(len(rays) * renderer.config.num_samples) is not None,
        "seconds_per_step": seconds,
        "rays_per_second": len(rays) / seconds,
    }


def bench_engine(quick: bool = False, device: torch.device | str = "cpu") -> dict:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sizes = (32, 64) if quick else (64, 256)
    # On CPU a full 256 px step (4M samples) takes minutes: rays per step are capped there.
    max_rays = 1024 if quick else (2**16 if device.type == "cuda" else 8192)
    repeats = 1 if quick else 3
    implementations = [name for name in available_implementations() if name != "triton" or device.type == "cuda"]

    throughput = [
        training_rays_per_second(name, size, device, repeats, max_rays) for size in sizes for name in implementations
    ]
    speedups = {}
    for size in sizes:
        by_impl = {row["implementation"]: row["rays_per_second"] for row in throughput if row["image_size"] == size}
        for fast in ("fused", "triton"):
            if fast in by_impl and "torch" in by_impl:
                speedups[f"{fast} {size}px"] = by_impl[fast] / by_impl["torch"]

    config = FitConfig(device=device.type)
    if quick:
        config = replace(
            config, iters=60, batch_rays=512, eval_every=10**9, checkpoint_every=10**9,
            builtin=BuiltinSceneConfig(views=8, size=32),
        )
    fit_result = fit_without_export(config, shaded_repeats=1 if quick else 5)

    return {
        "suite": "engine",
        "quick": quick,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "training_throughput": throughput,
        "fast_path_speedup": speedups,
        "occupancy_grid": fit_result.pop("occupancy_grid"),
        "visible_normals": fit_result.pop("visible_normals"),
        "fit": fit_result,
        "peak_memory_mb": _peak_memory_mb(device),
    }


def fit_without_export(config: FitConfig, shaded_repeats: int = 5) -> dict:
    """Fit the built-in scene in a temporary workspace (checkpoints only; nothing is exported) and
    measure it: held-out PSNR, ground-truth IoU at the mesh threshold, wall time of the training,
    and the occupancy grid's effect on the fitted field."""
    with tempfile.TemporaryDirectory(prefix="dreamtext-bench-") as tmp:
        workspace = Workspace(tmp)
        fitter = Fitter(config, workspace, load_fit_data(config, workspace))
        start = time.perf_counter()
        fitter.train(progress=False)
        wall_seconds = time.perf_counter() - start
        heldout_psnr = fitter.evaluate()
        iou = field_iou(fitter.field, default_scene(), resolution=64, density_threshold=config.export.mesh.density_threshold)
        surface = surface_scores(mesh_surface_points(extract_mesh(fitter.field, config.export.mesh)),
                                 scene_surface_samples(default_scene()))
        return {
            "scene": "built-in red mug",
            "iters": fitter.step,
            "heldout_psnr": heldout_psnr,
            "mesh_iou": iou,
            "surface": surface,
            "wall_seconds": wall_seconds,
            "occupancy_grid": samples_per_ray_with_and_without_grid(fitter),
            "visible_normals": shaded_step_with_and_without_visible_normals(fitter, shaded_repeats),
        }


@torch.no_grad()
def samples_per_ray_with_and_without_grid(fitter: Fitter) -> dict:
    views = fitter.heldout_set if len(fitter.heldout_set) else fitter.train_set
    cameras = views.cameras.to(fitter.device)
    counts = {}
    for label, use in (("without_grid", False), ("with_grid", True)):
        out = fitter.renderer.render(fitter.field, cameras, background=fitter.background, use_occupancy=use)
        counts[label] = out.samples_per_ray
    counts["occupied_fraction"] = float(fitter.renderer.occupancy_grid.occupied_fraction)
    return counts


def shaded_step_with_and_without_visible_normals(fitter: Fitter, repeats: int, size: int = 64) -> dict:
    """Seconds of a lambertian training step on the fitted field with normals at every sample and only
    at the visible ones (the two settings take turns, on the same cameras), and the share of the
    evaluated samples that got normals."""
    field, device = fitter.field, fitter.device
    renderers = {
        label: VolumeRenderer(replace(fitter.renderer.config, normals_min_weight=weight), bound=field.bound).to(device)
        for label, weight in (("every_sample", 0.0), ("visible_only", RendererConfig().normals_min_weight))
    }
    for renderer in renderers.values():  # the fitted grid: both skip the same empty space
        renderer.load_state_dict(fitter.renderer.state_dict())
    calls = {"with_normals": 0, "all": 0}
    original_forward = field.forward

    def counted(points, with_normals=False):
        calls["all" if not with_normals else "with_normals"] += points.shape[0]
        return original_forward(points, with_normals=with_normals)

    def step(renderer: VolumeRenderer, seed: int) -> float:
        generator = torch.Generator().manual_seed(seed)
        cameras = sample_training_cameras(1, size, size, generator=generator).cameras.to(device)
        _sync(device)
        start = time.perf_counter()
        out = renderer.render(field, cameras, background=torch.ones(3, device=device), shading="lambertian",
                              requires_grad=True, perturb=True)
        out.rgb.square().mean().backward()
        _sync(device)
        return time.perf_counter() - start

    seconds = {label: 0.0 for label in renderers}
    for label, renderer in renderers.items():
        step(renderer, 0)  # warm-up
    field.forward = counted
    try:
        for seed in range(1, repeats + 1):
            for label, renderer in renderers.items():
                if label == "visible_only":
                    calls.update(with_normals=0, all=0)
                seconds[label] += step(renderer, seed) / repeats
    finally:
        del field.forward
    field.zero_grad(set_to_none=True)
    return {
        "image_size": size,
        "seconds_every_sample": seconds["every_sample"],
        "seconds_visible_only": seconds["visible_only"],
        "speedup": seconds["every_sample"] / seconds["visible_only"],
        "share_of_samples_with_normals": calls["with_normals"] / max(calls["all"], 1),
    }
