"""SDF primitives, transforms and CSG; analytic scenes as fields; sphere-traced ground truth; the mug."""

import json
import math

import pytest
import torch

from dreamtext.scene.cameras import Cameras, look_at, named_view_cameras
from dreamtext.scene.protocols import Field
from dreamtext.utils.images import load_image
from dreamtext.world.analytic import (
    default_scene,
    laplace_cdf,
    sphere_scene,
    two_tone_test_scene,
)
from dreamtext.world.posed_views import write_scene_views
from dreamtext.world.sdf import (
    Box,
    CappedCone,
    Capsule,
    Cylinder,
    Intersection,
    Rotate,
    Scale,
    SmoothUnion,
    Sphere,
    Subtraction,
    Torus,
    Translate,
    Union,
    rotation_matrix,
)

EXACT_SHAPES = {
    "sphere": Sphere((0.1, -0.2, 0.05), 0.4),
    "box": Box((0.0, 0.1, 0.0), (0.3, 0.2, 0.4)),
    "rounded_box": Box((0.0, 0.0, 0.1), (0.3, 0.35, 0.25), rounding=0.08),
    "cylinder_y": Cylinder((0.0, 0.0, 0.0), 0.3, 0.25),
    "cylinder_tilted": Cylinder((0.1, 0.0, 0.0), 0.2, 0.4, axis=(1.0, 1.0, 0.0)),
    "cone": CappedCone((0.0, 0.0, 0.0), 0.4, 0.0, 0.3),
    "frustum_x": CappedCone((0.0, 0.1, 0.0), 0.15, 0.35, 0.3, axis=(1.0, 0.0, 0.0)),
    "torus": Torus((0.0, 0.0, 0.0), 0.35, 0.1),
    "torus_z": Torus((0.0, 0.1, 0.0), 0.3, 0.12, axis=(0.0, 0.0, 1.0)),
    "capsule": Capsule((-0.2, -0.3, 0.0), (0.25, 0.3, 0.1), 0.15),
    "translated_rotated_scaled": Scale(Translate(Rotate.from_axis_angle(Box((0, 0, 0), (0.2, 0.1, 0.3)), (1, 2, 3), 40), (0.1, 0, 0)), 1.5),
}


def sdf_and_gradient(shape, points):
    points = points.clone().requires_grad_(True)
    value = shape.sdf(points)
    (gradient,) = torch.autograd.grad(value.sum(), points)
    return value.detach(), gradient


# ---------------------------------------------------------------------------------------------
# Primitives: closed-form distances
# ---------------------------------------------------------------------------------------------


def test_sphere_distances():
    sphere = Sphere((1.0, 0.0, 0.0), 0.5)
    points = torch.tensor([[1.0, 0.0, 0.0], [1.0, 2.0, 0.0], [1.3, 0.0, 0.0], [1.0, 0.0, -0.5]])
    assert torch.allclose(sphere.sdf(points), torch.tensor([-0.5, 1.5, -0.2, 0.0]), atol=1e-6)


def test_box_distances_plain_and_rounded():
    box = Box((0.0, 0.0, 0.0), (0.5, 0.3, 0.2))
    points = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [1.5, 1.3, 1.2], [0.0, 0.25, 0.0]])
    expected = torch.tensor([-0.2, 1.0, math.sqrt(3.0), -0.05])
    assert torch.allclose(box.sdf(points), expected, atol=1e-6)
    rounded = Box((0.0, 0.0, 0.0), (0.5, 0.5, 0.5), rounding=0.1)
    # Faces stay where they were; a corner becomes a sphere of radius 0.1 centred at (0.4, 0.4, 0.4).
    corner_point = torch.tensor([[1.0, 1.0, 1.0]])
    assert torch.allclose(rounded.sdf(torch.tensor([[0.7, 0.0, 0.0]])), torch.tensor([0.2]), atol=1e-6)
    assert torch.allclose(rounded.sdf(corner_point), torch.tensor([0.6 * math.sqrt(3) - 0.1]), atol=1e-6)


def test_cylinder_distances_along_any_axis():
    cylinder = Cylinder((0.0, 0.0, 0.0), 0.3, 0.5)
    points = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.9, 0.0], [0.6, 0.9, 0.0], [0.0, -0.4, 0.0]])
    expected = torch.tensor([-0.3, 0.7, 0.4, 0.5, -0.1])
    assert torch.allclose(cylinder.sdf(points), expected, atol=1e-6)
    along_x = Cylinder((0.0, 0.0, 0.0), 0.3, 0.5, axis=(1.0, 0.0, 0.0))
    swapped = points[:, [1, 0, 2]]
    assert torch.allclose(along_x.sdf(swapped), expected, atol=1e-6)


