"""Test-wide settings: offline, deterministic, small thread pool (CI has 2 cores)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A tiny random Stable Diffusion pipeline saved as a diffusers folder (tests/tiny_sd.py), built once."""
    from tiny_sd import build_tiny_sd_pipeline

    folder = tmp_path_factory.mktemp("tiny_sd")
    build_tiny_sd_pipeline(seed=0, tokenizer_cache=str(tmp_path_factory.mktemp("tokenizer"))).save_pretrained(
        folder, safe_serialization=True)
    return str(folder)
