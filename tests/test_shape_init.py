"""The field's start from the prior's drawings: backdrop masks, projection, the soft visual hull, the fit."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dreamtext.errors import DreamtextError
from dreamtext.methods.text_to_3d.start import (
    FieldFitConfig, RedrawConfig, ShapeInitConfig, SoftVisualHull, fit_field, hull_hold_loss, hull_of_drawings, hull_silhouettes, hull_targets, hull_volume_fraction, mean_object_colour, project, redraw_hull,
)
from dreamtext.utils.images import close_masks, foreground_masks
from dreamtext.metrics import field_iou, occupancy_grid, voxel_iou
from dreamtext.scene.cameras import VIEW_LABELS, CameraSamplerConfig, orbit_cameras
from dreamtext.scene.field import FieldConfig, RadianceField
from dreamtext.scene.hash_encoding import HashGridConfig
from dreamtext.world.analytic import sphere_scene

BACKDROP = (0.9, 0.85, 0.8)


def drawings_of(scene, config: ShapeInitConfig, count: int = 2, size: int = 64) -> list[torch.Tensor]:
    """Exact renders of `scene` from each view's assumed camera, over a plain backdrop: perfect drawings."""
    cameras = CameraSamplerConfig()
    radius, fovy = sum(cameras.radius_range) / 2, sum(cameras.fovy_range_deg) / 2
    views = []
    for _, polar, azimuth in config.views:
        camera = orbit_cameras(1, size, size, radius=radius, polar_deg=polar, fovy_deg=fovy, start_azimuth_deg=azimuth).cameras
        out = scene.render_sphere_traced(camera, background=BACKDROP)
        views.append(out["rgb"].permute(0, 3, 1, 2).expand(count, -1, -1, -1).clone())
    return views


def test_foreground_is_what_differs_from_the_plain_backdrop():
    images = torch.tensor(BACKDROP).view(1, 3, 1, 1).repeat(2, 1, 16, 16)
    images[0, :, 4:9, 6:12] = torch.tensor([0.2, 0.3, 0.9]).view(3, 1, 1)
    images[1, :, 4:9, 6:12] += 0.03  # within the tolerance: still backdrop
    masks = foreground_masks(images, tolerance=0.08)
    expected = torch.zeros(16, 16)
    expected[4:9, 6:12] = 1
    assert torch.equal(masks[0, 0], expected) and masks[1].sum() == 0


def test_closing_fills_stripes_narrower_than_its_size_and_keeps_the_outline():
    square = torch.zeros(1, 1, 24, 24)
    square[..., 4:20, 4:20] = 1
    striped = square.clone()
    striped[..., 8:11, 4:20] = 0  # a light stripe 3 px wide, read as backdrop
    striped[..., 14:16, 4:20] = 0
    assert torch.equal(close_masks(striped, 5), square)
    assert torch.equal(close_masks(square, 5), square)  # the outline stays: neither grown nor eroded
    assert torch.equal(close_masks(striped, 3)[..., 8:11, 4:20], torch.zeros(1, 1, 3, 16))  # too narrow a closing
    assert torch.equal(close_masks(striped, 0), striped)
    framed = torch.ones(1, 1, 12, 12)  # an object that fills the frame is not eroded at its edges
    assert torch.equal(close_masks(framed, 5), framed)


def test_projection_inverts_the_cameras_rays():
    camera = orbit_cameras(1, 32, 32, radius=1.3, polar_deg=60.0, fovy_deg=50.0, start_azimuth_deg=40.0).cameras
    rays = camera.generate_rays()
    pixels = [(3, 5), (16, 16), (30, 9)]  # (row, column)
    points = torch.stack([rays.origins[0, r, c] + 0.9 * rays.directions[0, r, c] for r, c in pixels])
    grid = project(camera, points)[0]
    # Pixel centres in grid_sample's units (align_corners=False): (index + 0.5) / size * 2 - 1.
    expected = torch.tensor([[(c + 0.5) / 16 - 1, (r + 0.5) / 16 - 1] for r, c in pixels])
    assert torch.allclose(grid, expected, atol=1e-5)


