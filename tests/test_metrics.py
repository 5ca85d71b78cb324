"""Metrics against closed forms: PSNR, voxel IoU, occupancy grids, Chamfer distances, albedo error."""

import math

import pytest
import torch
import trimesh

from dreamtext.metrics import (
    albedo_error,
    cell_centres,
    chamfer_distance,
    field_iou,
    field_overlap,
    mesh_chamfer,
    occupancy_grid,
    psnr,
    voxel_iou,
    voxel_overlap,
)
from dreamtext.world.analytic import sphere_scene


def test_psnr_known_values():
    target = torch.zeros(2, 8, 8, 3)
    assert psnr(target + 0.1, target) == pytest.approx(20.0, abs=1e-5)
    assert psnr(target + 0.01, target) == pytest.approx(40.0, abs=1e-5)
    assert psnr(target + 25.5, target, max_val=255.0) == pytest.approx(20.0, abs=1e-5)
    # Half the pixels off by 0.2: mse 0.02 -> 10 log10(50).
    pred = target.clone()
    pred[0] = 0.2
    assert psnr(pred, target) == pytest.approx(10 * math.log10(50), abs=1e-5)
    assert psnr(target, target) == math.inf
    with pytest.raises(ValueError):
        psnr(target, target[0])


def test_voxel_iou_known_overlaps():
    a = torch.zeros(8, 8, 8, dtype=torch.bool)
    b = torch.zeros_like(a)
    a[0:4] = True
    b[2:6] = True
    assert voxel_iou(a, a) == 1.0
    assert voxel_iou(a, ~a) == 0.0
    assert voxel_iou(a, b) == pytest.approx(2 / 6)
    c = torch.zeros_like(a)
    c[0:2, 0:2, 0:2] = True  # 8 cells, all inside a's 256
    assert voxel_iou(a, c) == pytest.approx(8 / 256)
    assert voxel_iou(torch.zeros_like(a), torch.zeros_like(a)) == 1.0
    with pytest.raises(ValueError):
        voxel_iou(a, a[0])


def test_voxel_overlap_splits_iou_into_precision_and_recall():
    truth = torch.zeros(8, 8, 8, dtype=torch.bool)
    truth[0:4] = True  # 256 cells
    shrunk = torch.zeros_like(truth)
    shrunk[0:2] = True  # half of the truth, nothing outside it
    assert voxel_overlap(shrunk, truth) == {"iou": 0.5, "precision": 1.0, "recall": 0.5}
    mass = torch.ones_like(truth)  # all of the truth and as much again outside it
    assert voxel_overlap(mass, truth) == {"iou": 0.5, "precision": 0.5, "recall": 1.0}
    empty = voxel_overlap(torch.zeros_like(truth), truth)
    assert empty["iou"] == 0.0 and math.isnan(empty["precision"]) and empty["recall"] == 0.0
    with pytest.raises(ValueError, match="equal shapes"):
        voxel_overlap(truth, truth[0])


def test_occupancy_grid_cells_and_volume():
    centres = cell_centres(1.0, 4)
    assert centres.shape == (4, 4, 4, 3)
    assert torch.allclose(centres[0, 0, 0], torch.tensor([-0.75, -0.75, -0.75]))
    assert torch.allclose(centres[3, 1, 2], torch.tensor([0.75, -0.25, 0.25]))  # indexed [x, y, z]
    # A sphere fills its share of the cube; chunking changes nothing.
    scene = sphere_scene(radius=0.5, center=(0.2, 0.0, 0.0))
    grid = occupancy_grid(scene.occupancy, bound=1.0, resolution=48)
    assert grid.dtype == torch.bool and grid.shape == (48, 48, 48)
    volume = grid.float().mean().item() * 8.0
    assert volume == pytest.approx(4 / 3 * math.pi * 0.5**3, rel=0.02)
    assert torch.equal(grid, occupancy_grid(scene.occupancy, 1.0, 48, chunk_size=1000))
    assert grid[40:].sum() > grid[:8].sum()  # the sphere sits towards +x
    with pytest.raises(TypeError):
        occupancy_grid(scene.density, 1.0, 8)


def test_field_iou_against_the_analytic_scene():
    scene = sphere_scene(radius=0.5)
    # The VolSDF density crosses 1 / (2 beta) exactly at the surface: the scene agrees with itself.
    assert field_iou(scene, scene, resolution=32, density_threshold=0.5 / scene.beta) == 1.0
    # A smaller concentric sphere: IoU is the volume ratio (r1 / r2)^3, up to the grid.
    smaller = sphere_scene(radius=0.4)
    assert field_iou(smaller, scene, resolution=48, density_threshold=0.5 / scene.beta) == pytest.approx(0.4**3 / 0.5**3, abs=0.03)
    # ... all of it inside the larger one (precision 1), which it covers up to that ratio (recall).
    overlap = field_overlap(smaller, scene, resolution=48, density_threshold=0.5 / scene.beta)
    assert overlap["precision"] == 1.0 and overlap["recall"] == pytest.approx(overlap["iou"])