def test_capped_cone_distances():
    cone = CappedCone((0.0, 0.0, 0.0), radius_bottom=0.5, radius_top=0.0, half_height=0.5)
    points = torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 0.0], [0.8, -0.5, 0.0]])
    # Inside at the centre, the nearest boundary is the slanted side: line through (0.5, -0.5), (0, 0.5).
    side_distance = abs(2 * 0.0 + 1 * 0.0 - 0.5) / math.sqrt(5)
    expected = torch.tensor([0.5, 0.5, -side_distance, 0.3])
    assert torch.allclose(cone.sdf(points), expected, atol=1e-6)
    # Perpendicular to the slanted side, outside: from the side's midpoint along the normal (2, 1)/sqrt 5.
    normal = torch.tensor([2.0, 1.0]) / math.sqrt(5)
    mid = torch.tensor([0.25, 0.0]) + 0.2 * normal
    assert torch.allclose(cone.sdf(torch.tensor([[0.0, mid[1], mid[0]]])), torch.tensor([0.2]), atol=1e-6)


def test_torus_and_capsule_distances():
    torus = Torus((0.0, 0.0, 0.0), 0.4, 0.1)
    points = torch.tensor([[0.4, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, -0.4], [0.0, 0.0, 0.7]])
    assert torch.allclose(torus.sdf(points), torch.tensor([-0.1, 0.3, 0.9, 0.2]), atol=1e-6)
    standing = Torus((0.0, 0.0, 0.0), 0.4, 0.1, axis=(0.0, 0.0, 1.0))
    assert torch.allclose(standing.sdf(torch.tensor([[0.0, 0.4, 0.0], [0.0, 0.0, 1.0]])), torch.tensor([-0.1, math.sqrt(1.16) - 0.1]), atol=1e-6)
    capsule = Capsule((0.0, 0.0, 0.0), (0.0, 1.0, 0.0), 0.2)
    points = torch.tensor([[0.0, 0.5, 0.0], [1.0, 0.5, 0.0], [0.0, -1.0, 0.0], [0.0, 1.5, 0.0]])
    assert torch.allclose(capsule.sdf(points), torch.tensor([-0.2, 0.8, 0.8, 0.3]), atol=1e-6)


@pytest.mark.parametrize("name", sorted(EXACT_SHAPES))
def test_exact_sdfs_have_unit_gradient_and_project_onto_the_surface(name):
    shape = EXACT_SHAPES[name]
    points = torch.rand(4000, 3, dtype=torch.float64) * 1.6 - 0.8
    value, gradient = sdf_and_gradient(shape, points)
    # Stay off the medial axis and the edges, where the gradient is undefined.
    eps = 1e-4
    shifted = torch.stack([shape.sdf(points + eps * e) - shape.sdf(points - eps * e) for e in torch.eye(3, dtype=torch.float64)], -1) / (2 * eps)
    smooth = (shifted - gradient).norm(dim=-1) < 1e-3
    assert smooth.float().mean() > 0.9
    assert torch.allclose(gradient[smooth].norm(dim=-1), torch.ones(int(smooth.sum()), dtype=torch.float64), atol=1e-6)
    # An exact SDF's nearest surface point is p - sdf(p) grad(p): it must lie on the surface.
    projected = points[smooth] - value[smooth, None] * gradient[smooth]
    assert shape.sdf(projected).abs().max() < 1e-6
    # And the SDF is 1-Lipschitz.
    other = points + 0.05 * torch.randn_like(points)
    assert ((shape.sdf(other) - value).abs() <= (other - points).norm(dim=-1) + 1e-9).all()


def test_shapes_are_data():
    assert Sphere([0, 0, 0], 1) == Sphere((0.0, 0.0, 0.0), 1.0)
    assert hash(Box((0, 0, 0), (1, 1, 1))) == hash(Box((0, 0, 0), (1, 1, 1)))
    for bad in (lambda: Sphere((0, 0, 0), -1), lambda: Box((0, 0), (1, 1, 1)), lambda: Cylinder((0, 0, 0), 1, 1, axis=(0, 0, 0)),
                lambda: Box((0, 0, 0), (0.1, 1, 1), rounding=0.2), lambda: Rotate(Sphere((0, 0, 0), 1), ((2, 0, 0), (0, 1, 0), (0, 0, 1)))):
        with pytest.raises(ValueError):
            bad()


