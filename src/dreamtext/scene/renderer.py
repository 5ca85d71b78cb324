"""Volume rendering of any `Field` (thesis section 3.2.2, eq. 3.10-3.13), with empty-space skipping.

Per ray, with near/far from the scene cube:
- samples: [near, far] is cut into S equal bins; each sample sits at its bin's centre, or uniformly
  inside its bin when stratified jitter is on (eq. 3.12);
- deltas: delta_i = t_{i+1} - t_i, and the last one runs up to far: delta_S = far - t_S;
- alpha_i = 1 - exp(-sigma_i delta_i), T_i = exp(-sum_{j<i} sigma_j delta_j),  w_i = T_i alpha_i;
- rgb = sum_i w_i c_i + (1 - opacity) background, opacity = sum_i w_i (eq. 3.13 over a background);
- depth = sum_i w_i t_i / opacity: the expected ray distance t (along the unit direction, not the
  camera's z) of the visible surface, 0 where opacity < 1e-6 (nothing was hit);
- normals = sum_i w_i n_i (not renormalised, so they fade with opacity like rgb does).
With an occupancy grid, the field is only evaluated at samples in occupied cells; the others have
density 0. Colours are shaded per sample (albedo / lambertian / textureless / normal) before compositing.

Training memory is bounded: autograd would keep every field activation of every sample until the
backward pass (about 42 KB per sample for the thesis's field with finite-difference normals), so when a
render that records gradients evaluates more than `RendererConfig.max_samples_per_chunk` samples, the
field queries run under gradient checkpointing in chunks of that many samples: only each chunk's
inputs and outputs are kept, and its activations are recomputed, one chunk at a time, in backward.
All random draws (jitter) happen before and outside the checkpointed queries, so the recomputation
sees the same samples and the gradients are those of the plain render.

Normals cost more than the rest of the field (finite differences evaluate six extra densities per
point), yet only samples near the visible surface show them. With `RendererConfig.shade_at = "surface"`
(deferred shading, ours) a shaded render composites the albedo alone and then shades each ray once, with
the field's normal at the ray's surface point x_s, its sample of the largest weight (detached: the normal's
gradient reaches the field through the densities around x_s, not through where x_s lies):
    rgb = opacity * shade(albedo / opacity, n(x_s)) + (1 - opacity) * background,
six density queries a ray instead of six a visible sample. For an opaque surface this is the per-sample
shading; where a ray sees two surfaces (a silhouette's edge) or fog, their mean colour is lit with one normal.
With `shade_at = "samples"` (the thesis's) shaded renders run in two passes:
density and albedo at every sample, then normals only where the compositing weight (from the first
pass's densities, detached) reaches `RendererConfig.normals_min_weight`. The other samples are shaded
with a zero normal (ambient light only); together they carry less than that weight per sample, so the
image changes by at most their summed weight times their colour, and the gradients by as little.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable, Literal, Union

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from . import _rng
from .cameras import Cameras
from .occupancy import OccupancyGrid, OccupancyGridConfig
from .protocols import Field
from .rays import RayBundle, ray_aabb_intersect
from .shading import DEFAULT_AMBIENT, ShadingMode, needs_normals, shade

Background = Union[Callable[[Tensor], Tensor], Tensor]
"""A callable mapping unit directions [R, 3] to rgb [R, 3] (e.g. a background network), or a fixed
colour [3], or one colour per ray [R, 3]."""

_EMPTY_OPACITY = 1e-6


@dataclass
class RendererConfig:
    """Sampling and memory settings of the volume renderer.

    max_samples_per_chunk: ours, 2^16. The most field samples whose activations a render that records
        gradients keeps for backward at once; a render evaluating more checkpoints its field queries
        in chunks of this size (module doc). Measured on the thesis's field (6-level hash grid, 4
        blocks of 96) with finite-difference normals: about 42 KB of autograd state per sample, so
        a chunk holds about 2.8 GB, which leaves room for the Stable Diffusion prior within issue 3's
        12 GB at 256 px; below the budget nothing is recomputed. 0 turns checkpointing off.
    normals_min_weight: ours, 1e-4 (nerfacc's and Instant-NGP's skip level for negligible samples).
        Normals are computed only at samples whose compositing weight reaches it (module doc). Measured
        with `bench engine` (CPU) on the fitted mug: 24% of the evaluated samples get normals and a
        64 px lambertian training step is 4.1x faster. 0 computes them at every sample.
    """

    num_samples: int = 64  # ours: one pass of 64 (stable-dreamfusion: 64 coarse + 64 fine)
    stratified: bool = True  # thesis eq. 3.12: jitter each sample inside its bin while training
    min_near: float = 0.01  # stable-dreamfusion's min_near: no samples right at the camera
    use_occupancy_grid: bool = True  # Instant-NGP: skip empty space once the grid has been updated
    chunk_rays: int = 8192  # ours: rays per chunk in `render`, bounds memory of large renders
    max_samples_per_chunk: int = 2**16  # ours: training-memory budget, see the class doc
    normals_min_weight: float = 1e-4  # ours: normals only at samples of at least this weight (module doc); 0: everywhere
    shade_at: Literal["samples", "surface"] = "samples"
    """samples: every sample is shaded with its own normal, then composited (stable-dreamfusion, the thesis);
    surface: deferred shading, one normal a ray at its expected surface point (module doc)."""


@dataclass
class RenderOutputs:
    """Rendered rays. Leading shape [R] from `render_rays`, [N, H, W] from `render`."""

    rgb: Tensor  # [..., 3] composited over the background
    opacity: Tensor  # [..., 1] sum of weights
    depth: Tensor  # [..., 1] expected t of the visible surface, 0 where nothing was hit
    weights: Tensor | None  # [..., S]
    t_values: Tensor | None  # [..., S] sample distances along the rays
    normals: Tensor | None = None  # [..., 3] weighted normals, when the field computed them
    sample_normals: Tensor | None = None  # [..., S, 3] per-sample normals (e.g. for orientation losses)
    samples_evaluated: int = 0  # samples the field was evaluated at
    num_rays: int = 0

    @property
    def samples_per_ray(self) -> float:
        return self.samples_evaluated / max(self.num_rays, 1)

    def _tensor_names(self) -> list[str]:
        return [f.name for f in fields(self) if isinstance(getattr(self, f.name), Tensor)]

    @staticmethod
    def concatenate(parts: list["RenderOutputs"]) -> "RenderOutputs":
        """Join ray chunks along the ray dimension, adding up the counters."""
        first = parts[0]
        joined = {name: torch.cat([getattr(part, name) for part in parts]) for name in first._tensor_names()}
        return replace(
            first,
            **joined,
            samples_evaluated=sum(part.samples_evaluated for part in parts),
            num_rays=sum(part.num_rays for part in parts),
        )

    def reshape_rays(self, leading: tuple[int, ...]) -> "RenderOutputs":
        """Turn the ray dimension [R] into `leading` (e.g. [N, H, W])."""
        reshaped = {name: getattr(self, name).reshape(*leading, *getattr(self, name).shape[1:]) for name in self._tensor_names()}
        return replace(self, **reshaped)


def stratified_t_values(
    near: Tensor, far: Tensor, num_samples: int, perturb: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Sample distances [R, S]: one per equal bin of [near, far], jittered inside it or at its centre (eq. 3.12)."""
    steps = torch.linspace(0.0, 1.0, num_samples + 1, device=near.device, dtype=near.dtype)
    edges = near[:, None] + (far - near)[:, None] * steps
    lower, upper = edges[:, :-1], edges[:, 1:]
    if perturb:
        offset = _rng.uniform(tuple(lower.shape), generator, near.device, near.dtype)
    else:
        offset = torch.full_like(lower, 0.5)
    return lower + (upper - lower) * offset


