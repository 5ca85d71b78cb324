"""The small Stable Diffusion-format prior: training lowers its losses, the pipeline loads like a real one."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dreamtext.prior.builtin import BUILTIN_PIPELINE_DIR
from dreamtext.prior.small.diffusion import (
    SmallUnetConfig,
    SmallVaeConfig,
    build_small_unet,
    build_small_vae,
    build_training_scheduler,
    diffusion_loss,
    distillation_loss,
    vae_loss,
)
from dreamtext.prior.small.render_pool import PoolSpec, WorldRenderPool, render_world_pool
from dreamtext.prior.small.assemble import assemble_pipeline, load_clip_text_encoder, safetensors_bytes
from dreamtext.prior.small.train import (
    UnetTrainConfig,
    VaeTrainConfig,
    load_frozen_vae,
    train_small_unet,
    train_small_vae,
    training_inputs,
)

TINY_VAE = SmallVaeConfig(image_size=16, block_out_channels=(8, 16, 16), norm_num_groups=8)
TINY_UNET = SmallUnetConfig(sample_size=4, block_out_channels=(16, 32, 32), attention_head_dim=8, norm_num_groups=8)
TEXT_HIDDEN = 32


@pytest.fixture(scope="module")
def pool() -> WorldRenderPool:
    return render_world_pool(PoolSpec(8, seed=3, resolution=16, supersample=1), workers=1, progress=False)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny random transformers CLIPModel saved as the CLIP stage would save it."""
    from transformers import CLIPConfig, CLIPModel

    tower = dict(hidden_size=TEXT_HIDDEN, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(
        text_config=dict(tower, vocab_size=49408, max_position_embeddings=77),
        vision_config=dict(tower, image_size=16, patch_size=8),
        projection_dim=16,
    ))
    folder = tmp_path_factory.mktemp("clip")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory, pool):
    folder = tmp_path_factory.mktemp("stages") / "vae"
    train_small_vae(TINY_VAE, folder, "cpu", progress=False, steps=3, seed=0,
                    train=VaeTrainConfig(batch_size=4, lr=2e-3), pool=pool)
    return folder


def test_vae_training_lowers_reconstruction_and_stores_latent_scale(tmp_path, pool):
    images = pool.images.float() / 255

    def evaluate(vae) -> float:
        with torch.no_grad():
            return float(vae_loss(vae, images, TINY_VAE.kl_weight, torch.Generator().manual_seed(7))[1])

    torch.manual_seed(0)  # the initialisation train_small_vae starts from with seed 0
    before = evaluate(build_small_vae(TINY_VAE).eval())
    result = train_small_vae(TINY_VAE, tmp_path / "vae", "cpu", progress=False, steps=15, seed=0,
                             train=VaeTrainConfig(batch_size=4, lr=2e-3), pool=pool)
    vae = load_frozen_vae(tmp_path / "vae", torch.device("cpu"))
    after = evaluate(vae)
    assert after < 0.7 * before, (before, after)
    # The stored scale makes the latents unit-variance (SD's 0.18215 rule), up to posterior-sampling noise.
    assert vae.config.scaling_factor == pytest.approx(result["scaling_factor"])
    with torch.no_grad():
        latents = vae.encode(images * 2 - 1).latent_dist.sample(torch.Generator().manual_seed(1))
    assert float((latents * vae.config.scaling_factor).std()) == pytest.approx(1.0, abs=0.1)
    assert latents.shape[-1] == TINY_VAE.latent_size == 4


