"""Many objects at once: a job list run on one engine (local processes or Ray), resumable, summarised."""

from .jobs import Job, read_jobs, run_job, shard
from .runner import BatchConfig, run_batch

__all__ = ["BatchConfig", "Job", "read_jobs", "run_batch", "run_job", "shard"]
