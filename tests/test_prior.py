"""The 2D prior: offline CLIP tokenizer, loading, view prompts, schedules and the SDS gradient.

Everything runs on a tiny random Stable Diffusion pipeline (tests/tiny_sd.py), offline.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from dreamtext.errors import DreamtextError
from dreamtext.prior import (
    AnnealedTimesteps,
    ConstantValue,
    CosineTimesteps,
    CosineValue,
    ExponentialValue,
    LinearTimesteps,
    LinearValue,
    Prior,
    PromptConfig,
    PromptEmbeddings,
    SDSConfig,
    ScoreDistillation,
    TextEmbeddingCache,
    UniformTimesteps,
    load_prior,
    sds_weight,
    view_prompt,
)
from dreamtext.prior import loading, tokenizer as tokenizer_module
from dreamtext.prior.tokenizer import build_clip_tokenizer, find_bpe_vocabulary
from dreamtext.scene.cameras import VIEW_LABELS, view_label_ids

from tiny_sd import build_tiny_sd_pipeline, to_original_sd_layout


@pytest.fixture(scope="module")
def tokenizer_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tokenizer_cache")


@pytest.fixture(scope="module")
def pipeline(tokenizer_cache):
    return build_tiny_sd_pipeline(tokenizer_cache=str(tokenizer_cache))


@pytest.fixture()
def prior(pipeline) -> Prior:
    return Prior.from_pipeline(pipeline)


def _images(batch: int = 2, size: int = 24, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator).requires_grad_(True)


def _embeddings(prior: Prior, prompts: list[str]) -> torch.Tensor:
    return TextEmbeddingCache(prior).encode(prompts)


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def test_tokenizer_gives_clip_ids_offline(tokenizer_cache, monkeypatch):
    tokenizer = build_clip_tokenizer(tokenizer_cache)  # from the vocabulary the built-in prior ships
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tokenizer) == 49408
    padded = tokenizer("a cat", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(padded) == 77 and padded[:4] == [49406, 320, 2368, 49407] and set(padded[4:]) == {49407}
    # Without the shipped pair, from open_clip's BPE file into a cache: exactly the two files, no staging
    # leftovers, reused as is, and the same pair as the shipped one.
    shipped = tokenizer_module.shipped_vocabulary_folder()
    monkeypatch.setattr(tokenizer_module, "shipped_vocabulary_folder", lambda: None)
    assert build_clip_tokenizer(tokenizer_cache)("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    folder = tokenizer_cache / tokenizer_module.CACHE_SUBFOLDER
    assert sorted(p.name for p in folder.iterdir()) == ["merges.txt", "vocab.json"]
    assert [p.name for p in tokenizer_cache.iterdir()] == [tokenizer_module.CACHE_SUBFOLDER]
    mtime = (folder / "vocab.json").stat().st_mtime_ns
    build_clip_tokenizer(tokenizer_cache)
    assert (folder / "vocab.json").stat().st_mtime_ns == mtime
    for name in ("vocab.json", "merges.txt"):
        assert (folder / name).read_bytes() == (shipped / name).read_bytes()


def test_tokenizer_matches_open_clip_reference(tokenizer_cache):
    """Same ids as open_clip's own BPE tokenizer (loaded from its file: importing open_clip needs torchvision)."""
    source = find_bpe_vocabulary().parent / "tokenizer.py"
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer_reference", source)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        reference = module.SimpleTokenizer()
    except Exception as error:  # its imports may change between open_clip versions
        pytest.skip(f"open_clip's tokenizer module cannot be loaded alone: {error}")
    tokenizer = build_clip_tokenizer(tokenizer_cache)
    for text in ["Hello, world! café naïve 🐱", "a DSLR photo of an astronaut riding a horse, front view", "x  y\tz 12345"]:
        assert tokenizer(text).input_ids[1:-1] == reference.encode(text)


# ---------------------------------------------------------------------------------------------
# SDS gradient
# ---------------------------------------------------------------------------------------------


