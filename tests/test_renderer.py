"""Volume renderer, occupancy grid and shading, checked against closed forms on toy fields."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from dreamtext.scene.cameras import orbit_cameras, sample_training_cameras
from dreamtext.scene.field import FieldConfig, RadianceField
from dreamtext.scene.hash_encoding import HashGridConfig
from dreamtext.scene.occupancy import OccupancyGrid, OccupancyGridConfig
from dreamtext.scene.protocols import Field, FieldOutputs
from dreamtext.scene.renderer import (
    RendererConfig,
    VolumeRenderer,
    compositing_weights,
    sample_deltas,
    stratified_t_values,
)
from dreamtext.scene.shading import (
    ShadingScheduleConfig,
    light_directions_near_camera,
    shade,
)

ALBEDO = (0.9, 0.4, 0.1)
BACKGROUND = torch.tensor([0.2, 0.5, 1.0])


class SlabField(nn.Module):
    """Constant density sigma for z0 <= z <= z1 (any x, y), constant albedo, normals +z."""

    bound = 1.0

    def __init__(self, sigma: float, z0: float, z1: float, learnable: bool = False):
        super().__init__()
        value = torch.tensor(float(sigma))
        self.sigma = nn.Parameter(value) if learnable else value
        self.z0, self.z1 = z0, z1
        self.calls = 0

    def density(self, points):
        inside = (points[..., 2] >= self.z0) & (points[..., 2] <= self.z1)
        return self.sigma * inside.to(points.dtype)

    def forward(self, points, with_normals=False):
        self.calls += 1
        albedo = torch.tensor(ALBEDO, dtype=points.dtype).expand(*points.shape[:-1], 3)
        normals = torch.tensor([0.0, 0.0, 1.0]).expand(*points.shape[:-1], 3) if with_normals else None
        return FieldOutputs(density=self.density(points), albedo=albedo, normals=normals)


class SphereField(nn.Module):
    """A soft-edged sphere of radius 0.5 with a position-dependent albedo and radial normals."""

    bound = 1.0

    def __init__(self, sigma: float = 40.0, radius: float = 0.5, edge: float = 0.01):
        super().__init__()
        self.sigma, self.radius, self.edge = sigma, radius, edge

    def density(self, points):
        return self.sigma * torch.sigmoid((self.radius - points.norm(dim=-1)) / self.edge)

    def forward(self, points, with_normals=False):
        albedo = 0.5 + 0.4 * torch.sin(4.0 * points)
        normals = points / points.norm(dim=-1, keepdim=True).clamp_min(1e-9) if with_normals else None
        return FieldOutputs(density=self.density(points), albedo=albedo, normals=normals)


def rays_down_z(count: int = 9, height: float = 2.0):
    """Parallel rays from z = height straight down -z, spread over x, y in [-0.5, 0.5]."""
    xy = torch.linspace(-0.5, 0.5, count)
    origins = torch.stack([xy, xy.flip(0), torch.full_like(xy, height)], dim=-1)
    directions = torch.tensor([0.0, 0.0, -1.0]).expand(count, 3).contiguous()
    return origins, directions


def renderer(num_samples: int, occupancy: bool = False, **occupancy_kwargs) -> VolumeRenderer:
    config = RendererConfig(num_samples=num_samples, use_occupancy_grid=occupancy)
    return VolumeRenderer(config, occupancy=OccupancyGridConfig(**occupancy_kwargs), bound=1.0)


def test_toy_fields_follow_the_protocol():
    assert isinstance(SlabField(1.0, 0.0, 0.5), Field)
    assert isinstance(SphereField(), Field)


# ---------------------------------------------------------------------------------------------
# Quadrature against closed forms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("perturb", [False, True])
def test_constant_slab_matches_closed_form_transmittance(perturb):
    sigma, z0, z1 = 2.0, -0.2, 0.3
    origins, directions = rays_down_z()
    out = renderer(4096).render_rays(
        SlabField(sigma, z0, z1), origins, directions, BACKGROUND, perturb=perturb,
        generator=torch.Generator().manual_seed(1),
    )
    transmittance = math.exp(-sigma * (z1 - z0))
    assert torch.allclose(out.opacity, torch.full_like(out.opacity, 1 - transmittance), atol=1e-3)
    expected_rgb = torch.tensor(ALBEDO) * (1 - transmittance) + BACKGROUND * transmittance
    assert torch.allclose(out.rgb, expected_rgb.expand_as(out.rgb), atol=1e-3)
    # Weights sum to opacity, and everything is consistent with the discrete transmittance.
    assert torch.allclose(out.weights.sum(-1, keepdim=True), out.opacity, atol=1e-6)
    assert out.weights.shape == out.t_values.shape == (len(origins), 4096)


def test_weights_sum_to_one_minus_final_transmittance_for_any_density():
    generator = torch.Generator().manual_seed(3)
    density = torch.rand(5, 32, generator=generator) * 20
    t = torch.sort(torch.rand(5, 32, generator=generator) * 2 + 1, dim=-1).values
    far = torch.full((5,), 3.0)
    deltas = sample_deltas(t, far)
    weights = compositing_weights(density, deltas)
    assert torch.allclose(deltas.sum(-1), far - t[:, 0])
    final_transmittance = torch.exp(-(density * deltas).sum(-1))
    assert torch.allclose(weights.sum(-1), 1 - final_transmittance, atol=1e-6)
    assert (weights >= 0).all()


def test_depth_of_a_thin_opaque_slab_is_its_distance():
    origins, directions = rays_down_z(height=2.0)
    out = renderer(512).render_rays(SlabField(1e4, 0.29, 0.31), origins, directions, BACKGROUND, perturb=False)
    assert torch.allclose(out.opacity, torch.ones_like(out.opacity), atol=1e-4)
    assert torch.allclose(out.depth, torch.full_like(out.depth, 2.0 - 0.3), atol=0.01)
    assert torch.allclose(out.rgb, torch.tensor(ALBEDO).expand_as(out.rgb), atol=1e-3)


def test_rays_that_miss_the_cube_show_the_background_and_evaluate_nothing():
    origins = torch.tensor([[3.0, 3.0, 2.0], [0.0, 0.0, 2.0]])
    directions = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    field = SlabField(5.0, -1.0, 1.0)
    out = renderer(16).render_rays(field, origins, directions, BACKGROUND, perturb=False)
    assert torch.allclose(out.rgb[0], BACKGROUND)
    assert out.opacity[0].item() == 0.0 and out.depth[0].item() == 0.0
    assert out.samples_evaluated == 16 and out.samples_per_ray == 8.0


def test_background_callable_and_per_ray_colours():
    origins, directions = rays_down_z(4)
    field = SlabField(0.0, 0.0, 0.1)  # empty scene: pure background
    per_ray = torch.rand(4, 3)
    r = renderer(8)
    assert torch.allclose(r.render_rays(field, origins, directions, per_ray).rgb, per_ray)
    out = r.render_rays(field, origins, directions, lambda d: (d + 1) / 2)
    assert torch.allclose(out.rgb, (directions + 1) / 2)


def test_chunked_rendering_equals_one_pass():
    origins, directions = rays_down_z(11)
    field, r = SphereField(), renderer(32)
    whole = r.render_rays(field, origins, directions, BACKGROUND, perturb=False, shading="normal")
    chunked = r.render_rays(field, origins, directions, BACKGROUND, perturb=False, shading="normal", chunk=4)
    for name in ("rgb", "opacity", "depth", "normals", "weights"):
        assert torch.allclose(getattr(whole, name), getattr(chunked, name), atol=1e-6), name
    assert whole.samples_evaluated == chunked.samples_evaluated


# ---------------------------------------------------------------------------------------------
# Stratified sampling
# ---------------------------------------------------------------------------------------------


def test_stratified_jitter_stays_in_bins_and_is_reproducible():
    near, far, samples = torch.tensor([1.0, 0.5]), torch.tensor([3.0, 0.9]), 16
    t1 = stratified_t_values(near, far, samples, True, torch.Generator().manual_seed(7))
    t2 = stratified_t_values(near, far, samples, True, torch.Generator().manual_seed(7))
    t3 = stratified_t_values(near, far, samples, True, torch.Generator().manual_seed(8))
    assert torch.equal(t1, t2) and not torch.equal(t1, t3)
    width = (far - near)[:, None] / samples
    lower = near[:, None] + width * torch.arange(samples)
    assert ((t1 >= lower) & (t1 <= lower + width)).all()
    # Offsets inside the bins are spread out, not stuck at one spot.
    offsets = (t1 - lower) / width
    assert offsets.std() > 0.2
    centred = stratified_t_values(near, far, samples, False)
    assert torch.allclose(centred, lower + width / 2)


def test_render_with_seeded_generator_is_reproducible():
    origins, directions = rays_down_z(5)
    field, r = SphereField(), renderer(24)
    a = r.render_rays(field, origins, directions, BACKGROUND, perturb=True, generator=torch.Generator().manual_seed(0))
    b = r.render_rays(field, origins, directions, BACKGROUND, perturb=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.t_values, b.t_values)


# ---------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------


def test_gradient_from_rgb_reaches_the_field_density():
    sigma, z0, z1 = 1.5, -0.25, 0.25
    field = SlabField(sigma, z0, z1, learnable=True)
    origins, directions = rays_down_z(3)
    out = renderer(2048).render_rays(field, origins, directions, BACKGROUND, perturb=False)
    out.rgb.sum().backward()
    # d/dsigma of c (1 - exp(-sigma L)) + bg exp(-sigma L) = (c - bg) L exp(-sigma L), per ray.
    length = z1 - z0
    expected = 3 * ((torch.tensor(ALBEDO) - BACKGROUND) * length * math.exp(-sigma * length)).sum()
    assert field.sigma.grad is not None
    assert field.sigma.grad.item() == pytest.approx(expected.item(), rel=5e-3)


# ---------------------------------------------------------------------------------------------
# Occupancy grid
# ---------------------------------------------------------------------------------------------


def test_fresh_grid_counts_everything_inside_the_cube_as_occupied():
    grid = OccupancyGrid(1.0, OccupancyGridConfig(resolution=8))
    points = torch.tensor([[0.0, 0.0, 0.0], [0.99, -0.99, 0.5], [1.5, 0.0, 0.0]])
    assert grid.query(points).tolist() == [True, True, False]
    assert grid.occupied_fraction == 1.0


def test_grid_update_marks_the_sphere_and_decays():
    config = OccupancyGridConfig(resolution=32, dilation=0)
    grid = OccupancyGrid(1.0, config)
    field = SphereField()
    grid.update(field, generator=torch.Generator().manual_seed(0))
    sphere_fraction = (4 / 3 * math.pi * 0.5**3) / 8
    assert abs(grid.occupied_fraction - sphere_fraction) < 0.3 * sphere_fraction
    assert grid.query(torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.9, 0.9]])).tolist() == [True, False]
    # An emptied field: values decay by `decay` per update; the running max keeps the old density.
    before = grid.density_grid.clone()
    grid.update(SlabField(0.0, 0.0, 0.0))
    assert torch.allclose(grid.density_grid, before * config.decay)
    # Dilation grows the occupied set by about one cell layer.
    dilated = OccupancyGrid(1.0, OccupancyGridConfig(resolution=32, dilation=1))
    dilated.update(field, generator=torch.Generator().manual_seed(0))
    assert grid.occupied_fraction < dilated.occupied_fraction < 2 * grid.occupied_fraction


def test_grid_schedule_and_state_dict_roundtrip():
    field = SphereField()
    r = renderer(16, occupancy=True, resolution=16, update_every=4, all_cells_steps=8)
    generator = torch.Generator().manual_seed(0)
    done = [r.update_occupancy(field, step, generator=generator) for step in range(12)]
    assert done == [step % 4 == 0 for step in range(12)]
    grid = r.occupancy_grid
    assert grid.num_updates.item() == 3
    restored = renderer(16, occupancy=True, resolution=16)
    restored.load_state_dict(r.state_dict())
    assert torch.equal(restored.occupancy_grid.occupied, grid.occupied)
    assert torch.equal(restored.occupancy_grid.density_grid, grid.density_grid)


def test_empty_space_skipping_matches_full_render_with_far_fewer_samples():
    field = SphereField()
    cameras = orbit_cameras(3, 24, 24, radius=2.0, polar_deg=70.0, fovy_deg=50.0).cameras
    r = renderer(64, occupancy=True, resolution=32)
    generator = torch.Generator().manual_seed(0)
    for step in range(0, 4 * 16, 16):
        r.update_occupancy(field, step, generator=generator)
    full = r.render(field, cameras, BACKGROUND, shading="lambertian", use_occupancy=False)
    skipped = r.render(field, cameras, BACKGROUND, shading="lambertian")
    assert full.rgb.shape == (3, 24, 24, 3) and full.depth.shape == (3, 24, 24, 1)
    assert (full.rgb - skipped.rgb).abs().max() < 2e-3
    assert (full.opacity - skipped.opacity).abs().max() < 2e-3
    ratio = skipped.samples_per_ray / full.samples_per_ray
    assert ratio < 0.3, ratio


# ---------------------------------------------------------------------------------------------
# Shading
# ---------------------------------------------------------------------------------------------


def test_lambertian_with_light_along_the_normal_gives_the_albedo():
    albedo = torch.rand(10, 3)
    normals = torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    assert torch.allclose(shade(albedo, normals, normals, "lambertian", ambient=0.1), albedo, atol=1e-6)
    # Light behind the surface leaves only the ambient term; at 60 degrees, half the diffuse part.
    assert torch.allclose(shade(albedo, normals, -normals, "lambertian", ambient=0.1), 0.1 * albedo, atol=1e-6)
    tilted = torch.tensor([[0.0, 0.0, 1.0]])
    light = torch.tensor([[math.sin(math.pi / 3), 0.0, 0.5]])
    assert torch.allclose(shade(albedo[:1], tilted, light, "lambertian", 0.2), albedo[:1] * (0.2 + 0.8 * 0.5))


def test_textureless_gives_grey_levels_and_albedo_mode_ignores_light():
    albedo = torch.rand(10, 3)
    normals = torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    lights = torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    grey = shade(albedo, normals, lights, "textureless", ambient=0.1)
    expected = 0.1 + 0.9 * (normals * lights).sum(-1).clamp_min(0)
    assert torch.allclose(grey, expected[:, None].expand(10, 3))
    assert torch.equal(shade(albedo, None, None, "albedo"), albedo)
    assert torch.allclose(shade(albedo, normals, None, "normal"), (normals + 1) / 2)
    with pytest.raises(ValueError):
        shade(albedo, None, lights, "lambertian")


def test_rendered_shading_modes_on_a_sphere():
    field = SphereField(sigma=200.0)
    origins = torch.tensor([[0.0, 0.0, 2.0]])
    directions = torch.tensor([[0.0, 0.0, -1.0]])
    r = renderer(256)
    # The ray hits the sphere at (0, 0, 0.5) whose normal faces the camera, where the default light is.
    albedo = r.render_rays(field, origins, directions, BACKGROUND, perturb=False)
    lit = r.render_rays(field, origins, directions, BACKGROUND, shading="lambertian", perturb=False)
    assert torch.allclose(lit.rgb, albedo.rgb, atol=2e-2)
    assert torch.allclose(lit.normals, torch.tensor([[0.0, 0.0, 1.0]]), atol=2e-2)
    grey = r.render_rays(field, origins, directions, BACKGROUND, shading="textureless", perturb=False)
    assert torch.allclose(grey.rgb, torch.ones(1, 3), atol=2e-2)
    side = torch.tensor([1.0, 0.0, 0.0])  # grazing light: only the ambient term remains
    dark = r.render_rays(field, origins, directions, BACKGROUND, shading="textureless", light_dirs=side, ambient=0.3, perturb=False)
    assert torch.allclose(dark.rgb, torch.full((1, 3), 0.3), atol=2e-2)
    assert albedo.normals is None and lit.normals is not None
    with pytest.raises(ValueError):
        r.render_rays(field, origins, directions, BACKGROUND, shading="lambertian", with_normals=False)


def test_light_directions_near_camera():
    origins = torch.tensor([[0.0, 0.0, 1.3], [1.0, 1.0, 0.0]])
    exact = light_directions_near_camera(origins, std=0.0)
    assert torch.allclose(exact, origins / origins.norm(dim=-1, keepdim=True))
    noisy = light_directions_near_camera(origins.repeat(500, 1), std=0.3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(noisy.norm(dim=-1), torch.ones(1000))
    cosine = (noisy * exact.repeat(500, 1)).sum(-1)
    assert (cosine > 0).float().mean() > 0.99 and cosine.mean() < 0.99
    again = light_directions_near_camera(origins.repeat(500, 1), std=0.3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)


def test_shading_schedule_albedo_first_then_thesis_frequencies():
    schedule = ShadingScheduleConfig()
    generator = torch.Generator().manual_seed(0)
    assert {schedule.sample_mode(epoch, generator) for epoch in range(10) for _ in range(50)} == {"albedo"}
    draws = [schedule.sample_mode(10 + i % 50, generator) for i in range(4000)]
    for mode, expected in (("albedo", 0.2), ("textureless", 0.4), ("lambertian", 0.4)):
        assert abs(draws.count(mode) / len(draws) - expected) < 0.03, mode
    with pytest.raises(ValueError):
        ShadingScheduleConfig(albedo_probability=0.5)


def test_image_render_shapes_per_camera_lights_and_gradients_on_request():
    field = SphereField()
    cameras = orbit_cameras(2, 8, 6, radius=2.0).cameras
    r = renderer(16)
    lights = cameras.origins / cameras.origins.norm(dim=-1, keepdim=True)
    out = r.render(field, cameras, BACKGROUND, shading="lambertian", light_dirs=lights, chunk=10)
    assert out.rgb.shape == (2, 6, 8, 3) and out.normals.shape == (2, 6, 8, 3)
    assert out.weights is None and not out.rgb.requires_grad
    default_light = r.render(field, cameras, BACKGROUND, shading="lambertian")
    assert torch.allclose(out.rgb, default_light.rgb, atol=1e-6)  # the default light sits at the camera
    kept = r.render(field, cameras, BACKGROUND, keep_samples=True)
    assert kept.weights.shape == (2, 6, 8, 16) and kept.t_values.shape == (2, 6, 8, 16)
    learnable = SlabField(1.0, -0.3, 0.3, learnable=True)
    graded = r.render(learnable, cameras, BACKGROUND, requires_grad=True)
    graded.rgb.sum().backward()
    assert learnable.sigma.grad is not None and learnable.sigma.grad.abs() > 0


# ---------------------------------------------------------------------------------------------
# Bounded training memory: checkpointed field queries
# ---------------------------------------------------------------------------------------------


class CountingField(nn.Module):
    """Wraps a field and counts its queries (a checkpointed query runs again in backward)."""

    def __init__(self, field):
        super().__init__()
        self.field, self.bound, self.calls, self.points_with_normals = field, field.bound, 0, 0

    def density(self, points):
        return self.field.density(points)

    def forward(self, points, with_normals=False):
        self.calls += 1
        self.points_with_normals += points.shape[0] if with_normals else 0
        return self.field(points, with_normals=with_normals)


def small_learned_field(normal_method: str = "finite_difference") -> CountingField:
    torch.manual_seed(0)
    encoding = HashGridConfig(num_levels=3, log2_hashmap_size=10, max_resolution=64)
    return CountingField(RadianceField(FieldConfig(encoding=encoding, hidden_dim=16, num_blocks=1, normal_method=normal_method)))


def training_render(field, budget: int, size: int = 12, samples: int = 24, chunk: int | None = None, dtype=torch.float32,
                    normals_min_weight: float = 0.0):
    """A lambertian training render (jitter, normals, kept samples) and its loss's backward."""
    config = RendererConfig(num_samples=samples, use_occupancy_grid=False, max_samples_per_chunk=budget,
                            normals_min_weight=normals_min_weight)
    r = VolumeRenderer(config)
    rays = sample_training_cameras(1, size, size, generator=torch.Generator().manual_seed(1)).cameras.generate_rays().flatten()
    field.to(dtype).zero_grad(set_to_none=True)
    out = r.render_rays(
        field, rays.origins.to(dtype), rays.directions.to(dtype), BACKGROUND, shading="lambertian", perturb=True,
        generator=torch.Generator().manual_seed(2), chunk=chunk,
    )
    # Every output that training losses use: colour, opacity, depth and the per-sample normals (orientation).
    loss = out.rgb.square().sum() + out.opacity.sum() + 0.1 * out.depth.sum() + (out.weights * out.sample_normals[..., 2]).sum()
    loss.backward()
    return out, [p.grad.clone() for p in field.parameters()]


