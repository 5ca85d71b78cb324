"""Benchmarks: each suite returns a dict of measured figures; `dreamtext bench SUITE --json` prints it."""

from __future__ import annotations

import json
from typing import Callable

from ..errors import DreamtextError
from ..utils.device import resolve_device
from .descriptor import bench_descriptor
from .engine import bench_engine
from .sds import bench_sds
from .step import bench_step
from .viewer import bench_viewer
from .world import bench_world

SUITES: dict[str, Callable[..., dict]] = {"engine": bench_engine, "sds": bench_sds, "descriptor": bench_descriptor,
                                          "step": bench_step, "world": bench_world,
                                          "viewer": bench_viewer}
# Settings beyond quick and device that a suite takes (CLI flags, e.g. `bench world --split dev`).
SUITE_OPTIONS: dict[str, tuple[str, ...]] = {"world": ("split", "cases", "workspace", "kinds", "seeds", "start", "engine", "overrides", "nouns", "captions"),
                                             "step": ("overrides",)}


def run_benchmark(suite: str, as_json: bool = False, quick: bool = False, device: str = "auto", **options) -> dict:
    """Run a suite; `options` left at None are not passed on, others must be among the suite's own."""
    given = {key: value for key, value in options.items() if value is not None}
    foreign = [key for key in given if key not in SUITE_OPTIONS.get(suite, ())]
    if foreign:
        flags = ", ".join(f"--{key}" for key in foreign)
        raise DreamtextError(f"{flags} does not apply to the {suite} suite; leave it out (the world suite takes --split, --cases, --nouns, --workspace, --kinds, --seeds, --start, --engine, --workers, --set)")
    result = SUITES[suite](quick=quick, device=resolve_device(device), **given)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return result


def _print_table(result: dict, prefix: str = "") -> None:
    for key, value in result.items():
        if isinstance(value, dict):
            _print_table(value, prefix=f"{prefix}{key}.")
        elif isinstance(value, list):
            for i, row in enumerate(value):
                _print_table(row, prefix=f"{prefix}{key}[{i}].") if isinstance(row, dict) else print(f"{prefix}{key}[{i}]: {row}")
        else:
            print(f"{prefix}{key}: {value:.4g}" if isinstance(value, float) else f"{prefix}{key}: {value}")
