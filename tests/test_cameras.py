
import pytest
import torch

from dreamtext.scene.cameras import (
    Cameras,
    ViewLabelConfig,
    cartesian_to_spherical,
    look_at,
    named_view_cameras,
    orbit_cameras,
    sample_training_cameras,
    spherical_to_cartesian,
    view_labels,
)
from dreamtext.scene.rays import RayBundle, ray_aabb_intersect


def test_training_distribution_matches_thesis_ranges():
    sample = sample_training_cameras(4000, 8, 8, generator=torch.Generator().manual_seed(1))
    assert sample.radius.min() >= 1.0 and sample.radius.max() <= 1.5
    assert sample.polar_deg.min() >= 0.0 and sample.polar_deg.max() <= 120.0
    assert sample.azimuth_deg.min() >= 0.0 and sample.azimuth_deg.max() < 360.0
    fovy = sample.cameras.fovy_deg
    assert fovy.min() >= 40.0 - 1e-4 and fovy.max() <= 70.0 + 1e-4
    # The cube half only reaches the upper hemisphere, so below-horizon views come from the angle half:
    # about half of the angle half, a quarter of the angle half lies in (90, 120].
    below = (sample.polar_deg > 90).float().mean().item()
    assert 0.5 * 0.25 * 0.8 < below < 0.5 * 0.25 * 1.2
    # Camera centres are where the spherical coordinates say.
    eye = spherical_to_cartesian(sample.radius, sample.polar_deg, sample.azimuth_deg)
    torch.testing.assert_close(sample.cameras.origins, eye, atol=1e-5, rtol=0)


def test_training_sampling_is_deterministic_by_seed():
    a = sample_training_cameras(16, 8, 8, generator=torch.Generator().manual_seed(3))
    b = sample_training_cameras(16, 8, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.cameras.c2w, b.cameras.c2w)


def test_cameras_look_at_the_origin():
    sample = sample_training_cameras(64, 9, 9, generator=torch.Generator().manual_seed(2))
    rays = sample.cameras.generate_rays()
    centre_dirs = rays.directions[:, 4, 4]
    towards_origin = -sample.cameras.origins / sample.cameras.origins.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(centre_dirs, towards_origin, atol=1e-5, rtol=0)


def test_look_at_is_a_rotation_and_handles_overhead():
    eye = torch.tensor([[0.0, 0.0, 2.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
    c2w = look_at(eye)
    rot = c2w[:, :3, :3]
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(3), atol=1e-6, rtol=0)
    # In front of the object (+z) the camera's right is +x and its up +y.
    torch.testing.assert_close(c2w[0, :3, 0], torch.tensor([1.0, 0, 0]))
    torch.testing.assert_close(c2w[0, :3, 1], torch.tensor([0.0, 1, 0]))


def test_pixel_directions_follow_intrinsics():
    cams = Cameras.from_fovy(look_at(torch.tensor([[0.0, 0.0, 3.0]])), 90.0, 4, 4)
    rays = cams.generate_rays()
    # fovy 90 deg: the top edge of the image is at 45 degrees; pixel centres at +-0.75 and +-0.25.
    d = rays.directions[0]
    assert d[0, 0, 1] > 0 and d[-1, 0, 1] < 0  # row 0 is at the top
    assert d[0, 0, 0] < 0 and d[0, -1, 0] > 0  # column 0 is on the left
    torch.testing.assert_close(d[0, 0, 1] / -d[0, 0, 2], torch.tensor(0.75))


def test_spherical_round_trip():
    r = torch.tensor([1.0, 2.0, 1.5])
    polar = torch.tensor([10.0, 90.0, 170.0])
    azimuth = torch.tensor([0.0, 123.0, 300.0])
    r2, p2, a2 = cartesian_to_spherical(spherical_to_cartesian(r, polar, azimuth))
    torch.testing.assert_close(r2, r)
    torch.testing.assert_close(p2, polar, atol=1e-4, rtol=0)
    torch.testing.assert_close(a2, azimuth, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "polar, azimuth, label",
    [
        (29.9, 0.0, "overhead"), (30.0, 0.0, "front"), (149.9, 200.0, "back"), (150.0, 0.0, "bottom"),
        (90.0, 0.0, "front"), (90.0, 59.9, "front"), (90.0, 60.0, "side"), (90.0, 179.9, "side"),
        (90.0, 180.0, "back"), (90.0, 239.9, "back"), (90.0, 240.0, "side"), (90.0, 359.9, "side"),
    ],
)
def test_view_labels_at_thesis_thresholds(polar, azimuth, label):
    assert view_labels(torch.tensor([polar]), torch.tensor([azimuth])) == [label]


def test_view_labels_centred_front_variant():
    config = ViewLabelConfig(front_start_deg=-30.0)
    labels = view_labels(torch.tensor([90.0, 90.0, 90.0, 90.0]), torch.tensor([345.0, 29.0, 31.0, 190.0]), config)
    assert labels == ["front", "front", "side", "back"]


def test_orbit_and_named_views():
    orbit = orbit_cameras(8, 4, 4, radius=2.0, polar_deg=90.0)
    torch.testing.assert_close(orbit.azimuth_deg, torch.arange(8.0) * 45.0)
    torch.testing.assert_close(orbit.cameras.origins.norm(dim=-1), torch.full((8,), 2.0))
    views = named_view_cameras(["front", "top"], 4, 4, radius=2.0)
    torch.testing.assert_close(views.cameras.origins, torch.tensor([[0.0, 0, 2], [0, 2, 0]]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        named_view_cameras(["sideways"], 4, 4)


def test_ray_aabb_intersection():
    rays = RayBundle(
        origins=torch.tensor([[0.0, 0.0, 3.0], [0.0, 5.0, 3.0], [0.2, 0.1, 0.0]]),
        directions=torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]),
    )
    near, far, hit = ray_aabb_intersect(rays, bound=1.0)
    torch.testing.assert_close(near, torch.tensor([2.0, near[1].item(), 0.0]))
    torch.testing.assert_close(far[0], torch.tensor(4.0))
    assert hit.tolist() == [True, False, True]
    assert far[1] == near[1]
    torch.testing.assert_close(far[2], torch.tensor(0.8))