def test_hull_of_exact_silhouettes_holds_the_object_and_coverage_is_the_drawings_fraction():
    config = ShapeInitConfig(kind="prior_hull")
    scene = sphere_scene(radius=0.35, albedo=(0.9, 0.1, 0.1), center=(0.1, 0.05, 0.0))
    drawings = drawings_of(scene, config)
    hull = hull_of_drawings(drawings, config, CameraSamplerConfig())
    bound = scene.bound
    predicted = occupancy_grid(lambda p: hull.coverage(p) > 0.5, bound, 40)
    truth = occupancy_grid(scene.occupancy, bound, 40)
    assert voxel_iou(predicted, truth) > 0.75  # four views carve a sphere close to itself
    assert (predicted & truth).sum() / truth.sum() > 0.97  # a visual hull contains its object
    # Half of one view's drawings empty: the centre is covered by half of that view's drawings.
    drawings[0][1] = torch.tensor(BACKDROP).view(3, 1, 1).expand(3, 64, 64)
    half = hull_of_drawings(drawings, config, CameraSamplerConfig())
    centre = torch.tensor([[0.1, 0.05, 0.0]])
    assert half.coverage(centre).item() == pytest.approx(0.5, abs=1e-4)
    assert hull.coverage(torch.tensor([[0.9, 0.9, -0.9]])).item() == 0.0
    assert torch.equal(half.to("cpu").coverage(centre), half.coverage(centre))  # moved, the same hull
    assert mean_object_colour(drawings, half).tolist() == pytest.approx([0.9, 0.1, 0.1], abs=0.04)  # edges blend in a little backdrop
    assert hull_volume_fraction(hull, 0.5, bound) == pytest.approx(float(predicted.float().mean()), abs=0.01)


def test_field_fitted_to_the_hull_starts_as_the_object():
    config = ShapeInitConfig(kind="prior_hull", fit=FieldFitConfig(steps=150, points=4096))
    scene = sphere_scene(radius=0.3, albedo=(0.2, 0.7, 0.2), center=(-0.15, 0.0, 0.1))  # off the blob's centre
    drawings = drawings_of(scene, config)
    hull = hull_of_drawings(drawings, config, CameraSamplerConfig())
    torch.manual_seed(0)
    field = RadianceField(FieldConfig(encoding=HashGridConfig(log2_hashmap_size=12, max_resolution=64), hidden_dim=32, num_blocks=1))
    assert field_iou(field, scene, resolution=32) < 0.3
    fit_field(field, hull_targets(hull, mean_object_colour(drawings, hull), config), scene.bound, config.fit)
    fitted = occupancy_grid(lambda p: field.density(p) > 10.0, scene.bound, 32)
    assert voxel_iou(fitted, occupancy_grid(lambda p: hull.coverage(p) > 0.5, scene.bound, 32)) > 0.7  # the hull, fitted (0.75 in 150 steps)
    assert field_iou(field, scene, resolution=32) > 0.6  # and so near the object
    inside = field(torch.tensor([[-0.15, 0.0, 0.1]]))
    assert inside.density.item() > 10.0 and inside.albedo[0].tolist() == pytest.approx([0.2, 0.7, 0.2], abs=0.1)


def test_bad_init_settings_are_one_line_errors():
    with pytest.raises(DreamtextError, match="blob or prior_hull"):
        ShapeInitConfig(kind="points")
    with pytest.raises(DreamtextError, match="unknown view labels"):
        ShapeInitConfig(views=(("above", 10.0, 0.0),))
    with pytest.raises(DreamtextError, match="threshold"):
        ShapeInitConfig(threshold=1.0)
    with pytest.raises(DreamtextError, match="mask_closing"):
        ShapeInitConfig(mask_closing=4)
    with pytest.raises(DreamtextError, match="at least one view"):
        ShapeInitConfig(kind="prior_hull", drawings_per_view=0)


# -- in a text-to-3D run ----------------------------------------------------------------------------

pytest.importorskip("diffusers")

from test_text_to_3d import small_config  # noqa: E402

from dreamtext.methods.text_to_3d import trainer as text_to_3d_module  # noqa: E402
from dreamtext.methods.text_to_3d.start import draw_views  # noqa: E402
from dreamtext.methods.text_to_3d import TextTo3DTrainer  # noqa: E402
from dreamtext.utils.workspace import Workspace  # noqa: E402


def hull_config(model: str, **init):
    return small_config(model, iters=2, **{"init.kind": "prior_hull", "init.drawings_per_view": 2, "init.steps": 2,
                                           "init.fit": FieldFitConfig(steps=150, points=4096), **init})


