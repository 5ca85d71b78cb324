"""A list of jobs: each one object made by one method, in a workspace of its own.

A job file is either plain text, one prompt per line (`#` starts a comment line), each a text-to-3D job
with the default preset, or JSON Lines, one object per line:

    {"kind": "text", "prompt": "a red mug", "preset": "builtin", "overrides": {"iters": 600}, "seeds": [0, 1]}
    {"kind": "image", "image": "photos/mug.png", "method": "dreamtext", "overrides": {"descriptor.iters": 2000}}
    {"kind": "diverse", "prompt": "An image of a dog", "n": 4}

`overrides` are the settings a command line would give, by their option names (`iters`, `sds.guidance`,
`renderer.max_samples_per_chunk`; a leading `--` and dashes are accepted, so `--sds.guidance` works too): a
text job's `TextTo3DConfig`, an image or diverse job's `ImageTo3DConfig` (`descriptor.*`, `reconstruct.*`,
the reconstruction's text-to-3D settings among them: `reconstruct.iters`, `reconstruct.sds.guidance`).
`seeds` expands a line into one job per seed (the batch's `--seeds` does so for every line without its
own). Relative image paths are read from the job file's folder.

Every line is checked before anything runs: a malformed line, an unknown kind or an unknown setting is a
one-line error that names the line. Each job gets a stable, readable name (its words, its seed and a
short hash of everything that defines it), so a job keeps its workspace when the list is reordered or
grows, and a rerun finds the jobs it has finished.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import DreamtextError, RunInterrupted
from ..methods.image_to_3d.diverse import DIVERSE_METHOD, DiverseConfig, diverse
from ..methods.image_to_3d.descriptor import check_config as check_descriptor_config
from ..methods.image_to_3d.pipeline import (DEFAULT_METHOD, METHODS, ImageTo3DConfig, image_to_3d, method_config,
                                             with_settings, with_stage_settings)
from ..methods.image_to_3d.reconstruct import check_reconstruct_config
from ..methods.registry import BATCH_JOB_KINDS
from ..methods.presets import PRESETS, default_preset, preset_config
from ..methods.sample import SampleConfig
from ..methods.text_to_3d import check_text_config, text_to_3d
from ..utils.config import config_flags
from ..utils.io import atomic_write_json

Kind = Literal["text", "image", "diverse"]
KINDS: tuple[str, ...] = BATCH_JOB_KINDS  # the methods registry's job kinds (a test keeps `Kind` equal to them)
JOB_FILE = "job.json"  # in each job's workspace: what it ran and how it ended
_LINE_KEYS = {"kind", "prompt", "image", "preset", "method", "n", "overrides", "seeds", "name"}


@dataclass(frozen=True)
class Job:
    """One object to make. `name` is its workspace's folder name under the batch's workspace."""

    kind: Kind
    name: str
    prompt: str | None = None
    image: str | None = None
    preset: str | None = None
    method: str | None = None
    n: int = 4
    seed: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    line: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Job":
        return cls(**data)


def _setting_name(key: str) -> str:
    return key.lstrip("-").replace("-", "_")


@lru_cache(maxsize=1)
def _image_setting_paths() -> dict[str, str]:
    """An image job's option names -> their config paths (`reconstruct.iters` -> `reconstruct.text.iters`)."""
    return {flag.replace("-", "_"): path for flag, path, _ in config_flags(ImageTo3DConfig)}


def _image_setting_path(key: str) -> str:
    """The config path of an image job's setting: its longest leading option name's path, the rest as it is
    (`reconstruct.field.encoding.features` -> `reconstruct.text.field.encoding.features`)."""
    paths = _image_setting_paths()
    head, rest = key, ""
    while head:
        if head in paths:
            return paths[head] + rest
        head, _, last = head.rpartition(".")
        rest = f".{last}{rest}"
    return key


def image_job_config(job: Job) -> ImageTo3DConfig:
    """An image or diverse job's config: its method's, its overrides on top, its seed in both learning stages."""
    settings = {_image_setting_path(key): value for key, value in job.overrides.items()}
    method = job.method or (DIVERSE_METHOD if job.kind == "diverse" else DEFAULT_METHOD)
    config = with_settings(ImageTo3DConfig(method=method), settings)  # type: ignore[arg-type]
    return with_stage_settings(config, seed=job.seed)