@pytest.mark.parametrize("normal_method", ["finite_difference", "analytic"])
def test_checkpointed_training_render_equals_the_plain_one(normal_method):
    # In float64, so that only a real difference could show: in float32 the chunk-by-chunk sums of
    # the parameter gradients round differently (measured: up to 4e-5 of a gradient's scale).
    field = small_learned_field(normal_method)
    plain, plain_grads = training_render(field, budget=0, dtype=torch.float64)
    plain_calls, field.calls = field.calls, 0
    # 144 rays in chunks of 64, 64 and 16 (1536, 1536 and 384 samples): 4 + 4 + 1 queries of <= 400 samples
    checkpointed, grads = training_render(field, budget=400, chunk=64, dtype=torch.float64)
    assert plain.samples_evaluated == checkpointed.samples_evaluated == 12 * 12 * 24
    assert plain_calls == 1
    # Each query runs forward, then again in backward (analytic normals' double backward: once more).
    assert field.calls == 2 * 9 if normal_method == "finite_difference" else field.calls >= 2 * 9
    assert torch.equal(plain.t_values, checkpointed.t_values)  # the same jitter
    for name in ("rgb", "opacity", "depth", "weights", "sample_normals"):
        torch.testing.assert_close(getattr(checkpointed, name), getattr(plain, name), rtol=1e-10, atol=1e-12, msg=name)
    for expected, got in zip(plain_grads, grads):
        scale = expected.abs().max().item()
        assert scale > 0
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10 * scale)