def test_prior_draws_each_view_reproducibly(tiny_model, tmp_path):
    trainer = TextTo3DTrainer(hull_config(tiny_model), Workspace(tmp_path))
    first = draw_views(trainer.prior, trainer.embeddings, trainer.config.init, seed=0)
    again = draw_views(trainer.prior, trainer.embeddings, trainer.config.init, seed=0)
    other = draw_views(trainer.prior, trainer.embeddings, trainer.config.init, seed=1)
    assert len(first) == 4 and first[0].shape[0] == 2 and first[0].min() >= 0 and first[0].max() <= 1
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # another run seed shares none of the drawings (each seed has its own block of noise seeds)
    assert not any(torch.equal(a, b) for a in torch.cat(first) for b in torch.cat(other))


def test_run_starts_from_the_hull_of_its_drawings(tiny_model, tmp_path, monkeypatch):
    scene = sphere_scene(radius=0.3, albedo=(0.9, 0.1, 0.1), center=(0.15, 0.0, 0.0))
    monkeypatch.setattr(text_to_3d_module, "draw_views", lambda prior, embeddings, config, seed, cameras, progress: drawings_of(scene, config))
    trainer = TextTo3DTrainer(hull_config(tiny_model), Workspace(tmp_path))
    assert field_iou(trainer.field, scene, resolution=32) < 0.3  # the blob
    record = trainer.initialise_shape()
    assert record["init"] == "prior_hull" and 0.01 < record["hull_fraction"] < 0.05  # a 0.3 ball: 1.4% of the cube
    assert set(record["start_seconds"]) == {"drawings", "hull", "start_fit"} and min(record["start_seconds"].values()) > 0
    assert field_iou(trainer.field, scene, resolution=32) > 0.5  # the test's tiny field (16 wide) fits it roughly
    assert (tmp_path / "init" / "drawings.png").is_file()


def test_a_redrawing_run_starts_from_the_redrawn_hull(tiny_model, tmp_path, monkeypatch):
    import dreamtext.methods.text_to_3d.start as sample_module  # where the start draws from the prior

    scene = sphere_scene(radius=0.3, albedo=(0.9, 0.1, 0.1), center=(0.15, 0.0, 0.0))
    monkeypatch.setattr(text_to_3d_module, "draw_views", lambda prior, embeddings, config, seed, cameras, progress: drawings_of(scene, config))
    redraws = []
    monkeypatch.setattr(sample_module, "ddim_redraw", lambda prior, images, *args, **kwargs: redraws.append(images) or images)
    config = hull_config(tiny_model, **{"init.redraw.strength": 0.5, "init.redraw.azimuths": 4, "init.redraw.drawings": 1})
    trainer = TextTo3DTrainer(config, Workspace(tmp_path))
    record = trainer.initialise_shape()
    assert record["init"] == "prior_hull" and len(redraws) == 8  # 4 azimuths at 2 polar angles
    assert field_iou(trainer.field, scene, resolution=32) > 0.5
    assert (tmp_path / "init" / "redrawn.png").is_file() and (tmp_path / "init" / "drawings.png").is_file()


def test_an_empty_hull_keeps_the_blob_and_says_so(tiny_model, tmp_path, monkeypatch, capsys):
    blank = [torch.tensor(BACKDROP).view(1, 3, 1, 1).repeat(2, 1, 64, 64) for _ in range(4)]
    monkeypatch.setattr(text_to_3d_module, "draw_views", lambda *args, **kwargs: blank)
    config = hull_config(tiny_model)
    trainer = TextTo3DTrainer(config, Workspace(tmp_path / "ws"))
    before = {k: v.clone() for k, v in trainer.field.state_dict().items()}
    trainer.train(progress=False)
    assert trainer.init_record == {"init": "blob", "hull_fraction": 0.0}
    assert "empty hull" in capsys.readouterr().err
    # The steps changed the field, the start did not: a blob-started run with the same seed ends the same.
    plain = TextTo3DTrainer(small_config(config.model, iters=2), Workspace(tmp_path / "plain"))
    assert all(torch.equal(before[k], v) for k, v in plain.field.state_dict().items())
    plain.train(progress=False)
    assert all(torch.allclose(a, b) for a, b in zip(trainer.field.state_dict().values(), plain.field.state_dict().values()))


