"""Camera-aware priors: the camera encoding, the zero-initialised UNet input, and every caller passing the
camera only to priors that take one."""

from __future__ import annotations

import math

import pytest
import torch

from dreamtext.prior.camera import (
    CAMERA_ENCODING_DIM, camera_encoding, camera_labels, drop_cameras, encode_cameras, null_camera_encoding,
    takes_camera, with_camera_input,
)
from dreamtext.prior.loading import Prior
from dreamtext.prior.sds import SDSConfig, ScoreDistillation
from dreamtext.scene.cameras import orbit_cameras, sample_training_cameras
from tiny_sd import RecordingUnet, build_tiny_sd_pipeline


def test_encoding_known_values_at_the_view_label_boundaries():
    # front starts at azimuth 0, side at 60, back at 180, side again at 240 (thesis 6.1.7); overhead below polar 30
    azimuth = torch.tensor([0.0, 60.0, 180.0, 240.0])
    encoding = camera_encoding(torch.tensor([90.0, 90.0, 30.0, 90.0]), azimuth, torch.tensor([1.0, 1.25, 1.5, 1.25]),
                               torch.tensor([40.0, 55.0, 70.0, 55.0]))
    h = math.sqrt(3) / 2
    expected = torch.tensor([
        [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, -1.0, -1.0],
        [0.0, 1.0, h, 0.5, h, -0.5, 0.0, 0.0],
        [h, 0.5, 0.0, -1.0, 0.0, 1.0, 1.0, 1.0],
        [0.0, 1.0, -h, -0.5, h, -0.5, 0.0, 0.0],
    ])
    assert encoding.shape == (4, CAMERA_ENCODING_DIM)
    torch.testing.assert_close(encoding, expected, atol=1e-6, rtol=0)


def test_encoding_has_no_jump_across_azimuth_zero():
    ones = torch.ones(3)
    around = camera_encoding(70 * ones, torch.tensor([359.9, 0.0, 0.1]), 1.2 * ones, 50 * ones)
    assert (around[0] - around[1]).abs().max() < 1e-2 and (around[2] - around[1]).abs().max() < 1e-2
    torch.testing.assert_close(camera_encoding(70 * ones, torch.tensor([-30.0, 330.0, 690.0]), 1.2 * ones, 50 * ones)[0],
                               camera_encoding(torch.tensor([70.0]), torch.tensor([330.0]), torch.tensor([1.2]),
                                               torch.tensor([50.0]))[0], atol=1e-5, rtol=0)


def test_encoding_of_cameras_equals_their_sampled_angles():
    sample = sample_training_cameras(16, 8, 8, generator=torch.Generator().manual_seed(3))
    expected = camera_encoding(sample.polar_deg, sample.azimuth_deg, sample.radius, sample.cameras.fovy_deg)
    torch.testing.assert_close(encode_cameras(sample.cameras), expected, atol=1e-5, rtol=0)


def test_null_camera_is_no_real_camera_and_dropout_draws_it():
    sample = sample_training_cameras(64, 8, 8, generator=torch.Generator().manual_seed(0))
    encodings = encode_cameras(sample.cameras)
    assert (encodings.abs().sum(-1) > 0.9).all()
    assert torch.equal(null_camera_encoding(2), torch.zeros(2, CAMERA_ENCODING_DIM))
    dropped = drop_cameras(encodings, 0.5, torch.Generator().manual_seed(1))
    is_null = dropped.abs().sum(-1) == 0
    assert 10 < int(is_null.sum()) < 54
    assert torch.equal(dropped[~is_null], encodings[~is_null])


@pytest.fixture(scope="module")
def pipelines():
    text_only = build_tiny_sd_pipeline(seed=0)
    return text_only, with_camera_input(text_only.unet)


