import json

import pytest
import torch

from dreamtext.cli.main import main


def test_engine_benchmark_prints_measured_json(capsys, monkeypatch):
    def no_export(*args, **kwargs):
        raise AssertionError("a benchmark must not export anything (mesh, video, views)")

    # A benchmark exports nothing: on a machine without ffmpeg an mp4 export crashed it.
    for writer in ("methods.fit.export_all", "export.outputs.export_all", "export.video.write_mp4", "export.video.write_gif"):
        monkeypatch.setattr(f"dreamtext.{writer}", no_export)
    assert main(["bench", "engine", "--json", "--quick", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["suite"] == "engine" and result["device"] == "cpu"
    rows = result["training_throughput"]
    assert {row["image_size"] for row in rows} == {32, 64}
    # On CPU: the reference and the fused path, each at both sizes, and the fused path's ratio to the reference.
    assert sorted(row["implementation"] for row in rows) == ["fused", "fused", "torch", "torch"]
    assert all(row["rays_per_second"] > 0 for row in rows)
    assert set(result["fast_path_speedup"]) == {"fused 32px", "fused 64px"}
    # 1024 rays x 64 samples exceed no budget of 2^16: these steps run without checkpointing.
    assert [row["checkpointed_field_queries"] for row in rows] == [False] * 4
    grid = result["occupancy_grid"]
    # Empty-space skipping evaluates far fewer samples than the 64 a ray carries.
    assert grid["with_grid"] < 0.5 * grid["without_grid"]
    assert 0 < grid["occupied_fraction"] < 1
    assert result["fit"]["heldout_psnr"] > 15 and result["fit"]["wall_seconds"] > 0
    assert 0 <= result["fit"]["mesh_iou"] <= 1
    # On a fitted surface, only a minority of the evaluated samples carry weight and get normals.
    shaded = result["visible_normals"]
    assert 0 < shaded["share_of_samples_with_normals"] < 0.6
    assert shaded["seconds_every_sample"] > 0 and shaded["seconds_visible_only"] > 0 and shaded["speedup"] > 0
    assert result["peak_memory_mb"] > 0


def test_step_benchmark_splits_a_builtin_step_into_its_parts(capsys):
    """Issue 29: where a builtin step's time goes (bench step --quick: one size, two iterations)."""
    from dreamtext.cli.main import main

    assert main(["bench", "step", "--json", "--quick", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    (size,) = result["sizes"]
    assert size["render_size"] == 32 and size["step_seconds"] > 0 and size["prior_seconds"] > 0
    parts = size["parts_seconds"]
    assert size["step_to_prior"] == pytest.approx(size["step_seconds"] / size["prior_seconds"])
    assert all(value >= 0 for value in parts.values()) and parts["  of which normals"] <= parts["render forward"]
    table = size["profile_top_operators"]
    assert 0 < len(table) <= 15 and all(row["self_ms_per_step"] > 0 for row in table)
    assert [row["share"] for row in table] == sorted((row["share"] for row in table), reverse=True)
    assert 0 < sum(row["share"] for row in table) <= 1 + 1e-9
    assert "variant" not in size and "stages" not in result  # no settings given; stages only without --quick


def test_step_benchmark_measures_a_variant_beside_the_preset(capsys, monkeypatch):
    """Issue 37: speed ratios side by side in one process; stage timings from short runs of the main command."""
    from dreamtext.bench import step as step_module
    from dreamtext.cli.main import main

    monkeypatch.setattr(step_module, "STAGE_ITERS", 2)
    small = {"export.video_frames": 2, "export.video_size": 32, "export.views": ("front",), "export.views_size": 32,
             "export.mesh.resolution": 32, "init.drawings_per_view": 1, "init.steps": 2, "init.fit.steps": 5}
    monkeypatch.setattr(step_module, "STAGE_SETTINGS", small)
    monkeypatch.setattr(step_module, "bench_size", lambda *args, **kwargs: {"render_size": args[0], "stub": True})
    assert main(["bench", "step", "--json", "--device", "cpu", "--set", "renderer.shade_at=surface",
                 "--set", "export.video_frames=8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["variant"]["renderer.shade_at"] == "surface" and result["stages"]["stage_iters"] == 2
    preset, variant = result["stages"]["preset"], result["stages"]["variant"]
    assert {"drawings", "hull", "start_fit", "training", "mesh", "turntable", "views"} <= set(preset) and set(variant) == set(preset)
    assert all(seconds > 0 for seconds in (*preset.values(), *variant.values()))
    monkeypatch.undo()
    assert main(["bench", "step", "--json", "--quick", "--device", "cpu", "--set", "renderer.shade_at=surface"]) == 0
    (size,) = json.loads(capsys.readouterr().out)["sizes"]
    assert size["variant"]["step_seconds"] > 0 and size["speedup"] == pytest.approx(size["step_seconds"] / size["variant"]["step_seconds"])


def test_hull_benchmark_carves_exact_renders_around_the_true_solid_for_each_layout(capsys):
    """A hull of exact renders bounds its object: nearly all of the true solid is inside it, whatever the layout;
    a layout of one view carves less than the preset's four (a lower IoU on the same objects)."""

    one_view = '[["front", 75.0, 30.0]]'
    assert main(["bench", "hull", "--json", "--quick", "--set", f"init.views={one_view}"]) == 0
    result = json.loads(capsys.readouterr().out)
    preset, variant = result["preset"], result["variant"]
    assert len(preset["views"]) == 4 and variant["views"] == [["front", 75.0, 30.0]]
    assert set(preset["objects"]) == set(variant["objects"]) and len(preset["objects"]) == 2
    for figures in (*preset["objects"].values(), *variant["objects"].values()):
        assert figures["recall"] > 0.9 and 0 < figures["iou"] <= figures["recall"]
    assert preset["mean_iou"] > variant["mean_iou"] + 0.05
    assert preset["mean_iou"] == pytest.approx(sum(row["iou"] for row in preset["objects"].values()) / 2)


def test_hull_benchmark_carves_a_runs_saved_drawings_as_the_run_did(tmp_path, capsys):
    """A run whose start drawings are exact renders (saved as the trainer saves them, a sheet of 8-bit drawings)
    carves the exact renders' hull again: the drawn and the exact figures agree; other folders are passed over."""
    from dreamtext.bench.truth_start import truth_drawings
    from dreamtext.bench.world_cases import benchmark_objects
    from dreamtext.methods.presets import preset_config
    from dreamtext.methods.sample import contact_sheet
    from dreamtext.utils.images import save_image
    from dreamtext.utils.workspace import Workspace

    obj = benchmark_objects(1)[0]
    config = preset_config("builtin", obj.caption(), {"init.drawings_per_view": 2})
    run = Workspace(tmp_path / "00_text_run", create=True)
    run.save_config(config, method="text")
    drawings = truth_drawings(obj, config.init, config.cameras, size=64, seed=config.seed)
    save_image(run.path("init/drawings.png"), contact_sheet(torch.cat(drawings), columns=2))
    (tmp_path / "not_a_run").mkdir()
    assert main(["bench", "hull", "--json", "--quick", "--workspace", str(tmp_path)]) == 0
    drawn = json.loads(capsys.readouterr().out)["drawn"]
    (row,) = drawn["runs"]
    assert row["run"] == "00_text_run" and row["noun"] == obj.noun
    assert row["drawn"]["iou"] == pytest.approx(row["exact"]["iou"], abs=0.02) and row["drawn"]["recall"] > 0.9
    assert drawn["mean_iou"] == row["drawn"]["iou"] and drawn["mean_exact_iou"] == row["exact"]["iou"]


def test_viewer_benchmark_visits_leave_no_browser_and_no_python_heap_behind(capsys):
    """Issue 32, item 11: browsers that come and go (viser's protocol over a WebSocket, two camera reports
    each) are each drawn, forgotten when they leave, and grow neither the Python heap nor, with the free heap
    handed back, the resident set beyond noise."""
    assert main(["bench", "viewer", "--json", "--quick"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["suite"] == "viewer" and result["visits"] == 8
    for name in ("release_on_leave", "keep_free_heap"):
        run = result[name]
        assert run["error"] is None and run["browsers_left"] == 0
        assert run["frames_sent"] >= result["visits"]  # every visit got its frame (a preview too, mostly)
        assert run["python_heap_growth_mb"] < 2.0
        assert len(run["rss_mb"]) == 8 and run["rss_end_mb"] == run["rss_mb"][-1]
    assert result["rss_end_ratio_keep_vs_release"] == pytest.approx(
        result["keep_free_heap"]["rss_end_mb"] / result["release_on_leave"]["rss_end_mb"], abs=1e-3)


def test_releasing_free_memory_is_safe_to_call_anywhere():
    from dreamtext.utils.memory import release_free_memory, resident_mb

    assert isinstance(release_free_memory(), bool)
    assert resident_mb() is None or resident_mb() > 0