def test_hold_loss_pulls_the_field_towards_the_hull():
    config = ShapeInitConfig(kind="prior_hull", hold_weight=1.0)
    scene = sphere_scene(radius=0.3, albedo=(0.2, 0.7, 0.2), center=(-0.15, 0.0, 0.1))
    hull = hull_of_drawings(drawings_of(scene, config), config, CameraSamplerConfig())
    torch.manual_seed(0)
    field = RadianceField(FieldConfig(encoding=HashGridConfig(log2_hashmap_size=12, max_resolution=64), hidden_dim=32, num_blocks=1))
    in_hull = lambda: voxel_iou(occupancy_grid(lambda p: field.density(p) > 10.0, scene.bound, 32),  # noqa: E731
                                occupancy_grid(lambda p: hull.coverage(p) > 0.5, scene.bound, 32))
    start = in_hull()
    loss = hull_hold_loss(field, hull, config, torch.Generator().manual_seed(3))
    assert loss.item() == hull_hold_loss(field, hull, config, torch.Generator().manual_seed(3)).item()  # its points are the generator's
    assert hull_hold_loss(field, hull, dataclasses.replace(config, hold_weight=2.0), torch.Generator().manual_seed(3)).item() == pytest.approx(2 * loss.item())
    optimizer = torch.optim.Adam(field.parameters(), lr=1e-2)
    for step in range(150):  # the hold alone turns the blob into the hull
        optimizer.zero_grad()
        hull_hold_loss(field, hull, config, torch.Generator().manual_seed(step)).backward()
        optimizer.step()
    assert start < 0.3 and in_hull() > 0.6
    assert hull_hold_loss(field, hull, config, torch.Generator().manual_seed(3)).item() < 0.5 * loss.item()
    with pytest.raises(DreamtextError, match="hold_weight"):
        ShapeInitConfig(hold_weight=-1.0)
    assert config.holds and not ShapeInitConfig(hold_weight=1.0).holds  # the blob has no hull to hold


class ConstantDensityField(torch.nn.Module):
    """A field of one density everywhere: the hold's two terms apart."""

    def __init__(self, density: float, bound: float):
        super().__init__()
        self.value, self.bound = torch.nn.Parameter(torch.tensor(density)), bound

    def density(self, points):
        return self.value.expand(len(points))


def test_hold_inside_weight_scales_only_the_inside_term():
    config = ShapeInitConfig(kind="prior_hull", hold_weight=1.0)
    scene = sphere_scene(radius=0.3, albedo=(0.2, 0.7, 0.2), center=(-0.15, 0.0, 0.1))
    hull = hull_of_drawings(drawings_of(scene, config), config, CameraSamplerConfig())

    def loss(density, inside_weight):
        held = dataclasses.replace(config, hold_inside_weight=inside_weight)
        return hull_hold_loss(ConstantDensityField(density, scene.bound), hull, held, torch.Generator().manual_seed(5)).item()

    # An empty field is wrong only inside the hull: without the inside term nothing is left to pay.
    assert loss(0.0, 0.0) < 1e-3 and loss(0.0, 1.0) > 100 * loss(0.0, 0.0)
    # A full field is wrong only outside it, whatever the inside weighs.
    assert loss(1e4, 0.0) == pytest.approx(loss(1e4, 1.0), rel=1e-3) and loss(1e4, 0.0) > 1.0
    inside_term = loss(0.0, 1.0) - loss(0.0, 0.0)
    assert loss(0.0, 0.25) == pytest.approx(loss(0.0, 0.0) + 0.25 * inside_term, rel=1e-4)  # linear in the weight
    with pytest.raises(DreamtextError, match="hold_inside_weight"):
        ShapeInitConfig(hold_inside_weight=1.5)


def test_hull_silhouettes_match_the_drawings_they_were_carved_from():
    config = ShapeInitConfig(kind="prior_hull")
    scene = sphere_scene(radius=0.3, center=(0.15, 0.0, -0.1))
    hull = hull_of_drawings(drawings_of(scene, config), config, CameraSamplerConfig())
    for masks, camera in zip(hull.masks, hull.cameras):  # a view's own camera sees the hull's outline as drawn
        seen = hull_silhouettes(hull, camera, config.threshold, scene.bound)
        assert seen.shape == (1, 1, 64, 64) and voxel_iou(seen[0, 0] > 0.5, masks[0, 0] > 0.5) > 0.95


