"""`dreamtext bench descriptor`: the quick run's figures (toy prior, CPU)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from dreamtext.cli.main import main


def test_quick_descriptor_benchmark_reports_speed_memory_and_the_target(capsys):
    assert main(["bench", "descriptor", "--json", "--quick", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["suite"] == "descriptor" and result["quick"] is True and result["device"] == "cpu"
    assert result["dtype"] == "float32" and result["torch"] == torch.__version__ and result["compile"] == "off"
    assert result["image_size"] == 16 and result["batch_size"] == 1 and result["learned_tokens"] == 2
    assert result["iterations_measured"] >= 1 and result["skipped_steps"] == 0
    assert result["iterations_per_second"] == pytest.approx(1 / result["step_seconds"])
    # The data part (augment + VAE encode + noise) is part of a step.
    assert 0 < result["data_seconds"] and result["data_fraction"] == pytest.approx(result["data_seconds"] / result["step_seconds"])
    assert result["minutes_for_10k_iterations"] == pytest.approx(result["step_seconds"] * 10_000 / 60)
    assert result["minutes_for_10k_with_first_step"] == pytest.approx(result["minutes_for_10k_iterations"] + result["first_step_seconds"] / 60)
    assert result["meets_target"] == (result["minutes_for_10k_with_first_step"] <= result["target_minutes_for_10k"] == 10.0)
    assert result["peak_memory_mb"] > 0