def test_vae_training_is_reproducible_by_seed(tmp_path, pool):
    def run(name: str, seed: int) -> dict[str, torch.Tensor]:
        train_small_vae(TINY_VAE, tmp_path / name, "cpu", progress=False, steps=2, seed=seed,
                        train=VaeTrainConfig(batch_size=2), pool=pool)
        return load_frozen_vae(tmp_path / name, torch.device("cpu")).state_dict()

    first, again, other = run("a", 5), run("b", 5), run("c", 6)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_unet_training_lowers_diffusion_loss(tmp_path, pool, vae_dir, clip_dir):
    from dreamtext.prior.small.assemble import build_prior_tokenizer

    vae = load_frozen_vae(vae_dir, torch.device("cpu"))
    text_encoder = load_clip_text_encoder(clip_dir)
    tokenizer = build_prior_tokenizer(text_encoder)
    images = pool.images.float() / 255
    latents, embeddings = training_inputs(vae, text_encoder, tokenizer, images, pool.captions(),
                                          torch.Generator().manual_seed(0))
    latents, embeddings = latents.repeat(4, 1, 1, 1), embeddings.repeat(4, 1, 1)  # more noise levels per evaluation
    scheduler = build_training_scheduler()

    def evaluate(unet) -> float:
        with torch.no_grad():
            return float(diffusion_loss(unet, scheduler, latents, embeddings, torch.Generator().manual_seed(11)))

    torch.manual_seed(0)
    before = evaluate(build_small_unet(TINY_UNET, TEXT_HIDDEN).eval())
    result = train_small_unet(TINY_UNET, tmp_path / "unet", vae_dir, clip_dir, "cpu", progress=False, steps=20,
                              seed=0, train=UnetTrainConfig(batch_size=8, lr=2e-3), pool=pool)
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tmp_path / "unet", use_safetensors=True).eval()
    after = evaluate(unet)
    assert after < 0.8 * before, (before, after, result)
    assert unet.config.cross_attention_dim == TEXT_HIDDEN


def test_distillation_targets_the_teachers_plain_and_guided_predictions(pool, vae_dir, clip_dir):
    from dreamtext.prior.small.assemble import build_prior_tokenizer
    from dreamtext.prior.small.diffusion import encode_captions

    vae = load_frozen_vae(vae_dir, torch.device("cpu"))
    text_encoder = load_clip_text_encoder(clip_dir)
    tokenizer = build_prior_tokenizer(text_encoder)
    latents, embeddings = training_inputs(vae, text_encoder, tokenizer, pool.images.float() / 255, pool.captions(),
                                          torch.Generator().manual_seed(0))
    unconditional = encode_captions(text_encoder, tokenizer, [""])
    scheduler = build_training_scheduler()
    torch.manual_seed(0)
    student, teacher = build_small_unet(TINY_UNET, TEXT_HIDDEN).eval(), build_small_unet(TINY_UNET, TEXT_HIDDEN).eval()
    with torch.no_grad():
        assert float(distillation_loss(student, student, scheduler, latents, embeddings, unconditional,
                                       torch.Generator().manual_seed(3))) == 0.0
        got = distillation_loss(student, teacher, scheduler, latents, embeddings, unconditional,
                                torch.Generator().manual_seed(3), guidance=(4.0, 50.0))
        # the same draws of timesteps as the loss makes (after the noise), by hand
        generator = torch.Generator().manual_seed(3)
        noise = torch.randn(latents.shape, generator=generator)
        steps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
        noisy = scheduler.add_noise(latents, noise, steps)
        plain = unconditional.expand_as(embeddings)

        def plain_and_guided(unet):
            c = unet(noisy, steps, encoder_hidden_states=embeddings).sample
            u = unet(noisy, steps, encoder_hidden_states=plain).sample
            return [u, u + 4.0 * (c - u), u + 50.0 * (c - u)]

        # each prediction's squared error relative to the teacher's: plain, guided 4, guided 50
        want = sum(((s - t) ** 2).sum() / (t ** 2).sum() for s, t in zip(plain_and_guided(student), plain_and_guided(teacher)))
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_distilling_a_new_head_layout_brings_it_to_the_teacher(tmp_path, pool, vae_dir, clip_dir):
    # the use: the shipped UNet's 32 heads of 2-4 channels re-laid out as fewer, wider heads (the same
    # weights, another function) and taught to predict what the original predicts (`train-prior --distill`)
    from diffusers import UNet2DConditionModel

    from dreamtext.prior.small.assemble import build_prior_tokenizer
    from dreamtext.prior.small.diffusion import encode_captions, with_attention_heads

    # a tiny UNet's attention barely shows in its output, so the student here starts from other weights: a
    # trained teacher, a fresh student with the wider heads
    train_small_unet(TINY_UNET, tmp_path / "teacher", vae_dir, clip_dir, "cpu", progress=False, steps=20, seed=0,
                     train=UnetTrainConfig(batch_size=8, lr=2e-3), pool=pool)
    teacher = UNet2DConditionModel.from_pretrained(tmp_path / "teacher", use_safetensors=True).eval()
    torch.manual_seed(1)
    student = with_attention_heads(build_small_unet(TINY_UNET, TEXT_HIDDEN), (1, 2, 2))
    vae = load_frozen_vae(vae_dir, torch.device("cpu"))
    text_encoder = load_clip_text_encoder(clip_dir)
    latents, embeddings = training_inputs(vae, text_encoder, build_prior_tokenizer(text_encoder),
                                          pool.images.float() / 255, pool.captions(), torch.Generator().manual_seed(0))
    latents, embeddings = latents.repeat(4, 1, 1, 1), embeddings.repeat(4, 1, 1)
    scheduler = build_training_scheduler()

    unconditional = encode_captions(text_encoder, build_prior_tokenizer(text_encoder), [""])

    def distance(unet) -> float:
        with torch.no_grad():
            return float(distillation_loss(unet.eval(), teacher, scheduler, latents, embeddings, unconditional,
                                           torch.Generator().manual_seed(11)))

    before = distance(student)
    result = train_small_unet(TINY_UNET, tmp_path / "unet", vae_dir, clip_dir, "cpu", progress=False, steps=30,
                              seed=0, train=UnetTrainConfig(batch_size=8, lr=2e-3, ema_decay=0.0), pool=pool,
                              unet=student, teacher=teacher)
    after = distance(UNet2DConditionModel.from_pretrained(tmp_path / "unet", use_safetensors=True))
    assert before > 0 and after < 0.5 * before, (before, after)
    assert result["distilled"] is True