def test_chamfer_distance_closed_forms():
    axis = torch.arange(5, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)  # spacing 1
    assert chamfer_distance(grid, grid) == 0.0
    shift = torch.tensor([0.06, -0.08, 0.0])  # length 0.1, far below the spacing
    assert chamfer_distance(grid, grid + shift) == pytest.approx(0.1, abs=1e-6)
    # Asymmetric sets: a -> b is 0, b -> a averages 0 and 1; the symmetric value is their mean.
    a = torch.tensor([[0.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert chamfer_distance(a, b) == pytest.approx(0.25)
    assert chamfer_distance(b, a) == pytest.approx(0.25)
    # Blocked evaluation equals the one-shot answer.
    cloud_a, cloud_b = torch.rand(700, 3), torch.rand(500, 3)
    assert chamfer_distance(cloud_a, cloud_b, block=20_000) == pytest.approx(chamfer_distance(cloud_a, cloud_b), rel=1e-12)
    with pytest.raises(ValueError):
        chamfer_distance(a, torch.zeros(0, 3))


def test_mesh_chamfer_concentric_spheres():
    inner = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    outer = trimesh.creation.icosphere(subdivisions=4, radius=0.6)
    # Every point of one sphere is about 0.1 from the other (faceting and sampling add a little).
    value = mesh_chamfer(inner, outer, n_samples=3000)
    assert value == pytest.approx(0.1, abs=0.005)
    assert mesh_chamfer(inner, outer, n_samples=3000) == value  # seeded
    assert mesh_chamfer(inner, inner, n_samples=3000) < 0.02  # independent samples of one surface
    assert mesh_chamfer(inner, trimesh.Trimesh(), n_samples=100) == math.inf


def test_albedo_error():
    true = torch.tensor([[0.2, 0.4, 0.6], [1.0, 0.0, 0.5]])
    pred = true + torch.tensor([[0.1, -0.1, 0.1], [0.3, 0.3, 0.3]])
    assert albedo_error(pred, true) == pytest.approx(0.2)
    assert albedo_error(pred, true, mask=torch.tensor([True, False])) == pytest.approx(0.1)
    assert albedo_error(true, true) == 0.0


# -- surface F-score and part recall -------------------------------------------------------------


@pytest.fixture(scope="module")
def mug_surface():
    from dreamtext.metrics import scene_surface_samples
    from dreamtext.world.analytic import default_scene

    scene = default_scene()
    return scene, scene_surface_samples(scene, count=60_000)


def test_true_surface_samples_lie_on_the_zero_level_set_with_their_parts(mug_surface):
    scene, truth = mug_surface
    points = torch.from_numpy(truth.points).float()
    assert scene.sdf(points).abs().max() < 1e-4  # projected onto the surface, not left on the marching-cubes mesh
    assert truth.part_names == ("glaze", "body", "handle")
    nearest = scene.part_sdfs(points).argmin(dim=-1).numpy()
    assert (nearest == truth.parts).all()
    # The handle is a few percent of the area, the inside (glaze) about as large as the outside.
    shares = [(truth.parts == index).mean() for index in range(3)]
    assert 0.02 < shares[2] < 0.08 and 0.3 < shares[0] < 0.5


def test_surface_scores_on_reference_meshes(mug_surface):
    from dreamtext.metrics import mesh_surface_points, sdf_mesh, surface_scores
    from dreamtext.world.analytic import AnalyticScene, Part
    from dreamtext.world.sdf import Cylinder

    scene, truth = mug_surface
    exact = sdf_mesh(scene.sdf, scene.bound, 192)
    scores = surface_scores(mesh_surface_points(exact, 60_000), truth)
    assert scores["fscore_002"] > 0.999 and scores["fscore_005"] == 1.0
    assert scores["part_recall"] == {"glaze": 1.0, "body": 1.0, "handle": 1.0}

    shifted = exact.copy()
    shifted.apply_translation([0.03, 0.0, 0.0])  # off by more than 0.02 where a face looks along x, less than 0.05 anywhere
    scores = surface_scores(mesh_surface_points(shifted, 60_000), truth)
    assert scores["fscore_005"] == 1.0 and scores["fscore_002"] < 0.85

    # A solid copy: the outside and the handle exactly, the hollow inside not at all. IoU cannot see the
    # difference from a plain cylinder; the part recall can.
    handle = next(part for part in scene.parts if part.name == "handle")
    cylinder = Part(Cylinder((0, 0, 0), 0.25, 0.275), (1.0, 0.0, 0.0), "body")
    solid = surface_scores(mesh_surface_points(sdf_mesh(AnalyticScene((cylinder, handle)).sdf, 1.0, 192), 60_000), truth)
    plain = surface_scores(mesh_surface_points(sdf_mesh(AnalyticScene((cylinder,)).sdf, 1.0, 192), 60_000), truth)
    assert solid["part_recall"]["glaze"] < 0.1 and solid["part_recall"]["handle"] == 1.0
    assert plain["part_recall"]["handle"] < 0.2 and solid["part_recall"]["body"] == plain["part_recall"]["body"] == 1.0
    # Recall at 0.05 reaches the inner wall (0.04 inside the outer one) but not the cavity's floor
    assert 0.85 < solid["recall_005"] < 0.99 and solid["recall_002"] < 0.7
    assert plain["fscore_005"] < solid["fscore_005"]


def test_surface_scores_of_an_empty_reconstruction_are_zero(mug_surface):
    import numpy as np

    from dreamtext.metrics import surface_scores

    scores = surface_scores(np.zeros((0, 3)), mug_surface[1])
    assert scores["fscore_002"] == scores["fscore_005"] == scores["precision_005"] == 0.0
    assert set(scores["part_recall"].values()) == {0.0}


def test_nearest_distances_closed_form():
    import numpy as np

    from dreamtext.metrics import nearest_distances

    grid = np.stack(np.meshgrid(np.arange(3.0), np.arange(3.0), np.arange(3.0), indexing="ij"), -1).reshape(-1, 3)
    assert np.allclose(nearest_distances(np.array([[0.5, 0.0, 0.0], [1.0, 1.0, 1.3]]), grid), [0.5, 0.3])
    assert np.isinf(nearest_distances(grid[:2], np.zeros((0, 3)))).all()
