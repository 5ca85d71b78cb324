"""One pool of captioned world renders shared by every stage of the small prior's training.

Sphere tracing a world object is a loop of small SDF operations: on a GPU it is bound by kernel
launches (one object's SDF tree per call), on a CPU core it takes about 0.07 s per 64 px render. So
renders are drawn once, on CPU worker processes (one core each), and every stage samples minibatches
from the same pool. Chunk i always holds `sample_render_batch(chunk, render_seed(seed, i))`, so the pool
is the same whatever the number of workers.

Images are kept as uint8 (a quarter of float's memory); each image's words (noun, colour, size,
pattern, view ids, `clip.image_word_ids`) are kept beside it, and its caption is derived from them;
so is its camera (polar, azimuth, radius, vertical fov: `prior.camera.camera_encoding`'s arguments),
for camera-aware priors. Pools saved before cameras were kept load with `cameras` None.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ...utils.io import atomic_write
from ...utils.progress import Progress
from ...world.renders import RenderConfig, sample_render_batch
from .captions import caption_from_words, image_word_ids

CHUNK = 32  # renders per task: small enough to balance workers, large enough to amortise the SDF setup


def render_seed(seed: int, chunk: int) -> int:
    """The `sample_render_batch` seed of render chunk `chunk` of a run: disjoint object seeds per run."""
    return seed * 1_000_003 + chunk


@dataclass(frozen=True)
class PoolSpec:
    """What a pool holds. resolution: the prior's 64 px; supersample: `RenderConfig`'s 2x2 anti-aliasing."""

    count: int
    seed: int = 0
    resolution: int = 64
    supersample: int = 2
    split: str = "train"

    @property
    def stem(self) -> str:
        return f"renders-{self.split}-seed{self.seed}-n{self.count}-{self.resolution}px-ss{self.supersample}"


CAMERA_COLUMNS = ("polar_deg", "azimuth_deg", "radius", "fovy_deg")


@dataclass
class WorldRenderPool:
    """Renders [N, 3, H, W] uint8, their word ids [N, 5] (noun, colour, size, pattern, view) and their
    cameras [N, 4] float32 (`CAMERA_COLUMNS`; None in pools saved before cameras were kept)."""

    images: Tensor
    words: Tensor
    cameras: Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def captions(self, index: Tensor | None = None) -> list[str]:
        """Full captions with their view suffix ("a red mug, side view"), as `WorldObject.caption` says them."""
        rows = self.words if index is None else self.words[index]
        return [caption_from_words(row) for row in rows.tolist()]

    def sample(self, batch_size: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
        """A random minibatch (with replacement): images [B, 3, H, W] float in [0, 1] on `device`, and word ids [B, 5]."""
        images, words, _ = self.sample_with_cameras(batch_size, generator, device)
        return images, words

    def sample_with_cameras(self, batch_size: int, generator: torch.Generator,
                            device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
        """`sample`, and the minibatch's cameras [B, 4] (None when the pool has none); the same draw."""
        index = torch.randint(len(self), (batch_size,), generator=generator)
        cameras = None if self.cameras is None else self.cameras[index.to(self.cameras.device)]
        return self.images[index.to(self.images.device)].to(device).float() / 255, self.words[index], cameras

    def save(self, folder: str | os.PathLike, stem: str) -> None:
        from safetensors.torch import save_file

        path = Path(folder) / f"{stem}.safetensors"
        tensors = {"images": self.images.contiguous(), "words": self.words.contiguous()}
        if self.cameras is not None:
            tensors["cameras"] = self.cameras.contiguous()
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WorldRenderPool":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        return cls(tensors["images"], tensors["words"], tensors.get("cameras"))


def _render_chunk(spec: PoolSpec, chunk: int, count: int) -> tuple[Tensor, Tensor, Tensor]:
    """One chunk on the CPU (run inside a worker): uint8 images, word ids and cameras."""
    config = RenderConfig(resolution=spec.resolution, supersample=spec.supersample)
    batch = sample_render_batch(count, render_seed(spec.seed, chunk), spec.split, config, device="cpu")
    sample = batch.cameras
    cameras = torch.stack([sample.polar_deg, sample.azimuth_deg, sample.radius, sample.cameras.fovy_deg], dim=-1)
    return (batch.images * 255).round().to(torch.uint8), image_word_ids(batch.objects, batch.view_ids), cameras.float()


def _init_worker() -> None:
    torch.set_num_threads(1)  # one core per worker: tracing is many small ops, threads only contend


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def render_world_pool(spec: PoolSpec, workers: int | None = None, progress: bool = True) -> WorldRenderPool:
    """Render `spec.count` images in chunks of `CHUNK`, on `workers` CPU processes (default: every core)."""
    chunks = [(i, min(CHUNK, spec.count - i * CHUNK)) for i in range(math.ceil(spec.count / CHUNK))]
    workers = min(len(chunks), default_workers() if workers is None else max(1, workers))
    images, words, cameras = [None] * len(chunks), [None] * len(chunks), [None] * len(chunks)
    with Progress(total=spec.count, description="rendering world", log_every=max(1, len(chunks) // 20), enabled=progress) as bar:
        done = 0
        if workers == 1:
            # One thread here too, as in the workers: tracing is many small ops, and torch's threads then spin
            # against each other and against any other process (measured while a training ran beside it: 0.6
            # renders a second with the default 2 threads, 20 with one).
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for i, n in chunks:
                    images[i], words[i], cameras[i] = _render_chunk(spec, i, n)
                    done += n
                    bar.update(done)
            finally:
                torch.set_num_threads(threads)
        else:
            # spawn, not fork: the parent may already hold CUDA or torch thread pools.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
                futures = {pool.submit(_render_chunk, spec, i, n): (i, n) for i, n in chunks}
                for future in as_completed(futures):
                    i, n = futures[future]
                    images[i], words[i], cameras[i] = future.result()
                    done += n
                    bar.update(done)
    return WorldRenderPool(torch.cat(images), torch.cat(words), torch.cat(cameras))


def cached_world_pool(cache_dir: str | os.PathLike, spec: PoolSpec, workers: int | None = None,
                      progress: bool = True) -> WorldRenderPool:
    """`render_world_pool`, stored once in `cache_dir` so every stage (and a resumed run) reuses it."""
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{spec.stem}.safetensors"
    if path.is_file():
        return WorldRenderPool.load(path)
    pool = render_world_pool(spec, workers, progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    pool.save(cache_dir, spec.stem)
    return pool