def test_assembled_pipeline_loads_offline_and_samples(tmp_path, pool, vae_dir, clip_dir):
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open

    from dreamtext.prior.loading import load_prior

    train_small_unet(TINY_UNET, tmp_path / "unet", vae_dir, clip_dir, "cpu", progress=False, steps=1, seed=0,
                     train=UnetTrainConfig(batch_size=2), pool=pool)
    out = assemble_pipeline(vae_dir, tmp_path / "unet", clip_dir, tmp_path / "pipeline")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    for component in ("vae", "unet", "text_encoder"):
        files = list((out / component).glob("*.safetensors"))
        assert files, component
        with safe_open(str(files[0]), framework="pt") as handle:
            assert {handle.get_slice(k).get_dtype() for k in handle.keys()} == {"F16"}

    # fp16 weights, as a real fp16 checkpoint: on CPU they are loaded as fp32 (transformers would keep fp16).
    pipeline = StableDiffusionPipeline.from_pretrained(out, local_files_only=True, use_safetensors=True,
                                                       dtype=torch.float32)
    assert pipeline.safety_checker is None
    assert pipeline.vae.config.scaling_factor == pytest.approx(json.loads((vae_dir / "config.json").read_text())["scaling_factor"])
    betas = pipeline.scheduler.betas
    assert float(betas[0]) == pytest.approx(0.00085) and float(betas[-1]) == pytest.approx(0.012)
    assert len(betas) == 1000 and type(pipeline.scheduler).__name__ == "DDIMScheduler"
    # The text encoder is the CLIP's text tower (rounded to fp16).
    tower = load_clip_text_encoder(clip_dir).state_dict()
    shipped = pipeline.text_encoder.state_dict()
    assert all(torch.allclose(shipped[k].float(), tower[k], atol=1e-3) for k in tower)

    image = pipeline(["a red mug, front view"], num_inference_steps=2, height=16, width=16, output_type="np",
                     generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 16, 16, 3) and float(image.min()) >= 0 and float(image.max()) <= 1

    prior = load_prior(str(out))
    assert prior.image_size == 16 and prior.latent_size == TINY_UNET.sample_size
    assert prior.unet.config.cross_attention_dim == prior.text_encoder.config.hidden_size


def test_default_model_fits_the_size_budget(tmp_path):
    """fp16 safetensors of the default VAE + UNet: 5.4 MB + 12.2 MB, under the ~20 MB budget."""
    vae = build_small_vae().half()
    unet = build_small_unet(SmallUnetConfig(), cross_attention_dim=256).half()
    vae.save_pretrained(tmp_path / "vae")
    unet.save_pretrained(tmp_path / "unet")
    vae_mb, unet_mb = safetensors_bytes(tmp_path, "vae") / 1e6, safetensors_bytes(tmp_path, "unet") / 1e6
    assert vae_mb == pytest.approx(5.4, abs=0.2) and unet_mb == pytest.approx(12.2, abs=0.3)
    assert vae_mb + unet_mb <= 20
    assert SmallVaeConfig().latent_size == SmallUnetConfig().sample_size == 16


