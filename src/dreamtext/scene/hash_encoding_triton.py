"""Triton fast path of the multiresolution hash encoding (Instant-NGP; thesis eq. 3.16-3.18).

Same encoding as the reference in `hash_encoding.py`: for every level the point is scaled by N_l, its
cell's 8 corners are mapped to table rows (dense numbering on coarse levels, the uint32 spatial hash
XOR(c_i * pi_i) mod T on fine ones) and their features are blended trilinearly. One launch covers all
levels: the grid is (point blocks, levels) and each program reads its level's resolution, table size,
offset and indexing mode from small tensors. The backward pass scatters w * dL/dout into the table
gradient with atomic adds, since many points share a corner.

The kernel gives no gradient w.r.t. the points; `HashGridEncoding` sends such inputs (analytic
normals, which also need the double backward) to the torch reference instead.

Triton is optional: without it this module imports with TRITON_AVAILABLE = False. On a CPU-only
machine the kernels run under Triton's interpreter when TRITON_INTERPRET=1 is set before this module
is first imported (triton.jit reads it when it decorates the kernels).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from dreamtext.scene.hashing import HASH_PRIMES

try:
    import triton
    import triton.language as tl
except ImportError:  # optional dependency: the torch reference path is always there
    triton = None
    tl = None

TRITON_AVAILABLE = triton is not None

# ours: 128 points per program suits the GPU (4 warps, one point per thread); the interpreter runs each
# program in Python, so it gets fewer, larger programs.
BLOCK_POINTS = 1024 if os.environ.get("TRITON_INTERPRET", "0") == "1" else 128


if TRITON_AVAILABLE:

    @triton.jit
    def _corner_rows_and_weights(lower_x, lower_y, lower_z, frac_x, frac_y, frac_z,
                                 side, size, offset, dense, CORNER: tl.constexpr):
        """Table rows [BLOCK] and trilinear weights [BLOCK] of one cell corner (bit d = axis d)."""
        bit_x: tl.constexpr = CORNER & 1
        bit_y: tl.constexpr = (CORNER >> 1) & 1
        bit_z: tl.constexpr = (CORNER >> 2) & 1
        cx = lower_x + bit_x
        cy = lower_y + bit_y
        cz = lower_z + bit_z
        weight_x = frac_x if bit_x else 1.0 - frac_x
        weight_y = frac_y if bit_y else 1.0 - frac_y
        weight_z = frac_z if bit_z else 1.0 - frac_z
        weight = weight_x * weight_y * weight_z
        dense_row = cx + cy * side + cz * side * side
        # uint32 products wrap exactly like the reference's int64 arithmetic masked to 32 bits.
        hashed = ((cx.to(tl.uint32) * PRIME_X) ^ (cy.to(tl.uint32) * PRIME_Y) ^ (cz.to(tl.uint32) * PRIME_Z))
        hashed_row = hashed.to(tl.int64) % size
        rows = tl.where(dense != 0, dense_row, hashed_row) + offset
        return rows, weight

    @triton.jit
    def _level_block(points_ptr, resolutions_ptr, sizes_ptr, offsets_ptr, dense_ptr, num_points,
                     FEATURES: tl.constexpr, FEATURES_POW2: tl.constexpr, OUT_WIDTH: tl.constexpr,
                     BLOCK: tl.constexpr):
        """This program's points on its level: where their features go in the [P, L * F] output, the
        mask, each point's lower cell corner (int64) and in-cell position (float32), and the level's
        vertices per side, table size, table offset and dense flag."""
        level = tl.program_id(1)
        point_ids = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
        point_mask = point_ids < num_points
        feature_ids = tl.arange(0, FEATURES_POW2)
        mask_2d = point_mask[:, None] & (feature_ids < FEATURES)[None, :]
        out_offsets = point_ids[:, None] * OUT_WIDTH + level * FEATURES + feature_ids[None, :]
        resolution = tl.load(resolutions_ptr + level)
        size = tl.load(sizes_ptr + level)
        offset = tl.load(offsets_ptr + level)
        dense = tl.load(dense_ptr + level)
        base = point_ids * 3
        scale = resolution.to(tl.float32)
        x = tl.minimum(tl.maximum(tl.load(points_ptr + base + 0, mask=point_mask, other=0.0), 0.0), 1.0) * scale
        y = tl.minimum(tl.maximum(tl.load(points_ptr + base + 1, mask=point_mask, other=0.0), 0.0), 1.0) * scale
        z = tl.minimum(tl.maximum(tl.load(points_ptr + base + 2, mask=point_mask, other=0.0), 0.0), 1.0) * scale
        # x = 1 stays in the last cell (lower corner N - 1, weight 1 on the upper face).
        lower_x = tl.minimum(tl.floor(x).to(tl.int64), resolution - 1)
        lower_y = tl.minimum(tl.floor(y).to(tl.int64), resolution - 1)
        lower_z = tl.minimum(tl.floor(z).to(tl.int64), resolution - 1)
        frac_x = x - lower_x.to(tl.float32)
        frac_y = y - lower_y.to(tl.float32)
        frac_z = z - lower_z.to(tl.float32)
        return (out_offsets, mask_2d, feature_ids, lower_x, lower_y, lower_z, frac_x, frac_y, frac_z,
                resolution + 1, size, offset, dense)

    @triton.jit
    def _hash_grid_forward_kernel(points_ptr, table_ptr, out_ptr,
                                  resolutions_ptr, sizes_ptr, offsets_ptr, dense_ptr, num_points,
                                  FEATURES: tl.constexpr, FEATURES_POW2: tl.constexpr, OUT_WIDTH: tl.constexpr,
                                  BLOCK: tl.constexpr):
        (out_offsets, mask_2d, feature_ids, lower_x, lower_y, lower_z, frac_x, frac_y, frac_z,
         side, size, offset, dense) = _level_block(points_ptr, resolutions_ptr, sizes_ptr, offsets_ptr, dense_ptr,
                                                   num_points, FEATURES, FEATURES_POW2, OUT_WIDTH, BLOCK)
        acc = tl.zeros((BLOCK, FEATURES_POW2), dtype=tl.float32)
        for corner in tl.static_range(8):
            rows, weight = _corner_rows_and_weights(lower_x, lower_y, lower_z, frac_x, frac_y, frac_z,
                                                    side, size, offset, dense, corner)
            values = tl.load(table_ptr + rows[:, None] * FEATURES + feature_ids[None, :], mask=mask_2d, other=0.0)
            acc += weight[:, None] * values
        tl.store(out_ptr + out_offsets, acc, mask=mask_2d)

    @triton.jit
    def _hash_grid_backward_kernel(points_ptr, grad_out_ptr, grad_table_ptr,
                                   resolutions_ptr, sizes_ptr, offsets_ptr, dense_ptr, num_points,
                                   FEATURES: tl.constexpr, FEATURES_POW2: tl.constexpr, OUT_WIDTH: tl.constexpr,
                                   BLOCK: tl.constexpr):
        # Many points share a corner (all of them on coarse dense levels), hence the atomic adds.
        (grad_offsets, mask_2d, feature_ids, lower_x, lower_y, lower_z, frac_x, frac_y, frac_z,
         side, size, offset, dense) = _level_block(points_ptr, resolutions_ptr, sizes_ptr, offsets_ptr, dense_ptr,
                                                   num_points, FEATURES, FEATURES_POW2, OUT_WIDTH, BLOCK)
        grad = tl.load(grad_out_ptr + grad_offsets, mask=mask_2d, other=0.0).to(tl.float32)
        for corner in tl.static_range(8):
            rows, weight = _corner_rows_and_weights(lower_x, lower_y, lower_z, frac_x, frac_y, frac_z,
                                                    side, size, offset, dense, corner)
            tl.atomic_add(grad_table_ptr + rows[:, None] * FEATURES + feature_ids[None, :],
                          weight[:, None] * grad, mask=mask_2d)

    # Module-level constexpr globals are visible inside jit functions.
    PRIME_X = tl.constexpr(HASH_PRIMES[0])
    PRIME_Y = tl.constexpr(HASH_PRIMES[1])
    PRIME_Z = tl.constexpr(HASH_PRIMES[2])


def _launch_args(points: Tensor, layout_tensors: tuple[Tensor, Tensor, Tensor, Tensor], features: int):
    resolutions, sizes, offsets, dense = layout_tensors
    num_points = points.shape[0]
    num_levels = resolutions.shape[0]
    grid = (triton.cdiv(num_points, BLOCK_POINTS), num_levels)
    level_args = (resolutions, sizes, offsets, dense.to(torch.int32), num_points)
    meta = dict(
        FEATURES=features,
        FEATURES_POW2=triton.next_power_of_2(features),
        OUT_WIDTH=num_levels * features,
        BLOCK=BLOCK_POINTS,
    )
    return grid, level_args, meta


class _HashGridTriton(torch.autograd.Function):
    """Forward and table gradient of the encoding; the points get no gradient."""

    @staticmethod
    def forward(ctx, points: Tensor, table: Tensor, resolutions: Tensor, sizes: Tensor, offsets: Tensor,
                dense: Tensor) -> Tensor:
        layout_tensors = (resolutions, sizes, offsets, dense)
        features = table.shape[1]
        grid, level_args, meta = _launch_args(points, layout_tensors, features)
        out = torch.empty(points.shape[0], meta["OUT_WIDTH"], device=points.device, dtype=torch.float32)
        if points.shape[0] > 0:
            _hash_grid_forward_kernel[grid](points, table, out, *level_args, **meta)
        ctx.save_for_backward(points, resolutions, sizes, offsets, dense)
        ctx.table_shape = table.shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        points, resolutions, sizes, offsets, dense = ctx.saved_tensors
        grad_table = None
        if ctx.needs_input_grad[1]:
            grad_table = torch.zeros(ctx.table_shape, device=points.device, dtype=torch.float32)
            grid, level_args, meta = _launch_args(points, (resolutions, sizes, offsets, dense), ctx.table_shape[1])
            if points.shape[0] > 0:
                _hash_grid_backward_kernel[grid](points, grad_out.contiguous(), grad_table, *level_args, **meta)
        return None, grad_table, None, None, None, None


def hash_encode_triton(points01: Tensor, table: Tensor, layout_tensors: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
    """Fast encoding: points [P, 3] in [0, 1] -> features [P, L * F] (float32 table, float32 output).

    Gradient flows to `table` only.
    """
    if not TRITON_AVAILABLE:
        raise RuntimeError("triton is not installed")
    if table.dtype != torch.float32:
        raise TypeError(f"the Triton hash grid kernel needs a float32 table, got {table.dtype}")
    points = points01.detach().to(torch.float32).contiguous()
    return _HashGridTriton.apply(points, table.contiguous(), *layout_tensors)
