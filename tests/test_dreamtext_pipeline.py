"""Reconstruction from a learned sentence, the one-command pipeline with stage resume, the baselines'
switches, diversity augmentation and the CLI, on a tiny random Stable Diffusion (CPU, offline)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from dreamtext.cli.main import main
from dreamtext.errors import DreamtextError
from dreamtext.methods.image_to_3d import pipeline as pipeline_module
from dreamtext.methods.registry import scene_workspace, workspace_method
from dreamtext.methods.image_to_3d.descriptor import DescriptorConfig, DescriptorTrainer, encode_prompts, train_descriptor
from dreamtext.methods.image_to_3d.diverse import diverse, DiverseConfig
from dreamtext.methods.image_to_3d.pipeline import METHODS, ImageTo3DConfig, image_to_3d, method_config, with_stage_settings
from dreamtext.methods.image_to_3d.reconstruct import (
    FixedConditioning, ImageTo3DTrainer, ReconstructConfig, ReferenceViewConfig, reconstruct, reference_camera, with_text_settings,
)
from dreamtext.methods.sample import SampleConfig
from dreamtext.prior import view_prompt
from dreamtext.scene.cameras import cartesian_to_spherical, view_label_ids
from dreamtext.utils.images import save_image
from dreamtext.utils.workspace import Workspace

from dreamtext_fixtures import SENTENCE, TOY_TEXT_TO_3D, ScriptedClip, red_mug_picture, tiny_prior, write_described_workspace


@pytest.fixture
def photo(tmp_path):
    """An RGBA picture of a red box, not square, off centre."""
    image, alpha = red_mug_picture()
    path = tmp_path / "photo.png"
    save_image(path, torch.cat([torch.ones(32, 8, 3), image], dim=1), torch.cat([torch.zeros(32, 8, 1), alpha], dim=1))
    return path


def toy_reconstruct(iters: int, model: str | None = None, **settings) -> ReconstructConfig:
    """A reconstruction on toy sizes: its text-to-3D config the model's preset with TOY_TEXT_TO_3D on top."""
    toy = {**TOY_TEXT_TO_3D, "iters": iters, "render_size": 16, "device": "cpu", "model": model}
    return with_text_settings(ReconstructConfig(**settings), toy, model=model)


def toy_image_config(model: str, method: str = "dreamtext", descriptor_iters: int = 4, iters: int = 4) -> ImageTo3DConfig:
    config = ImageTo3DConfig(method=method)
    config.descriptor = dataclasses.replace(config.descriptor, iters=descriptor_iters, checkpoint_every=2, device="cpu", model=model)
    config.reconstruct = toy_reconstruct(iters, model=model)
    config.describe = dataclasses.replace(config.describe, device="cpu")
    return config


def test_reconstruction_prompts_carry_the_learned_tokens_with_view_suffixes(tmp_path):
    root = write_described_workspace(tmp_path / "ws")
    prior = tiny_prior()
    learned = train_descriptor(root, DescriptorConfig(iters=3, device="cpu"), prior=prior, progress=False).learned
    expected = encode_prompts(prior, [view_prompt(learned.prompt, "front"), view_prompt(learned.prompt, "back")])
    plain = encode_prompts(prior, [view_prompt("An image of red, striped, a mug", "front")])
    result = reconstruct(root, toy_reconstruct(2), prior=prior, progress=False)
    saved = json.loads((result.workspace / "config.json").read_text())
    assert saved["method"] == "text" and saved["config"]["prompt"]["prompt"] == "An image of <dt-red>, <dt-striped>, a mug"
    assert saved["config"]["prompt"]["view_dependent"] and saved["config"]["render_size"] == 16
    assert (result.workspace / "mesh.glb").is_file() or "mesh_error" in result.metrics
    # The trainer's conditioning is the learned sentence's, view by view, not the plain words'.
    trainer = ImageTo3DTrainer(dataclasses.replace(_text_config(result.workspace), iters=1), Workspace(tmp_path / "again"),
                               prior=_fresh_prior_with(learned))
    conditional = trainer.embeddings.conditional(torch.tensor([0, 2]))  # front, back
    assert torch.allclose(conditional, expected, atol=1e-6) and not torch.allclose(conditional[:1], plain, atol=1e-3)
    assert trainer.extra_loss() is None  # the thesis's DreamText: no reference-view losses