def attention_layouts(unet) -> set[tuple[int, int]]:
    """(heads, channels a head) of every attention layer."""
    return {(m.heads, m.inner_dim // m.heads) for m in unet.modules() if m.__class__.__name__ == "Attention"}


def test_attention_head_dim_counts_heads_as_diffusers_reads_it():
    # SmallUnetConfig's docstring: diffusers reads attention_head_dim as the number of heads, so the
    # shipped layout (32) is 32 heads of 2 and 4 channels; width / 32 per level gives 32 channels a head.
    shipped = build_small_unet(SmallUnetConfig(), cross_attention_dim=64)
    assert attention_layouts(shipped) == {(32, 2), (32, 4)}
    wide = build_small_unet(replace(SmallUnetConfig(), attention_head_dim=(2, 4, 4)), cross_attention_dim=64)
    assert attention_layouts(wide) == {(2, 32), (4, 32)}
    assert sum(p.numel() for p in wide.parameters()) == sum(p.numel() for p in shipped.parameters())
    config = json.loads((BUILTIN_PIPELINE_DIR / "unet" / "config.json").read_text())
    assert config["attention_head_dim"] == SmallUnetConfig().attention_head_dim == 32


def test_cli_trains_the_vae_stage(tmp_path, capsys):
    from diffusers import AutoencoderKL

    from dreamtext.cli.main import main

    out = tmp_path / "prior"
    code = main(["train-prior", "vae", "--steps", "2", "--batch-size", "2", "--out", str(out), "--device", "cpu",
                 "--quiet"])
    assert code == 0
    vae = AutoencoderKL.from_pretrained(out / "vae", local_files_only=True, use_safetensors=True)
    assert vae.config.sample_size == 64 and vae.config.latent_channels == 4
    assert vae.config.scaling_factor != 0.18215  # measured, not SD's
    assert "vae: wrote" in capsys.readouterr().out


def test_cli_rejects_a_file_as_out(tmp_path, capsys):
    from dreamtext.cli.main import main

    target = tmp_path / "a-file"
    target.write_text("x")
    assert main(["train-prior", "vae", "--out", str(target), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "is a file" in error


def test_eval_prior_measures_the_shipped_prior_by_default(tmp_path, capsys):
    from dreamtext.cli.main import main
    from dreamtext.prior.builtin import builtin_prior_available
    from dreamtext.prior.small.evaluate import dev_objects

    if not builtin_prior_available():
        pytest.skip("the built-in prior is not installed")
    assert main(["eval-prior", "--count", "8", "--steps", "10", "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["count"] == 8 and set(result["per_noun"]) == {o.noun for o in dev_objects(8, 0)}
    for value in (result["noun_top1"], result["colour_top1"], *result["clip_on_renders"].values()):
        assert (value * 8).is_integer()  # a fraction of the eight images
    # Far above chance (1 in 22 nouns): the shipped CLIP reads true renders, the shipped prior draws the noun.
    assert result["clip_on_renders"]["noun_top1"] >= 0.5 and result["noun_top1"] >= 0.5
    assert main(["eval-prior", "--pipeline", str(tmp_path), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "holds no trained model" in error


def test_prediction_distance_is_zero_to_itself_and_measures_another_unet(tmp_path):
    from diffusers import UNet2DConditionModel
    from tiny_sd import build_tiny_sd_pipeline

    from dreamtext.prior.small.diffusion import with_attention_heads
    from dreamtext.prior.small.evaluate import DISTANCE_TIMESTEPS, prediction_distance

    reference, other = tmp_path / "reference", tmp_path / "other"
    build_tiny_sd_pipeline(seed=0).save_pretrained(reference, safe_serialization=True)
    build_tiny_sd_pipeline(seed=0).save_pretrained(other, safe_serialization=True)
    same = prediction_distance(reference, other, count=4)
    assert set(same) == set(DISTANCE_TIMESTEPS)
    assert all(value == 0.0 for errors in same.values() for value in errors.values())
    assert set(same[20]) == {"cond", "uncond", "guided 7.5", "guided 100"}
    # the same weights laid out as other heads (what `--distill` starts from): another function
    unet = UNet2DConditionModel.from_pretrained(reference / "unet", use_safetensors=True)
    with_attention_heads(unet, (2, 1)).save_pretrained(other / "unet", safe_serialization=True)
    moved = prediction_distance(other, reference, count=4)
    assert all(value > 0 for errors in moved.values() for value in errors.values())


def _tiny_clip_64(seed: int):
    """A tiny random CLIPModel at the stages' 64 px render size."""
    from transformers import CLIPConfig, CLIPModel

    tower = dict(hidden_size=TEXT_HIDDEN, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4)
    torch.manual_seed(seed)
    return CLIPModel(CLIPConfig(text_config=dict(tower, vocab_size=49408, max_position_embeddings=77),
                                vision_config=dict(tower, image_size=64, patch_size=16), projection_dim=16))


def _assert_refused_beside_another_text_tower(trained_root, tmp_path) -> None:
    """`package_prior` must not ship one part of `trained_root` beside a pipeline of another text tower."""
    from dreamtext.errors import DreamtextError
    from dreamtext.prior.builtin import package_prior

    other = tmp_path / "other"
    _tiny_clip_64(1).save_pretrained(tmp_path / "other-clip")
    load_clip_text_encoder(tmp_path / "other-clip").save_pretrained(other / "pipeline" / "text_encoder")
    with pytest.raises(DreamtextError, match="another text tower"):
        package_prior(trained_root, other)


def test_cli_continues_a_clip_image_side_and_packages_it_beside_the_shipped_pipeline(tmp_path, capsys):
    """`train-prior clip --init-clip` trains the image side only, so its heads fit the text encoder a
    diffusion model was trained on; `package_prior` ships them and refuses heads of another text tower."""
    from transformers import CLIPModel

    from dreamtext.cli.main import main
    from dreamtext.prior.builtin import load_builtin_clip, package_prior
    from dreamtext.prior.small.clip import encode_images

    start = tmp_path / "start"
    _tiny_clip_64(0).save_pretrained(start)
    out = tmp_path / "prior"
    assert main(["train-prior", "clip", "--init-clip", str(start), "--steps", "2", "--batch-size", "4", "--pool-size",
                 "8", "--workers", "1", "--seed", "1", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    before = CLIPModel.from_pretrained(start, local_files_only=True).eval()
    after = CLIPModel.from_pretrained(out / "clip", local_files_only=True).float().eval()
    for key, value in before.text_model.state_dict().items():
        assert torch.equal(value.half(), after.text_model.state_dict()[key].half()), key
    assert not torch.equal(before.visual_projection.weight, after.visual_projection.weight)
    metrics = json.loads((out / "clip" / "training_metrics.json").read_text())
    assert metrics["init"] == str(start) and metrics["steps"] == 2
    assert metrics["config"]["text_hidden"] == TEXT_HIDDEN and metrics["config"]["freeze_text_tower"]

    ship = tmp_path / "ship"
    load_clip_text_encoder(start).save_pretrained(ship / "pipeline" / "text_encoder")
    sizes = package_prior(out, ship)
    assert sizes["clip"] > 0 and not (ship / "pipeline" / "model_index.json").exists()  # the pipeline is left as it was
    shipped = load_builtin_clip("cpu", ship / "clip")
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(encode_images(shipped, images), encode_images(after, images), atol=2e-3, rtol=2e-3)

    _assert_refused_beside_another_text_tower(out, tmp_path)

    capsys.readouterr()
    assert main(["train-prior", "vae", "--init-clip", "builtin", "--out", str(out), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "applies to the clip stage" in error


def test_cli_continues_a_pipelines_unet_and_packages_the_pipeline_alone(tmp_path, capsys, pool, vae_dir, clip_dir):
    """`train-prior unet --init-unet DIR` starts from DIR's UNet on DIR's own frozen VAE and text encoder and
    assembles a pipeline of the three; `package_prior` ships that pipeline beside the CLIP heads in place, and
    refuses a pipeline of another text tower (the shipped heads were trained with the shipped tower)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from dreamtext.cli.main import main
    from dreamtext.prior.builtin import package_prior
    from dreamtext.prior.small.train import train_prior

    train_small_unet(TINY_UNET, tmp_path / "unet", vae_dir, clip_dir, "cpu", progress=False, steps=1, seed=0,
                     train=UnetTrainConfig(batch_size=2), pool=pool)
    source = assemble_pipeline(vae_dir, tmp_path / "unet", clip_dir, tmp_path / "source")

    def weights(folder, part="unet"):
        model = (UNet2DConditionModel if part == "unet" else AutoencoderKL).from_pretrained(
            folder / part, local_files_only=True, use_safetensors=True)
        return model.state_dict()

    # No steps: the saved UNet is the one continued, so it really starts from DIR's weights.
    still = tmp_path / "still"
    train_prior("unet", still, device="cpu", steps=0, pool_size=4, workers=1, progress=False, init_unet=str(source))
    start = weights(source)
    assert all(torch.equal(value, weights(still / "pipeline")[key]) for key, value in start.items())

    out = tmp_path / "prior"
    assert main(["train-prior", "unet", "--init-unet", str(source), "--steps", "2", "--batch-size", "2", "--pool-size",
                 "4", "--workers", "1", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert "assemble: wrote" in capsys.readouterr().out
    trained = weights(out / "pipeline")
    assert any(not torch.equal(value, trained[key]) for key, value in start.items())
    assert all(torch.equal(value, weights(out / "pipeline", "vae")[key]) for key, value in weights(source, "vae").items())
    metrics = json.loads((out / "unet" / "training_metrics.json").read_text())
    assert metrics["init"] == str(source) and metrics["steps"] == 2
    assert metrics["schedule"]["warmup_steps"] > 0 and metrics["schedule"]["final_lr_fraction"] < 1

    ship = tmp_path / "ship"
    (ship / "clip").mkdir(parents=True)
    (ship / "clip" / "heads.safetensors").write_bytes(b"heads")
    assemble_pipeline(vae_dir, tmp_path / "unet", clip_dir, ship / "pipeline")
    sizes = package_prior(out, ship)
    assert (ship / "clip" / "heads.safetensors").read_bytes() == b"heads"  # the CLIP is left as it was
    assert sizes["pipeline"] > 0 and all(torch.equal(v, weights(ship / "pipeline")[k]) for k, v in trained.items())

    _assert_refused_beside_another_text_tower(out, tmp_path)

    capsys.readouterr()
    for args, message in ((["vae", "--init-unet", str(source)], "applies to the unet stage"),
                          (["unet", "--init-unet", str(tmp_path)], "is not a Stable Diffusion folder"),
                          (["unet", "--distill"], "give --init-unet too"),
                          (["unet", "--init-unet", str(source), "--distill", "--camera"], "give one of them"),
                          (["unet", "--init-unet", str(source), "--teacher", str(source)], "give --distill too"),
                          (["unet", "--init-unet", str(source), "--distill", "--teacher", "builtin"],
                           "another VAE or text encoder")):
        assert main(["train-prior", *args, "--out", str(tmp_path / "x"), "--device", "cpu"]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and message in error, error


def test_continuing_schedule_warms_up_then_anneals_by_steps_or_time():
    """A fresh UNet keeps a constant rate; a continued one warms up linearly and ends its cosine at
    final_lr_fraction when either its steps or its time limit run out."""
    fresh = UnetTrainConfig()
    assert {fresh.lr_factor(s, 100, 0.0, None) for s in (0, 50, 99)} == {1.0}
    cont = UnetTrainConfig(warmup_steps=10, final_lr_fraction=0.05)
    assert cont.lr_factor(0, 100, 0.0, None) == pytest.approx(0.1)
    assert cont.lr_factor(9, 100, 0.0, None) == pytest.approx(1.0)
    assert cont.lr_factor(10, 100, 0.0, None) == pytest.approx(1.0)
    assert cont.lr_factor(55, 100, 0.0, None) == pytest.approx(0.05 + 0.95 * 0.5)  # half way down the cosine
    assert cont.lr_factor(100, 100, 0.0, None) == pytest.approx(0.05)
    assert cont.lr_factor(20, 1000, 60.0, 60.0) == pytest.approx(0.05)  # out of time before out of steps
    assert cont.lr_factor(20, 1000, 30.0, 60.0) == pytest.approx(0.525)


def test_cached_caption_tokens_equal_tokenizing_each_batch():
    from dreamtext.prior.small.diffusion import caption_token_ids
    from dreamtext.prior.tokenizer import build_clip_tokenizer

    tokenizer = build_clip_tokenizer()
    cache: dict = {}
    batches = [["a red mug", "a small striped blue cube, side view", ""], ["", "a red mug", "a tree, back view"]]
    for captions in batches:
        torch.testing.assert_close(caption_token_ids(tokenizer, captions, cache), caption_token_ids(tokenizer, captions))
    assert len(cache) == 4


def test_same_model_ignores_only_the_bookkeeping_keys_of_saved_configs(tmp_path, vae_dir):
    from dreamtext.prior.small.assemble import same_model

    copy = tmp_path / "copy"
    shutil.copytree(vae_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "_name_or_path": "elsewhere", "transformers_version": "0"}))
    assert same_model(copy, Path(vae_dir))
    (copy / "config.json").write_text(json.dumps({**config, "up_block_types": ["other"]}))
    assert not same_model(copy, Path(vae_dir))