def test_hull_silhouettes_end_at_the_scene_cube():
    from dreamtext.scene.rays import ray_aabb_intersect

    # A view whose every drawing covers the whole frame: the hull is every point that view sees.
    everywhere = SoftVisualHull([torch.ones(1, 1, 64, 64)], [orbit_cameras(1, 64, 64, radius=1.3, polar_deg=90.0, fovy_deg=100.0).cameras])
    far_camera = orbit_cameras(1, 64, 64, radius=4.0, polar_deg=60.0, fovy_deg=40.0).cameras
    seen = hull_silhouettes(everywhere, far_camera, 0.5, bound=0.5)[0, 0]
    _, _, hit = ray_aabb_intersect(far_camera.generate_rays(), 0.5)
    assert torch.equal(seen, hit[0].float())  # the cube's outline, not the frustum's
    assert 0.05 < seen.mean() < 0.6 and seen[0, 0] == 0 and seen[32, 32] == 1


class FakeEmbeddings:
    """Records the view ids each redraw is conditioned on."""

    def __init__(self):
        self.views = []

    def conditional(self, view_ids):
        self.views.append(view_ids.tolist())
        return torch.zeros(len(view_ids), 77, 8)

    def unconditional(self, count):
        return torch.zeros(count, 77, 8)


def test_a_faithful_redraw_keeps_the_hull_and_carves_it_from_known_cameras(monkeypatch):
    import dreamtext.methods.text_to_3d.start as sample_module  # where the start draws from the prior

    scene = sphere_scene(radius=0.3, center=(0.15, 0.0, -0.1))
    config = ShapeInitConfig(kind="prior_hull", redraw=RedrawConfig(strength=0.5, azimuths=8, drawings=2))
    hull = hull_of_drawings(drawings_of(scene, config), config, CameraSamplerConfig())
    calls = []

    def faithful(prior, images, cond, uncond, noise, strength, steps, guidance, cameras, camera_guidance=0.0):  # a prior that redraws what it sees
        calls.append((noise.shape, strength, steps))
        return images

    monkeypatch.setattr(sample_module, "ddim_redraw", faithful)
    monkeypatch.setattr(sample_module, "initial_noise", lambda prior, seeds: torch.tensor(seeds, dtype=torch.float32).view(-1, 1, 1, 1))
    prior = type("Prior", (), {"device": torch.device("cpu")})()
    embeddings = FakeEmbeddings()
    redrawn_hull, redrawn = redraw_hull(prior, embeddings, hull, torch.tensor([0.2, 0.3, 0.8]), config, CameraSamplerConfig(),
                                        scene.bound, seed=0)
    assert len(redrawn) == 16 and redrawn[0].shape == (2, 3, 64, 64) and calls[0] == ((2, 1, 1, 1), 0.5, config.steps)
    assert len(redrawn_hull.masks) == 4 + 16  # the redrawn views join the drawings' four
    # Each camera's redraws are conditioned on its view label: polar 75 at azimuths 0, 45, ... 315; then overhead.
    front, side, back, overhead = (VIEW_LABELS.index(label) for label in ("front", "side", "back", "overhead"))
    assert [views[0] for views in embeddings.views] == [front, front, side, side, back, back, side, side] + [overhead] * 8
    grid = lambda h: occupancy_grid(lambda p: h.coverage(p) > 0.5, scene.bound, 48)  # noqa: E731
    truth = occupancy_grid(scene.occupancy, scene.bound, 48)
    # Sixteen known views of the hull give back the hull, a little tighter around the true ball.
    assert voxel_iou(grid(redrawn_hull), grid(hull)) > 0.85
    assert voxel_iou(grid(redrawn_hull), truth) >= voxel_iou(grid(hull), truth) - 0.01
    with pytest.raises(DreamtextError, match="redraw.strength"):
        RedrawConfig(strength=1.5)


def test_redrawing_starts_where_the_strength_says(tiny_model):
    from dreamtext.prior.sampling import ddim_redraw
    from dreamtext.prior.loading import load_prior

    prior = load_prior(tiny_model, device="cpu", dtype=torch.float32)
    calls = []
    forward = prior.unet.forward
    prior.unet.forward = lambda *args, **kwargs: calls.append(int(args[1])) or forward(*args, **kwargs)
    size = prior.image_size
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(2, prior.unet.config.in_channels, prior.latent_size, prior.latent_size, generator=torch.Generator().manual_seed(1))
    cond, uncond = torch.zeros(1, 77, prior.text_encoder.config.hidden_size), torch.zeros(1, 77, prior.text_encoder.config.hidden_size)
    out = ddim_redraw(prior, images, cond, uncond, noise, strength=0.6, steps=10, guidance=3.0)
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1
    assert len(calls) == 6 and calls == sorted(calls, reverse=True) and calls[0] < 700  # the last 6 of 10 steps
    assert torch.equal(out, ddim_redraw(prior, images, cond, uncond, noise, strength=0.6, steps=10, guidance=3.0))
    assert not torch.equal(out, ddim_redraw(prior, images, cond, uncond, noise, strength=0.3, steps=10, guidance=3.0))


