"""The camera classifier: its bins, its guidance term (exactly scale x sigma_t x the autograd gradient), its
folder, its training on world latents, and where the samplers and score distillation apply it."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dreamtext.errors import DreamtextError
from dreamtext.prior.camera_classifier import (
    CameraClassifier, CameraClassifierConfig, guided_noise_shift, timestep_embedding,
)
from dreamtext.prior.sampling import ddim_sample, initial_noise
from dreamtext.prior.sds import ScoreDistillation, SDSConfig
from dreamtext.prior.small.train_camera import CameraTrainConfig, PoseLatents, azimuth_accuracy, train_camera_classifier
from dreamtext.scene.cameras import orbit_cameras

from dreamtext_fixtures import tiny_prior

SMALL = CameraClassifierConfig(width=16, blocks=2)


def test_bins_are_a_smoothed_distribution_peaked_at_the_camera():
    classifier = CameraClassifier()
    azimuth, polar = classifier.bin_weights(torch.tensor([75.0, 10.0]), torch.tensor([30.0, 350.0]))
    assert torch.allclose(azimuth.sum(-1), torch.ones(2)) and torch.allclose(polar.sum(-1), torch.ones(2))
    assert azimuth[0].argmax() == 1 and azimuth[1].argmax() == 0  # 30 degrees: bin 1; 350: the bin at 0, across 360
    assert polar[0].argmax() == 2 and polar[1].argmax() == 0  # bins centred at 15, 45, 75, 105
    # Half way between two bins, both share the weight equally and hold most of it
    between = classifier.bin_weights(torch.tensor([60.0]), torch.tensor([15.0]))[0][0]
    assert between[0] == pytest.approx(float(between[1])) and float(between[:2].sum()) > 0.7


def test_timestep_embedding_is_sinusoidal():
    embedding = timestep_embedding(torch.tensor([0, 500]), 8)
    assert embedding.shape == (2, 8)
    assert torch.allclose(embedding[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    assert embedding[1, 0] == pytest.approx(math.cos(500.0))


def test_guidance_is_scale_times_sigma_times_the_gradient_of_the_log_probability():
    torch.manual_seed(0)
    classifier = CameraClassifier(SMALL).eval()
    noisy = torch.randn(3, 4, 8, 8)
    timesteps = torch.tensor([10, 400, 900])
    alphas_cumprod = torch.linspace(0.999, 0.01, 1000)
    polar, azimuth = torch.tensor([60.0, 80.0, 100.0]), torch.tensor([0.0, 120.0, 250.0])
    assert torch.equal(guided_noise_shift(classifier, noisy, timesteps, alphas_cumprod, polar, azimuth, 0.0), torch.zeros_like(noisy))
    shift = guided_noise_shift(classifier, noisy, timesteps, alphas_cumprod, polar, azimuth, 3.0)
    leaf = noisy.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(classifier.log_prob(leaf, timesteps, polar, azimuth).sum(), leaf)
    sigma = (1 - alphas_cumprod[timesteps]).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(shift, -3.0 * sigma * gradient)
    # Moving the latents a little along the shift's opposite makes the camera more likely
    before = classifier.log_prob(noisy, timesteps, polar, azimuth)
    after = classifier.log_prob(noisy - 1e-3 * shift / shift.norm(), timesteps, polar, azimuth)
    assert (after > before).all()


def test_folder_round_trip_and_a_clear_error_for_a_wrong_folder(tmp_path):
    classifier = CameraClassifier(SMALL)
    classifier.save_pretrained(tmp_path / "c")
    loaded = CameraClassifier.from_pretrained(tmp_path / "c")
    assert loaded.config == SMALL
    latents, steps = torch.randn(2, 4, 8, 8), torch.tensor([5, 600])
    for a, b in zip(classifier.eval()(latents, steps), loaded(latents, steps)):
        torch.testing.assert_close(a, b)
    with pytest.raises(DreamtextError, match="not a camera classifier folder.*train-prior camera"):
        CameraClassifier.from_pretrained(tmp_path)


def _toy_pose_latents(count: int, seed: int) -> PoseLatents:
    """Latents that show their azimuth plainly: a bright spot on a circle at the camera's azimuth."""
    generator = torch.Generator().manual_seed(seed)
    azimuth = 360 * torch.rand(count, generator=generator)
    polar = 40 + 60 * torch.rand(count, generator=generator)
    latents = 0.1 * torch.randn(count, 4, 8, 8, generator=generator)
    angle = torch.deg2rad(azimuth)
    rows, columns = (3.5 + 3 * torch.sin(angle)).round().long(), (3.5 + 3 * torch.cos(angle)).round().long()
    latents[torch.arange(count), 0, rows, columns] = 3.0
    return PoseLatents(latents, polar, azimuth, torch.ones(count, dtype=torch.bool))


