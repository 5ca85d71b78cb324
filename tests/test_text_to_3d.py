"""Text to 3D end to end on a tiny random Stable Diffusion pipeline saved with save_pretrained (CPU, offline)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from dreamtext.cli.main import main
from dreamtext.errors import DreamtextError
from dreamtext.export.mesh import MeshExportConfig
from dreamtext.export.outputs import ExportConfig
from dreamtext.export.video import mp4_writer_available
from dreamtext.utils.adan import Adan
from dreamtext.methods.presets import DREAMFUSION, FITFUSION, preset_config
from dreamtext.methods.trained import load_trained
from dreamtext.methods.text_to_3d.regularizers import (
    RegularizerWeights, border_weights, entropy_loss, opacity_loss, orientation_loss, regularization,
)
from dreamtext.methods.text_to_3d import TextTo3DTrainer, text_to_3d
from dreamtext.scene.cameras import orbit_cameras
from dreamtext.scene.field import FieldConfig
from dreamtext.scene.hash_encoding import HashGridConfig
from dreamtext.scene.renderer import VolumeRenderer
from dreamtext.utils.workspace import Workspace



def small_config(model: str, iters: int = 4, **overrides):
    """The dreamfusion preset at toy sizes; lambertian/textureless from the start so normals are used too."""
    values = {
        "model": model, "iters": iters, "render_size": 16, "device": "cpu",
        "field": FieldConfig(encoding=HashGridConfig(log2_hashmap_size=12, max_resolution=64), hidden_dim=16, num_blocks=1),
        "renderer.num_samples": 16, "validation_size": 16, "validation_views": 2, "eval_every": 2, "checkpoint_every": 2,
        "shading.albedo_only_epochs": 0,
        "export": ExportConfig(mesh=MeshExportConfig(resolution=24, density_threshold=5.0), video_frames=2, video_size=16,
                               views=("front",), views_size=16),
        **overrides,
    }
    return preset_config("dreamfusion", "a red mug", values)


def test_end_to_end_run_writes_every_output(tiny_model, tmp_path):
    result = text_to_3d(small_config(tiny_model, iters=4), tmp_path / "ws", progress=False)
    ws = result.workspace
    for name in ("config.json", "checkpoints/last.pt", "metrics.json", "validation/step_000002.png", "validation/final.png",
                 "turntable.gif", "views/front.png"):
        assert (ws / name).is_file(), name
    assert (ws / "turntable.mp4").is_file() == mp4_writer_available()  # without ffmpeg: the gif alone
    metrics = json.loads((ws / "metrics.json").read_text())
    assert metrics["iters"] == 4 and metrics["skipped_steps"] == 0 and metrics["final_loss"] > 0
    assert (ws / "mesh.glb").is_file() or "mesh_error" in metrics
    # where the wait went, stage by stage (this run starts from the blob: no drawings)
    assert {"training", "turntable", "views"} <= set(metrics["stage_seconds"]) and min(metrics["stage_seconds"].values()) > 0
    saved = json.loads((ws / "config.json").read_text())
    assert saved["method"] == "text" and saved["config"]["prompt"]["prompt"] == "a red mug"
    assert saved["config"]["sds"]["cfg_formula"] == "sdf_2023"
    # dreamtext render / export rebuild the run from its workspace (no prior needed).
    exported = main(["export", str(ws), "--format", "ply", "--out", str(tmp_path / "m.ply")])
    assert exported == (0 if (ws / "mesh.glb").is_file() else 2)
    assert main(["render", str(ws), "--frames", "2", "--size", "16"]) == 0
    if exported == 0:  # the Python API's export and render write what the commands do
        import dreamtext

        assert [p.name for p in dreamtext.export_workspace(ws, tmp_path / "api.obj", progress=False)] == ["api.obj"]
        assert (ws / "views" / "front.png") in dreamtext.render_workspace(ws, frames=2, size=16, progress=False)
    if exported == 0:  # --texture is a plain switch (issue 31)
        assert main(["export", str(ws), "--texture", "--out", str(tmp_path / "t.glb")]) == 0
        import pygltflib

        assert pygltflib.GLTF2().load(str(tmp_path / "t.glb")).materials[0].pbrMetallicRoughness.baseColorTexture is not None
    # A second run into the same workspace needs --resume.
    with pytest.raises(DreamtextError, match="--resume"):
        text_to_3d(small_config(tiny_model, iters=4), ws, progress=False)


def test_training_changes_the_field_through_sds(tiny_model, tmp_path):
    trainer = TextTo3DTrainer(small_config(tiny_model, iters=2), Workspace(tmp_path))
    before = [p.detach().clone() for p in trainer.field.parameters()]
    assert trainer.prior.text_encoder is None  # freed after the embeddings were cached
    trainer.train_step()
    moved = sum(float((p.detach() - b).abs().sum()) for p, b in zip(trainer.field.parameters(), before))
    assert moved > 0 and trainer.step == 1 and len(trainer.losses) == 1


def test_training_renders_skip_empty_space_and_checkpoint_above_the_budget(tiny_model, tmp_path, monkeypatch):
    training_renders = []
    render = VolumeRenderer.render

    def recorded(self, *args, **kwargs):
        out = render(self, *args, **kwargs)
        if kwargs.get("requires_grad"):
            training_renders.append(out)
        return out

    monkeypatch.setattr(VolumeRenderer, "render", recorded)
    steps = {}
    for name, budget in (("plain", 0), ("checkpointed", 64)):
        overrides = {"renderer.max_samples_per_chunk": budget, "occupancy.resolution": 32}
        trainer = TextTo3DTrainer(small_config(tiny_model, **overrides), Workspace(tmp_path / name))
        loss = trainer.train_step()
        steps[name] = (loss, [p.grad.clone() for p in trainer.field.parameters()], training_renders[-1])
        # The occupancy grid was updated at step 0 from the blob-shaped field, and the render used it.
        grid = trainer.renderer.occupancy_grid
        assert int(grid.num_updates) == 1 and 0.01 < grid.occupied_fraction < 0.5
        out = training_renders[-1]
        assert out.num_rays == 16 * 16 and 64 < out.samples_evaluated < 0.6 * out.num_rays * 16
    (plain_loss, plain_grads, _), (loss, grads, _) = steps["plain"], steps["checkpointed"]
    assert loss == pytest.approx(plain_loss, rel=1e-5)
    for expected, got in zip(plain_grads, grads):  # float32, summed in a different order
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_resuming_a_finished_run_keeps_its_outputs_and_a_longer_one_trains_on(tiny_model, tmp_path):
    config = small_config(tiny_model, iters=2, eval_every=100)
    first = text_to_3d(config, tmp_path / "ws", progress=False)
    mesh = tmp_path / "ws" / "mesh.glb"
    written = mesh.stat().st_mtime_ns
    again = text_to_3d(config, tmp_path / "ws", resume=True, progress=False)
    assert again.metrics == json.loads((tmp_path / "ws" / "metrics.json").read_text()) and again.metrics["iters"] == 2
    assert mesh.stat().st_mtime_ns == written  # nothing to train, nothing exported again
    assert first.metrics["final_loss"] == again.metrics["final_loss"]
    longer = text_to_3d(small_config(tiny_model, iters=3, eval_every=100), tmp_path / "ws", resume=True, progress=False)
    assert longer.metrics["iters"] == 3 and Workspace(tmp_path / "ws").load_checkpoint()["step"] == 3
    assert mesh.stat().st_mtime_ns != written


def test_interrupted_run_resumes_bit_identically(tiny_model, tmp_path, monkeypatch):
    # The moving average, the learning-rate schedule and the coarse-to-fine grid resume too.
    config = small_config(tiny_model, iters=6, eval_every=100, ema_decay=0.9,
                          **{"optimizer.lr_schedule": "exponential", "optimizer.lr_end_factor": 0.1,
                             "field.encoding.start_levels": 2, "field.encoding.all_levels_at": 1.0})
    straight = text_to_3d(config, tmp_path / "straight", progress=False)

    original = TextTo3DTrainer.train_step

    def interrupted(self):
        if self.step == 5:  # the last checkpoint was written at step 4
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(TextTo3DTrainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        text_to_3d(config, tmp_path / "resumed", progress=False)
    assert Workspace(tmp_path / "resumed").load_checkpoint()["step"] == 4
    monkeypatch.setattr(TextTo3DTrainer, "train_step", original)
    text_to_3d(config, tmp_path / "resumed", resume=True, progress=False)

    a = Workspace(straight.workspace).load_checkpoint()
    b = Workspace(tmp_path / "resumed").load_checkpoint()
    assert a["step"] == b["step"] == 6
    assert a["losses"] == b["losses"]  # every step's loss, including the two after the resume
    for part in ("field", "ema_field", "background", "renderer"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"
    assert torch.equal(a["generator"], b["generator"])


@pytest.mark.parametrize("schedule", ["exponential", "cosine"])
def test_learning_rates_follow_the_schedule_in_every_group(tiny_model, tmp_path, schedule):
    config = small_config(tiny_model, iters=4, **{"optimizer.lr_schedule": schedule, "optimizer.lr_end_factor": 0.1})
    trainer = TextTo3DTrainer(config, Workspace(tmp_path))
    starting = [group["lr"] for group in trainer.optimizer.param_groups]
    assert starting[0] == pytest.approx(10 * starting[1])  # the hash grid at 10x
    factor = config.optimizer.lr_factor()
    for step in range(4):
        trainer.train_step()  # step k updates with the factor at progress k / iters
        rates = [group["lr"] for group in trainer.optimizer.param_groups]
        assert rates == pytest.approx([rate * factor(step / 4) for rate in starting])
    assert factor(1.0) == pytest.approx(0.1) and factor(0.5) < 1.0
    with pytest.raises(DreamtextError, match="lr_end_factor"):
        small_config(tiny_model, **{"optimizer.lr_schedule": "cosine", "optimizer.lr_end_factor": 0.0})


def test_coarse_to_fine_grid_opens_with_the_run_and_the_finished_field_has_every_level(tiny_model, tmp_path):
    config = small_config(tiny_model, iters=4, **{"field.encoding.start_levels": 2, "field.encoding.all_levels_at": 0.5})
    trainer = TextTo3DTrainer(config, Workspace(tmp_path))
    seen = []
    original = trainer.field.encoding.forward

    def recording(points):
        window = trainer.field.encoding.level_window
        seen.append(None if window is None else window.tolist())
        return original(points)

    trainer.field.encoding.forward = recording
    layout = trainer.field.encoding.layout
    finest = slice(layout.offsets[-1], layout.offsets[-1] + layout.sizes[-1])
    initial = trainer.field.encoding.table[finest].detach().clone()
    trainer.train_step()  # progress 0: the two coarsest of the six levels
    assert seen[-1] == [1, 1, 0, 0, 0, 0]
    # No gradient reached the finest level: only Adan's weight decay touched it.
    torch.testing.assert_close(trainer.field.encoding.table[finest], initial, rtol=1e-3, atol=0)
    trainer.train_step()  # progress 1/4: 2 + 4 * (0.25 / 0.5) = 4 levels
    assert seen[-1] == [1, 1, 1, 1, 0, 0]
    trainer.train()
    assert seen[-1] is None  # from progress 1/2 on every level, without a window
    assert trainer.field.encoding.level_window is None  # what `validate` and the export see
    moved = (trainer.field.encoding.table[finest] - initial).abs().max()
    assert moved > 10 * config.field.encoding.init_scale  # and the finest level trained once it was on


def test_ema_follows_the_warm_up_formula_and_is_what_the_run_shows_and_saves(tiny_model, tmp_path):
    decay = 0.9
    trainer = TextTo3DTrainer(small_config(tiny_model, iters=2, ema_decay=decay), Workspace(tmp_path))
    expected = [p.detach().clone() for p in trainer.field.parameters()]  # the average starts at the initial weights
    for step in range(2):
        trainer.train_step()
        d = min(decay, (1 + step) / (10 + step))  # diffusers' EMAModel warm-up: 0.1, then 2/11
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, trainer.field.parameters())]
    for e, got, trained in zip(expected, trainer.ema_field.parameters(), trainer.field.parameters()):
        torch.testing.assert_close(got, e)
    assert not all(torch.equal(a, b) for a, b in zip(trainer.ema_field.parameters(), trainer.field.parameters()))
    assert trainer.shown_field is trainer.ema_field
    trainer.workspace.save_checkpoint(trainer.state_dict())
    trainer.workspace.save_config(trainer.config, method="text")
    loaded = load_trained(tmp_path, device="cpu").field  # `render`, `export`, `view` and the benchmarks see the average
    for e, got in zip(expected, loaded.parameters()):
        torch.testing.assert_close(got, e)
    assert TextTo3DTrainer(small_config(tiny_model), Workspace(tmp_path / "plain")).ema_field is None  # off by default


def test_nan_guard_skips_steps_then_stops_with_advice(tiny_model, tmp_path, monkeypatch):
    trainer = TextTo3DTrainer(small_config(tiny_model, iters=10, max_nonfinite_steps=3), Workspace(tmp_path))
    sds_loss = trainer.sds.loss
    calls = {"n": 0}

    def poisoned(images, *args, **kwargs):
        loss, info = sds_loss(images, *args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] >= 2 else loss), info

    monkeypatch.setattr(trainer.sds, "loss", poisoned)
    assert trainer.train_step() > 0  # step 1 is fine
    assert math.isnan(trainer.train_step())  # step 2 is skipped
    state = {k: v.clone() for k, v in trainer.field.state_dict().items()}
    assert trainer.skipped_steps == 1 and trainer.losses[1] != trainer.losses[1]
    trainer.train_step()  # second consecutive non-finite step: skipped, parameters untouched
    assert all(torch.equal(state[k], v) for k, v in trainer.field.state_dict().items())
    with pytest.raises(DreamtextError, match="consecutive non-finite"):
        trainer.train_step()
    assert trainer.skipped_steps == 3


def test_presets_resolve_to_documented_values_and_flags_override():
    dreamfusion = preset_config("dreamfusion", "a mug")
    assert (dreamfusion.render_size, dreamfusion.sds.guidance, dreamfusion.sds.cfg_formula) == (64, 100.0, "sdf_2023")
    assert dreamfusion.iters == 10_000 and (dreamfusion.sds.t_min, dreamfusion.sds.t_max) == (0.02, 0.98)
    assert dreamfusion.cameras.radius_range == (1.0, 1.5) and dreamfusion.optimizer.kind == "adan"
    assert dreamfusion.optimizer.lr == 5e-3 and dreamfusion.field.grid_lr_multiplier == 10.0
    assert dreamfusion.sds.timestep_values()(0.5, torch.Generator().manual_seed(0), 1000).min() >= 20
    fitfusion = preset_config("fitfusion", "a mug")
    assert (fitfusion.render_size, fitfusion.sds.guidance, fitfusion.iters) == (256, 1000.0, 20_000)
    assert {k: v for k, v in FITFUSION.items() if k not in ("render_size", "sds.guidance", "iters")} == {
        k: v for k, v in DREAMFUSION.items() if k not in ("render_size", "sds.guidance", "iters")}
    custom = preset_config("fitfusion", "a mug", {"iters": 50, "sds.guidance": 800.0, "seed": 3, "optimizer.kind": "adam", "render_size": None})
    assert (custom.iters, custom.sds.guidance, custom.seed, custom.optimizer.kind, custom.render_size) == (50, 800.0, 3, "adam", 256)
    # The built-in prior's preset shows the field the backdrops that prior was trained on.
    builtin = preset_config("builtin", "a mug")
    assert (builtin.background.kind, builtin.background.random_range) == ("random", (0.75, 1.0))
    assert dreamfusion.background.kind == "mlp"  # thesis 6.1.3
    # ... and a mean-opacity penalty that falls from 3000 to 0 in the first third (presets.py has the figures).
    assert (builtin.regularizers.opacity, builtin.regularizers.opacity_end) == (3000.0, 0.0)
    assert builtin.regularizers.at(1 / 6).opacity == pytest.approx(1500.0) and builtin.regularizers.at(0.5).opacity == 0.0
    assert dreamfusion.regularizers.opacity == 0.0
    assert (builtin.field.normal_eps, dreamfusion.field.normal_eps) == (0.03, 0.01)  # a 32 px pixel's footprint
    assert builtin.optimizer.lr_factor()(1.0) == pytest.approx(0.1) and dreamfusion.optimizer.lr_schedule == "constant"
    annealed = preset_config("builtin", "a mug", {"sds.t_schedule": "annealed", "sds.t_max_end": 0.4}).sds
    assert annealed.timestep_values()(1.0, torch.Generator().manual_seed(0), 1000).max().item() == 400
    with pytest.raises(DreamtextError):
        preset_config("nope", "a mug")


def test_adan_matches_its_update_rule_by_hand():
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(5))
    lr, wd, (b1, b2, b3), eps = 0.1, 0.01, (0.98, 0.92, 0.99), 1e-8
    optimizer = Adan([param], lr=lr, weight_decay=wd)
    grads = [torch.randn(5) for _ in range(3)]
    p, m, v, n, previous = param.detach().clone(), 0, 0, 0, grads[0]
    for k, g in enumerate(grads, start=1):
        param.grad = g.clone()
        optimizer.step()
        d = g - previous
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * d
        n = b3 * n + (1 - b3) * (g + b2 * d) ** 2
        update = (m / (1 - b1**k) + b2 * v / (1 - b2**k)) / ((n / (1 - b3**k)).sqrt() + eps)
        p = (p - lr * update) / (1 + lr * wd)
        previous = g
    torch.testing.assert_close(param.detach(), p)


def test_regularizers_closed_forms():
    torch.testing.assert_close(entropy_loss(torch.tensor([0.5, 0.5])), torch.tensor(1.0))
    assert float(entropy_loss(torch.tensor([0.0, 1.0]))) < 1e-3
    weights = torch.tensor([[0.25, 0.75]])
    normals = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]])
    direction = torch.tensor([[0.0, 0.0, 1.0]])  # the first normal faces away from the camera
    torch.testing.assert_close(orientation_loss(weights, normals, direction), torch.tensor(0.25))


def test_orientation_of_a_deferred_render_is_its_opacity_times_the_ray_normals_facing_away():
    from dreamtext.scene.renderer import RenderOutputs

    # Two rays, one normal each (faded with opacity 0.5 and 1): the first faces away at 60 degrees
    opacity = torch.tensor([[0.5], [1.0]])
    normals = torch.tensor([[0.0, 0.5 * 3**0.5 / 2, 0.5 * 0.5], [0.0, 0.0, -1.0]], requires_grad=True)
    out = RenderOutputs(rgb=torch.zeros(2, 3), opacity=opacity, depth=torch.ones(2, 1), weights=None, t_values=None,
                        normals=normals)
    total, terms = regularization(out, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]), RegularizerWeights(orientation=2.0))
    torch.testing.assert_close(terms["orientation"], torch.tensor(0.5 * 0.25 / 2))
    torch.testing.assert_close(total, 2.0 * terms["orientation"])
    total.backward()
    assert normals.grad[0].abs().sum() > 0 and normals.grad[1].abs().sum() == 0


def test_opacity_penalty_is_its_weight_times_the_mean_opacity_and_lowers_the_density(tiny_model, tmp_path):
    trainer = TextTo3DTrainer(small_config(tiny_model, iters=1), Workspace(tmp_path))
    cameras = orbit_cameras(2, 8, 8, radius=1.3).cameras
    out = trainer.renderer.render(trainer.field, cameras, background=torch.ones(3), shading="albedo", requires_grad=True)
    total, terms = regularization(out, None, RegularizerWeights(opacity=3000.0))
    torch.testing.assert_close(total, 3000.0 * out.opacity.mean())
    assert set(terms) == {"opacity"}
    falling = RegularizerWeights(opacity=3000.0, opacity_end=0.0)  # the schedule: linear over the run
    assert falling.at(0.25).opacity == 2250.0 and falling.at(1.0).opacity == 0.0 and falling.any_enabled
    assert RegularizerWeights(opacity=5.0).at(0.7).opacity == 5.0
    early = RegularizerWeights(opacity=3000.0, opacity_end=0.0, opacity_end_progress=0.5)  # off after half the run
    assert early.at(0.25).opacity == 1500.0 and early.at(0.5).opacity == 0.0 and early.at(0.75).opacity == 0.0
    with pytest.raises(DreamtextError, match="opacity_end regulariser"):
        RegularizerWeights(opacity_end=-1.0)
    with pytest.raises(DreamtextError, match="opacity_end_progress"):
        RegularizerWeights(opacity_end_progress=0.0)
    total.backward()  # descending the penalty lowers the density where the rays pass
    points = torch.rand(256, 3) * 1.2 - 0.6
    with torch.no_grad():
        before = trainer.field.density(points).sum()
        for p in trainer.field.parameters():
            if p.grad is not None:
                p -= 1e-4 * p.grad
        assert trainer.field.density(points).sum() < before


def test_border_weighted_opacity_penalty_spares_the_frame_centre():
    weights = border_weights(8, 8, 0.6)
    # Pixel centres at (i + 0.5) / 4 - 1: the four middle pixels lie within 0.6 half-frames, the edge's
    # middle pixels at distance sqrt(0.875^2 + 0.125^2) and the corners beyond 1.
    assert weights[2:6, 2:6].eq(0).all() and weights[0, 0] == 1 and weights[-1, -1] == 1
    torch.testing.assert_close(weights[0, 3], torch.tensor((math.hypot(0.875, 0.125) - 0.6) / 0.4))
    torch.testing.assert_close(weights, weights.flip(0))
    torch.testing.assert_close(weights, weights.T)
    centre = torch.zeros(1, 8, 8, 1)
    centre[0, 2:6, 2:6] = 1.0  # an object in the middle of the frame costs nothing ...
    assert opacity_loss(centre, 0.6) == 0 and opacity_loss(centre) == 0.25
    full = torch.ones(2, 8, 8, 1)  # ... a frame-filling mass the mean of the weights
    torch.testing.assert_close(opacity_loss(full, 0.6), weights.mean())
    torch.testing.assert_close(opacity_loss(full, 0.0), border_weights(8, 8, 0.0).mean())
    torch.testing.assert_close(opacity_loss(centre, 0.6, 0.25), torch.tensor(0.25 * 0.25))  # a floor inside r
    torch.testing.assert_close(border_weights(8, 8, 0.6, 0.25), 0.25 + 0.75 * weights)
    torch.testing.assert_close(opacity_loss(full, 0.6, 1.0), full.mean())  # a floor of 1: the plain mean
    scheduled = RegularizerWeights(opacity=3000.0, opacity_end=0.0, opacity_inner_radius=0.6).at(0.5)
    assert scheduled.opacity == 1500.0 and scheduled.opacity_inner_radius == 0.6
    for bad in (-0.1, 1.0):
        with pytest.raises(DreamtextError, match="opacity_inner_radius"):
            RegularizerWeights(opacity_inner_radius=bad)
    with pytest.raises(DreamtextError, match="opacity_inner_weight"):
        RegularizerWeights(opacity_inner_radius=0.5, opacity_inner_weight=1.5)


def test_opacity_penalty_with_a_free_area_spares_an_object_of_that_size():
    cameras = orbit_cameras(2, 8, 8, radius=2.0, fovy_deg=90.0).cameras  # the frame is 2 r tan(45) = 4 wide
    frame_areas = cameras.frame_area_at()
    torch.testing.assert_close(frame_areas, torch.full((2,), 16.0))
    opacity = torch.zeros(2, 8, 8, 1)
    opacity[0, 3:5, 3:5] = 1.0  # 4 of 64 pixels: an apparent area of 1
    opacity[1] = 1.0  # a frame-filling mass: 16
    weights = RegularizerWeights(opacity=10.0, opacity_free_area=2.0)  # 2 / 16 of each frame is free
    out = SimpleNamespace(opacity=opacity, rgb=torch.zeros(2, 8, 8, 3))
    total, terms = regularization(out, None, weights, frame_areas)
    torch.testing.assert_close(terms["opacity"], torch.tensor((0.0 + (1.0 - 0.125)) / 2))  # a hinge per render
    torch.testing.assert_close(total, 10.0 * terms["opacity"])
    # Twice as far, the same object covers a quarter of the pixels and so does its free fraction.
    far = orbit_cameras(1, 8, 8, radius=4.0, fovy_deg=90.0).cameras.frame_area_at()
    torch.testing.assert_close(far, torch.tensor([64.0]))
    torch.testing.assert_close(opacity_loss(opacity[1:], free_fraction=2.0 / far), torch.tensor(1.0 - 2.0 / 64))
    with pytest.raises(DreamtextError, match="frame areas"):
        regularization(out, None, weights)
    for bad in (0.0, -1.0):
        with pytest.raises(DreamtextError, match="opacity_free_area"):
            RegularizerWeights(opacity_free_area=bad)
    scheduled = RegularizerWeights(opacity=3000.0, opacity_end=0.0, opacity_free_area=0.3).at(0.5)
    assert scheduled.opacity == 1500.0 and scheduled.opacity_free_area == 0.3


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dreamtext: error:"), lines
    return lines[0]


def test_cli_errors_are_one_line(tiny_model, tmp_path, capsys, monkeypatch):
    assert "prompt is empty" in _cli_error(capsys, ["text", "  ", "--workspace", str(tmp_path / "a"), "--model", tiny_model])
    assert "does not exist" in _cli_error(capsys, ["text", "a mug", "--workspace", str(tmp_path / "b"), "--model", str(tmp_path / "missing")])
    assert not (tmp_path / "b" / "config.json").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "workspace" in _cli_error(capsys, ["text", "a mug", "--workspace", str(blocker / "ws"), "--model", tiny_model])
    monkeypatch.setattr("dreamtext.prior.loading.is_cached_hub_model", lambda repo: False)
    monkeypatch.setattr("dreamtext.prior.builtin.BUILTIN_PIPELINE_DIR", tmp_path / "not-installed")
    assert "built-in prior is not installed" in _cli_error(capsys, ["text", "a mug", "--workspace", str(tmp_path / "c")])


def test_cli_text_runs_and_resumes(tiny_model, tmp_path, monkeypatch, capsys):
    ws = str(tmp_path / "ws")
    small = small_config(tiny_model)
    monkeypatch.setattr("dreamtext.methods.presets.PRESETS", {"dreamfusion": {**DREAMFUSION, **_small_overrides(small)}})
    assert main(["text", "a mug", "--workspace", ws, "--model", tiny_model, "--iters", "2", "--device", "cpu", "--quiet",
                 "--ema-decay", "0.9", "--regularizers.opacity", "5"]) == 0
    assert main(["text", "a mug", "--workspace", ws, "--model", tiny_model, "--iters", "3", "--device", "cpu", "--quiet", "--resume"]) == 0
    assert Workspace(ws).load_checkpoint()["step"] == 3
    assert "ema_field" in Workspace(ws).load_checkpoint()
    saved = json.loads((tmp_path / "ws" / "config.json").read_text())["config"]
    assert saved["iters"] == 3 and saved["ema_decay"] == 0.9 and saved["regularizers"]["opacity"] == 5
    capsys.readouterr()
    assert "ema_decay" in _cli_error(capsys, ["text", "a mug", "--workspace", str(tmp_path / "e"), "--model", tiny_model,
                                              "--ema-decay", "1.5", "--device", "cpu"])
    assert "opacity regulariser" in _cli_error(capsys, ["text", "a mug", "--workspace", str(tmp_path / "o"), "--model",
                                                        tiny_model, "--regularizers.opacity", "-1", "--device", "cpu"])


def _small_overrides(config) -> dict:
    return {"field": config.field, "renderer.num_samples": 16, "validation_size": 16, "validation_views": 1,
            "render_size": 16, "export": config.export, "eval_every": 100}


def test_every_stage_of_a_run_shows_its_progress(tiny_model, tmp_path, capsys):
    """Issue 31: drawings, the start shape's fit, training, mesh, turntable and views each print progress."""
    config = small_config(tiny_model, iters=2, **{"init.kind": "prior_hull", "init.drawings_per_view": 1, "init.steps": 2,
                                                   "init.fit.steps": 4, "init.fit.points": 256})
    text_to_3d(config, tmp_path / "ws", progress=True)
    err = capsys.readouterr().err
    for stage in ("drawings 8/8", "start shape 4/4", "text-to-3d 2/2", "mesh (glb): done in", "turntable 2/2", "views 1/1"):
        assert stage in err, stage


