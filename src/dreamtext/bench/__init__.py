"""Benchmarks: each suite returns a dict of measured figures; `dreamtext bench SUITE --json` prints it."""

from __future__ import annotations

import json
from typing import Callable

from ..utils.device import resolve_device
from .descriptor import bench_descriptor
from .engine import bench_engine
from .hull import bench_hull
from .sds import bench_sds
from .step import bench_step
from .viewer import bench_viewer
from .world import bench_world
from .world_config import WorldBenchConfig

SUITES: dict[str, Callable[..., dict]] = {"engine": bench_engine, "sds": bench_sds, "descriptor": bench_descriptor,
                                          "step": bench_step, "hull": bench_hull, "world": bench_world,
                                          "viewer": bench_viewer}


def run_benchmark(suite: str, as_json: bool = False, quick: bool = False, device: str = "auto",
                  world: WorldBenchConfig | None = None, overrides: dict | None = None, workspace: str | None = None) -> dict:
    """Run a suite and print its figures. world: the world suite's whole config (None: the default, or
    `WorldBenchConfig.quick()` when `quick`); overrides: the step and hull suites' variant settings; workspace: the hull
    suite's `bench world` workspace whose runs' drawings it carves as well."""
    resolved = resolve_device(device)
    if suite == "world":
        result = SUITES[suite](world or WorldBenchConfig.defaults(quick), resolved, quick=quick)
    elif suite == "step":
        result = SUITES[suite](quick=quick, device=resolved, overrides=overrides)
    elif suite == "hull":
        result = SUITES[suite](quick=quick, device=resolved, overrides=overrides, workspace=workspace)
    else:
        result = SUITES[suite](quick=quick, device=resolved)
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