def test_training_learns_an_azimuth_the_latents_show(tmp_path):
    alphas_cumprod = torch.linspace(0.9999, 0.5, 1000)
    train, heldout = _toy_pose_latents(2048, 0), _toy_pose_latents(512, 1)
    untrained = CameraClassifier(SMALL).eval()
    chance = azimuth_accuracy(untrained, heldout, 20, alphas_cumprod)
    summary = train_camera_classifier(train, heldout, alphas_cumprod, tmp_path,
                                      CameraTrainConfig(steps=300, batch_size=64, eval_timesteps=(20,)), SMALL, progress=False)
    assert summary["heldout_azimuth_within_30"]["20"] > 0.8 > chance
    assert CameraClassifier.from_pretrained(tmp_path / "camera_classifier").config == SMALL


@pytest.fixture(scope="module")
def prior_and_classifier():
    prior = tiny_prior()
    torch.manual_seed(1)
    return prior, CameraClassifier(SMALL).eval().requires_grad_(False)


def test_drawings_at_a_camera_get_its_guidance_and_a_prior_without_a_classifier_draws_as_before(prior_and_classifier):
    prior, classifier = prior_and_classifier
    cond, uncond = torch.randn(1, 77, 32), torch.zeros(1, 77, 32)
    camera = orbit_cameras(1, 16, 16, radius=1.3, polar_deg=70.0, start_azimuth_deg=90.0).cameras
    plain = ddim_sample(prior, cond, uncond, initial_noise(prior, [0, 1]), 4, 5.0, cameras=camera)
    prior.camera_classifier = None
    assert torch.equal(ddim_sample(prior, cond, uncond, initial_noise(prior, [0, 1]), 4, 5.0, cameras=camera, camera_guidance=50.0), plain)
    prior.camera_classifier = classifier
    try:
        assert torch.equal(ddim_sample(prior, cond, uncond, initial_noise(prior, [0, 1]), 4, 5.0, cameras=camera), plain)
        steered = ddim_sample(prior, cond, uncond, initial_noise(prior, [0, 1]), 4, 5.0, cameras=camera, camera_guidance=50.0)
        assert not torch.equal(steered, plain)
    finally:
        prior.camera_classifier = None


def test_score_distillation_adds_the_guidance_towards_each_renders_camera(prior_and_classifier):
    prior, classifier = prior_and_classifier
    images = torch.rand(2, 3, 16, 16)
    cond, uncond = torch.randn(2, 77, 32), torch.zeros(1, 77, 32)
    cameras = orbit_cameras(2, 16, 16, radius=1.3).cameras
    infos = {}
    for name, scale, attached in (("off", 0.0, classifier), ("none", 30.0, None), ("on", 30.0, classifier)):
        prior.camera_classifier = attached
        sds = ScoreDistillation(prior, SDSConfig(camera_guidance=scale, sample_posterior=False))
        infos[name] = sds.loss(images, cond, uncond, 0.5, generator=torch.Generator().manual_seed(3), cameras=cameras)[1]
    prior.camera_classifier = None
    assert torch.equal(infos["off"].grad, infos["none"].grad)
    noisy_alphabar = sds.alphas_cumprod[infos["on"].timesteps].view(-1, 1, 1, 1)
    noise = torch.randn(infos["on"].latents.shape, generator=_generator_after_timesteps(sds, images))
    noisy = noisy_alphabar.sqrt() * infos["on"].latents + (1 - noisy_alphabar).sqrt() * noise
    from dreamtext.scene.cameras import cartesian_to_spherical

    _, polar, azimuth = cartesian_to_spherical(cameras.origins)
    shift = guided_noise_shift(classifier, noisy, infos["on"].timesteps, sds.alphas_cumprod, polar, azimuth, 30.0)
    weight = infos["on"].weight.view(-1, 1, 1, 1)
    torch.testing.assert_close(infos["on"].grad - infos["off"].grad, weight * shift, rtol=1e-4, atol=1e-6)