@pytest.mark.parametrize("start_sentence", ["learned", "words"])
def test_a_hull_start_is_drawn_from_the_learned_sentence_or_from_its_words(tmp_path, monkeypatch, start_sentence):
    from dreamtext.methods.image_to_3d import reconstruct as reconstruct_module
    from dreamtext.methods.text_to_3d import start as start_module, trainer as trainer_module

    root = write_described_workspace(tmp_path / "ws")
    prior = tiny_prior()
    learned = train_descriptor(root, DescriptorConfig(iters=2, device="cpu"), prior=prior, progress=False).learned
    plain = encode_prompts(prior, [view_prompt("An image of red, striped, a mug", "front")])
    drawn_with = []

    def recording_draw_views(prior, embeddings, init, **kwargs):
        drawn_with.append(embeddings.conditional(torch.tensor([0])))  # the front view's conditioning
        return start_module.draw_views(prior, embeddings, init, **kwargs)

    monkeypatch.setattr(reconstruct_module, "draw_views", recording_draw_views)
    monkeypatch.setattr(trainer_module, "draw_views", recording_draw_views)
    start = {"init.kind": "prior_hull", "init.drawings_per_view": 1, "init.steps": 2, "init.fit.steps": 2}
    config = dataclasses.replace(with_text_settings(toy_reconstruct(1), start), start_sentence=start_sentence)
    result = reconstruct(root, config, prior=prior, progress=False)
    assert len(drawn_with) == 1 and (result.workspace / "init" / "drawings.png").is_file()
    learned_front = encode_prompts(_fresh_prior_with(learned), [view_prompt(learned.prompt, "front")])
    expected, other = (plain, learned_front) if start_sentence == "words" else (learned_front, plain)
    assert torch.allclose(drawn_with[0], expected, atol=1e-6) and not torch.allclose(drawn_with[0], other, atol=1e-3)
    # SDS hears the learned sentence either way.
    saved = json.loads((result.workspace / "config.json").read_text())
    assert saved["config"]["prompt"]["prompt"] == "An image of <dt-red>, <dt-striped>, a mug"


def _text_config(reconstruction):
    from dreamtext.methods.text_to_3d import TextTo3DConfig
    from dreamtext.utils.config import config_from_dict

    return config_from_dict(TextTo3DConfig, json.loads((reconstruction / "config.json").read_text())["config"])


def _fresh_prior_with(learned):
    prior = tiny_prior()
    learned.install(prior.tokenizer, prior.text_encoder)
    return prior


def test_whole_sentence_baseline_conditions_every_view_on_its_trained_embedding(tmp_path):
    root = write_described_workspace(tmp_path / "ws")
    prior = tiny_prior()
    learned = train_descriptor(root, DescriptorConfig(trainable="sentence", iters=2, device="cpu"), prior=prior, progress=False).learned
    result = reconstruct(root, toy_reconstruct(2), prior=prior, progress=False)
    saved = json.loads((result.workspace / "config.json").read_text())["config"]["prompt"]
    assert saved == {"prompt": "An image of red, striped, a mug", "negative_prompt": "", "view_dependent": False}
    fixed = FixedConditioning(learned.conditioning, torch.zeros(77, learned.conditioning.shape[-1]))
    assert torch.equal(fixed.conditional(torch.tensor([0, 1, 2]))[2], learned.conditioning)
    assert fixed.unconditional(3).shape == (3, 77, learned.conditioning.shape[-1])


