"""`dreamtext bench sds`: the quick run's figures, and the full-size prior's architecture counted on the meta device."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from dreamtext.bench.sds import build_random_sd21_base, parameter_count
from dreamtext.cli.main import main


def test_quick_sds_benchmark_prints_both_presets(capsys):
    assert main(["bench", "sds", "--json", "--quick", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["suite"] == "sds" and result["quick"] is True and result["device"] == "cpu"
    assert result["dtype"] == "float32" and result["torch"] == torch.__version__
    assert result["iterations_measured"] >= 1
    rows = {row["preset"]: row for row in result["presets"]}
    assert set(rows) == {"dreamfusion", "fitfusion"}
    # The quick mode keeps the presets' order of render sizes (64 < 256) at toy scale.
    assert rows["dreamfusion"]["render_size"] < rows["fitfusion"]["render_size"]
    for row in rows.values():
        assert row["iterations_per_second"] > 0
        assert row["iterations_per_second"] == pytest.approx(1 / row["step_seconds"])
        # The prior alone is part of a training step, so it cannot take longer than the whole step.
        # No timing relation is asserted (prior alone <= whole step holds on an idle machine only).
        assert row["prior_seconds"] > 0
        assert row["overhead_fraction"] == pytest.approx(1 - row["prior_seconds"] / row["step_seconds"])
        assert row["overhead_fraction"] < 1
        assert row["peak_memory_mb"] > 0
        assert row["skipped_steps"] == 0 and row["prior_dtype"] == "float32"


def test_full_size_prior_has_sd21_base_parameter_counts_on_meta_device():
    prior = build_random_sd21_base(torch.device("meta"))
    assert all(p.is_meta for p in prior.unet.parameters())  # nothing was allocated
    # REFERENCE.md 4: UNet 866M, VAE 84M, text encoder 340M parameters.
    assert parameter_count(prior.unet) == pytest.approx(866e6, rel=0.01)
    assert parameter_count(prior.vae) == pytest.approx(84e6, rel=0.01)
    assert parameter_count(prior.text_encoder) == pytest.approx(340e6, rel=0.01)
    # SD 2.1-base: 64x64 latents of 512 px images, 1024-wide text embeddings, "!" padding to 77 tokens.
    assert prior.latent_size == 64 and prior.image_size == 512
    assert prior.unet.config.cross_attention_dim == prior.text_encoder.config.hidden_size == 1024
    assert prior.tokenizer.pad_token == "!" and prior.tokenizer.model_max_length == 77
    assert prior.scheduler.config.prediction_type == "epsilon" and prior.num_train_timesteps == 1000
    assert prior.vae.config.scaling_factor == pytest.approx(0.18215)
