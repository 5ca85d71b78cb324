"""`dreamtext batch`: run a list of jobs on an engine, then one summary and one gallery of them all.

Each job is independent (one object, one workspace, one device), so the engines only hand jobs out:

- `local` (default): in this process one after another, or on `workers` processes of this machine
  (spawned, each with its share of the CPU threads);
- `ray`: each job a Ray task (`ray.init(address)`: a running cluster, or a local one when no address is
  given) asking for `gpus_per_job` GPUs (default: 1 when the cluster has GPUs) and `cpus_per_job` CPUs;
  a task whose worker dies is retried, and the retry resumes the job from its last checkpoint. The
  workspaces must be on a filesystem every node sees (NFS, Lustre, a mounted bucket).

For a Slurm job array without Ray, `shard="i/n"` runs a stable share of the list (`jobs.shard`); each
array task writes its own `summary-shard-i-of-n.json`, and `dreamtext batch JOBS --workspace DIR` run
once more without a shard skips every finished job and writes the whole summary and gallery.

A rerun of the same list skips the finished jobs (`job.json` says done), resumes the interrupted ones
from their checkpoints, and retries the failed ones.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Iterator, Literal

import tyro

from ..errors import DreamtextError, RunInterrupted
from ..gallery import build_gallery
from ..utils.config import parse_settings
from ..utils.io import atomic_write_json
from ..utils.preemption import Preemption, preemption_handlers, raise_if_stopped, stop_requested
from ..utils.progress import Progress
from ..methods.registry import scene_workspace
from ..utils.workspace_files import CONFIG_FILE, DESCRIBE_FILE
from .jobs import Job, parse_shard, read_jobs, run_job, shard

Engine = Literal["local", "ray"]
SUMMARY_FILE = "summary.json"
GALLERY_DIR = "gallery"
RAY_RETRIES = 3  # ours: a job whose worker died is run again up to this often (it resumes from its checkpoint)
_STOPPED = Preemption()
_STOPPED.signal = signal.SIGTERM  # a worker stopped by a signal sent to it alone: reported as SIGTERM
_WORKER_STOPPED = False  # in a local worker process: a task of this process was stopped (see `_local_task`)


@dataclass(frozen=True)
class BatchConfig:
    """Where and how a list of jobs runs (the module docstring describes the engines)."""

    engine: Engine = "local"
    """local: this machine (--workers processes); ray: one Ray task per job (pip install "dreamtext[ray]")."""
    workers: int | None = None
    """Jobs at once: local processes, or at most this many Ray tasks (None: 1 process, or as many tasks as the
    cluster allows)."""
    address: str | None = None
    """Ray: the cluster to join ("auto" or host:port; None: start a local one)."""
    gpus_per_job: float | None = None
    """Ray: GPUs a job asks for (None: 1 when the cluster has GPUs, else 0)."""
    cpus_per_job: float | None = None
    """Ray: CPUs a job asks for (None: 1)."""
    seeds: tuple[int, ...] | None = None
    """Run every job without its own "seeds" once per seed."""
    shard: str | None = None
    """INDEX/COUNT: only this share of the jobs (Slurm arrays: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)."""
    gallery: bool = True
    """Write DIR/gallery with every finished job."""
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """A KEY=VALUE setting for every job, by config name, on top of each job's own (e.g. iters=600; a text job's
    TextTo3DConfig, an image job's ImageTo3DConfig); the value read as JSON, else as text; repeat --set for
    several. They are part of each job's name: a batch run with other settings makes other workspaces."""

    def shard_index_count(self) -> tuple[int, int] | None:
        return None if self.shard is None else parse_shard(self.shard)

    def check(self) -> None:
        self.shard_index_count()  # a malformed INDEX/COUNT fails before anything runs
        if self.engine not in ("local", "ray"):
            raise DreamtextError(f"--engine {self.engine!r}: use local or ray")
        if self.workers is not None and self.workers < 1:
            raise DreamtextError(f"--workers must be at least 1, got {self.workers}")
        for name, value in (("--gpus-per-job", self.gpus_per_job), ("--cpus-per-job", self.cpus_per_job)):
            if value is not None and value < 0:
                raise DreamtextError(f"{name} cannot be negative, got {value}")
        if self.engine == "local" and (self.address or self.gpus_per_job is not None or self.cpus_per_job is not None):
            raise DreamtextError("--address, --gpus-per-job and --cpus-per-job are Ray's; add --engine ray")