def test_reference_view_losses_pull_the_input_camera_render_towards_the_image(tmp_path):
    root = write_described_workspace(tmp_path / "ws")
    prior = tiny_prior()
    train_descriptor(root, DescriptorConfig(trainable="noun", base_loss_weight=0.0, iters=2, device="cpu"), prior=prior, progress=False)
    reference = ReferenceViewConfig(on=True, rgb_weight=1000.0, mask_weight=500.0)
    # The fixed input camera looks at the object's front from the horizon.
    camera = reference_camera(reference, 16, "cpu")
    radius, polar, azimuth = cartesian_to_spherical(camera.origins)
    assert float(radius) == pytest.approx(1.25) and float(polar) == pytest.approx(90.0) and float(azimuth) % 360 == pytest.approx(0.0, abs=1e-4)
    assert int(view_label_ids(polar, azimuth)) == 0  # "front"

    from dreamtext.methods.image_to_3d.reconstruct import text_config_for
    from dreamtext.methods.image_to_3d.learned import LearnedSentence

    learned = LearnedSentence.load(root / "embeddings")
    text = text_config_for(learned, toy_reconstruct(30, reference=reference))
    assert text.prompt.prompt == "An image of a <dt-mug>"
    held = text_config_for(learned, toy_reconstruct(30))
    assert held.init.kind == "prior_hull" and held.prompt.prompt == "An image of a <dt-mug>"  # the builtin preset's start
    blob = text_config_for(learned, with_text_settings(toy_reconstruct(30), {"init.kind": "blob"}))
    assert blob.init.kind == "blob" and blob.iters == 30  # one text-to-3D setting given, the others kept
    trainer = ImageTo3DTrainer(text, Workspace(tmp_path / "rec"), prior=prior, reference=reference, workspace_root=root)
    image = trainer.reference_image
    # builtin sees the input at the prior's 64 px, a 16 px training render's 256 rays a step
    assert image.image.shape == (3, 64, 64) and image.mask.shape == (1, 64, 64) and trainer.reference_rays == 256
    assert float(image.mask.sum()) > 0 and float(image.mask.min()) == 0.0  # the alpha mask
    first = float(trainer.extra_loss().detach())
    for _ in range(30):
        trainer.train_step()
    assert float(trainer.extra_loss().detach()) < 0.7 * first


def test_methods_are_switches_over_the_same_config():
    realfusion = method_config(ImageTo3DConfig(method="realfusion"))
    assert realfusion.descriptor.trainable == "noun" and realfusion.descriptor.base_loss_weight == 0.0
    reference = realfusion.reconstruct.reference
    assert reference.on and reference.weights("dreamfusion") == (1000.0, 500.0)  # stable-dreamfusion's
    assert reference.weights("builtin") == (30000.0, 15000.0)  # ours, measured on the built-in prior
    assert dataclasses.replace(reference, rgb_weight=5.0).weights("builtin") == (5.0, 15000.0)  # a given weight is kept
    assert ReferenceViewConfig(rgb_weight=5.0).weights("builtin") == (0.0, 0.0)  # off is off
    assert reference.resolution("builtin", 32) == (64, 1024)  # the photo at 64 px, a 32 px render's rays a step
    assert reference.resolution("dreamfusion", 256) == (256, 256 ** 2)  # the whole view at the render size
    assert dataclasses.replace(reference, size=16, rays=10_000).resolution("builtin", 32) == (16, 256)  # never past the view
    assert method_config(ImageTo3DConfig()).method == "dreamtext+reference"  # the default: DreamText and the photo's view
    dreamtext = method_config(ImageTo3DConfig(method="dreamtext"))
    assert dreamtext.descriptor.trainable == "descriptors" and not dreamtext.reconstruct.reference.on
    both = method_config(ImageTo3DConfig(method="dreamtext+reference"))
    assert both.descriptor == dreamtext.descriptor and both.reconstruct.reference.on
    assert method_config(ImageTo3DConfig(method="sentence")).descriptor.trainable == "sentence"
    plain = method_config(ImageTo3DConfig(method="plain"))
    assert plain.descriptor.trainable == "none" and not plain.reconstruct.reference.on
    assert set(METHODS) == {"dreamtext", "realfusion", "sentence", "plain", "dreamtext+reference"}