def test_checkpointing_starts_above_the_budget_and_only_when_recording_gradients():
    r = VolumeRenderer(RendererConfig(max_samples_per_chunk=500))
    assert r.checkpoint_chunk(500) is None and r.checkpoint_chunk(501) == 500
    assert VolumeRenderer(RendererConfig(max_samples_per_chunk=0)).checkpoint_chunk(10**9) is None
    assert RendererConfig().max_samples_per_chunk == 2**16
    field = small_learned_field()
    training_render(field, budget=12 * 12 * 24)  # exactly the budget: one plain query
    assert field.calls == 1
    field.calls = 0
    r = VolumeRenderer(RendererConfig(num_samples=32, use_occupancy_grid=False, max_samples_per_chunk=100, normals_min_weight=0))
    r.render(field, orbit_cameras(1, 12, 12, radius=2.0).cameras, BACKGROUND, shading="lambertian")  # evaluation
    assert field.calls == 1


def sharp_learned_field() -> CountingField:
    """A learned field whose density is a sharp ball (the blob, made steep), so most samples along a
    ray hold next to no weight: the case the visible-samples-only normals are for."""
    field = small_learned_field()
    field.field.config = dataclasses.replace(field.field.config, blob_density=60.0)
    return field


def test_normals_only_at_visible_samples_change_the_render_by_less_than_the_weight_they_skip():
    field = sharp_learned_field()
    plain, plain_grads = training_render(field, budget=0, dtype=torch.float64)
    field.points_with_normals = 0
    pruned, grads = training_render(field, budget=0, dtype=torch.float64, normals_min_weight=1e-4)
    total = 12 * 12 * 24
    assert pruned.samples_evaluated == total
    # Normals were computed for a minority of the samples: those holding the image.
    assert 0 < field.points_with_normals < 0.5 * total, field.points_with_normals
    skipped = plain.weights * (pruned.sample_normals.abs().sum(-1) == 0)
    assert skipped.max() < 1e-4
    # Skipped samples are shaded by the ambient term instead of max(0, n . l): each pixel moves by at
    # most the weight it skipped (colours are <= 1).
    bound = skipped.sum(-1, keepdim=True) + 1e-12
    assert ((pruned.rgb - plain.rgb).abs() <= bound).all()
    assert (pruned.rgb - plain.rgb).abs().max() < 1e-3
    torch.testing.assert_close(pruned.opacity, plain.opacity, rtol=0, atol=1e-12)  # density is untouched
    flat_plain, flat = torch.cat([g.flatten() for g in plain_grads]), torch.cat([g.flatten() for g in grads])
    assert (flat - flat_plain).norm() < 1e-2 * flat_plain.norm()


