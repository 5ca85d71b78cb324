"""`dreamtext bench descriptor`: speed and memory of DreamText's descriptor training on a full-size
random Stable Diffusion 2.1-base (the same compute as the real model; REFERENCE.md 4).

It times the real `DescriptorTrainer.train_step` (augment, VAE encode, noise, text encoder with the
learned rows, one UNet call for the full and the base sentence with gradient to the learned rows,
backward, Adam) on a synthetic described image, with the default settings (bf16 and compiled CUDA
graphs on CUDA), after warm-up. The first step, which holds torch.compile's compilation, is reported
apart. Also timed, taking turns with the step: the data part alone (augmentations + VAE encode +
noising). The target (issue 5): 10k iterations in at most 10 minutes on one H100, i.e. >= 16.7 it/s.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..methods.image_to_3d.descriptor import DescriptorConfig, DescriptorTrainer, prior_dtype
from ..utils.images import save_image
from .engine import _peak_memory_mb, _sync
from .sds import build_random_sd21_base, interleaved_seconds, prior_bench_header

THESIS_ITERATIONS = 10_000  # thesis 6.3.3: about 10k descriptor iterations
TARGET_MINUTES = 10.0  # issue 5: 10k iterations in at most 10 minutes on one H100
BENCH_SENTENCE = {  # ours: a sentence with two descriptor words, as sentence selection typically ends
    "sentence": "An image of red, striped, a mug", "noun": "mug", "descriptors": ["red", "striped"],
    "quantifier": "a", "image": "input.png",
}


@dataclass(frozen=True)
class DescriptorBenchPlan:
    warmup: int
    iterations: int
    quick: bool

    @classmethod
    def for_device(cls, device: torch.device, quick: bool) -> "DescriptorBenchPlan":
        if quick:
            return cls(warmup=1, iterations=3, quick=True)
        if device.type == "cuda":
            return cls(warmup=10, iterations=50, quick=False)
        return cls(warmup=1, iterations=2, quick=False)  # ours: seconds per step with the full-size model on CPU


def write_bench_workspace(root: Path, size: int) -> Path:
    """A described workspace: a red box with a white stripe on white, and its describe.json."""
    image = torch.ones(size, size, 3)
    lo, hi = size // 4, 3 * size // 4
    image[lo:hi, lo:hi] = torch.tensor([0.8, 0.1, 0.1])
    image[lo + (hi - lo) // 3: lo + (hi - lo) // 2, lo:hi] = 0.95
    save_image(root / "input.png", image)
    (root / "describe.json").write_text(json.dumps(BENCH_SENTENCE))
    return root


def bench_descriptor(quick: bool = False, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> dict:
    device = torch.device(device)
    plan = DescriptorBenchPlan.for_device(device, quick)
    config = DescriptorConfig(device=device.type, checkpoint_every=10**9)
    dtype = dtype if dtype is not None else prior_dtype(config.precision, device)
    prior = build_random_sd21_base(device, dtype, quick=quick)
    with tempfile.TemporaryDirectory(prefix="dreamtext-bench-descriptor-") as tmp:
        root = write_bench_workspace(Path(tmp), prior.image_size)
        trainer = DescriptorTrainer(config, root, prior=prior)
        first = time.perf_counter()
        trainer.train_step()  # includes torch.compile's compilation on CUDA
        _sync(device)
        first_step_seconds = time.perf_counter() - first
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        times = interleaved_seconds(
            {"step": trainer.train_step, "data": trainer.noised_latents}, plan.warmup, plan.iterations, device
        )
        peak_mb = _peak_memory_mb(device)
    step_seconds, data_seconds = statistics.fmean(times["step"]), statistics.fmean(times["data"])
    minutes = step_seconds * THESIS_ITERATIONS / 60
    notes = []
    if quick:
        notes.append("quick: toy prior (16 px images); not the full-size model")
    elif device.type != "cuda":
        notes.append(f"CPU: the full-size model is very slow here, only {plan.iterations} iterations measured after {plan.warmup} warm-up")
    if device.type != "cuda":
        notes.append("CPU peak memory is the process's peak resident set")
    return {
        **prior_bench_header("descriptor", quick, device, prior.dtype),
        "image_size": prior.image_size,
        "batch_size": config.batch_size,
        "learned_tokens": len(trainer.tokens),
        "warmup_iterations": plan.warmup,
        "iterations_measured": plan.iterations,
        "step_seconds": step_seconds,
        "step_seconds_median": statistics.median(times["step"]),
        "iterations_per_second": 1.0 / step_seconds,
        "data_seconds": data_seconds,
        "data_fraction": data_seconds / step_seconds,
        "compile": config.compile if device.type == "cuda" else "off",
        "first_step_seconds": first_step_seconds,
        "minutes_for_10k_iterations": minutes,
        "minutes_for_10k_with_first_step": minutes + first_step_seconds / 60,
        "target_minutes_for_10k": TARGET_MINUTES,
        "meets_target": minutes + first_step_seconds / 60 <= TARGET_MINUTES,
        "peak_memory_mb": peak_mb,
        "skipped_steps": trainer.skipped_steps,
        "notes": notes,
    }