def test_stage_lengths_and_sizes_are_the_priors_own_unless_given(tiny_model):
    """Issue 39: the thesis's GPU settings for Stable Diffusion, the builtin preset's on the built-in prior."""
    from dreamtext.methods.image_to_3d.descriptor import BUILTIN_DESCRIPTOR_ITERS, with_prior_defaults
    from dreamtext.methods.image_to_3d.reconstruct import reconstruction_preset, reconstruction_text_config, resolve_text
    from dreamtext.methods.presets import BUILTIN

    config = method_config(ImageTo3DConfig())
    sd = dataclasses.replace(config.descriptor, model=tiny_model)
    assert (with_prior_defaults(sd).iters, with_prior_defaults(sd).lr) == (10_000, 3e-4)  # thesis 6.3.3, 6.1.10
    assert with_prior_defaults(dataclasses.replace(config.descriptor, model="builtin")).iters == BUILTIN_DESCRIPTOR_ITERS
    assert with_prior_defaults(dataclasses.replace(sd, iters=7)).iters == 7
    thesis = reconstruction_text_config("a mug", resolve_text(config.reconstruct, model=tiny_model))
    assert (thesis.iters, thesis.render_size, thesis.sds.guidance) == (10_000, 256, 100.0)  # thesis 8.1: Stable DreamFusion
    builtin = reconstruction_text_config("a mug", resolve_text(config.reconstruct, model="builtin"))
    assert (builtin.iters, builtin.render_size, builtin.model) == (BUILTIN["iters"], BUILTIN["render_size"], "builtin")
    assert builtin.init.steps == 20 and BUILTIN["init.steps"] == 15  # image to 3D's start keeps 20-step drawings
    assert builtin.init.camera_candidates == 4 and BUILTIN["init.camera_candidates"] == 3  # and 4 candidates a drawing
    assert builtin.init.kind == "prior_hull" and thesis.init.kind == "blob"  # each preset's own start
    assert reconstruction_text_config("a mug", config.reconstruct) == builtin  # no model: the built-in prior's
    given = reconstruction_text_config("a mug", with_text_settings(config.reconstruct, {"iters": 50, "render_size": 48}, model="builtin"))
    assert (given.iters, given.render_size, given.sds.guidance) == (50, 48, builtin.sds.guidance)
    # The shared stage settings pick the preset from the model before they set it.
    shared = with_stage_settings(config, model=tiny_model, seed=3).reconstruct
    assert (shared.text.iters, shared.text.model, shared.text.seed, reconstruction_preset(shared)) == (10_000, tiny_model, 3, "dreamfusion")
    fit = resolve_text(dataclasses.replace(config.reconstruct, preset="fitfusion"), model="builtin")
    assert (fit.text.render_size, fit.text.sds.guidance, reconstruction_preset(fit)) == (256, 1000.0, "fitfusion")


def test_image_command_runs_every_stage_and_resumes_where_it_stopped(tmp_path, tiny_model, photo, monkeypatch):
    clip = ScriptedClip()
    config = toy_image_config(tiny_model)
    straight = image_to_3d(photo, tmp_path / "straight", config, progress=False, clip=clip)
    ws = straight.workspace
    assert straight.prompt == "An image of <dt-red>, a mug"
    stage = json.loads((ws / "stage.json").read_text())
    assert stage["stages"] == {"describe": "done", "descriptor": "done", "reconstruct": "done"} and stage["image"] == str(photo.resolve())
    for name in ("describe.json", "input.png", "input_mask.png", "embeddings/sentence.json", "embeddings/00_dt-red.safetensors",
                 "descriptor/checkpoints/last.pt", "reconstruction/checkpoints/last.pt", "reconstruction/turntable.mp4",
                 "reconstruction/views/front.png", "reconstruction/validation/final.png"):
        assert (ws / name).is_file(), name
    assert main(["render", str(ws / "reconstruction"), "--frames", "2", "--size", "16"]) == 0

    # Interrupted in the descriptor stage, then again in the reconstruction: each rerun continues there.
    calls = {"describe": 0}
    describe = pipeline_module.describe_image

    def counted(*args, **kwargs):
        calls["describe"] += 1
        return describe(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "describe_image", counted)
    for trainer_class in (DescriptorTrainer, ImageTo3DTrainer):
        original = trainer_class.train_step

        def interrupted(self, original=original):
            if self.step == 3:  # the last checkpoint was written at step 2
                raise KeyboardInterrupt
            return original(self)

        monkeypatch.setattr(trainer_class, "train_step", interrupted)
        with pytest.raises(KeyboardInterrupt):
            image_to_3d(photo, tmp_path / "resumed", config, progress=False, clip=clip)
        monkeypatch.setattr(trainer_class, "train_step", original)
    stage = json.loads((tmp_path / "resumed" / "stage.json").read_text())
    assert stage["stages"] == {"describe": "done", "descriptor": "done", "reconstruct": "running"}
    resumed = image_to_3d(photo, tmp_path / "resumed", config, progress=False, clip=clip)
    assert calls["describe"] == 1  # described once, never again
    assert resumed.prompt == straight.prompt
    for part in ("descriptor", "reconstruction"):
        a = Workspace(ws / part).load_checkpoint()
        b = Workspace(resumed.workspace / part).load_checkpoint()
        assert a["step"] == b["step"] == 4
        if part == "descriptor":
            assert torch.equal(a["parameter"], b["parameter"]) and torch.equal(a["losses"], b["losses"])
        else:
            assert a["losses"] == b["losses"] and all(torch.equal(a["field"][k], b["field"][k]) for k in a["field"])

    # A finished workspace reruns as a no-op; another image or method in it is refused.
    again = image_to_3d(photo, ws, config, progress=False, clip=clip)
    assert again.prompt == straight.prompt and calls["describe"] == 1
    other = tmp_path / "other.png"
    save_image(other, torch.rand(24, 24, 3))
    with pytest.raises(DreamtextError, match="another --workspace"):
        image_to_3d(other, ws, config, progress=False, clip=clip)
    with pytest.raises(DreamtextError, match="--method dreamtext"):
        image_to_3d(photo, ws, toy_image_config(tiny_model, method="realfusion"), progress=False, clip=clip)