def sample_deltas(t_values: Tensor, far: Tensor) -> Tensor:
    """delta_i = t_{i+1} - t_i, with the last interval running to `far`; [R, S]."""
    last = far[:, None] - t_values[:, -1:]
    return torch.cat([t_values[:, 1:] - t_values[:, :-1], last], dim=-1).clamp_min(0.0)


def compositing_weights(density: Tensor, deltas: Tensor) -> Tensor:
    """w_i = T_i (1 - exp(-sigma_i delta_i)) with T_i = exp(-sum_{j<i} sigma_j delta_j) (eq. 3.13)."""
    optical_depth = density * deltas
    alpha = -torch.expm1(-optical_depth)  # 1 - exp(-x), accurate for small x
    before = torch.cumsum(optical_depth, dim=-1)
    exclusive = torch.cat([torch.zeros_like(before[:, :1]), before[:, :-1]], dim=-1)
    return torch.exp(-exclusive) * alpha


def _background_rgb(background: Background, directions: Tensor) -> Tensor:
    if callable(background):  # a background network or any function of the directions
        return background(directions)
    colour = background.to(device=directions.device, dtype=directions.dtype)
    return colour.expand_as(directions)


def _per_ray(value: Tensor, count: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """A [3] or [R, 3] tensor as [R, 3]."""
    return value.to(device=device, dtype=dtype).expand(count, 3)


@dataclass
class _RaySamples:
    """The samples of a chunk of rays, placed but not yet evaluated."""

    t_values: Tensor  # [R, S] distances along the rays
    far: Tensor  # [R] where each ray leaves the cube
    points: Tensor  # [R, S, 3]
    flat_index: Tensor  # [E] indices into the R * S samples of those the field evaluates

    @property
    def count(self) -> int:
        return self.flat_index.numel()


@dataclass
class _QueriedSamples:
    density: Tensor  # [E]
    colour: Tensor  # [E, 3] shaded
    normals: Tensor | None  # [E, 3]


def _query_and_shade(
    field: Field, points: Tensor, light_dirs: Tensor, shading: ShadingMode, ambient: float, with_normals: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Density, shaded colour and normals of the field at points [E, 3]; no randomness (checkpoint-safe)."""
    outputs = field(points, with_normals=with_normals)
    if with_normals and outputs.normals is None:
        raise ValueError(f"{type(field).__name__} returned no normals although they were asked for")
    shaded = shade(outputs.albedo, outputs.normals, light_dirs, shading, ambient)
    return outputs.density.reshape(-1), shaded, outputs.normals


def _query_field(
    field: Field, points: Tensor, light_dirs: Tensor, shading: ShadingMode, ambient: float, with_normals: bool,
    checkpoint_chunk: int | None,
) -> _QueriedSamples:
    """`_query_and_shade` in one pass, or in checkpointed chunks of `checkpoint_chunk` samples whose
    activations are recomputed in backward instead of kept."""
    if checkpoint_chunk is None:
        return _QueriedSamples(*_query_and_shade(field, points, light_dirs, shading, ambient, with_normals))
    pieces = [
        checkpoint(_query_and_shade, field, chunk_points, chunk_lights, shading, ambient, with_normals,
                   use_reentrant=False, preserve_rng_state=False)
        for chunk_points, chunk_lights in zip(points.split(checkpoint_chunk), light_dirs.split(checkpoint_chunk))
    ]
    density, colour, normals = (list(parts) for parts in zip(*pieces))
    return _QueriedSamples(torch.cat(density), torch.cat(colour), torch.cat(normals) if with_normals else None)


class VolumeRenderer(nn.Module):
    """Renders fields along rays; owns the occupancy grid (saved in its state_dict) when enabled."""

    def __init__(
        self,
        config: RendererConfig = RendererConfig(),
        occupancy: OccupancyGridConfig | None = None,
        bound: float = 1.0,
    ):
        super().__init__()
        self.config = config
        self.occupancy_grid: OccupancyGrid | None = (
            OccupancyGrid(bound, occupancy or OccupancyGridConfig()) if config.use_occupancy_grid else None
        )

    def update_occupancy(self, field: Field, step: int, generator: torch.Generator | None = None) -> bool:
        """Refresh the occupancy grid on its schedule (every `update_every` steps); says whether it did."""
        if self.occupancy_grid is None:
            return False
        return self.occupancy_grid.maybe_update(field, step, generator=generator)

    # -- rays ----------------------------------------------------------------------------------
    def render_rays(
        self,
        field: Field,
        origins: Tensor,
        directions: Tensor,
        background: Background,
        shading: ShadingMode = "albedo",
        light_dirs: Tensor | None = None,
        ambient: float = DEFAULT_AMBIENT,
        generator: torch.Generator | None = None,
        perturb: bool | None = None,
        with_normals: bool | None = None,
        chunk: int | None = None,
        use_occupancy: bool | None = None,
        keep_samples: bool = True,
    ) -> RenderOutputs:
        """Render rays with origins and unit directions [R, 3].

        light_dirs: unit vectors towards the light, [3] or [R, 3]; default: towards each ray's origin
            seen from the scene centre (a light at the camera). Only used by lambertian/textureless.
        perturb: stratified jitter (default: config.stratified). with_normals: ask the field for
            normals (default: only when the shading mode needs them). chunk: rays per field pass.
        use_occupancy: skip empty space with the grid (default: whenever the renderer has one).
        keep_samples: keep the per-sample tensors (weights, t_values, sample_normals); dropping them
            chunk by chunk keeps large renders small.
        """
        count = origins.shape[0]
        if not torch.is_tensor(background) or background.dim() == 1:
            per_ray_background = None
        else:
            per_ray_background = _per_ray(background, count, origins.device, origins.dtype)
        lights = None
        if light_dirs is not None:
            lights = _per_ray(light_dirs, count, origins.device, origins.dtype)
        perturb = self.config.stratified if perturb is None else perturb
        with_normals = needs_normals(shading) if with_normals is None else with_normals
        if needs_normals(shading) and not with_normals:
            raise ValueError(f"shading mode {shading!r} needs normals; do not pass with_normals=False")
        use_occupancy = self.occupancy_grid is not None if use_occupancy is None else use_occupancy
        chunk = max(count, 1) if chunk is None or chunk <= 0 else chunk
        windows = [slice(start, start + chunk) for start in range(0, max(count, 1), chunk)]

        def place(window: slice) -> _RaySamples:
            return self._place_samples(field, origins[window], directions[window], perturb, generator, use_occupancy)

        # A render that records gradients places all its samples first (the jitter is drawn in the
        # same order as chunk by chunk), so the checkpointing decision sees the whole render's count.
        placed = [place(window) for window in windows] if torch.is_grad_enabled() else None
        query_chunk = None if placed is None else self.checkpoint_chunk(sum(p.count for p in placed))
        parts = []
        for index, window in enumerate(windows):
            part = self._shade_and_composite(
                field, placed[index] if placed is not None else place(window), origins[window], directions[window],
                background if per_ray_background is None else per_ray_background[window],
                shading, None if lights is None else lights[window], ambient, with_normals, query_chunk,
            )
            parts.append(part if keep_samples else replace(part, weights=None, t_values=None, sample_normals=None))
        return parts[0] if len(parts) == 1 else RenderOutputs.concatenate(parts)

    def checkpoint_chunk(self, samples: int) -> int | None:
        """Samples per checkpointed field query for a render evaluating `samples`; None: no checkpointing."""
        budget = self.config.max_samples_per_chunk
        return budget if 0 < budget < samples else None

    def _place_samples(
        self, field: Field, origins: Tensor, directions: Tensor, perturb: bool, generator: torch.Generator | None,
        use_occupancy: bool,
    ) -> _RaySamples:
        """Sample distances along the rays and the samples the field must evaluate: rays that hit the
        cube, samples in occupied cells. Draws the jitter; evaluates nothing."""
        count, num_samples = origins.shape[0], self.config.num_samples
        near, far, hit = ray_aabb_intersect(RayBundle(origins, directions), field.bound, self.config.min_near)
        t_values = stratified_t_values(near, far, num_samples, perturb, generator)
        points = origins[:, None, :] + t_values[..., None] * directions[:, None, :]
        evaluate = hit[:, None].expand(count, num_samples)
        if use_occupancy:
            evaluate = evaluate & self._grid_for(field).query(points)
        return _RaySamples(t_values, far, points, evaluate.reshape(-1).nonzero().squeeze(1))

    def _shade_and_composite(
        self, field: Field, samples: _RaySamples, origins: Tensor, directions: Tensor, background: Background,
        shading: ShadingMode, light_dirs: Tensor | None, ambient: float, with_normals: bool, query_chunk: int | None,
    ) -> RenderOutputs:
        count, num_samples = origins.shape[0], self.config.num_samples
        t_values, flat_index = samples.t_values, samples.flat_index
        points = samples.points
        density = points.new_zeros(count * num_samples)
        colour = points.new_zeros(count * num_samples, 3)
        normals = points.new_zeros(count * num_samples, 3) if with_normals else None
        deltas = sample_deltas(t_values, samples.far)
        if light_dirs is None:
            light_dirs = origins / origins.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        deferred = with_normals and self.config.shade_at == "surface"
        if samples.count > 0:
            sample_points = points.reshape(-1, 3)[flat_index]
            sample_lights = light_dirs[flat_index // num_samples]
            if deferred:
                queried = _query_field(field, sample_points, sample_lights, "albedo", ambient, False, query_chunk)
            elif with_normals and self.config.normals_min_weight > 0:
                queried = self._query_normals_where_visible(
                    field, flat_index, deltas, sample_points, sample_lights, shading, ambient, query_chunk
                )
            else:
                queried = _query_field(field, sample_points, sample_lights, shading, ambient, with_normals, query_chunk)
            density = density.index_copy(0, flat_index, queried.density.to(density.dtype))
            colour = colour.index_copy(0, flat_index, queried.colour.to(colour.dtype))
            if with_normals and not deferred:
                normals = normals.index_copy(0, flat_index, queried.normals.to(normals.dtype))

        weights = compositing_weights(density.view(count, num_samples), deltas)
        opacity = weights.sum(dim=-1, keepdim=True)
        rgb = (weights[..., None] * colour.view(count, num_samples, 3)).sum(dim=1)
        depth_sum = (weights * t_values).sum(dim=-1, keepdim=True)
        depth = torch.where(opacity > _EMPTY_OPACITY, depth_sum / opacity.clamp_min(_EMPTY_OPACITY), torch.zeros_like(opacity))
        ray_normals = None
        if deferred:
            ray_normals = self._surface_normals(field, origins, directions, weights, t_values, opacity)
            surface_albedo = rgb / opacity.clamp_min(_EMPTY_OPACITY)
            rgb = opacity * shade(surface_albedo, ray_normals, light_dirs, shading, ambient)
        rgb = rgb + (1.0 - opacity) * _background_rgb(background, directions)
        sample_normals = None if normals is None or deferred else normals.view(count, num_samples, 3)
        if sample_normals is not None:
            ray_normals = (weights[..., None] * sample_normals).sum(dim=1)
        elif ray_normals is not None:
            ray_normals = opacity * ray_normals  # faded with opacity, as the composited per-sample normals are
        return RenderOutputs(
            rgb=rgb,
            opacity=opacity,
            depth=depth,
            weights=weights,
            t_values=t_values,
            normals=ray_normals,
            sample_normals=sample_normals,
            samples_evaluated=samples.count,
            num_rays=count,
        )

    def _surface_normals(self, field: Field, origins: Tensor, directions: Tensor, weights: Tensor, t_values: Tensor,
                         opacity: Tensor) -> Tensor:
        """[R, 3] the field's unit normal at each ray's surface point (deferred shading): the sample of the largest
        compositing weight, which lies on a surface even where a ray grazes one and meets another behind it (the
        expected depth would fall in the empty space between). Zero on rays that see less than
        `normals_min_weight` of opacity (nothing there to shade)."""
        normals = origins.new_zeros(origins.shape[0], 3)
        seen = (opacity[:, 0].detach() >= max(self.config.normals_min_weight, _EMPTY_OPACITY)).nonzero().squeeze(1)
        if seen.numel() > 0:
            strongest = weights[seen].detach().argmax(dim=-1, keepdim=True)
            depth = t_values[seen].gather(1, strongest)
            surface = (origins[seen] + directions[seen] * depth).detach()
            found = field(surface, with_normals=True).normals
            normals = normals.index_copy(0, seen, found.to(normals.dtype))
        return normals

    def _query_normals_where_visible(
        self, field: Field, flat_index: Tensor, deltas: Tensor, sample_points: Tensor, sample_lights: Tensor,
        shading: ShadingMode, ambient: float, query_chunk: int | None,
    ) -> _QueriedSamples:
        """Density and albedo at every sample, normals only at the visible ones (module doc). flat_index:
        the evaluated samples among the [R, S] of the rays, whose `deltas` [R, S] give the weights."""
        base = _query_field(field, sample_points, sample_lights, "albedo", ambient, False, query_chunk)
        with torch.no_grad():
            density = deltas.new_zeros(deltas.numel()).index_copy(0, flat_index, base.density.detach().to(deltas.dtype))
            weights = compositing_weights(density.view_as(deltas), deltas)
            visible = (weights.reshape(-1)[flat_index] >= self.config.normals_min_weight).nonzero().squeeze(1)
        normals = sample_points.new_zeros(sample_points.shape[0], 3)
        if visible.numel() > 0:
            # The field's own normal path (its density again, plus the six shifted copies) at the visible samples.
            found = _query_field(field, sample_points[visible], sample_lights[visible], "albedo", ambient, True, query_chunk)
            normals = normals.index_copy(0, visible, found.normals.to(normals.dtype))
        colour = shade(base.colour, normals, sample_lights, shading, ambient)
        return _QueriedSamples(base.density, colour, normals)

    def _grid_for(self, field: Field) -> OccupancyGrid:
        grid = self.occupancy_grid
        if grid is None:
            raise ValueError("this renderer has no occupancy grid (RendererConfig.use_occupancy_grid is off)")
        if abs(grid.bound - field.bound) > 1e-6:
            raise ValueError(f"the occupancy grid covers bound {grid.bound} but the field has bound {field.bound}")
        return grid

    # -- images --------------------------------------------------------------------------------
    def render(
        self,
        field: Field,
        cameras: Cameras,
        background: Background,
        shading: ShadingMode = "albedo",
        light_dirs: Tensor | None = None,
        ambient: float = DEFAULT_AMBIENT,
        generator: torch.Generator | None = None,
        perturb: bool = False,
        with_normals: bool | None = None,
        chunk: int | None = None,
        requires_grad: bool = False,
        pixel_jitter: bool = False,
        keep_samples: bool = False,
        use_occupancy: bool | None = None,
    ) -> RenderOutputs:
        """Render whole images: outputs shaped [N, H, W, C].

        background: callable on directions, a colour [3], or per pixel [N, H, W, 3].
        light_dirs: [3], one per camera [N, 3], or per pixel [N, H, W, 3].
        Evaluation renders by default: no gradients, no jitter, rays in chunks of config.chunk_rays,
        and the per-sample tensors (weights, t_values, sample_normals) dropped unless keep_samples.
        """
        n, h, w = len(cameras), cameras.height, cameras.width
        rays = cameras.generate_rays(pixel_jitter=pixel_jitter, generator=generator)
        origins, directions = rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3)
        if torch.is_tensor(background) and background.dim() > 1:
            background = background.reshape(-1, 3)
        if light_dirs is not None and light_dirs.dim() == 2:  # one per camera
            light_dirs = light_dirs[:, None, None, :].expand(n, h, w, 3)
        if light_dirs is not None:
            light_dirs = light_dirs.reshape(-1, 3)
        with torch.set_grad_enabled(requires_grad):
            out = self.render_rays(
                field, origins, directions, background, shading=shading, light_dirs=light_dirs, ambient=ambient,
                generator=generator, perturb=perturb, with_normals=with_normals,
                chunk=chunk or self.config.chunk_rays, use_occupancy=use_occupancy, keep_samples=keep_samples,
            )
        return out.reshape_rays((n, h, w))