def _generator_after_timesteps(sds: ScoreDistillation, images: torch.Tensor) -> torch.Generator:
    """The generator as `sds.loss` leaves it right before it draws the noise: the same seed, the timesteps drawn."""
    generator = torch.Generator().manual_seed(3)
    sds.timesteps(0.5, generator, images.shape[0], sds.prior.num_train_timesteps, device=images.device)
    return generator


def test_the_camera_stage_trains_a_classifier_a_pipeline_folder_then_carries(tmp_path):
    """`train-prior camera` on a pipeline's own latents; the folder it writes, put beside the UNet, is loaded with
    the prior (and a prior folder without one loads none)."""
    import shutil

    from dreamtext.cli.main import main
    from dreamtext.prior.loading import load_prior
    from tiny_sd import build_tiny_sd_pipeline

    pipeline = tmp_path / "pipeline"
    build_tiny_sd_pipeline(seed=0).save_pretrained(pipeline, safe_serialization=True)
    assert load_prior(str(pipeline)).camera_classifier is None
    assert main(["train-prior", "camera", "--out", str(tmp_path / "out"), "--init-unet", str(pipeline), "--pool-size", "64",
                 "--steps", "5", "--batch-size", "8", "--workers", "1", "--device", "cpu", "--quiet"]) == 0
    folder = tmp_path / "out" / "camera_classifier"
    metrics = json.loads((folder / "training_metrics.json").read_text())
    assert metrics["steps"] == 5 and metrics["train_renders"] == 64 and set(metrics["heldout_azimuth_within_30"]) == {"20", "200", "500", "800"}
    shutil.copytree(folder, pipeline / "camera_classifier")
    prior = load_prior(str(pipeline))
    assert isinstance(prior.camera_classifier, CameraClassifier) and prior.camera_classifier.config == CameraClassifier.from_pretrained(folder).config


def test_packaging_ships_the_classifier_and_keeps_it_only_beside_the_vae_it_reads(tmp_path):
    import shutil

    from safetensors.torch import load_file

    from dreamtext.prior.builtin import package_prior
    from tiny_sd import build_tiny_sd_pipeline

    shipped = tmp_path / "shipped"
    build_tiny_sd_pipeline(seed=0).save_pretrained(shipped / "pipeline", safe_serialization=True)
    trained = tmp_path / "trained"
    CameraClassifier(SMALL).save_pretrained(trained / "camera_classifier")
    package_prior(trained, shipped)  # the classifier alone
    folder = shipped / "pipeline" / "camera_classifier"
    assert all(v.dtype == torch.float16 for v in load_file(str(folder / "model.safetensors")).values())
    assert CameraClassifier.from_pretrained(folder).config == SMALL
    # A new pipeline on the same VAE (a continued UNet) keeps it; one on another VAE does not
    same = tmp_path / "same"
    shutil.copytree(shipped / "pipeline", same / "pipeline", ignore=shutil.ignore_patterns("camera_classifier"))
    config = json.loads((same / "pipeline" / "vae" / "config.json").read_text())  # saved again, as `assemble` does
    (same / "pipeline" / "vae" / "config.json").write_text(json.dumps(dict(config, _name_or_path=str(same))))
    package_prior(same, shipped)
    assert (folder / "config.json").is_file()
    other = tmp_path / "other"
    build_tiny_sd_pipeline(seed=1).save_pretrained(other / "pipeline", safe_serialization=True)
    shutil.copytree(shipped / "pipeline" / "text_encoder", other / "pipeline" / "text_encoder", dirs_exist_ok=True)
    package_prior(other, shipped)
    assert not folder.exists()