class PlainClip(ScriptedClip):
    """Every word in front of the noun costs a little: selection ends at "An image of a mug", no descriptors."""

    def score(self, words: list[str], noun: str) -> float:
        return (0.3 if noun == "mug" else 0.1) - 0.01 * sum(w not in ("a", "an") for w in words)


def test_image_command_goes_on_when_the_sentence_has_no_descriptor_words(tmp_path, tiny_model, photo, capsys):
    config = toy_image_config(tiny_model, method="dreamtext+reference", iters=2)
    prior = tiny_prior()
    vocab = len(prior.tokenizer)
    result = image_to_3d(photo, tmp_path / "ws", config, progress=False, prior=prior, clip=PlainClip())
    ws = result.workspace
    described = json.loads((ws / "describe.json").read_text())
    assert described["descriptors"] == [] and described["sentence"] == "An image of a mug"
    assert "has no descriptor words" in capsys.readouterr().err
    # The learned sentence is the described sentence itself; nothing was trained or added to the prior.
    assert result.prompt == "An image of a mug" and result.descriptor_metrics["iters"] == 0 and "note" in result.descriptor_metrics
    assert len(prior.tokenizer) == vocab and not (ws / "descriptor/checkpoints/last.pt").exists()
    stage = json.loads((ws / "stage.json").read_text())
    assert stage["stages"] == {"describe": "done", "descriptor": "done", "reconstruct": "done"}
    assert (ws / "reconstruction/checkpoints/last.pt").is_file() and (ws / "reconstruction/validation/final.png").is_file()
    # Reconstruction: text-to-3D from the plain sentence with view suffixes, plus the reference-view losses.
    text = _text_config(result.reconstruction)
    assert text.prompt.prompt == "An image of a mug" and text.prompt.view_dependent and text.iters == 2
    fresh = tiny_prior()  # the reconstruction freed its prior's text encoder
    expected = encode_prompts(fresh, [view_prompt("An image of a mug", "front"), view_prompt("An image of a mug", "back")])
    trainer = ImageTo3DTrainer(dataclasses.replace(text, iters=1), Workspace(tmp_path / "check"), prior=fresh,
                               reference=method_config(config).reconstruct.reference, workspace_root=ws)
    assert torch.allclose(trainer.embeddings.conditional(torch.tensor([0, 2])), expected, atol=1e-6)
    assert float(trainer.extra_loss().detach()) > 0
    # A rerun is a no-op.
    assert image_to_3d(photo, ws, config, progress=False, prior=prior, clip=PlainClip()).prompt == "An image of a mug"


def test_diverse_makes_k_objects_and_a_contact_sheet(tmp_path, tiny_model):
    config = DiverseConfig(sample=SampleConfig(prompt="", steps=2, device="cpu"),
                           image=toy_image_config(tiny_model, descriptor_iters=2, iters=2))
    results = diverse("An image of a mug", tmp_path / "div", 2, config, progress=False, clip=ScriptedClip())
    root = tmp_path / "div"
    summary = json.loads((root / "diverse.json").read_text())
    assert summary["k"] == 2 and summary["seeds"] == [0, 1] and len(results) == 2
    assert [o["workspace"] for o in summary["objects"]] == ["object_00", "object_01"]
    for index in range(2):
        assert (root / f"samples/sample_{index:03d}.png").is_file()
        assert (root / f"object_{index:02d}/reconstruction/validation/final.png").is_file()
    from dreamtext.utils.images import load_image

    sheet = load_image(root / "diverse_sheet.png")[0]
    assert sheet.shape[0] > 2 * 16 and sheet.shape[1] > 16 * 3  # two rows: image + two validation views each
    # A second call reuses the samples and the finished objects.
    before = (root / "samples/sample_000.png").stat().st_mtime_ns
    diverse("An image of a mug", root, 2, config, progress=False, clip=ScriptedClip())
    assert (root / "samples/sample_000.png").stat().st_mtime_ns == before