def test_visible_normals_checkpointed_equal_the_plain_two_pass_render():
    field = sharp_learned_field()
    plain, plain_grads = training_render(field, budget=0, dtype=torch.float64, normals_min_weight=1e-4)
    checkpointed, grads = training_render(field, budget=400, chunk=64, dtype=torch.float64, normals_min_weight=1e-4)
    for name in ("rgb", "opacity", "sample_normals"):
        torch.testing.assert_close(getattr(checkpointed, name), getattr(plain, name), rtol=1e-10, atol=1e-12, msg=name)
    for expected, got in zip(plain_grads, grads):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10 * expected.abs().max().item())


def peak_cpu_bytes(run) -> int:
    """Peak of the bytes torch allocates on the CPU while `run()` executes (torch's memory profiler)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda event: event.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def test_checkpointing_lowers_peak_training_memory():
    field = small_learned_field()
    plain = peak_cpu_bytes(lambda: training_render(field, budget=0, samples=32))
    checkpointed = peak_cpu_bytes(lambda: training_render(field, budget=512, samples=32))
    # What stays is each sample's inputs and outputs, the compositing, and one chunk's activations.
    assert plain > 15e6 and checkpointed < 0.25 * plain, (plain, checkpointed)


@pytest.mark.gpu
def test_cpu_and_gpu_agree_on_grid_and_render():
    field, cameras = SphereField(), orbit_cameras(2, 16, 16, radius=2.0).cameras
    outputs = []
    for device in ("cpu", "cuda"):
        r = renderer(32, occupancy=True, resolution=32).to(device)
        generator = torch.Generator().manual_seed(0)  # one CPU generator drives both devices
        r.update_occupancy(field, 0, generator=generator)
        out = r.render(field, cameras.to(device), BACKGROUND.to(device), shading="lambertian", perturb=True, generator=generator)
        outputs.append((r.occupancy_grid, out))
    (grid_cpu, out_cpu), (grid_gpu, out_gpu) = outputs
    assert torch.allclose(grid_cpu.density_grid, grid_gpu.density_grid.cpu(), rtol=1e-4, atol=1e-4)
    assert (grid_cpu.occupied != grid_gpu.occupied.cpu()).float().mean() < 1e-3
    assert torch.allclose(out_cpu.rgb, out_gpu.rgb.cpu(), atol=1e-3)
    assert abs(out_cpu.samples_per_ray - out_gpu.samples_per_ray) < 0.01 * out_cpu.samples_per_ray


# -- deferred shading: one normal a ray ------------------------------------------------------------


def _interior_shading_error(scene, shade_at: str) -> float:
    """Mean absolute error of a lambertian volume render against the sphere-traced truth, on the pixels both
    cover fully, over four sides of the scene (a headlight each)."""
    from dreamtext.world.analytic import AnalyticScene  # noqa: F401  (the scenes come from the caller)

    errors = []
    for side in range(4):
        camera = orbit_cameras(1, 48, 48, radius=1.3, polar_deg=70, fovy_deg=50, start_azimuth_deg=90.0 * side).cameras
        light = torch.nn.functional.normalize(camera.origins[0], dim=0)
        truth = scene.render_sphere_traced(camera, shading="lambertian", light_dir=light.tolist(), background=(1, 1, 1),
                                           supersample=1, ambient=0.2)
        renderer = VolumeRenderer(RendererConfig(num_samples=192, use_occupancy_grid=False, shade_at=shade_at))
        out = renderer.render(scene, camera, background=torch.ones(3), shading="lambertian", light_dirs=light[None], ambient=0.2)
        covered = (truth["alpha"][..., 0] > 0.999) & (out.opacity[..., 0] > 0.99)
        errors.append((out.rgb - truth["rgb"]).abs()[covered].mean(-1))
    return float(torch.cat(errors).mean())


def test_deferred_shading_is_as_close_to_the_exact_surface_as_shading_every_sample():
    from dreamtext.world.analytic import default_scene, sphere_scene

    # A sphere: one surface a ray, both ways agree with the truth to the volume surface's offset.
    assert _interior_shading_error(sphere_scene(), "surface") < 0.012
    # The hollow mug: shading every sample mixes the normals of the thin wall's two sides, one normal at the
    # ray's strongest sample does not (measured 0.041 against 0.025 at 64 px).
    assert _interior_shading_error(default_scene(), "surface") < 0.8 * _interior_shading_error(default_scene(), "samples")


def test_deferred_shading_evaluates_normals_once_a_ray_and_trains_the_geometry():
    field = sharp_learned_field()
    counts = {}
    for shade_at in ("samples", "surface"):
        field.points_with_normals = 0
        renderer = VolumeRenderer(RendererConfig(num_samples=24, use_occupancy_grid=False, shade_at=shade_at,
                                                 normals_min_weight=0.0))
        cameras = orbit_cameras(1, 12, 12, radius=1.5).cameras
        out = renderer.render(field, cameras, background=torch.ones(3), shading="textureless", requires_grad=True)
        counts[shade_at] = field.points_with_normals
        field.zero_grad()
        out.rgb.mean().backward()
        # Textureless shading has no albedo: its gradient reaches the field only through the normals' densities
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters())
    rays = 12 * 12
    assert counts["surface"] <= rays < counts["samples"]
    assert out.sample_normals is None and out.normals.shape == (1, 12, 12, 3)
    # The ray normals are unit where the ray is opaque, faded with its opacity like the composited ones
    lengths = out.normals.norm(dim=-1)
    opaque = out.opacity[..., 0] > 0.999
    assert opaque.any() and torch.allclose(lengths[opaque], torch.ones_like(lengths[opaque]), atol=1e-3)
