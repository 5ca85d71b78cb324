"""Multiresolution hash encoding (Instant-NGP; thesis section 3.2.4, eq. 3.16-3.18).

A point x in [0, 1]^3 is looked up in L grids of growing resolution
N_l = floor(N_min * b^l), b = exp((ln N_max - ln N_min) / (L - 1))       (eq. 3.16).
On level l the point sits in the cell whose corners are floor(x * N_l) and floor(x * N_l) + 1
(eq. 3.17; the thesis writes the upper corner as a ceil, which only differs where the point lies on a
face and then carries zero weight). Each of the 8 corners owns a learned feature vector of size F in
a table of at most T entries. Coarse levels whose (N_l + 1)^3 vertices fit in T index the table
densely (one entry per vertex, no collisions); finer levels use the spatial hash
h(c) = (c_x * 1) XOR (c_y * 2654435761) XOR (c_z * 805459861) mod T      (eq. 3.18)
computed with uint32 wrap-around, as Instant-NGP does. The 8 corner features are blended
trilinearly and the L results are concatenated into an L * F feature vector.

This module holds the configuration, the level layout and two pure-torch paths. The reference
(`hash_encode_torch`) is differentiable w.r.t. the table and the points, to any order (the field takes
analytic normals with autograd, create_graph=True). The fused path (`hash_encode_fused`) computes the same
rows and weights level block by level block, each corner a contiguous run of points, and writes the table's
gradient itself (one weighted `bincount` per feature column on CPU): 2.5x faster on 2 CPU cores, for the
points that need no gradient (every training render's samples and every no-grad query). `hash_encoding_triton`
holds the fast CUDA path, which reproduces the same table indices. `HashGridEncoding` picks the path.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from dreamtext.errors import DreamtextError
from dreamtext.scene.hashing import HASH_PRIMES

Implementation = Literal["auto", "torch", "fused", "triton"]


@dataclass(frozen=True)
class HashGridConfig:
    kind: Literal["hash_grid"] = "hash_grid"
    """the encoding: hash_grid, or triplane (naming the other puts it here, with its own settings; scene/encodings.py)"""
    num_levels: int = 6  # thesis 6.1.3: "6 resolution layers"
    features_per_level: int = 2  # Instant-NGP F = 2 (thesis 3.2.4)
    log2_hashmap_size: int = 19  # stable-dreamfusion / Instant-NGP T = 2^19
    base_resolution: int = 16  # Instant-NGP N_min = 16 (thesis 3.2.4)
    max_resolution: int = 2048  # stable-dreamfusion desired_resolution 2048 * bound (bound 1)
    implementation: Implementation = "auto"  # ours: Triton on CUDA when importable, else the fused torch path
    init_scale: float = 1e-4  # Instant-NGP: table initialised from U(-1e-4, 1e-4)
    start_levels: int | None = None
    """ours (coarse to fine, as threestudio's progressive band grid and Neuralangelo): the levels a
    training run starts with; the finer ones fade in one after another until `all_levels_at`.
    None: every level from the start (Instant-NGP, the thesis)."""
    all_levels_at: float = 0.5  # the run's progress by which every level is on

    def setup(self) -> "HashGridEncoding":
        return HashGridEncoding(self)

    @property
    def coarse_to_fine(self) -> bool:
        return self.start_levels is not None and self.start_levels < self.num_levels

    def __post_init__(self) -> None:
        if self.num_levels < 1 or self.features_per_level < 1:
            raise DreamtextError("hash grid needs at least one level and one feature per level")
        if not 1 <= self.base_resolution <= self.max_resolution:
            raise DreamtextError("hash grid needs 1 <= base_resolution <= max_resolution")
        if not 1 <= self.log2_hashmap_size <= 30:
            raise DreamtextError("hash grid log2_hashmap_size must lie in [1, 30]")
        if self.implementation not in ("auto", "torch", "fused", "triton"):
            raise DreamtextError(f"unknown hash grid implementation {self.implementation!r}; use auto, torch, fused or triton")
        if self.start_levels is not None and not 1 <= self.start_levels <= self.num_levels:
            raise DreamtextError(
                f"hash grid start_levels must lie in [1, num_levels={self.num_levels}] (or None for all levels), got {self.start_levels}"
            )
        if not 0.0 < self.all_levels_at <= 1.0:
            raise DreamtextError(f"hash grid all_levels_at is a fraction of the run in (0, 1], got {self.all_levels_at}")


def level_weights(config: HashGridConfig, progress: float) -> list[float]:
    """Each level's weight at `progress` of a run: 1 for the first `start_levels`, then a window that
    opens linearly, level after level, so that at `all_levels_at` every level has weight 1."""
    if not config.coarse_to_fine:
        return [1.0] * config.num_levels
    ramp = min(max(progress, 0.0) / config.all_levels_at, 1.0)
    active = config.start_levels + (config.num_levels - config.start_levels) * ramp
    # Level l counts fully once `active` has passed l + 1; between l and l + 1 it fades in.
    return [min(max(active - level, 0.0), 1.0) for level in range(config.num_levels)]


def level_resolutions(config: HashGridConfig) -> list[int]:
    """N_l for every level (eq. 3.16)."""
    if config.num_levels == 1:
        return [config.base_resolution]
    growth = math.exp(
        (math.log(config.max_resolution) - math.log(config.base_resolution)) / (config.num_levels - 1)
    )
    # ours: the 1e-6 keeps b^l from landing a hair below an integer (16 * b^5 is 2048.0000000000014
    # here, but other settings round the other way) and losing one cell to floor().
    return [math.floor(config.base_resolution * growth**level + 1e-6) for level in range(config.num_levels)]


@dataclass(frozen=True)
class LevelLayout:
    """Where each level lives in the shared parameter table, as plain Python lists."""

    resolutions: list[int]  # N_l
    sizes: list[int]  # table entries of level l: (N_l + 1)^3 when dense, else T
    offsets: list[int]  # first row of level l in the table
    dense: list[bool]  # True: index = vertex number, False: spatial hash mod T

    @property
    def total_size(self) -> int:
        return self.offsets[-1] + self.sizes[-1]

    @property
    def dense_levels(self) -> int:
        """How many levels index densely: always the first ones, since N_l grows with l."""
        return sum(self.dense)


def level_layout(config: HashGridConfig) -> LevelLayout:
    table_size = 2**config.log2_hashmap_size
    resolutions = level_resolutions(config)
    vertex_counts = [(n + 1) ** 3 for n in resolutions]
    dense = [count <= table_size for count in vertex_counts]
    sizes = [count if is_dense else table_size for count, is_dense in zip(vertex_counts, dense)]
    offsets = [sum(sizes[:level]) for level in range(len(sizes))]
    return LevelLayout(resolutions, sizes, offsets, dense)


def _corners(per_axis: Tensor, combine) -> Tensor:
    """Combine per-axis pairs [..., 3, 2] into the 8 cell corners [..., 8].

    Corner k = bx + 2 by + 4 bz takes entry b_d of axis d (the same numbering as the kernel). Each
    corner is combined from contiguous [...] slices and the 8 are stacked at the end, the same values as
    one broadcast over a trailing 2 x 2 x 2 block, whose innermost dimension of 2 defeats the CPU's
    vectorised kernels (with the level split of `cell_corner_rows`, the encoding of 65k points ran 1.5x
    faster forward on 2 cores).
    """
    x0, x1, y0, y1, z0, z1 = (per_axis[..., axis, end].contiguous() for axis in range(3) for end in range(2))
    xy = [combine(x0, y0), combine(x1, y0), combine(x0, y1), combine(x1, y1)]
    return torch.stack([combine(corner, z) for z in (z0, z1) for corner in xy], dim=-1)


def cell_corner_rows(
    lower: Tensor, resolutions: Tensor, sizes: Tensor, offsets: Tensor, dense: Tensor, dense_levels: int | None = None
) -> Tensor:
    """Table rows [..., L, 8] of the corners of the cells whose lower corners are lower [..., L, 3].

    Level tensors have shape [L]; the first `dense_levels` levels are dense (the layout's count; read
    from `dense` when not given, which waits for the device). Dense levels number vertices
    x + y (N+1) + z (N+1)^2; hashed levels use eq. 3.18. A hashed level holds T = 2^k entries, so
    "mod T" of the uint32 hash keeps its low k bits, and masking each axis term to them before the XOR
    gives the same row (uint32 wrap-around included: T divides 2^32) while the products stay in int64.
    Each axis term is computed once for its two cell ends (with the level's offset folded into the x
    term of dense levels) and only then combined into the 8 corners.
    """
    if dense_levels is None:
        dense_levels = int(dense.sum())
    ends = lower[..., None] + torch.arange(2, device=lower.device)  # [..., L, 3, 2]
    parts = []
    if dense_levels > 0:
        side = resolutions[:dense_levels] + 1
        strides = torch.stack([torch.ones_like(side), side, side * side], dim=-1)  # [Ld, 3]
        starts = torch.zeros_like(strides)
        starts[:, 0] = offsets[:dense_levels]
        parts.append(_corners(ends[..., :dense_levels, :, :] * strides[..., None] + starts[..., None], torch.add))
    if dense_levels < resolutions.numel():
        primes = torch.tensor(HASH_PRIMES, device=lower.device)
        low_bits = (sizes[dense_levels:] - 1)[:, None, None]  # [Lh, 1, 1]
        terms = (ends[..., dense_levels:, :, :] * primes[:, None]) & low_bits
        parts.append(_corners(terms, torch.bitwise_xor) + offsets[dense_levels:, None])
    return torch.cat(parts, dim=-2) if len(parts) > 1 else parts[0]


def hash_encode_torch(
    points01: Tensor, table: Tensor, layout_tensors: tuple[Tensor, Tensor, Tensor, Tensor], dense_levels: int | None = None
) -> Tensor:
    """Reference encoding: points [P, 3] in [0, 1] -> features [P, L * F] in the table's dtype.

    Vectorised over points, levels and corners; differentiable w.r.t. `table` and `points01` to any
    order because the trilinear weights are plain polynomials in the in-cell position.
    dense_levels: see `cell_corner_rows`.
    """
    resolutions, sizes, offsets, dense = layout_tensors
    points = points01.to(table.dtype).clamp(0.0, 1.0)
    scaled = points[:, None, :] * resolutions.to(table.dtype)[:, None]  # [P, L, 3] = x * N_l
    # The cell's lower corner; clamping to N_l - 1 keeps x = 1 inside the last cell (weight 1 on its
    # upper face) instead of stepping onto a vertex N_l + 1 that does not exist.
    lower = torch.minimum(scaled.detach().floor().long(), (resolutions - 1)[:, None])
    frac = scaled - lower.to(table.dtype)  # [P, L, 3], in [0, 1]; carries d/dx = N_l
    rows = cell_corner_rows(lower, resolutions, sizes, offsets, dense, dense_levels)  # [P, L, 8]
    # Trilinear weight of a corner: product over axes of 1 - frac (lower end) or frac (upper end).
    weights = _corners(torch.stack([1.0 - frac, frac], dim=-1), torch.mul)  # [P, L, 8]
    # index_select's backward is an index_add, cheaper on CPU than advanced indexing's index_put.
    features = table.index_select(0, rows.flatten()).view(*rows.shape, table.shape[1])  # [P, L, 8, F]
    blended = (weights[..., None] * features).sum(dim=2)  # [P, L, F]
    return blended.flatten(1)


def _block_rows_and_weights(
    points: Tensor, resolutions: Tensor, multipliers: tuple[Tensor, Tensor, Tensor], masks: Tensor | None,
    offsets: Tensor,
) -> tuple[Tensor, Tensor]:
    """Rows and trilinear weights [Lb, 8, P] of one block of levels, all dense (`masks` None: vertex numbers,
    the offset folded into the x term) or all hashed (eq. 3.18, `masks` [Lb, 1] = T - 1, the offset added
    last). points [P, 3] in [0, 1]; resolutions [Lb]; multipliers: per axis [Lb, 1] (strides or primes).
    The same floating-point steps as `hash_encode_torch`, so rows and weights are the reference's exactly."""
    count, levels = points.shape[0], resolutions.numel()
    scale = resolutions.to(points.dtype)[:, None]
    top = (resolutions - 1).to(points.dtype)[:, None]
    terms, factors = [], []
    for axis in range(3):
        scaled = scale * points[:, axis]  # [Lb, P]
        lower = torch.minimum(scaled.floor(), top)
        frac = scaled - lower
        low_term = lower.long() * multipliers[axis]
        high_term = low_term + multipliers[axis]
        if masks is None and axis == 0:
            low_term, high_term = low_term + offsets, high_term + offsets
        elif masks is not None:
            low_term, high_term = low_term & masks, high_term & masks
        terms.append((low_term, high_term))
        factors.append((1.0 - frac, frac))
    combine = torch.add if masks is None else torch.bitwise_xor
    rows = torch.empty(levels, 8, count, dtype=torch.long, device=points.device)
    weights = torch.empty(levels, 8, count, dtype=points.dtype, device=points.device)
    for bz in range(2):
        for by in range(2):
            for bx in range(2):
                corner = bx + 2 * by + 4 * bz  # the numbering of `_corners` and the kernel
                combine(combine(terms[0][bx], terms[1][by]), terms[2][bz], out=rows[:, corner])
                torch.mul(factors[0][bx] * factors[1][by], factors[2][bz], out=weights[:, corner])
    if masks is not None:
        rows += offsets[:, :, None]
    return rows, weights


def _level_blocks(resolutions: Tensor, sizes: Tensor, offsets: Tensor, dense_levels: int) -> list[tuple]:
    """(first level, last level + 1, resolutions, multipliers, masks, offsets) of the dense and the hashed block."""
    blocks = []
    if dense_levels > 0:
        side = (resolutions[:dense_levels] + 1)[:, None]
        blocks.append((0, dense_levels, resolutions[:dense_levels], (torch.ones_like(side), side, side * side), None,
                       offsets[:dense_levels, None]))
    hashed = resolutions.numel() - dense_levels
    if hashed > 0:
        primes = tuple(torch.full((hashed, 1), prime, dtype=torch.long, device=resolutions.device) for prime in HASH_PRIMES)
        blocks.append((dense_levels, resolutions.numel(), resolutions[dense_levels:], primes,
                       (sizes[dense_levels:] - 1)[:, None], offsets[dense_levels:, None]))
    return blocks


class _FusedHashLookup(torch.autograd.Function):
    """The encoding with a hand-written table gradient (points get none: see `hash_encode_fused`)."""

    @staticmethod
    def forward(ctx, points01: Tensor, table: Tensor, blocks: list[tuple]) -> Tensor:
        count, features = points01.shape[0], table.shape[1]
        levels = blocks[-1][1]
        points = points01.to(table.dtype).clamp(0.0, 1.0)
        out = table.new_empty(count, levels, features)
        saved = []
        for first, last, resolutions, multipliers, masks, offsets in blocks:
            rows, weights = _block_rows_and_weights(points, resolutions, multipliers, masks, offsets)
            corners = table.index_select(0, rows.view(-1)).view(last - first, 8, count, features)
            out[:, first:last] = (weights[..., None] * corners).sum(dim=1).transpose(0, 1)
            saved += [rows, weights]
        ctx.save_for_backward(*saved)
        ctx.bounds = [(first, last) for first, last, *_ in blocks]
        ctx.table_shape = table.shape
        return out.view(count, levels * features)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        rows_total, features = ctx.table_shape
        upstream = grad_out.reshape(grad_out.shape[0], -1, features)
        grad_table = grad_out.new_zeros(rows_total, features)
        saved = ctx.saved_tensors
        for (first, last), rows, weights in zip(ctx.bounds, saved[0::2], saved[1::2]):
            for column in range(features):
                per_corner = weights * upstream[:, first:last, column].t()[:, None, :]  # [Lb, 8, P]
                if grad_table.is_cuda:
                    grad_table[:, column].index_add_(0, rows.view(-1), per_corner.view(-1))
                else:  # on CPU a weighted bincount of one column is 2x faster than index_add_ of [N, F] rows
                    grad_table[:, column] += torch.bincount(rows.view(-1), per_corner.view(-1), minlength=rows_total)
        return None, grad_table, None


def hash_encode_fused(
    points01: Tensor, table: Tensor, layout_tensors: tuple[Tensor, Tensor, Tensor, Tensor], dense_levels: int
) -> Tensor:
    """The reference encoding's values, points [P, 3] -> [P, L * F], for points that need no gradient: the
    same rows and weights, computed per block of levels with each corner's points contiguous, and the
    table's gradient written by hand (once differentiable; the points get none)."""
    if points01.requires_grad and torch.is_grad_enabled():
        raise ValueError("the fused hash encoding gives no gradient w.r.t. the points; use hash_encode_torch")
    resolutions, sizes, offsets, _ = layout_tensors
    blocks = _level_blocks(resolutions, sizes, offsets, dense_levels)
    return _FusedHashLookup.apply(points01.detach(), table, blocks)


@functools.lru_cache(maxsize=None)
def _triton_module():
    """The fast path's module, or None when triton cannot be imported."""
    try:
        from dreamtext.scene import hash_encoding_triton
    except ImportError:
        return None
    return hash_encoding_triton if hash_encoding_triton.TRITON_AVAILABLE else None


def _triton_interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available_implementations() -> tuple[str, ...]:
    """The paths that can run on this machine: torch and fused always, triton with CUDA (or its interpreter)."""
    names = ["torch", "fused"]
    if _triton_module() is not None and (torch.cuda.is_available() or _triton_interpreter_on()):
        names.append("triton")
    return tuple(names)


class HashGridEncoding(nn.Module):
    """Points in [0, 1]^3 -> concatenated per-level features [..., num_levels * features_per_level].

    With implementation "auto" the Triton kernel runs when the float32 table is on CUDA and triton imports,
    else the fused torch path; "triton" forces the kernel (CUDA, or CPU under TRITON_INTERPRET=1), "fused" the
    fused path and "torch" the reference. Whatever was chosen, inputs that need a gradient w.r.t. the points
    (analytic normals) take the reference path: the kernel and the fused path only return the table
    gradient, and the normals need the second derivative through the trilinear weights, which autograd
    gives for free on the reference path.
    """

    def __init__(self, config: HashGridConfig):
        super().__init__()
        self.config = config
        self.layout = level_layout(config)
        self.output_dim = config.num_levels * config.features_per_level
        table = torch.empty(self.layout.total_size, config.features_per_level)
        nn.init.uniform_(table, -config.init_scale, config.init_scale)
        self.table = nn.Parameter(table)
        # Buffers follow .to(device); non-persistent because they are derived from the config.
        self.register_buffer("level_resolutions", torch.tensor(self.layout.resolutions), persistent=False)
        self.register_buffer("level_sizes", torch.tensor(self.layout.sizes), persistent=False)
        self.register_buffer("level_offsets", torch.tensor(self.layout.offsets), persistent=False)
        self.register_buffer("level_dense", torch.tensor(self.layout.dense), persistent=False)
        if config.implementation == "triton" and _triton_module() is None:
            raise DreamtextError("hash grid implementation 'triton' requested but triton is not installed")
        # Per-level weights of the coarse-to-fine window; None while every level counts fully, so the
        # usual case costs nothing. A function of the run's progress only, which the trainer sets
        # every step (a resumed run gets the same window); outside training every level counts.
        self.level_window: Tensor | None = None

    def set_progress(self, progress: float) -> None:
        """Open the coarse-to-fine window to where it stands at `progress` of a run (no-op without one)."""
        weights = level_weights(self.config, progress)
        if all(weight == 1.0 for weight in weights):
            self.level_window = None
        else:
            self.level_window = torch.tensor(weights, device=self.table.device, dtype=self.table.dtype)

    def _layout_tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.level_resolutions, self.level_sizes, self.level_offsets, self.level_dense

    @property
    def resolved_implementation(self) -> str:
        """The path that runs for points that need no gradient, given the table's device and dtype."""
        mode = self.config.implementation
        if mode in ("torch", "fused"):
            return mode
        # The kernel accumulates and stores float32 only; other dtypes (float64 checks) take the fused path.
        if self.table.dtype != torch.float32:
            return "fused"
        if mode == "triton":
            return "triton"
        return "triton" if self.table.is_cuda and _triton_module() is not None else "fused"

    def forward(self, points01: Tensor) -> Tensor:
        if points01.shape[-1] != 3:
            raise ValueError(f"expected points [..., 3], got {tuple(points01.shape)}")
        leading = points01.shape[:-1]
        flat = points01.reshape(-1, 3)
        needs_point_grad = flat.requires_grad and torch.is_grad_enabled()
        implementation = "torch" if needs_point_grad else self.resolved_implementation
        if implementation == "triton":
            encoded = self._forward_triton(flat)
        elif implementation == "fused":
            encoded = hash_encode_fused(flat, self.table, self._layout_tensors(), self.layout.dense_levels)
        else:
            encoded = hash_encode_torch(flat, self.table, self._layout_tensors(), self.layout.dense_levels)
        if self.level_window is not None:
            # A level's features (and so the gradient its table rows get) scale with its weight.
            window = self.level_window.to(device=encoded.device, dtype=encoded.dtype)
            per_level = encoded.view(-1, self.config.num_levels, self.config.features_per_level)
            encoded = (per_level * window[:, None]).flatten(1)
        return encoded.reshape(*leading, self.output_dim)

    def _forward_triton(self, flat: Tensor) -> Tensor:
        if not (self.table.is_cuda or _triton_interpreter_on()):
            raise DreamtextError("hash grid implementation 'triton' needs a CUDA device; use 'auto' or 'torch'")
        kernel = _triton_module()
        return kernel.hash_encode_triton(flat, self.table, self._layout_tensors())