def test_descriptor_cli_trains_and_bad_input_is_one_line(tmp_path, tiny_model, capsys):
    root = write_described_workspace(tmp_path / "ws")
    assert main(["descriptor", str(root), "--descriptor.model", tiny_model, "--descriptor.iters", "2", "--descriptor.device", "cpu", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "<dt-red>" in out and (root / "embeddings" / "sentence.json").is_file()
    assert main(["descriptor", str(root), "--descriptor.model", tiny_model, "--descriptor.iters", "2", "--descriptor.device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and len(err.strip().splitlines()) == 1
    # A sentence without descriptor words is not an error: kept as it is, one warning line.
    plain = write_described_workspace(tmp_path / "plain", {**SENTENCE, "sentence": "An image of a mug", "descriptors": []})
    assert main(["descriptor", str(plain), "--descriptor.model", tiny_model, "--descriptor.iters", "2", "--descriptor.device", "cpu", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert '"An image of a mug" after 0 iterations' in captured.out and len(captured.err.strip().splitlines()) == 1
    assert main(["descriptor", str(tmp_path / "nothing"), "--descriptor.model", tiny_model, "--descriptor.device", "cpu"]) == 2
    assert "dreamtext describe" in capsys.readouterr().err
    assert main(["reconstruct", str(tmp_path / "nothing"), "--reconstruct.model", tiny_model, "--reconstruct.device", "cpu"]) == 2
    assert "dreamtext descriptor" in capsys.readouterr().err
    assert main(["image", str(tmp_path / "missing.png"), "--workspace", str(tmp_path / "w"), "--device", "cpu"]) == 2
    assert "no such image" in capsys.readouterr().err


def test_a_bad_image_does_not_block_its_workspace_and_text_runs_keep_out(tmp_path, tiny_model, photo, capsys):
    """Issue 32: `dreamtext image text.png` failed cleanly but left stage.json, so the next image in the same
    workspace was refused; a text run moved into a describe workspace without a word."""
    text_png = tmp_path / "text.png"
    text_png.write_text("this is not a picture")
    ws = tmp_path / "ws"
    assert main(["image", str(text_png), "--workspace", str(ws), "--device", "cpu", "--quiet"]) == 2
    capsys.readouterr()
    config = toy_image_config(tiny_model, descriptor_iters=1, iters=1)
    result = image_to_3d(photo, ws, config, progress=False, clip=ScriptedClip())
    assert result.workspace == ws and (ws / "describe.json").is_file()
    assert main(["text", "a mug", "--workspace", str(ws), "--model", tiny_model, "--quiet"]) == 2
    assert "image-to-3D workspace" in capsys.readouterr().err
    # render and export take the image workspace itself: its trained scene is its reconstruction's (methods/registry.py)
    assert main(["export", str(ws), "--resolution", "24", "--out", str(tmp_path / "whole.ply")]) == 0  # the format from --out
    assert (tmp_path / "whole.ply").is_file()
    assert workspace_method(ws) == "image" and scene_workspace(ws) == ws / "reconstruction"
    assert workspace_method(ws / "reconstruction") == "text" and scene_workspace(ws / "reconstruction") == ws / "reconstruction"


def test_a_bad_image_is_refused_before_anything_is_written_and_a_text_workspace_is_left_alone(tmp_path, tiny_model):
    """Issue 40: inputs are checked before the workspace and its stage file exist."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DreamtextError, match="broken.png"):
        image_to_3d(broken, tmp_path / "ws", toy_image_config(tiny_model), progress=False)
    assert not (tmp_path / "ws").exists()
    text_run = Workspace(tmp_path / "text")
    text_run.save_config(ImageTo3DConfig(), method="text")
    photo = tmp_path / "photo.png"
    save_image(photo, torch.rand(32, 32, 3))
    with pytest.raises(DreamtextError, match="holds a 'text' run, not an image-to-3D one"):
        image_to_3d(photo, text_run.root, toy_image_config(tiny_model), progress=False)
    assert sorted(path.name for path in text_run.root.iterdir()) == ["config.json"]