def _slug(text: str, length: int = 40) -> str:
    words = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return words[:length].rstrip("_") or "job"


def job_name(kind: str, subject: str, seed: int | None, spec: dict) -> str:
    digest = hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=4).hexdigest()
    seed_part = "" if seed is None else f"_s{seed}"
    return f"{kind}_{_slug(subject)}{seed_part}_{digest}"


def _check_settings(kind: str, job: Job, where: str) -> None:
    """Build and check the job's config now, so an unknown name or a value that cannot run (`"iters": 0`) fails
    with its line before any job runs."""
    try:
        if kind == "text":
            preset = job.preset or default_preset(job.overrides.get("model"))
            if preset not in PRESETS:
                raise DreamtextError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
            check_text_config(preset_config(preset, job.prompt or "x", {**job.overrides, **({} if job.seed is None else {"seed": job.seed})}))
            return
        if job.method is not None and job.method not in METHODS:
            raise DreamtextError(f"unknown method {job.method!r}; known: {', '.join(METHODS)}")
        config = method_config(image_job_config(job))
        check_descriptor_config(config.descriptor)
        check_reconstruct_config(config.reconstruct)
    except DreamtextError as error:
        raise DreamtextError(f"{where}: {error}") from None


def _parse_line(data: Any, number: int, path: Path, seeds: list[int] | None, settings: dict[str, Any]) -> list[Job]:
    where = f"{path.name} line {number}"
    if not isinstance(data, dict):
        raise DreamtextError(f"{where}: a job is a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _LINE_KEYS)
    if unknown:
        raise DreamtextError(f"{where}: unknown keys {unknown}; a job has {', '.join(sorted(_LINE_KEYS))}")
    kind = data.get("kind", "text")
    if kind not in KINDS:
        raise DreamtextError(f"{where}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    prompt, image = data.get("prompt"), data.get("image")
    if kind in ("text", "diverse") and not (isinstance(prompt, str) and prompt.strip()):
        raise DreamtextError(f"{where}: a {kind} job needs a non-empty \"prompt\"")
    if kind == "image" and not (isinstance(image, str) and image.strip()):
        raise DreamtextError(f"{where}: an image job needs an \"image\" path")
    if not isinstance(data.get("overrides", {}), dict):
        raise DreamtextError(f"{where}: \"overrides\" is an object of settings, e.g. {{\"iters\": 600}}")
    line_seeds = data.get("seeds", seeds)
    if line_seeds is not None and (not isinstance(line_seeds, list) or not all(isinstance(s, int) for s in line_seeds)):
        raise DreamtextError(f"{where}: \"seeds\" is a list of integers, e.g. [0, 1]")
    n = data.get("n", 4)
    if not isinstance(n, int) or n < 1:
        raise DreamtextError(f"{where}: \"n\" (images of a diverse job) is a positive integer, got {n!r}")
    if image is not None and not Path(image).is_absolute():
        image = str((path.parent / image).resolve())
    overrides = {**{_setting_name(k): v for k, v in data.get("overrides", {}).items()}, **settings}
    jobs = []
    for seed in (line_seeds or [None]):
        spec = {"kind": kind, "prompt": prompt, "image": image, "preset": data.get("preset"), "method": data.get("method"),
                "n": n, "seed": seed, "overrides": overrides}
        name = data.get("name")
        name = f"{_slug(name)}{'' if seed is None else f'_s{seed}'}" if name else job_name(kind, prompt or Path(image).stem, seed, spec)
        job = Job(name=name, line=number, **spec)
        _check_settings(kind, job, where)
        jobs.append(job)
    return jobs


def read_jobs(path: str | Path, seeds: list[int] | None = None, settings: dict[str, Any] | None = None) -> list[Job]:
    """Every job of a job file (format: the module docstring), checked; `seeds` expands lines without their own;
    `settings` (dotted names, `batch --set`) go on top of every job's overrides."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DreamtextError(f"job file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DreamtextError(f"job file {path} cannot be read ({error}); give a text or JSON Lines file") from None
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line and not line.startswith("#")]
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson") or (lines and lines[0][1].startswith("{"))
    jobs: list[Job] = []
    for number, line in lines:
        if jsonl:
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                raise DreamtextError(f"{path.name} line {number}: not JSON ({error.msg} at column {error.colno})") from None
        else:
            data = {"kind": "text", "prompt": line}
        jobs.extend(_parse_line(data, number, path, seeds, settings or {}))
    if not jobs:
        raise DreamtextError(f"job file {path} holds no jobs; write one prompt per line, or JSON Lines")
    names = [job.name for job in jobs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DreamtextError(f"{path.name}: jobs {duplicates} appear twice (the same settings); remove the copies")
    return jobs


def shard(jobs: list[Job], index: int, count: int) -> list[Job]:
    """Shard `index` of `count` (0-based): a stable share by each job's name, not its place in the list, so
    the shards of a Slurm job array cover every job once whatever order the file is in."""
    if count < 1 or not 0 <= index < count:
        raise DreamtextError(f"--shard {index}/{count}: the index must lie in 0..{count - 1} of a positive count")
    def bucket(job: Job) -> int:
        return int.from_bytes(hashlib.blake2b(job.name.encode(), digest_size=8).digest(), "big") % count
    return [job for job in jobs if bucket(job) == index]


def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise DreamtextError(f"--shard {text!r}: write INDEX/COUNT, e.g. 0/4 (Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
    return int(match[1]), int(match[2])


# -- running one job (in this process, a worker process or a Ray task) ------------------------------


def run_job(job_data: dict, root: str, progress: bool = False, *, threads: int | None = None) -> dict:
    """Run (or resume, or find finished) one job in `root`/<name>; return its record for summary.json.
    A job's own failure is recorded, not raised, so the rest of the batch goes on."""
    job = Job.from_dict(job_data)
    workspace = Path(root) / job.name
    record = {"name": job.name, "kind": job.kind, "prompt": job.prompt, "image": job.image, "seed": job.seed,
              "line": job.line, "workspace": str(workspace)}
    previous = _read_record(workspace)
    if previous is not None and previous.get("status") == "done":
        return {**previous, "skipped": True}
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        metrics = _run(job, workspace, progress)
    except RunInterrupted as error:  # SIGTERM or Ctrl-C: the job stopped cleanly, and so does the batch
        record.update(status="interrupted", error=str(error), wall_s=round(time.perf_counter() - start, 3))
        if workspace.is_dir():
            atomic_write_json(workspace / JOB_FILE, record)
        error.record = record
        raise
    except DreamtextError as error:
        record.update(status="failed", error=str(error), wall_s=round(time.perf_counter() - start, 3))
    else:
        record.update(status="done", wall_s=round(time.perf_counter() - start, 3), metrics=_jsonable(metrics),
                      outputs=sorted(str(p.relative_to(workspace)) for p in workspace.rglob("*")
                                     if p.is_file() and p.suffix in (".glb", ".mp4", ".gif", ".png", ".json")
                                     and "checkpoints" not in p.parts))
    if workspace.is_dir() or record["status"] == "done":
        atomic_write_json(workspace / JOB_FILE, record)
    return record


def _read_record(workspace: Path) -> dict | None:
    try:
        return json.loads((workspace / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None


def _jsonable(metrics: dict) -> dict:
    return json.loads(json.dumps(metrics, default=str))


def _run(job: Job, workspace: Path, progress: bool) -> dict:
    if job.kind == "text":
        overrides = {**job.overrides, **({} if job.seed is None else {"seed": job.seed})}
        config = preset_config(job.preset or default_preset(overrides.get("model")), job.prompt, overrides)
        return text_to_3d(config, workspace, resume=True, progress=progress).metrics
    config = image_job_config(job)
    if job.kind == "image":
        result = image_to_3d(job.image, workspace, config, progress=progress)
        return {"prompt": result.prompt, **result.reconstruction_metrics}
    sample = SampleConfig(prompt=job.prompt, seed=job.seed or 0)
    results = diverse(job.prompt, workspace, job.n, DiverseConfig(sample=sample, image=config), progress=progress)
    return {"objects": [{"prompt": r.prompt, **r.reconstruction_metrics} for r in results]}