def run_batch(jobs_file: str | Path, workspace: str | Path, config: BatchConfig = BatchConfig(),
              progress: bool = True, jobs: list[Job] | None = None) -> dict:
    """Run every job (or the shard's share) of `jobs_file`; write DIR/summary.json (and the gallery)."""
    config.check()
    root = Path(workspace)
    jobs = jobs if jobs is not None else read_jobs(jobs_file, list(config.seeds) if config.seeds else None,
                                                   parse_settings(config.set))
    share = config.shard_index_count()
    if share is not None:
        jobs = shard(jobs, *share)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    records: dict[str, dict] = {}
    tasks = [Task(job.name, run_job, (job.as_dict(), str(root), progress and config.engine == "local" and (config.workers or 1) == 1),
                  {"name": job.name, "kind": job.kind, "prompt": job.prompt, "image": job.image, "seed": job.seed,
                   "line": job.line, "workspace": str(root / job.name)})
             for job in jobs]
    name = SUMMARY_FILE if share is None else f"summary-shard-{share[0]}-of-{share[1]}.json"
    pending = {job.name: {**task.fallback, "status": "pending"} for job, task in zip(jobs, tasks)}

    def summary_of(records: dict[str, dict]) -> dict:
        ordered = [records.get(job.name, pending[job.name]) for job in jobs]
        counts = {status: sum(r["status"] == status for r in ordered) for status in ("done", "failed", "interrupted", "pending")}
        return {
            "jobs_file": str(jobs_file), "engine": config.engine, "wall_s": round(time.perf_counter() - start, 3),
            "counts": {status: n for status, n in counts.items() if n or status in ("done", "failed")},
            "skipped": sum(bool(r.get("skipped")) for r in ordered), "jobs": ordered,
        }

    # SIGTERM or Ctrl-C stops the job in progress at its step boundary (with a checkpoint) and the batch after
    # it: the summary records it as interrupted, and a rerun resumes it.
    with preemption_handlers(), Progress(total=len(jobs), description="batch", log_every=1, enabled=progress,
                                         status_path=root / "progress.json", stop_between_steps=False) as bar:
        try:
            for record in execute(tasks, config, root):
                records[record["name"]] = record
                failed = sum(r["status"] == "failed" for r in records.values())
                bar.update(len(records), failed=failed)
                if record["status"] == "failed" and progress:
                    bar.log(f"batch: {record['name']} failed: {record['error']}")
        except RunInterrupted as stop:
            for record in getattr(stop, "records", [getattr(stop, "record", None)]):
                if record is not None:
                    records[record["name"]] = record
            atomic_write_json(root / name, summary_of(records))
            raise RunInterrupted(f"{stop}; the batch stopped with it (summary in {root / name}); rerun it to resume",
                                 stop.exit_code) from None
    summary = summary_of(records)
    ordered = summary["jobs"]
    atomic_write_json(root / name, summary)
    if config.gallery and share is None:
        summary["gallery"] = _gallery(root, ordered)
        atomic_write_json(root / name, summary)
    return summary


def _gallery(root: Path, records: list[dict]) -> str | None:
    finished = [_shown_workspace(Path(r["workspace"])) for r in records if r["status"] == "done"]
    finished = [path for path in finished if path is not None]
    if not finished:
        return None
    return str(build_gallery(finished, root / GALLERY_DIR, title=f"dreamtext batch: {root.name}"))


def _shown_workspace(workspace: Path) -> Path | None:
    """The folder the gallery shows: the run itself, or an image job's reconstruction (and its describe.json)."""
    scene = scene_workspace(workspace)
    if (scene / CONFIG_FILE).is_file():
        return scene
    return workspace if (workspace / DESCRIBE_FILE).is_file() else None


