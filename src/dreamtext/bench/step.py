"""`dreamtext bench step`: where one training step of the `builtin` preset spends its time, on this machine.

Text-to-3D with the built-in prior at the preset's 32 px and at the prior's native 64 px, measured in one
process with the parts taking turns (`sds.interleaved_seconds`), each part timed on its own:

- `step`: the real `TextTo3DTrainer.train_step` (the preset's mix of shading modes after its albedo-only epochs),
  from the density blob rather than the preset's hull start (no drawings to wait for; the blob is the larger shape);
- `prior`: the SDS loss and its backward on a random render of the size (the VAE encoder with backward and
  the guided UNet call): the floor of any step, `step_to_prior` is the step's multiple of it;
- `render_forward`, `render_backward`: a shaded training render and the backward of a plain loss on it
  (the field's and the renderer's own cost), and `normals`: the part of the forward that shading's
  finite-difference normals add (the same render with flat albedo, subtracted);
- `optimizer`: Adan's update of every group;
- `other`: the rest (occupancy grid updates, camera sampling, regularisers, bookkeeping);
- `profile_top_operators`: torch.profiler's table of whole steps, the operators taking the most time;
- with `settings` (`--set KEY=VALUE`, dotted config names): the same step with them on top of the preset, taking
  turns with the preset's (`variant`: its seconds and multiple of the prior, and `speedup`, side by side in one
  process);
- `stages` (not with --quick): where a user's wait goes in the main command (`dreamtext text` with the preset,
  or the variant): each stage's wall time from a short run's metrics.json (the start's drawings, hull and fit,
  `stage_iters` SDS steps, mesh, turntable and views), the two runs one after the other.
"""

from __future__ import annotations

import statistics
import tempfile

import torch

from ..methods.presets import preset_config
from ..methods.text_to_3d import TextTo3DTrainer, text_to_3d
from ..scene.cameras import sample_training_cameras
from ..scene.shading import light_directions_near_camera
from ..utils.workspace import Workspace
from .sds import interleaved_seconds, prior_alone_step

BENCH_PROMPT = "a red mug"


def _render(trainer: TextTo3DTrainer, shading: str, backward: bool):
    config, generator = trainer.config, torch.Generator().manual_seed(1)
    size = config.render_size
    sample = sample_training_cameras(config.batch_size, size, size, config.cameras, generator, trainer.device)
    lights = light_directions_near_camera(sample.cameras.origins, config.light_std, generator)

    def step() -> None:
        out = trainer.renderer.render(trainer.field, sample.cameras, background=torch.ones(3), shading=shading,
                                      light_dirs=lights, generator=generator, perturb=True, requires_grad=True)
        if backward:
            trainer.optimizer.zero_grad(set_to_none=True)
            out.rgb.mean().backward()

    return step


def _optimizer_step(trainer: TextTo3DTrainer):
    parameters = [p for group in trainer.optimizer.param_groups for p in group["params"]]

    def step() -> None:
        for parameter in parameters:  # a gradient of the right size on every parameter, as after a backward pass
            parameter.grad = torch.full_like(parameter, 1e-6)
        trainer.optimizer.step()

    return step


PROFILE_TOP = 15  # operators listed in the profiler's table