def held_run(tiny_model, monkeypatch) -> tuple:
    """A held run's config, and the seeds its (patched) drawings were made with, one entry per drawing."""
    scene = sphere_scene(radius=0.3, albedo=(0.9, 0.1, 0.1), center=(0.15, 0.0, 0.0))
    drawn = []
    monkeypatch.setattr(text_to_3d_module, "draw_views",
                        lambda prior, embeddings, config, seed, cameras, progress: drawn.append(seed) or drawings_of(scene, config))
    return hull_config(tiny_model, **{"init.hold_weight": 100.0}), drawn


def test_a_held_run_rebuilds_its_hull_from_a_checkpoint_without_one(tiny_model, tmp_path, monkeypatch):
    config, drawn = held_run(tiny_model, monkeypatch)
    trainer = TextTo3DTrainer(config, Workspace(tmp_path))
    trainer.train(progress=False)
    assert trainer.hull is not None and trainer.init_record["init"] == "prior_hull" and drawn == [0]
    resumed = TextTo3DTrainer(config, Workspace(tmp_path))
    resumed.step = 1  # as if loaded from a checkpoint at step 1: no new start, the same hull rebuilt
    before = [p.detach().clone() for p in resumed.field.parameters()]
    resumed.train(progress=False)
    assert resumed.init_record is None and resumed.hull is not None and drawn == [0, 0]
    assert resumed.step == 2 and any(not torch.equal(a, b) for a, b in zip(before, resumed.field.parameters()))


def test_a_resumed_run_takes_its_start_and_hull_from_the_checkpoint(tiny_model, tmp_path, monkeypatch):
    """Issue 32: the start is a finished stage (checkpointed when it ends); a resumed run neither draws it again
    nor loses it from metrics.json."""
    config, drawn = held_run(tiny_model, monkeypatch)
    first = TextTo3DTrainer(config, Workspace(tmp_path))
    first.train(progress=False)
    state = Workspace(tmp_path).load_checkpoint()
    assert state["init_record"] == first.init_record and state["init_record"]["init"] == "prior_hull"
    longer = dataclasses.replace(config, iters=config.iters + 1)
    resumed = TextTo3DTrainer(longer, Workspace(tmp_path))
    resumed.load_state_dict(state)
    resumed.train(progress=False)
    assert drawn == [0] and resumed.init_record == first.init_record and resumed.step == config.iters + 1
    for a, b in zip(resumed.hull.masks, first.hull.masks):
        assert torch.equal(a.cpu(), b.cpu())


def test_sigterm_during_the_drawings_stops_the_run_cleanly_and_a_resume_starts_over(tiny_model, tmp_path, monkeypatch):
    """Issue 40: every stage stops cleanly on SIGTERM, the start's drawings too (exit status 143, no checkpoint,
    the run resumable)."""
    import os
    import signal

    import dreamtext.methods.text_to_3d.start as shape_init_module
    from dreamtext.errors import RunInterrupted
    from dreamtext.methods.text_to_3d import text_to_3d

    real = shape_init_module.ddim_sample
    sent = []

    def signalled(*args, **kwargs):
        if not sent:  # the first drawing: a SIGTERM arrives while it is drawn
            sent.append(os.kill(os.getpid(), signal.SIGTERM))
        return real(*args, **kwargs)

    monkeypatch.setattr(shape_init_module, "ddim_sample", signalled)
    before = signal.getsignal(signal.SIGTERM)  # another test's library (Ray) may have installed its own
    with pytest.raises(RunInterrupted, match="SIGTERM: stopped during the drawings") as stopped:
        text_to_3d(hull_config(tiny_model), tmp_path / "ws", progress=False)
    assert stopped.value.exit_code == 143 and not (tmp_path / "ws" / "checkpoints").exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the run's handler is gone with it
    result = text_to_3d(hull_config(tiny_model), tmp_path / "ws", resume=True, progress=False)
    assert result.metrics["iters"] == 2 and result.metrics["init"] == "prior_hull"
