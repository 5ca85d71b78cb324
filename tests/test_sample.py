"""`dreamtext sample`: DDIM images from the prior, equal to diffusers' own pipeline, deterministic by seed,
independent of batching, with a contact sheet and a record of every image's seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dreamtext.cli.main import main
from dreamtext.methods.sample import SampleConfig, contact_sheet, sample_images
from dreamtext.prior.sampling import initial_noise
from dreamtext.prior.loading import Prior
from tiny_sd import build_tiny_sd_pipeline

PROMPT = "An image of a red mug"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "pipeline"
    build_tiny_sd_pipeline(seed=0).save_pretrained(folder, safe_serialization=True)
    return folder


def run_sample(model_dir, workspace, *extra) -> int:
    return main(["sample", PROMPT, "--workspace", str(workspace), "--model", str(model_dir), "--steps", "4",
                 "--device", "cpu", "--quiet", *extra])


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_sampling_equals_diffusers_ddim_pipeline():
    pipeline = build_tiny_sd_pipeline(seed=0)
    prior = Prior.from_pipeline(pipeline)
    config = SampleConfig(prompt=PROMPT, n=2, steps=3, guidance=7.5, seed=11)
    ours = sample_images(prior, config, progress=False)
    assert ours.shape == (2, 3, 16, 16) and ours.min() >= 0 and ours.max() <= 1
    pipeline.set_progress_bar_config(disable=True)
    theirs = pipeline(PROMPT, num_inference_steps=3, guidance_scale=7.5, latents=initial_noise(prior, [11, 12]),
                      num_images_per_prompt=2, output_type="pt").images
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_sample_command_writes_n_images_a_sheet_and_their_seeds(model_dir, tmp_path):
    assert run_sample(model_dir, tmp_path / "a", "-n", "3", "--seed", "7", "--batch-size", "2") == 0
    folder = tmp_path / "a" / "samples"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["contact_sheet.png", "sample_000.png", "sample_001.png", "sample_002.png", "samples.json"]
    record = json.loads((folder / "samples.json").read_text())
    assert record["prompt"] == PROMPT and record["n"] == 3 and record["steps"] == 4
    assert record["files"] == [{"file": f"sample_00{i}.png", "seed": 7 + i} for i in range(3)]
    images = [pixels(folder / f"sample_00{i}.png") for i in range(3)]
    assert all(image.shape == (16, 16, 3) for image in images)
    assert not np.array_equal(images[0], images[1])  # different seeds, different images
    # Contact sheet: 2 columns x 2 rows of 16 px with 4 px white gaps.
    sheet = pixels(folder / "contact_sheet.png")
    assert sheet.shape == (44, 44, 3)
    assert np.array_equal(sheet[4:20, 4:20], images[0]) and np.array_equal(sheet[4:20, 24:40], images[1])
    assert np.array_equal(sheet[24:40, 4:20], images[2]) and np.all(sheet[24:40, 24:40] == 255)
    assert np.all(sheet[:4] == 255) and np.all(sheet[:, 20:24] == 255)

    # The same seed gives the same images, whatever n and the batch size.
    assert run_sample(model_dir, tmp_path / "b", "-n", "2", "--seed", "7", "--batch-size", "1") == 0
    for i in range(2):
        assert np.array_equal(pixels(tmp_path / "b" / "samples" / f"sample_00{i}.png"), images[i])
    assert run_sample(model_dir, tmp_path / "c", "-n", "1", "--seed", "8") == 0
    assert np.array_equal(pixels(tmp_path / "c" / "samples" / "sample_000.png"), images[1])


def test_contact_sheet_columns():
    images = torch.rand(5, 3, 2, 3)
    sheet = contact_sheet(images, columns=5, gap=1)
    assert sheet.shape == (4, 5 * 3 + 6, 3)
    assert torch.equal(sheet[1:3, 1 + 4 * 4 : 1 + 4 * 4 + 3], images[4].permute(1, 2, 0))


def test_sample_errors_are_one_line(model_dir, tmp_path, capsys):
    assert main(["sample", "  ", "--workspace", str(tmp_path / "w"), "--model", str(model_dir), "--device", "cpu"]) == 2
    assert "prompt is empty" in capsys.readouterr().err
    assert run_sample(model_dir, tmp_path / "w", "-n", "0") == 2
    assert "must be positive" in capsys.readouterr().err
    assert main(["sample", PROMPT, "--workspace", str(tmp_path / "w"), "--model", str(tmp_path / "absent"), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert "does not exist" in error and "\n" not in error
    assert not (tmp_path / "w" / "samples").exists()