def test_version_flag(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dreamtext ") and out.strip() != "dreamtext unknown"


@pytest.mark.parametrize("flags", [
    ["--iters", "0"], ["--iters", "-5"], ["--render-size", "0"], ["--render-size", "-5"], ["--optimizer.lr", "0"],
    ["--optimizer.lr", "-1"], ["--sds.guidance", "-1"], ["--renderer.max-samples-per-chunk", "-1"], ["--ema-decay", "-0.1"],
    ["--ema-decay", "1.0"], ["--regularizers.opacity", "-1"], ["--checkpoint-minutes", "0"], ["--batch-size", "0"],
])
def test_bad_numbers_are_one_line_errors_before_anything_loads(flags, tmp_path, capsys):
    """Issue 32: --iters 0 and -5 trained nothing and exported the untrained blob."""
    ws = tmp_path / "ws"
    assert main(["text", "a mug", "--workspace", str(ws), "--model", str(tmp_path / "no-such-model"), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dreamtext: error:") and err.count("\n") == 1 and "no-such-model" not in err, err
    assert not ws.exists()


def test_a_disk_that_fills_while_a_checkpoint_is_written_names_the_checkpoint_and_stops_the_run(tiny_model, tmp_path, monkeypatch):
    """Issue 40: torch.save reports a full disk as RuntimeError; the error must name the checkpoint (not
    progress.json), leave no temporary file behind and mark the run stopped."""
    import shutil
    from collections import namedtuple

    from dreamtext.utils import io as io_module

    real_save, real_usage = torch.save, shutil.disk_usage

    def cut_short(obj, handle, *args, **kwargs):
        if isinstance(obj, dict) and "field" in obj:  # a training checkpoint
            handle.write(b"PK\x03\x04 half a checkpoint")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/3: file write failed")
        return real_save(obj, handle, *args, **kwargs)

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(io_module.torch, "save", cut_short)
    monkeypatch.setattr(io_module.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 4096))
    with pytest.raises(DreamtextError) as raised:
        text_to_3d(small_config(tiny_model, iters=3, checkpoint_every=1), tmp_path / "ws", progress=False)
    message = str(raised.value)
    assert "checkpoints/last.pt" in message and "the disk is full" in message and "progress.json" not in message
    leftovers = [p.name for p in (tmp_path / "ws").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert json.loads((tmp_path / "ws" / "progress.json").read_text())["running"] is False
    monkeypatch.setattr(io_module.shutil, "disk_usage", real_usage)
    with pytest.raises(DreamtextError, match="cannot write .*last.pt: .*PytorchStreamWriter failed"):
        text_to_3d(small_config(tiny_model, iters=3, checkpoint_every=1), tmp_path / "other", progress=False)