def test_zero_initialised_camera_input_computes_the_original_for_any_camera(pipelines):
    text_only, camera_unet = pipelines
    assert takes_camera(camera_unet) and not takes_camera(text_only.unet)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(4, 4, 8, 8, generator=generator)
    text = torch.randn(4, 77, 32, generator=generator)
    steps = torch.tensor([10, 300, 600, 990])
    cameras = sample_training_cameras(4, 16, 16, generator=generator).cameras
    with torch.no_grad():
        original = text_only.unet(latents, steps, encoder_hidden_states=text).sample
        for labels in (encode_cameras(cameras), null_camera_encoding(4), torch.randn(4, CAMERA_ENCODING_DIM)):
            assert torch.equal(camera_unet(latents, steps, encoder_hidden_states=text, class_labels=labels).sample, original)


def test_camera_unet_saves_and_loads_with_plain_diffusers(pipelines, tmp_path):
    from diffusers import UNet2DConditionModel

    _, camera_unet = pipelines
    camera_unet.save_pretrained(tmp_path / "unet")
    loaded = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    assert loaded.config.class_embed_type == "projection"
    assert loaded.config.projection_class_embeddings_input_dim == CAMERA_ENCODING_DIM
    assert takes_camera(loaded)


def test_camera_labels_only_for_priors_that_take_one(pipelines):
    text_only, camera_unet = pipelines
    cameras = orbit_cameras(3, 16, 16).cameras
    assert camera_labels(text_only.unet, cameras, 3, "cpu", torch.float32) == {}
    labels = camera_labels(camera_unet, cameras, 3, "cpu", torch.float32, copies=2)["class_labels"]
    torch.testing.assert_close(labels, encode_cameras(cameras).repeat(2, 1))
    assert torch.equal(camera_labels(camera_unet, None, 3, "cpu", torch.float32)["class_labels"], torch.zeros(3, 8))


def sds_step(unet, cameras):
    pipeline = build_tiny_sd_pipeline(seed=0)
    pipeline.unet = unet
    prior = Prior.from_pipeline(pipeline)
    sds = ScoreDistillation(prior, SDSConfig())
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    text = torch.randn(2, 77, 32)
    loss, _ = sds.loss(images, text, text[:1], 0.5, torch.Generator().manual_seed(0), cameras=cameras)
    loss.backward()
    return loss, images.grad


def test_sds_passes_the_camera_only_to_priors_that_take_one(pipelines):
    text_only, camera_unet = pipelines
    cameras = orbit_cameras(2, 16, 16).cameras
    recording = RecordingUnet(build_tiny_sd_pipeline(seed=0).unet)
    loss_with, grad_with = sds_step(recording, cameras)
    assert "class_labels" not in recording.calls[0]
    loss_without, grad_without = sds_step(build_tiny_sd_pipeline(seed=0).unet, None)
    assert torch.equal(loss_with, loss_without) and torch.equal(grad_with, grad_without)  # exactly as before

    recording = RecordingUnet(with_camera_input(build_tiny_sd_pipeline(seed=0).unet))
    sds_step(recording, cameras)
    torch.testing.assert_close(recording.calls[0]["class_labels"], encode_cameras(cameras).repeat(2, 1))


def test_sampling_passes_the_camera_it_was_given(pipelines, tmp_path):
    from dreamtext.methods.sample import SampleConfig, sample_images

    pipeline = build_tiny_sd_pipeline(seed=0)
    recording = RecordingUnet(with_camera_input(pipeline.unet))
    pipeline.unet = recording
    config = SampleConfig(prompt="a red mug", n=2, steps=2, elevation=30.0, azimuth=90.0)
    sample_images(Prior.from_pipeline(pipeline), config, progress=False)
    expected = camera_encoding(torch.tensor([60.0]), torch.tensor([90.0]), torch.tensor([1.25]), torch.tensor([55.0]))
    torch.testing.assert_close(recording.calls[0]["class_labels"], expected.repeat(4, 1), atol=1e-5, rtol=0)


def test_sampling_a_text_only_prior_from_a_camera_is_a_clear_error():
    from dreamtext.errors import DreamtextError
    from dreamtext.methods.sample import SampleConfig, sample_images

    prior = Prior.from_pipeline(build_tiny_sd_pipeline(seed=0))
    with pytest.raises(DreamtextError, match="camera-aware prior"):
        sample_images(prior, SampleConfig(prompt="a red mug", n=1, steps=2, azimuth=90.0), progress=False)