# -- engines ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One unit of work for an engine: `function(*args, threads=...)`, a top-level function (engines pickle
    it to other processes) that returns a JSON-able record and records its own failures. `fallback` is
    the record of a task Ray gave up on (its worker kept dying)."""

    name: str
    function: Callable[..., dict]
    args: tuple
    fallback: dict


def execute(tasks: list[Task], config: BatchConfig, root: Path) -> Iterator[dict]:
    """Each task's record as it finishes, on the configured engine (order of finishing)."""
    return (_run_on_ray if config.engine == "ray" else _run_locally)(tasks, config, root)


def _run_locally(tasks: list[Task], config: BatchConfig, root: Path) -> Iterator[dict]:
    workers = config.workers or 1
    if workers == 1:
        for task in tasks:
            raise_if_stopped("the batch")  # a stop that came between two jobs
            yield task.function(*task.args, threads=None)
        return
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: the parent may hold torch's thread pools or a CUDA context.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_local_task, task.function, task.args, threads, task.fallback): task for task in tasks}
        interrupted: list[dict] = []
        forwarded = False
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, timeout=1.0, return_when=FIRST_COMPLETED)
            request = stop_requested()
            if request is not None and not forwarded:  # the workers stop their jobs at a step boundary too
                forwarded = True
                for future in remaining:
                    future.cancel()
                for process in list(getattr(pool, "_processes", {}).values()):
                    if process.is_alive():
                        os.kill(process.pid, request.signal)
            for future in done:
                if future.cancelled():
                    continue
                try:
                    yield future.result()
                except RunInterrupted as stop:
                    interrupted.append(getattr(stop, "record", None) or {**futures[future].fallback, "status": "interrupted"})
            remaining = {future for future in remaining if not future.cancelled()}
        request = stop_requested()
        if request is not None or interrupted:
            stopped = sum(record.get("status") == "interrupted" for record in interrupted)
            stop = RunInterrupted(f"{(request or _STOPPED).name}: {stopped} job(s) stopped with a checkpoint",
                                  (request or _STOPPED).exit_code)
            stop.records = interrupted
            raise stop


def _local_task(function: Callable[..., dict], args: tuple, threads: int, fallback: dict) -> dict:
    """A task in a local worker process. Once a task of this process was stopped, the later ones it is handed
    (the pool queues one beyond the running ones, and a queued task cannot be cancelled) come back unstarted,
    as pending: the stop request itself is forgotten when a run ends, so they would otherwise run whole."""
    global _WORKER_STOPPED
    if _WORKER_STOPPED:
        error = RunInterrupted(f"{fallback.get('name', 'a task')} not started: the run is stopping", _STOPPED.exit_code)
        error.record = {**fallback, "status": "pending"}
        raise error
    try:
        return function(*args, threads=threads)
    except RunInterrupted:
        _WORKER_STOPPED = True
        raise


def _import_ray():
    try:
        import ray
    except ImportError:
        raise DreamtextError('--engine ray needs Ray: pip install "dreamtext[ray]"') from None
    return ray


def _run_on_ray(tasks: list[Task], config: BatchConfig, root: Path) -> Iterator[dict]:
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=config.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        gpus = config.gpus_per_job
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        cpus = 1.0 if config.cpus_per_job is None else config.cpus_per_job
        remote = {}
        pending: dict = {}  # Ray object ref -> its task
        queue = list(tasks)
        limit = config.workers or len(tasks)
        while queue or pending:
            while queue and len(pending) < limit:
                task = queue.pop(0)
                if task.function not in remote:
                    remote[task.function] = ray.remote(num_gpus=gpus, num_cpus=cpus, max_retries=RAY_RETRIES,
                                                       retry_exceptions=False)(task.function)
                pending[remote[task.function].remote(*task.args, threads=max(1, int(cpus)))] = task
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield _ray_result(ray, ref, pending.pop(ref))
    finally:
        if started_here:
            ray.shutdown()


def _ray_result(ray, ref, task: Task) -> dict:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:  # retries used up (a worker that kept dying), or a bug in the task
        first = (str(error).strip().splitlines() or [""])[0]
        return {**task.fallback, "status": "failed",
                "error": f"the Ray task failed ({type(error).__name__}: {first}); rerun to resume it"}