def profile_operators(step, iterations: int, top: int = PROFILE_TOP) -> list[dict]:
    """torch.profiler's table of `iterations` calls of `step`: the `top` operators by their own (self)
    time, per step and as a share of the profiled time (the autograd engine's backward ops included)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(iterations):
            step()
    events = [event for event in profiler.key_averages() if event.self_cpu_time_total > 0]
    total = sum(event.self_cpu_time_total for event in events)
    events.sort(key=lambda event: event.self_cpu_time_total, reverse=True)
    return [{"operator": event.key, "self_ms_per_step": event.self_cpu_time_total / 1000 / iterations,
             "share": event.self_cpu_time_total / total, "calls_per_step": event.count / iterations}
            for event in events[:top]]


def bench_size(size: int, iterations: int, warmup: int, device: torch.device, profile_steps: int = 0,
               settings: dict | None = None) -> dict:
    overrides = {"device": device.type, "render_size": size, "init.kind": "blob", "shading.albedo_only_epochs": 0}
    config = preset_config("builtin", BENCH_PROMPT, overrides)
    with tempfile.TemporaryDirectory(prefix="dreamtext-bench-step-") as tmp:
        trainer = TextTo3DTrainer(config, Workspace(tmp))
        variant = None
        if settings:
            variant = TextTo3DTrainer(preset_config("builtin", BENCH_PROMPT, {**overrides, **settings}), Workspace(f"{tmp}/variant"),
                                      prior=trainer.prior, embeddings=trainer.embeddings)  # the encoder is freed
        parts = {
            **({"variant": variant.train_step} if variant is not None else {}),
            "step": trainer.train_step,
            "prior": prior_alone_step(trainer),
            "render_albedo_forward": _render(trainer, "albedo", backward=False),
            "render_forward": _render(trainer, "lambertian", backward=False),
            "render_forward_backward": _render(trainer, "lambertian", backward=True),
            "optimizer": _optimizer_step(trainer),
        }
        times = {name: statistics.fmean(values) for name, values in interleaved_seconds(parts, warmup, iterations, device).items()}
        profile = profile_operators(trainer.train_step, profile_steps) if profile_steps > 0 else None
    render_backward = max(0.0, times["render_forward_backward"] - times["render_forward"])
    normals = max(0.0, times["render_forward"] - times["render_albedo_forward"])
    known = times["prior"] + times["render_forward"] + render_backward + times["optimizer"]
    compared = {}
    if variant is not None:
        compared = {"variant": {"step_seconds": times["variant"], "step_to_prior": times["variant"] / times["prior"],
                                "iterations_per_second": 1.0 / times["variant"]},
                    "speedup": times["step"] / times["variant"]}
    return {
        "render_size": size,
        **compared,
        "step_seconds": times["step"],
        "iterations_per_second": 1.0 / times["step"],
        "prior_seconds": times["prior"],
        "step_to_prior": times["step"] / times["prior"],
        "parts_seconds": {
            "prior (VAE encode + backward, guided UNet)": times["prior"],
            "render forward": times["render_forward"],
            "  of which normals": normals,
            "render backward": render_backward,
            "optimizer": times["optimizer"],
            "other": max(0.0, times["step"] - known),
        },
        **({"profile_top_operators": profile} if profile is not None else {}),
    }


STAGE_ITERS = 30  # ours: SDS steps of the stage timings' short runs (their per-step time is `sizes`' business)
STAGE_SETTINGS: dict = {}  # what both stage runs take besides the preset (tests shrink the exports)


def stage_seconds(settings: dict, device: torch.device, iters: int = STAGE_ITERS) -> dict:
    """Each stage's wall time (metrics.json's stage_seconds) of `dreamtext text "a red mug"` with the builtin
    preset and `settings`, shortened to `iters` SDS steps."""
    with tempfile.TemporaryDirectory(prefix="dreamtext-bench-stages-") as tmp:
        config = preset_config("builtin", BENCH_PROMPT, {"device": device.type, "iters": iters, **STAGE_SETTINGS, **settings})
        result = text_to_3d(config, f"{tmp}/run", progress=False)
    return result.metrics["stage_seconds"]


def bench_step(quick: bool = False, device: torch.device | str = "cpu", overrides: dict | None = None) -> dict:
    """`overrides`: settings (dotted config names) measured as the variant beside the preset."""
    device = torch.device(device)
    iterations, warmup, profile_steps = (2, 1, 1) if quick else (20, 3, 5)
    sizes = (32,) if quick else (32, 64)
    result = {
        "suite": "step",
        "quick": quick,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "preset": "builtin",
        **({"variant": overrides} if overrides else {}),
        "iterations_measured": iterations,
        "sizes": [bench_size(size, iterations, warmup, device, profile_steps, overrides) for size in sizes],
    }
    if not quick:
        result["stages"] = {"preset": stage_seconds({}, device), **({"variant": stage_seconds(overrides, device)} if overrides else {}),
                            "stage_iters": STAGE_ITERS}
    return result