def test_pose_figure_is_right_for_true_renders_and_wrong_for_turned_ones():
    from dreamtext.prior.small.evaluate import PriorEvalConfig, pose_accuracy
    from dreamtext.scene.cameras import cartesian_to_spherical
    from dreamtext.world.renders import RenderConfig, shade_views, trace_views

    config = PriorEvalConfig(pose_count=12, seed=2)
    render = RenderConfig(resolution=32, supersample=1)

    def renders(turn: float):
        def draw(objects, captions, cameras):
            radius, polar, azimuth = cartesian_to_spherical(cameras.origins)
            images = []
            for index, obj in enumerate(objects):
                camera = orbit_cameras(1, 32, 32, float(radius[index]), float(polar[index]), float(cameras.fovy_deg[index]),
                                       float(azimuth[index]) + turn).cameras
                albedo, alpha, normals = trace_views(obj, camera, render)
                images.append(shade_views(albedo, alpha, normals, camera, render, torch.Generator().manual_seed(index)))
            return torch.cat(images)
        return draw

    right = pose_accuracy(renders(0.0), 32, config)
    turned = pose_accuracy(renders(180.0), 32, config)
    assert right["pose_count"] == 12 and right["pose_asymmetric_count"] >= 3
    assert right["pose_top1"] == 1.0 and right["pose_top1_asymmetric"] == 1.0
    assert turned["pose_top1_asymmetric"] <= 0.5 and turned["pose_top1"] < right["pose_top1"]


def test_a_folder_with_a_camera_unet_loads_it_and_plain_diffusers_still_loads_the_text_only_one(tmp_path):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from dreamtext.prior.camera import CAMERA_UNET_FOLDER
    from dreamtext.prior.loading import load_prior

    pipeline = build_tiny_sd_pipeline(seed=0)
    pipeline.save_pretrained(tmp_path, safe_serialization=True)
    with_camera_input(pipeline.unet).save_pretrained(tmp_path / CAMERA_UNET_FOLDER, safe_serialization=True)
    assert takes_camera(load_prior(str(tmp_path)).unet)
    assert not takes_camera(load_prior(str(tmp_path), camera=False).unet)
    assert takes_camera(UNet2DConditionModel.from_pretrained(tmp_path, subfolder=CAMERA_UNET_FOLDER))
    plain = StableDiffusionPipeline.from_pretrained(tmp_path, safety_checker=None, requires_safety_checker=False)
    assert not takes_camera(plain.unet)
    image = plain("a red mug", num_inference_steps=2, height=16, width=16, output_type="pt").images
    assert image.shape == (1, 3, 16, 16) and torch.isfinite(image).all()


def test_the_shipped_prior_samples_with_plain_diffusers_and_any_transformers_tokenizer():
    """Issue 31: `StableDiffusionPipeline.from_pretrained(folder)` with no dtype argument samples on CPU (the text
    encoder's config no longer says float16), and the folder carries what transformers 4 reads too: the slow
    tokenizer's vocab.json + merges.txt and text encoder weights with their `text_model.` level."""
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    from dreamtext.prior.builtin import BUILTIN_PIPELINE_DIR

    pipe = StableDiffusionPipeline.from_pretrained(BUILTIN_PIPELINE_DIR, safety_checker=None, requires_safety_checker=False)
    assert pipe.unet.dtype == pipe.text_encoder.dtype == torch.float32 and not takes_camera(pipe.unet)
    image = pipe("a red mug", num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()
    tokenizer_folder = BUILTIN_PIPELINE_DIR / "tokenizer"
    slow = CLIPTokenizer(str(tokenizer_folder / "vocab.json"), str(tokenizer_folder / "merges.txt"))  # as transformers 4 reads them
    assert slow("a red mug").input_ids == pipe.tokenizer("a red mug").input_ids
    assert all(key.startswith("text_model.") for key in load_file(BUILTIN_PIPELINE_DIR / "text_encoder" / "model.safetensors"))