# ---------------------------------------------------------------------------------------------
# Transforms and CSG
# ---------------------------------------------------------------------------------------------


def test_transforms():
    points = torch.rand(500, 3) * 2 - 1
    unit = Sphere((0.0, 0.0, 0.0), 0.5)
    assert torch.allclose(Translate(unit, (0.2, -0.1, 0.3)).sdf(points), Sphere((0.2, -0.1, 0.3), 0.5).sdf(points), atol=1e-6)
    assert torch.allclose(Scale(unit, 1.6).sdf(points), Sphere((0.0, 0.0, 0.0), 0.8).sdf(points), atol=1e-6)
    assert torch.allclose(unit.translated((0.1, 0, 0)).scaled(2.0).sdf(points), Sphere((0.2, 0, 0), 1.0).sdf(points), atol=1e-6)
    # Right-hand rule: a quarter turn around +y takes +z to +x.
    r = torch.tensor(rotation_matrix((0, 1, 0), 90.0))
    assert torch.allclose(r @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    upright = Cylinder((0.0, 0.0, 0.0), 0.2, 0.5)
    lying = Cylinder((0.0, 0.0, 0.0), 0.2, 0.5, axis=(1.0, 0.0, 0.0))
    assert torch.allclose(upright.rotated((0, 0, 1), 90.0).sdf(points), lying.sdf(points), atol=1e-6)
    # A unit cube turned 45 degrees around y puts its vertical edge on the x axis at 0.5 sqrt 2.
    turned = Rotate.from_axis_angle(Box((0.0, 0.0, 0.0), (0.5, 0.5, 0.5)), (0, 1, 0), 45.0)
    assert turned.sdf(torch.tensor([1.0, 0.0, 0.0])).item() == pytest.approx(1 - 0.5 * math.sqrt(2), abs=1e-6)
    # Rotation about a pivot: rotate, then translate.
    moved = Translate(Rotate.from_axis_angle(Box((0.3, 0, 0), (0.1, 0.1, 0.1)), (0, 1, 0), 90.0), (0, 0.5, 0))
    assert moved.contains(torch.tensor([0.0, 0.5, -0.3])) and not moved.contains(torch.tensor([0.3, 0.5, 0.0]))


def test_csg_union_intersection_subtraction():
    a = Sphere((-0.2, 0.0, 0.0), 0.3)
    b = Sphere((0.2, 0.0, 0.0), 0.3)
    points = torch.rand(1000, 3) * 2 - 1
    inside_a, inside_b = a.contains(points), b.contains(points)
    assert torch.equal((a | b).contains(points), inside_a | inside_b)
    assert torch.equal((a & b).contains(points), inside_a & inside_b)
    assert torch.equal((a - b).contains(points), inside_a & ~inside_b)
    assert isinstance(a | b, Union) and isinstance(a & b, Intersection) and isinstance(a - b, Subtraction)
    # Union is exact outside: distance to the nearer sphere.
    assert (a | b).sdf(torch.tensor([0.0, 1.0, 0.0])).item() == pytest.approx(math.sqrt(1.04) - 0.3, abs=1e-6)
    # Subtraction makes a hole: a cube minus a ball at its centre is empty at the centre, full at the corner.
    holed = Box((0.0, 0.0, 0.0), (0.5, 0.5, 0.5)) - Sphere((0.0, 0.0, 0.0), 0.3)
    centre, corner = torch.tensor([0.0, 0.0, 0.0]), torch.tensor([0.45, 0.45, 0.45])
    assert holed.sdf(centre).item() == pytest.approx(0.3, abs=1e-6)
    assert holed.sdf(corner).item() < 0
    # Smooth union: equals the union away from the seam, bulges (more negative) near it, by at most k / 4.
    k = 0.2
    smooth = SmoothUnion((a, b), smoothness=k)
    union_values = (a | b).sdf(points)
    smooth_values = smooth.sdf(points)
    assert (smooth_values <= union_values + 1e-7).all()
    assert (union_values - smooth_values).max() <= k / 4 + 1e-6
    far = (a.sdf(points) - b.sdf(points)).abs() >= k
    assert torch.allclose(smooth_values[far], union_values[far])
    seam = torch.tensor([0.0, 0.3, 0.0])  # equidistant from both spheres: the full k / 4 fillet
    assert smooth.sdf(seam).item() == pytest.approx((a | b).sdf(seam).item() - k / 4, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Analytic scenes as fields
# ---------------------------------------------------------------------------------------------


def test_density_follows_volsdf():
    scene = sphere_scene(radius=0.4)
    assert isinstance(scene, Field)
    beta = scene.beta
    points = torch.tensor([[0.0, 0.0, 0.0], [0.4, 0.0, 0.0], [0.0, 0.0, 0.8], [0.0, 0.45, 0.0]])
    density = scene.density(points)
    assert density[0].item() == pytest.approx(1 / beta, rel=1e-6)
    assert density[1].item() == pytest.approx(0.5 / beta, rel=1e-4)
    assert density[2].item() < 1e-10
    assert density[3].item() == pytest.approx(0.5 * math.exp(-0.05 / beta) / beta, rel=1e-3)
    # The Laplace CDF is stable for huge arguments and symmetric.
    s = torch.tensor([-1e4, -1.0, 0.0, 1.0, 1e4])
    cdf = laplace_cdf(s, 0.01)
    assert torch.isfinite(cdf).all() and torch.allclose(cdf + cdf.flip(0), torch.ones(5))


def test_field_outputs_albedo_of_the_right_part_and_radial_normals():
    scene = two_tone_test_scene()
    points = torch.tensor([[-0.3, 0.0, 0.0], [0.3, 0.0, 0.0], [0.5, 0.0, 0.0], [-0.6, 0.0, 0.0]]).view(2, 2, 3)
    out = scene(points, with_normals=True)
    assert out.density.shape == (2, 2) and out.albedo.shape == (2, 2, 3) and out.normals.shape == (2, 2, 3)
    red, blue = torch.tensor(scene.parts[0].albedo), torch.tensor(scene.parts[1].albedo)
    assert torch.allclose(out.albedo.view(4, 3), torch.stack([red, blue, blue, red]))
    assert scene(points).normals is None
    assert torch.equal(scene.occupancy(points), torch.tensor([[True, True], [False, False]]))

    sphere = sphere_scene(radius=0.3, center=(0.1, 0.0, 0.0))
    directions = torch.nn.functional.normalize(torch.randn(200, 3), dim=-1)
    surface = torch.tensor([0.1, 0.0, 0.0]) + 0.3 * directions
    with torch.inference_mode():  # evaluation code: normals still come from autograd
        normals = sphere(surface, with_normals=True).normals
    assert torch.allclose(normals, directions, atol=1e-5)


def test_sphere_traced_silhouette_and_depth():
    radius, distance, size, fovy = 0.4, 2.0, 65, 40.0
    eye = torch.tensor([[0.3, 1.2, 1.5]])
    eye = eye / eye.norm() * distance
    cameras = Cameras.from_fovy(look_at(eye), fovy, size, size)
    scene = sphere_scene(radius=radius, albedo=(0.2, 0.6, 0.4))
    out = scene.render_sphere_traced(cameras, shading="lambertian", background=(0.0, 0.0, 0.0))
    assert out["rgb"].shape == (1, size, size, 3) and out["alpha"].shape == (1, size, size, 1)
    # The sphere projects to a disk of radius f tan(asin(r / d)) pixels.
    focal = 0.5 * size / math.tan(math.radians(fovy) / 2)
    disk_area = math.pi * (focal * math.tan(math.asin(radius / distance))) ** 2
    assert out["alpha"].sum().item() == pytest.approx(disk_area, rel=0.02)
    centre = size // 2
    assert out["depth"][0, centre, centre, 0].item() == pytest.approx(distance - radius, abs=1e-3)
    # Facing the camera at the centre: the normal points back at it; the headlight gives the full albedo.
    assert torch.allclose(out["normals"][0, centre, centre], (eye / distance)[0], atol=1e-3)
    assert torch.allclose(out["rgb"][0, centre, centre], torch.tensor([0.2, 0.6, 0.4]), atol=1e-3)
    # Corners see the background, with no depth.
    assert out["alpha"][0, 0, 0, 0] == 0 and out["depth"][0, 0, 0, 0] == 0
    # Supersampling: the edge has fractional coverage, and the total area is the same.
    sharp = scene.render_sphere_traced(cameras, supersample=1)
    fractional = ((out["alpha"] > 0) & (out["alpha"] < 1)).sum()
    assert fractional > 0 and ((sharp["alpha"] > 0) & (sharp["alpha"] < 1)).sum() == 0
    assert sharp["alpha"].sum().item() == pytest.approx(disk_area, rel=0.03)


# ---------------------------------------------------------------------------------------------
# The built-in scenes
# ---------------------------------------------------------------------------------------------


def test_default_mug():
    scene = default_scene()
    # Inside bounds, roughly centred: occupied cells of a 64^3 grid over the scene cube.
    n = 64
    axis = -1 + (torch.arange(n) + 0.5) * 2 / n
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)
    occupancy = scene.occupancy(grid)
    occupied = grid[occupancy]
    assert occupied.shape[0] > 1000
    assert occupied.abs().max() < 0.5
    assert occupied.mean(0).abs().max() < 0.15
    # The handle makes it asymmetric left/right, on the +x side only; front/back is symmetric.
    unmirrored = grid[occupancy & ~occupancy.flip(0)]
    assert unmirrored.shape[0] > 30 and (unmirrored[:, 0] > 0.25).all()
    assert torch.equal(occupancy, occupancy.flip(2))
    handle, mirrored = torch.tensor([0.39, 0.0, 0.0]), torch.tensor([-0.39, 0.0, 0.0])
    assert scene.occupancy(handle) and not scene.occupancy(mirrored)
    # Hollow and open at the top, with a floor; mirror symmetric front to back.
    assert not scene.occupancy(torch.tensor([0.0, 0.0, 0.0]))
    assert not scene.occupancy(torch.tensor([0.0, 0.27, 0.0]))
    assert scene.occupancy(torch.tensor([0.0, -0.26, 0.0]))
    assert scene.occupancy(torch.tensor([0.0, 0.0, 0.23])) and scene.occupancy(torch.tensor([0.0, 0.0, -0.23]))
    # Red from the front; the inside has its own colour.
    out = scene.render_sphere_traced(named_view_cameras(["front"], 48, 48).cameras)
    colours = out["rgb"][out["alpha"][..., 0] > 0.99]
    r, g, b = colours.mean(0).tolist()
    assert r > 0.6 and g < 0.2 and b < 0.2
    inside = scene.albedo(torch.tensor([[0.0, 0.0, 0.0]]))[0]
    assert inside.min() > 0.7


def test_write_scene_views_round_trip(tmp_path):
    scene = two_tone_test_scene()
    transforms_path = write_scene_views(scene, tmp_path, views=3, size=24, seed=1)
    meta = json.loads(transforms_path.read_text())
    assert len(meta["frames"]) == 3 and meta["w"] == meta["h"] == 24
    frame = meta["frames"][0]
    c2w = torch.tensor(frame["transform_matrix"], dtype=torch.float32)[None]
    cameras = Cameras(c2w, torch.tensor([meta["fl_x"]]), torch.tensor([meta["fl_y"]]), torch.tensor([meta["cx"]]),
                      torch.tensor([meta["cy"]]), meta["w"], meta["h"])
    rendered = scene.render_sphere_traced(cameras, background=(0.0, 0.0, 0.0))
    rgb, alpha = load_image(tmp_path / frame["file_path"])
    assert alpha is not None and alpha.sum() > 10
    assert (alpha - rendered["alpha"][0]).abs().max() <= 1 / 255 + 1e-6
    assert (rgb * alpha - rendered["rgb"][0]).abs().max() < 0.02


def test_lambertian_shading_with_a_fixed_light():
    # Seen from +z and lit from +x, the sphere's centre faces away from the light: ambient only.
    cameras = named_view_cameras(["front"], 17, 17, radius=2.0).cameras
    scene = sphere_scene(radius=0.4, albedo=(0.5, 0.5, 0.5))
    out = scene.render_sphere_traced(cameras, shading="lambertian", light_dir=(1.0, 0.0, 0.0), ambient=0.2, supersample=1)
    assert torch.allclose(out["rgb"][0, 8, 8], torch.full((3,), 0.5 * 0.2), atol=1e-3)
    # The lit (+x, image right) half is brighter than the left one.
    assert out["rgb"][0, 8, 11, 0] > out["rgb"][0, 8, 5, 0] + 0.1
    with pytest.raises(ValueError):
        scene.render_sphere_traced(cameras, shading="textureless")