def _expected_sds_grad(prior: Prior, latents, cond, uncond, scale, formula, weighting, seed, batch):
    """w(t) (eps_hat - eps) / B recomputed from the same draws, with the scheduler's own add_noise."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.randint(20, 981, (batch,), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    noisy = prior.scheduler.add_noise(latents.detach(), noise, t)
    with torch.no_grad():  # batched like the loss so the comparison is not blurred by kernel rounding
        eps = prior.unet(torch.cat([noisy, noisy]), torch.cat([t, t]), encoder_hidden_states=torch.cat([cond, uncond]))
    eps_cond, eps_uncond = eps.sample.chunk(2)
    base = eps_uncond if formula == "standard" else eps_cond
    eps_hat = base + scale * (eps_cond - eps_uncond)
    alphabar = prior.scheduler.alphas_cumprod[t]
    weight = sds_weight(alphabar, weighting).view(-1, 1, 1, 1)
    return weight * (eps_hat - noise) / batch, weight * (eps_cond - eps_uncond) / batch, t


def _run_sds(prior: Prior, config: SDSConfig, images, cond, uncond, seed, progress=0.3):
    """Loss, info and the gradient that reached the latents."""
    sds = ScoreDistillation(prior, config)
    captured = {}
    encode = sds.encode

    def capturing_encode(images, generator=None):
        latents = encode(images, generator)
        latents.retain_grad()
        captured["latents"] = latents
        return latents

    sds.encode = capturing_encode
    loss, info = sds.loss(images, cond, uncond, progress, torch.Generator().manual_seed(seed))
    loss.backward()
    return loss, info, captured["latents"]


@pytest.mark.parametrize("weighting", ["1-alphabar", "sqrt_alphabar_1m"])
def test_latent_gradient_is_weighted_noise_residual_for_both_cfg_formulas(prior, weighting):
    cond = _embeddings(prior, ["a cat, front view", "a cat, back view"])
    uncond = _embeddings(prior, [""])
    grads = {}
    for formula in ("standard", "sdf_2023"):
        config = SDSConfig(guidance=7.5, cfg_formula=formula, weighting=weighting, sample_posterior=False)
        images = _images()
        loss, info, latents = _run_sds(prior, config, images, cond, uncond, seed=5)
        expected, difference, t = _expected_sds_grad(
            prior, latents, cond, uncond.expand(2, -1, -1), 7.5, formula, weighting, seed=5, batch=2
        )
        assert torch.equal(info.timesteps, t)
        torch.testing.assert_close(latents.grad, expected, rtol=1e-5, atol=1e-7)
        # The loss is the target-MSE form: 0.5 ||grad||^2 / B.
        torch.testing.assert_close(loss, 0.5 * (info.grad**2).sum() / 2)
        assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
        grads[formula] = latents.grad
    # stable-dreamfusion's form is the standard one with s + 1: the gradients differ by w(t)(cond - uncond).
    torch.testing.assert_close(grads["sdf_2023"] - grads["standard"], difference, rtol=1e-4, atol=1e-6)
    assert difference.abs().max() > 1e-4


def test_several_noise_draws_average_their_residuals(prior):
    cond = _embeddings(prior, ["a cat, front view", "a cat, back view"])
    uncond = _embeddings(prior, [""])
    config = SDSConfig(guidance=7.5, cfg_formula="sdf_2023", sample_posterior=False, noise_samples=3)
    loss, info, latents = _run_sds(prior, config, _images(), cond, uncond, seed=5)
    # The same draws by hand: 3 x 2 timesteps, then noise for the 3 x 2 copies (draw k of render b at 2k + b).
    generator = torch.Generator().manual_seed(5)
    t = torch.randint(20, 981, (6,), generator=generator)
    noise = torch.randn((6, *latents.shape[1:]), generator=generator)
    assert torch.equal(info.timesteps, t) and len(set(t.tolist())) > 2
    noisy = prior.scheduler.add_noise(latents.detach().repeat(3, 1, 1, 1), noise, t)
    with torch.no_grad():
        eps = prior.unet(torch.cat([noisy, noisy]), torch.cat([t, t]),
                         encoder_hidden_states=torch.cat([cond.repeat(3, 1, 1), uncond.expand(6, -1, -1)])).sample
    eps_cond, eps_uncond = eps.chunk(2)
    weight = sds_weight(prior.scheduler.alphas_cumprod[t], "1-alphabar").view(-1, 1, 1, 1)
    residuals = weight * (eps_cond + 7.5 * (eps_cond - eps_uncond) - noise)  # [6, ...]
    expected = residuals.view(3, 2, *latents.shape[1:]).mean(dim=0) / 2
    torch.testing.assert_close(latents.grad, expected, rtol=1e-5, atol=1e-7)
    assert info.grad.shape == latents.shape and info.weight.shape == (6,)
    with pytest.raises(DreamtextError, match="noise_samples"):
        SDSConfig(noise_samples=0)


def test_no_gradient_reaches_the_frozen_prior(prior):
    cond = _embeddings(prior, ["a cat"])
    _run_sds(prior, SDSConfig(), _images(batch=1), cond, _embeddings(prior, [""]), seed=0)
    for module in (prior.unet, prior.vae, prior.text_encoder):
        assert all(not p.requires_grad and p.grad is None for p in module.parameters())


def test_gradient_clamp_and_weightings(prior):
    cond, uncond = _embeddings(prior, ["a cat"]), _embeddings(prior, [""])
    base = dict(guidance=100.0, sample_posterior=False)
    _, free_info, free = _run_sds(prior, SDSConfig(**base), _images(batch=1), cond, uncond, seed=3)
    bound = 0.05
    assert free.grad.abs().max() > bound  # the clamp below is active
    _, _, clamped = _run_sds(prior, SDSConfig(**base, grad_clamp=bound), _images(batch=1), cond, uncond, seed=3)
    torch.testing.assert_close(clamped.grad, free.grad.clamp(-bound, bound))
    # Weightings only rescale the same residual: uniform / (1 - alphabar) = 1 / (1 - alphabar_t).
    _, _, uniform = _run_sds(prior, SDSConfig(**base, weighting="uniform"), _images(batch=1), cond, uncond, seed=3)
    alphabar = prior.scheduler.alphas_cumprod[free_info.timesteps]
    torch.testing.assert_close(free.grad, uniform.grad * (1 - alphabar), rtol=1e-5, atol=1e-7)
    a = torch.tensor([0.0, 0.25, 1.0])
    torch.testing.assert_close(sds_weight(a, "1-alphabar"), torch.tensor([1.0, 0.75, 0.0]))
    torch.testing.assert_close(sds_weight(a, "sqrt_alphabar_1m"), torch.tensor([0.0, 0.375, 0.0]))
    torch.testing.assert_close(sds_weight(a, "sqrt_1m_alphabar"), torch.tensor([1.0, math.sqrt(0.75), 0.0]))
    torch.testing.assert_close(sds_weight(a, "uniform"), torch.ones(3))


def test_non_finite_noise_prediction_gives_a_zero_gradient(prior):
    sds = ScoreDistillation(prior, SDSConfig())
    sds.predict_noises = lambda noisy, *args: [torch.full_like(noisy, float("nan")), torch.full_like(noisy, float("inf"))]
    images = _images(batch=1)
    loss, info = sds.loss(images, _embeddings(prior, ["a cat"]), _embeddings(prior, [""]), 0.0)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(images.grad, torch.zeros_like(images))


def test_latent_mode_uses_the_render_as_latents(prior):
    config = SDSConfig(latent_mode=True)
    renders = torch.rand(2, 4, 16, 16, requires_grad=True)
    cond = _embeddings(prior, ["a cat", "a dog"])
    loss, info, latents = _run_sds(prior, config, renders, cond, _embeddings(prior, [""]), seed=2)
    assert latents.shape == (2, 4, prior.latent_size, prior.latent_size)
    torch.testing.assert_close(latents, torch.nn.functional.interpolate(renders, (8, 8), mode="bilinear") * 2 - 1)
    assert renders.grad is not None and renders.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        ScoreDistillation(prior, config).loss(torch.rand(1, 3, 16, 16), cond[:1], cond[:1], 0.0)


def test_renders_are_resized_to_the_prior_input(prior):
    sds = ScoreDistillation(prior, SDSConfig(sample_posterior=False))
    assert prior.image_size == 16 and prior.latent_size == 8
    for size in (8, 40):
        assert sds.encode(torch.rand(1, 3, size, size)).shape == (1, 4, 8, 8)


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------


def test_timestep_schedules_at_documented_progress():
    linear, cosine = LinearTimesteps(), CosineTimesteps()
    for schedule in (linear, cosine):
        assert [schedule(p).item() for p in (0.0, 0.5, 1.0)] == [980, 500, 20]
    assert linear(0.25).item() == 740
    assert cosine(0.25).item() == round((0.98 - 0.96 * (1 - math.cos(math.pi / 4)) / 2) * 1000)  # 839
    assert linear(0.5, batch=3).tolist() == [500, 500, 500]
    uniform = UniformTimesteps()
    draws = uniform(0.7, torch.Generator().manual_seed(0), batch=20000)
    assert draws.min().item() == 20 and draws.max().item() == 980 and draws.dtype == torch.long
    again = uniform(0.0, torch.Generator().manual_seed(0), batch=20000)
    assert torch.equal(draws, again)  # progress does not change the uniform draw
    assert UniformTimesteps(0.1, 0.2)(0.0, batch=500, num_train_timesteps=500).max().item() <= 100
    with pytest.raises(ValueError):
        linear(1.5)


def test_annealed_timesteps_draw_uniformly_below_a_falling_upper_bound():
    annealed = AnnealedTimesteps(0.02, 0.98, 0.5)
    for progress, upper in ((0.0, 980), (0.5, 740), (1.0, 500)):
        draws = annealed(progress, torch.Generator().manual_seed(0), batch=20000)
        assert draws.min().item() == 20 and draws.max().item() == upper and draws.dtype == torch.long
        assert abs(draws.float().mean().item() - (20 + upper) / 2) < 5  # uniform: the mean is the midpoint
    assert AnnealedTimesteps(0.3, 0.98, 0.1)(1.0, batch=50).eq(300).all()  # an end below t_min pins t there
    with pytest.raises(ValueError):
        annealed(-0.1)


def test_scalar_schedules_at_documented_progress():
    assert [ConstantValue(100.0)(p) for p in (0.0, 0.5, 1.0)] == [100.0, 100.0, 100.0]
    assert [LinearValue(2.0, 8.0)(p) for p in (0.0, 0.5, 1.0)] == [2.0, 5.0, 8.0]
    cosine = CosineValue(100.0, 1000.0)
    assert [round(cosine(p), 9) for p in (0.0, 0.5, 1.0)] == [100.0, 550.0, 1000.0]
    assert cosine(0.25) == pytest.approx(100 + 900 * (1 - math.cos(math.pi / 4)) / 2)
    tenfold = ExponentialValue(1.0, 0.1)
    assert [tenfold(p) for p in (0.0, 0.5, 1.0)] == pytest.approx([1.0, 0.1**0.5, 0.1])
    with pytest.raises(ValueError, match="positive"):
        ExponentialValue(1.0, 0.0)


def test_sds_follows_the_guidance_schedule(prior):
    config = SDSConfig(guidance=10.0, guidance_end=30.0, guidance_schedule="linear", t_schedule="linear")
    sds = ScoreDistillation(prior, config)
    cond, uncond = _embeddings(prior, ["a cat"]), _embeddings(prior, [""])
    _, info = sds.loss(_images(batch=1), cond, uncond, 0.5)
    assert info.guidance_scale == 20.0 and info.timesteps.tolist() == [500]


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------


def test_view_suffixes_at_threshold_angles(prior):
    cases = [  # (polar, azimuth, label) on both sides of each thesis threshold
        (29.9, 0.0, "overhead"), (30.0, 0.0, "front"), (149.9, 0.0, "front"), (150.0, 0.0, "bottom"),
        (90.0, 59.9, "front"), (90.0, 60.0, "side"), (90.0, 179.9, "side"), (90.0, 180.0, "back"),
        (90.0, 239.9, "back"), (90.0, 240.0, "side"), (90.0, 359.9, "side"), (10.0, 180.0, "overhead"),
    ]
    polar = torch.tensor([c[0] for c in cases])
    azimuth = torch.tensor([c[1] for c in cases])
    ids = view_label_ids(polar, azimuth)
    assert [VIEW_LABELS[i] for i in ids.tolist()] == [c[2] for c in cases]
    assert view_prompt("a cat", "front") == "a cat, front view"
    assert view_prompt("a cat", "overhead") == "a cat, overhead view"
    embeddings = PromptEmbeddings(prior, PromptConfig("a cat", negative_prompt="blurry"))
    expected = _embeddings(prior, [f"a cat, {c[2]} view" for c in cases])
    torch.testing.assert_close(embeddings.conditional(ids), expected)
    torch.testing.assert_close(embeddings.unconditional(3), _embeddings(prior, ["blurry"] * 3))
    plain = PromptEmbeddings(prior, PromptConfig("a cat", view_dependent=False))
    torch.testing.assert_close(plain.conditional(ids[:2]), _embeddings(prior, ["a cat", "a cat"]))


def _count_encoded_prompts(prior: Prior) -> list[int]:
    batches: list[int] = []
    prior.text_encoder.register_forward_hook(lambda module, args, output: batches.append(args[0].shape[0]))
    return batches


def test_embeddings_are_computed_once_per_prompt_and_encoder_can_be_freed(tokenizer_cache):
    prior = Prior.from_pipeline(build_tiny_sd_pipeline(tokenizer_cache=str(tokenizer_cache)))
    batches = _count_encoded_prompts(prior)
    cache = TextEmbeddingCache(prior)
    first = cache.encode(["a cat", "a dog", "a cat"])
    second = cache.encode(["a dog", "a cow", "a cat", "a cow"])
    assert batches == [2, 1] and len(cache) == 3
    torch.testing.assert_close(first[0], second[2])
    torch.testing.assert_close(first[0], first[2])

    batches.clear()
    embeddings = PromptEmbeddings(prior, PromptConfig("a cat"), free_encoder=True)
    assert batches == [len(VIEW_LABELS) + 1]  # five views and the negative prompt, in one call
    assert prior.text_encoder is None
    assert embeddings.conditional(torch.tensor([0, 4, 0])).shape == (3, 77, 32)
    with pytest.raises(DreamtextError, match="freed"):
        embeddings.cache.encode(["a horse"])
    with pytest.raises(DreamtextError, match="empty"):
        PromptEmbeddings(prior, PromptConfig("   "))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def test_save_pretrained_round_trip_gives_identical_outputs(pipeline, prior, tmp_path):
    pipeline.save_pretrained(tmp_path / "tiny-sd", safe_serialization=True)
    assert not list((tmp_path / "tiny-sd").rglob("*.bin"))
    loaded = load_prior(tmp_path / "tiny-sd", device="cpu", dtype=torch.float16)
    assert loaded.dtype == torch.float32  # CPU always runs the prior in fp32
    assert type(loaded.scheduler) is type(prior.scheduler)
    cond_a, uncond_a = _embeddings(prior, ["a cat"]), _embeddings(prior, [""])
    cond_b, uncond_b = _embeddings(loaded, ["a cat"]), _embeddings(loaded, [""])
    assert torch.equal(cond_a, cond_b) and torch.equal(uncond_a, uncond_b)
    loss_a, info_a = ScoreDistillation(prior).loss(_images(), cond_a.expand(2, -1, -1), uncond_a, 0.4, torch.Generator().manual_seed(9))
    loss_b, info_b = ScoreDistillation(loaded).loss(_images(), cond_b.expand(2, -1, -1), uncond_b, 0.4, torch.Generator().manual_seed(9))
    assert torch.equal(loss_a, loss_b) and torch.equal(info_a.grad, info_b.grad)


def test_single_safetensors_file_loads_with_offline_configs(pipeline, prior, tmp_path):
    from safetensors.torch import save_file

    pipeline.save_pretrained(tmp_path / "configs", safe_serialization=True)
    checkpoint = tmp_path / "tiny-sd.safetensors"
    save_file({k: v.contiguous() for k, v in to_original_sd_layout(pipeline).items()}, str(checkpoint))
    loaded = load_prior(checkpoint, config=tmp_path / "configs")
    for ours, theirs in ((prior.unet, loaded.unet), (prior.vae, loaded.vae), (prior.text_encoder, loaded.text_encoder)):
        a, b = ours.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k].reshape(a[k].shape)) for k in a)
    cond, uncond = _embeddings(prior, ["a cat"]), _embeddings(prior, [""])
    loss_a, _ = ScoreDistillation(prior).loss(_images(), cond.expand(2, -1, -1), uncond, 0.2, torch.Generator().manual_seed(4))
    loss_b, _ = ScoreDistillation(loaded).loss(_images(), cond.expand(2, -1, -1), uncond, 0.2, torch.Generator().manual_seed(4))
    assert torch.equal(loss_a, loss_b)
    # Without configs they would have to be downloaded: a one-line error instead.
    with pytest.raises(DreamtextError, match="configs offline: pass --model-config") as raised:
        load_prior(checkpoint)
    assert "\n" not in str(raised.value)


def test_bad_model_and_missing_model_give_one_line_errors(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    (tmp_path / "weights.ckpt").write_bytes(b"not loaded")
    (tmp_path / "notes.txt").write_text("x")
    cases = {
        str(tmp_path / "missing"): "does not exist",
        str(tmp_path / "missing.safetensors"): "does not exist",
        str(tmp_path / "empty"): "model_index.json",
        str(tmp_path / "weights.ckpt"): "pickle",
        str(tmp_path / "notes.txt"): "safetensors",
        "nobody/no-such-model": "local cache only: dreamtext never downloads",
    }
    broken = tmp_path / "broken"  # a pipeline folder without its unet, and one with a cut-short weights file
    build_tiny_sd_pipeline().save_pretrained(broken, safe_serialization=True)
    cut = tmp_path / "cut"
    __import__("shutil").copytree(broken, cut)
    weights = next((cut / "vae").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:4096])
    __import__("shutil").rmtree(broken / "unet")
    cases[str(broken)] = "has no unet/ folder although model_index.json names it"
    cases[str(cut)] = "not a readable .safetensors file"
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 4096)
    cases[str(corrupt)] = "not a readable .safetensors file"
    for model, fragment in cases.items():
        with pytest.raises(DreamtextError, match=fragment) as raised:
            load_prior(model)
        assert "\n" not in str(raised.value)
    assert not loading.is_cached_hub_model("nobody/no-such-model")
    monkeypatch.setattr(loading, "is_cached_hub_model", lambda repo_id: False)
    from dreamtext.prior import builtin

    monkeypatch.setattr(builtin, "BUILTIN_PIPELINE_DIR", tmp_path / "missing" / "pipeline")
    with pytest.raises(DreamtextError, match="the built-in prior is not installed"):
        load_prior(None)


def test_no_model_named_loads_the_builtin_prior(monkeypatch):
    """With no model named and none cached, the shipped small prior loads (issue 3 item 1 / issue 4)."""
    from dreamtext.prior import loading
    from dreamtext.prior.builtin import BUILTIN_PIPELINE_DIR

    monkeypatch.setattr(loading, "is_cached_hub_model", lambda repo_id: False)
    assert loading.resolve_model(None) == str(BUILTIN_PIPELINE_DIR) == loading.resolve_model("builtin")
    assert loading.is_builtin_model(None)
    prior = load_prior(None)
    assert prior.image_size == 64 and prior.latent_size == 16
    assert prior.unet.config.cross_attention_dim == prior.text_encoder.config.hidden_size


def test_a_prompt_too_long_for_its_view_suffix_is_refused_with_its_token_count(prior, capsys):
    """Issue 32: a 2000-character prompt was cut to 77 tokens, so all five view prompts became the same."""
    long = "a red mug " * 40
    with pytest.raises(DreamtextError, match=r"is 1?\d\d tokens but the text encoder reads 77") as raised:
        PromptEmbeddings(prior, PromptConfig(prompt=long))
    assert "\n" not in str(raised.value)
    PromptEmbeddings(prior, PromptConfig(prompt=long, view_dependent=False))  # no view to lose: a warning
    assert "tokens; the text encoder reads the first 77" in capsys.readouterr().err
    PromptEmbeddings(prior, PromptConfig(prompt="a red mug " * 10))  # fits
