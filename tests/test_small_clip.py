"""The small CLIP: a stock CLIPModel whose text tower serves as Stable Diffusion's text encoder, that
learns the world's words from renders and saves as fp16 safetensors of the expected size."""

from __future__ import annotations

import math

import pytest
import torch

from dreamtext.prior.small.clip import (
    EOS_TOKEN_ID,
    WILDCARD,
    SmallClipConfig,
    build_small_clip,
    caption_from_words,
    encode_texts,
    fill_pool,
    parameter_count,
    rank_captions,
    soft_contrastive_loss,
    train_small_clip,
    truth_matrix,
)
from dreamtext.prior.tokenizer import build_clip_tokenizer

# Tiny but the same kind of model: 32 px renders, two layers per tower.
TINY = SmallClipConfig(
    text_hidden=32, text_layers=2, text_heads=2, text_mlp=128, projection_dim=64,
    image_size=32, patch_size=8, vision_hidden=64, vision_layers=2, vision_heads=2, vision_mlp=256,
    batch_size=32, lr=2e-3, warmup_steps=5, pool_size=96, renders_per_step=0, seed=3,
)
STEPS = 120


@pytest.fixture(scope="module")
def tokenizer():
    return build_clip_tokenizer()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run on a fixed pool of train renders, saved; shared by the tests below."""
    torch.manual_seed(0)
    pool = fill_pool(TINY, "cpu")
    images, words = pool.images.clone(), pool.words.clone()
    out = tmp_path_factory.mktemp("clip") / "small_clip"
    metrics = train_small_clip(TINY, out, progress=False, steps=STEPS, pool=pool, curve_every=20)
    return metrics, out, images, words


def test_text_config_matches_the_clip_tokenizer(tokenizer):
    text = build_small_clip(TINY).config.text_config
    assert (text.vocab_size, text.max_position_embeddings) == (len(tokenizer), 77)
    assert text.bos_token_id == tokenizer.bos_token_id == 49406
    assert text.eos_token_id == tokenizer.eos_token_id == EOS_TOKEN_ID == 49407
    assert text.pad_token_id == tokenizer.pad_token_id


def test_truth_matrix_and_soft_loss_closed_forms():
    image_words = torch.tensor([[0, 1, 0, 0, 2], [0, 1, 0, 0, 3], [5, 2, 1, 0, 2]])
    caption_words = image_words.clone()
    caption_words[0, 4] = WILDCARD  # "a red cube": true of images 0 and 1
    caption_words[2, 0] = caption_words[2, 2] = caption_words[2, 3] = caption_words[2, 4] = WILDCARD  # colour only
    truth = truth_matrix(caption_words, image_words)
    assert truth.tolist() == [[True, True, False], [False, True, False], [False, False, True]]
    assert caption_from_words(caption_words[2].tolist()).endswith("object")
    # Uniform logits: each row's cross entropy is log(row length) whatever the targets.
    assert soft_contrastive_loss(torch.zeros(3, 3), truth).item() == pytest.approx(math.log(3))
    # Perfectly confident on the true pairs only: loss -> mean over rows of log(number of true pairs).
    logits = torch.where(truth.T, 0.0, -1e4)
    expected = (math.log(2) / 3 + (math.log(1) + math.log(2) + math.log(1)) / 3) / 2
    assert soft_contrastive_loss(logits, truth).item() == pytest.approx(expected, abs=1e-4)


def test_training_lowers_the_contrastive_loss(trained):
    metrics = trained[0]
    assert metrics["loss_first"] > 0.8 * math.log(TINY.batch_size)  # starts near chance
    assert metrics["loss_last"] < 0.7 * metrics["loss_first"]
    assert metrics["loss_curve"][-1][0] == STEPS


def test_saved_folder_reloads_offline_and_text_tower_serves_as_clip_text_model(trained, tokenizer):
    from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

    _, out, _, _ = trained
    model = CLIPModel.from_pretrained(out, local_files_only=True, dtype=torch.float32).eval()
    text_model = CLIPTextModel.from_pretrained(out, local_files_only=True, dtype=torch.float32).eval()
    saved_tokenizer = CLIPTokenizer.from_pretrained(out, local_files_only=True)
    prompts = ["a red mug", "a small striped blue cube, side view"]
    ids = saved_tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert torch.equal(ids, tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids)
    with torch.no_grad():
        tower = text_model(input_ids=ids)
        inside = model.text_model(input_ids=ids)
    torch.testing.assert_close(tower.last_hidden_state, inside.last_hidden_state)
    torch.testing.assert_close(tower.pooler_output, inside.pooler_output)
    # The reload holds the trained weights (fp16-rounded).
    original = trained[0]["model"].text_model.embeddings.token_embedding.weight
    reloaded = model.text_model.embeddings.token_embedding.weight
    torch.testing.assert_close(reloaded, original.half().float())


def test_fp16_file_size_is_two_bytes_per_parameter(trained):
    metrics, out, _, _ = trained
    size = (out / "model.safetensors").stat().st_size
    assert metrics["parameters"] == parameter_count(metrics["model"])
    assert abs(size - 2 * metrics["parameters"]) < 0.05 * 2 * metrics["parameters"]


def test_default_model_stays_small():
    with torch.device("meta"):
        count = parameter_count(build_small_clip(SmallClipConfig()))
    assert 2 * count < 9e6  # fp16 bytes: the shipped prior's budget is 30 MB in all


def test_trained_model_ranks_true_captions_above_chance(trained, tokenizer):
    metrics, _, images, words = trained
    model = metrics["model"]
    captions = [caption_from_words(row) for row in words.tolist()]
    # Score each image against its own caption and 15 others of different words (16-way choice).
    scores = rank_captions(model, tokenizer, images, captions)
    truth = truth_matrix(words, words).T  # a caption identical in words is not a wrong one
    wins = []
    for row in range(len(captions)):
        wrong = (~truth[row]).nonzero().flatten()[:15]
        wins.append(bool((scores[row, row] > scores[row, wrong]).all()))
    top1 = sum(wins) / len(wins)
    assert top1 > 3 * (1 / 16), top1
    # The embeddings are unit vectors, so scores are cosines.
    assert scores.abs().max() <= 1 + 1e-5
    assert torch.allclose(encode_texts(model, tokenizer, captions[:2]).norm(dim=-1), torch.ones(2), atol=1e-5)
