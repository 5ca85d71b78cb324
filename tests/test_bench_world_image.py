"""`dreamtext bench world`'s image-to-3D cases and diversity study: the figures on known inputs, the
input render's camera, and one quick RealFusion-mode case end to end on the built-in prior."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from dreamtext.bench import SUITES
from dreamtext.bench import world as world_module
from dreamtext.bench import world_diversity as world_diversity_module
from dreamtext.bench.world import WorldBenchConfig, WorldCase, benchmark_cases, benchmark_objects, mean_figures, run_case
from dreamtext.bench.world_diversity import (
    mean_pairwise_embedding_distance, mean_pairwise_occupancy_distance, run_diversity_study,
)
from dreamtext.bench.world_config import BENCH_REFERENCE, QUICK_IMAGE, ImageBenchConfig
from dreamtext.bench.world_image import PSNR_CAP_DB, capped_psnr, describe_clip, input_render, reference_psnr, reference_view
from dreamtext.bench.world_metrics import QUICK_EVAL
from dreamtext.cli.main import main
from dreamtext.errors import DreamtextError, RunInterrupted
from dreamtext.scene.renderer import RendererConfig, VolumeRenderer
from dreamtext.utils.images import load_image
from dreamtext.world.analytic import sphere_scene

from test_bench_world import needs_builtin


IMAGE_KINDS = ("dreamtext", "realfusion", "dreamtext_ref")
# Smaller than the quick benchmark's evaluation, to keep this file fast; the figures stay meaningful.
TEST_EVAL = replace(QUICK_EVAL, iou_resolution=48, mesh_resolution=48, chamfer_samples=1000, views=2)


# -- figures on known inputs -------------------------------------------------------------------------


def test_reference_psnr_is_capped_for_an_identical_image_and_follows_the_formula_for_known_noise():
    image = 0.2 + 0.6 * torch.rand(16, 16, 3)
    assert capped_psnr(image, image) == PSNR_CAP_DB
    signs = torch.where(torch.rand(16, 16, 3) < 0.5, -1.0, 1.0)
    noisy = image + 0.05 * signs  # every error exactly 0.05: MSE 0.0025, stays inside [0, 1]
    assert capped_psnr(noisy, image) == pytest.approx(10 * math.log10(1 / 0.0025), abs=1e-4)  # 26.02 dB
    assert capped_psnr(torch.ones(4, 4, 3), torch.zeros(4, 4, 3)) == 0.0


def test_pairwise_diversity_is_zero_for_identical_results_and_the_mean_distance_otherwise():
    grid = torch.zeros(3, 8, 8, 8, dtype=torch.bool)
    grid[:, :4] = True
    assert mean_pairwise_occupancy_distance(grid) == 0.0
    embedding = torch.randn(1, 16)
    assert mean_pairwise_embedding_distance(torch.cat([embedding, 2 * embedding, embedding])) == pytest.approx(0.0, abs=1e-12)
    # Half, quarter and the other half of a grid: IoUs 1/2, 0 and 0, distances 1/2, 1, 1.
    grid[1, 2:4] = False
    grid[2] = ~grid[0]
    assert mean_pairwise_occupancy_distance(grid) == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert mean_pairwise_occupancy_distance(torch.zeros(2, 4, 4, 4, dtype=torch.bool)) == 0.0  # two empty fields agree
    axes = torch.eye(3)[:2]  # orthogonal: cosine 0; opposite: cosine -1
    assert mean_pairwise_embedding_distance(axes) == pytest.approx(1.0)
    assert mean_pairwise_embedding_distance(torch.stack([axes[0], -axes[0]])) == pytest.approx(2.0)
    with pytest.raises(DreamtextError):
        mean_pairwise_occupancy_distance(grid[:1])


def _centroid(image: torch.Tensor) -> torch.Tensor:
    """The darkness-weighted centre (row, column) of an image on white, in pixels."""
    weight = 1 - image.mean(dim=-1)
    rows, cols = torch.meshgrid(torch.arange(image.shape[0]), torch.arange(image.shape[1]), indexing="ij")
    return torch.stack([(weight * rows).sum(), (weight * cols).sum()]) / weight.sum()


def test_input_render_shows_the_object_from_the_reference_losses_camera_on_white():
    # A sphere off the centre towards the front: turning the camera around the centre moves it sideways.
    scene = sphere_scene(0.2, center=(0.0, 0.1, 0.35), albedo=(0.8, 0.1, 0.1))
    flat = ImageBenchConfig(ambient=1.0)  # no shading: the render is the albedo, as the field's reference view
    image = input_render(SimpleNamespace(scene=scene), flat, 64)
    assert image.shape == (64, 64, 3) and image[0, 0].tolist() == [1.0, 1.0, 1.0]
    renderer = VolumeRenderer(RendererConfig(num_samples=128, use_occupancy_grid=False), occupancy=None, bound=1.0)
    exact = SimpleNamespace(field=scene, renderer=renderer)
    # The volume render of the same scene from the reference camera sits on the same pixels (the VolSDF
    # halo widens the silhouette by about a pixel on every side, hence ~21 dB and not more) ...
    assert (_centroid(reference_view(exact, BENCH_REFERENCE, 64)) - _centroid(image)).abs().max() < 0.25
    assert 18.0 < reference_psnr(exact, image, BENCH_REFERENCE) < 30.0
    # ... and 10 degrees of azimuth move it by several pixels.
    turned = reference_view(exact, replace(BENCH_REFERENCE, azimuth_deg=10.0), 64)
    assert (_centroid(turned) - _centroid(image)).abs().max() > 2.0
    # Every benchmark object fits the frame: the border stays white.
    for obj in benchmark_objects(8):
        shaded = input_render(obj, ImageBenchConfig(supersample=1), 64)
        border = torch.cat([shaded[0], shaded[-1], shaded[:, 0], shaded[:, -1]])
        assert torch.equal(border, torch.ones_like(border)) and shaded.min() < 0.5


# -- case list and flags --------------------------------------------------------------------------------


def test_image_kinds_are_cases_per_object_and_diversity_is_a_study():
    config = WorldBenchConfig(cases=2, kinds=("text", *IMAGE_KINDS, "diversity"))
    cases = benchmark_cases(config)
    assert [case.kind for case in cases] == [kind for kind in ("text", *IMAGE_KINDS) for _ in range(2)]
    assert cases[2].folder_name == "02_dreamtext_a_large_black_torus" and cases[7].folder_name == "07_dreamtext_ref_a_flat_blue_car"
    assert WorldBenchConfig().kinds == ("text",) and WorldBenchConfig.quick().image == QUICK_IMAGE
    assert benchmark_cases(WorldBenchConfig(kinds=("diversity",))) == []
    with pytest.raises(DreamtextError, match="dreamtext_ref"):
        benchmark_cases(WorldBenchConfig(kinds=("image",)))


@needs_builtin
def test_start_flag_reaches_the_image_cases_reconstruction():
    from dreamtext.bench.world_image import image_pipeline_config

    hull = image_pipeline_config("dreamtext", WorldBenchConfig(start="prior_hull"), torch.device("cpu"))
    assert hull.reconstruct.text.init.kind == "prior_hull"
    blob = image_pipeline_config("dreamtext", WorldBenchConfig(start="blob"), torch.device("cpu"))
    assert blob.reconstruct.text.init.kind == "blob"
    own = image_pipeline_config("dreamtext", WorldBenchConfig(), torch.device("cpu"))
    assert own.reconstruct.text.init.kind == "prior_hull"  # the builtin preset's own: the hull of the prior's drawings
    # the reconstruction is the text cases' run: the preset with the benchmark's overrides and seed
    text = image_pipeline_config("dreamtext", WorldBenchConfig(seed=2, overrides={"iters": 7}), torch.device("cpu")).reconstruct
    assert (text.preset, text.text.iters, text.text.seed, text.text.device, text.text.model) == ("builtin", 7, 2, "cpu", "builtin")


def test_kinds_flag_reaches_the_config(monkeypatch, capsys):
    seen = {}

    def fake_run(config, device, quick=False):
        seen.update(config=config, quick=quick)
        return {"suite": "world"}

    monkeypatch.setitem(SUITES, "world", fake_run)
    assert main(["bench", "world", "--quick", "--device", "cpu", "--kinds", "dreamtext, realfusion,diversity"]) == 0
    assert seen["config"].kinds == ("dreamtext", "realfusion", "diversity") and seen["config"].image == QUICK_IMAGE
    assert main(["bench", "engine", "--quick", "--kinds", "text"]) == 2
    assert "--kinds" in capsys.readouterr().err


def test_a_failing_case_is_reported_and_left_out_of_the_means(monkeypatch, tmp_path):
    def failing(case, workspace, config, device):
        raise DreamtextError("the sentence 'An image of a torus' has no descriptor words to train")

    monkeypatch.setitem(world_module.CASE_RUNNERS, "dreamtext", failing)
    case = WorldCase("dreamtext", benchmark_objects(1)[0], 0)
    row = run_case(case, tmp_path, WorldBenchConfig.quick(), scorer=None, device=torch.device("cpu"))
    assert row["error"].startswith("the sentence") and row["caption"] == "a large black torus" and row["resumed"] is False
    means = mean_figures([row, {"kind": "dreamtext", "iou": 0.4, "reference_psnr": 12.0}])
    assert means["failed_cases"] == 1 and means["iou"] == 0.4 and means["reference_psnr"] == 12.0 and means["cases"] == 2


def test_a_stopped_case_stops_the_benchmark_instead_of_counting_as_failed(monkeypatch, tmp_path):
    """SIGTERM during a case ends the benchmark with the exit status and how to resume; the cases after it do not run."""
    ran = []

    def stopped(case, workspace, config, device):
        ran.append(case.folder_name)
        raise RunInterrupted("SIGTERM: stopped after step 7; continue with --resume", 143)

    monkeypatch.setitem(world_module.CASE_RUNNERS, "dreamtext", stopped)
    monkeypatch.setattr(world_module, "ClipScorer", lambda *args, **kwargs: None)
    monkeypatch.setattr(world_module, "load_clip_backend", lambda *args, **kwargs: None)
    config = WorldBenchConfig.quick(cases=2, kinds=("dreamtext",), workspace=str(tmp_path))
    with pytest.raises(RunInterrupted, match=f"rerun it with --workspace {tmp_path} to resume") as info:
        world_module.bench_world(config, "cpu", quick=True)
    assert info.value.exit_code == 143 and ran == ["00_dreamtext_a_large_black_torus"]


# -- one quick case end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_realfusion(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_world_image")
    config = WorldBenchConfig.quick(kinds=("realfusion",), workspace=str(root), evaluation=TEST_EVAL)
    return root, world_module.bench_world(config, "cpu", quick=True)


@needs_builtin
def test_quick_realfusion_case_writes_sane_figures(quick_realfusion):
    from dreamtext.methods.trained import load_trained

    root, result = quick_realfusion
    (case,) = result["cases"]
    assert case["kind"] == "realfusion" and case["method"] == "realfusion" and "error" not in case
    assert case["descriptor_iters"] == case["iters"] == 4  # the quick schedule: as many descriptor steps as SDS steps
    assert case["sentence"].startswith("An image of") and case["learned_prompt"].endswith(f"<dt-{case['noun']}>")
    assert case["sentence_noun_correct"] == case["sentence"].endswith(f" {case['noun']}")  # RealFusion trains the noun
    assert 0.0 <= case["iou"] <= 1.0 and 0.0 < case["chamfer"] < 2.0 and 0.0 < case["albedo_error"] < 1.0
    assert 5.0 < case["reference_psnr"] < 40.0 and case["wall_seconds"] > 0 and case["resumed"] is False
    assert result["mean_by_kind"]["realfusion"]["reference_psnr"] == case["reference_psnr"]
    metrics = json.loads((root / "00_realfusion_a_large_black_torus" / "descriptor" / "metrics.json").read_text())
    assert case["descriptor_loss_words"] == metrics["fixed_noise_loss"]["words"]["real"] > 0  # the check's figures, carried
    assert case["descriptor_loss_learned"] == metrics["fixed_noise_loss"]["learned"]["real"] > 0
    assert result["kinds"] == ["realfusion"] and "diversity" not in result and result["meets_target"] is False

    folder = root / "00_realfusion_a_large_black_torus"
    image = load_image(folder / "input.png")[0]
    expected = input_render(benchmark_objects(1)[0], QUICK_IMAGE, 64)
    assert image.shape == (64, 64, 3) and (image - expected).abs().max() <= 0.5 / 255 + 1e-6  # the true render, 8-bit
    # The reference losses trained against that camera, and the figure is the render from it.
    stage = json.loads((folder / "stage.json").read_text())
    reference = stage["config"]["reconstruct"]["reference"]
    assert stage["method"] == "realfusion" and all(stage["stages"][s] == "done" for s in ("describe", "descriptor", "reconstruct"))
    assert (reference["polar_deg"], reference["radius"], reference["fovy_deg"]) == (70.0, 1.5, BENCH_REFERENCE.fovy_deg)
    assert reference["on"] and (reference["rgb_weight"], reference["mask_weight"]) == (None, None)  # the preset's weights
    trained = load_trained(folder / "reconstruction", device="cpu")
    assert reference_psnr(trained, image, BENCH_REFERENCE) == pytest.approx(case["reference_psnr"], abs=1e-9)
    # Doing nothing (a blank white render) scores below the four-step reconstruction.
    assert capped_psnr(torch.ones_like(image), image) < case["reference_psnr"]
    assert (folder / "bench_views.png").is_file()


@needs_builtin
def test_diversity_study_of_identical_results_is_zero(quick_realfusion, monkeypatch, tmp_path):
    """The study's plumbing with every run replaced by a copy of one trained field: both methods' K
    results are identical, so both distances are 0 and each IoU is that field's."""

    root, result = quick_realfusion
    trained = root / "00_realfusion_a_large_black_torus" / "reconstruction"
    seeds, calls = [], {}

    def fake_text_case(case, workspace, config, device):
        seeds.append(config.seed)
        shutil.copytree(trained, workspace)
        return {}

    def fake_diverse(prompt, workspace, k, config, progress=True, clip=None):
        calls.update(prompt=prompt, k=k, config=config)
        results = []
        for index in range(k):
            shutil.copytree(trained, workspace / f"object_{index:02d}" / "reconstruction")
            results.append(SimpleNamespace(reconstruction=workspace / f"object_{index:02d}" / "reconstruction",
                                           prompt=f"An image of <dt-w{index}>, a torus"))
        return results

    monkeypatch.setattr(world_diversity_module, "run_text_case", fake_text_case)
    monkeypatch.setattr(world_diversity_module, "diverse", fake_diverse)
    config = WorldBenchConfig.quick(kinds=("diversity",), evaluation=TEST_EVAL)
    study = run_diversity_study(config, tmp_path, SimpleNamespace(backend=describe_clip("cpu")), torch.device("cpu"))
    assert study["prompt"] == "a large black torus" and study["k"] == 2 and study["seeds"] == seeds == [0, 1]
    assert calls["prompt"] == "a large black torus" and calls["k"] == 2 and calls["config"].sample.steps == QUICK_IMAGE.sample_steps
    assert calls["config"].image.describe.sentence.noun == "torus"  # the prompt's noun, fixed
    assert calls["config"].image.reconstruct.text.iters == 4 and calls["config"].image.reconstruct.text.model == "builtin"
    case_iou = result["cases"][0]["iou"]
    for method in ("text", "diverse"):
        figures = study[method]
        assert figures["occupancy_distance"] == 0.0 and figures["clip_distance"] == pytest.approx(0.0, abs=1e-6)
        assert figures["ious"] == [pytest.approx(case_iou)] * 2
    assert study["diverse"]["prompts"] == ["An image of <dt-w0>, a torus", "An image of <dt-w1>, a torus"]
