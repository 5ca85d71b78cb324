"""Descriptor training on a tiny random Stable Diffusion (CPU, offline): only the learned rows change, the
loss is eq. 5.4, textual-inversion files load in diffusers, resume is bit-identical, the baselines' switches."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from dreamtext.errors import DreamtextError
from dreamtext.methods.image_to_3d.augment import NO_AUGMENTATION
from dreamtext.methods.image_to_3d.descriptor import (
    DescriptorConfig, DescriptorTrainer, encode_prompts, train_descriptor,
)
from dreamtext.methods.image_to_3d.learned import LearnedSentence
from dreamtext.utils.workspace_files import EMBEDDINGS_DIR
from dreamtext.methods.image_to_3d.sentence import DescribedImage, slot_words, training_template
from dreamtext.methods.image_to_3d.tokens import token_for, unique_tokens
from dreamtext.utils.workspace import Workspace

from dreamtext_fixtures import SENTENCE, tiny_prior, write_described_workspace
from tiny_sd import build_tiny_sd_pipeline

def config(**changes) -> DescriptorConfig:
    return DescriptorConfig(**{"iters": 4, "device": "cpu", "checkpoint_every": 2, **changes})


def test_sentence_templates_slot_the_trained_words():
    described = DescribedImage(sentence="An image of red, striped, a mug", noun="mug", descriptors=("red", "striped"))
    descriptors = training_template(described, "descriptors")
    assert descriptors.template == "An image of {0}, {1}, a mug" and descriptors.words == ("red", "striped")
    assert descriptors.fill(["<a>", "<b>"]) == "An image of <a>, <b>, a mug" and descriptors.plain == described.sentence
    noun = training_template(described, "noun")
    assert described.base_sentence == "An image of a mug" and noun.template == "An image of a {0}"
    assert training_template(described, "sentence").fill([]) == described.sentence
    assert slot_words("a red-ish red {x}", ["red"]).fill(["<r>"]) == "a red-ish <r> {x}"  # whole words; braces kept
    with pytest.raises(DreamtextError, match="not in the sentence"):
        slot_words("An image of a mug", ["blue"])
    assert unique_tokens(["red", "red", "Dark Blue"]) == ["<dt-red>", "<dt-red-2>", "<dt-dark-blue>"]
    assert token_for("red") == "<dt-red>"


def test_only_the_descriptor_rows_change(tmp_path):
    root = write_described_workspace(tmp_path / "ws")
    prior = tiny_prior()
    frozen = {f"text.{k}": v.clone() for k, v in prior.text_encoder.state_dict().items()}
    frozen.update({f"unet.{k}": v.clone() for k, v in prior.unet.state_dict().items()})
    frozen.update({f"vae.{k}": v.clone() for k, v in prior.vae.state_dict().items()})
    vocab = len(prior.tokenizer)
    trainer = DescriptorTrainer(config(iters=5), root, prior=prior)
    table = prior.text_encoder.get_input_embeddings().weight
    assert trainer.token_ids == [vocab, vocab + 1] and table.shape[0] == vocab + 2 and not table.requires_grad
    # The new rows start from the words' own embeddings; "red" is one BPE token.
    red = prior.tokenizer("red", add_special_tokens=False).input_ids
    table_key = next(k for k in frozen if k.endswith("token_embedding.weight"))
    assert len(red) == 1 and torch.equal(trainer.parameter[0].detach(), frozen[table_key][red[0]])
    init = trainer.parameter.detach().clone()
    # The prompt holds the learned tokens where the words were.
    ids = trainer.prompt_ids[0].tolist()
    assert trainer.prompt == "An image of <dt-red>, <dt-striped>, a mug" and vocab in ids and vocab + 1 in ids
    # The optimiser sees exactly the [2, D] learned rows and nothing else.
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert len(params) == 1 and params[0] is trainer.parameter and params[0].shape == (2, table.shape[1])
    assert all(group["weight_decay"] == 0 and group["lr"] == 3e-4 for group in trainer.optimizer.param_groups)
    trainer.train()
    trainer.finish()
    after = {f"text.{k}": v for k, v in prior.text_encoder.state_dict().items()}
    after.update({f"unet.{k}": v for k, v in prior.unet.state_dict().items()})
    after.update({f"vae.{k}": v for k, v in prior.vae.state_dict().items()})
    for key, value in frozen.items():
        if key == table_key:
            assert torch.equal(after[key][:vocab], value), "a frozen row of the token table changed"
        else:
            assert torch.equal(after[key], value), key
    learned_rows = after[table_key][vocab:]
    assert torch.equal(learned_rows, trainer.parameter.detach()) and not torch.equal(learned_rows, init)


def test_loss_is_eq_5_4_and_noun_mode_starts_at_zero_base_loss(tmp_path):
    root = write_described_workspace(tmp_path / "ws")
    prior = tiny_prior()
    trainer = DescriptorTrainer(config(trainable="noun"), root, prior=prior)
    assert trainer.prompt == "An image of a <dt-mug>"
    state = trainer.generator.get_state()
    noisy, t, noise = trainer.noised_latents()
    real, base = trainer.losses_of(noisy, t, noise)
    # By hand: the full sentence through the encoder (learned row = "mug"'s row) and the base sentence.
    with torch.no_grad():
        full = encode_prompts(prior, [trainer.prompt])
        eps_full = prior.unet(noisy, t, encoder_hidden_states=full).sample
        eps_base = prior.unet(noisy, t, encoder_hidden_states=encode_prompts(prior, ["An image of a mug"])).sample
    assert float(real.detach()) == pytest.approx(float(F.mse_loss(eps_full, noise)), rel=1e-5)
    assert float(base.detach()) == pytest.approx(float(F.mse_loss(eps_full, eps_base)), abs=1e-10)
    assert float(base.detach()) < 1e-10  # "mug" is one token: the learned noun starts exactly as the base sentence
    # x_t = sqrt(alphabar) x + sqrt(1 - alphabar) eps with t over the whole range (thesis eq. 5.2: t ~ U(0, 1)).
    trainer.generator.set_state(state)
    again, _, _ = trainer.noised_latents()
    assert torch.equal(again, noisy) and 0 <= int(t) <= 999


def test_the_fixed_noise_check_is_eqs_5_2_and_5_3_on_the_same_draws_every_time(tmp_path):
    root = write_described_workspace(tmp_path / "ws")
    prior = tiny_prior()
    trainer = DescriptorTrainer(config(trainable="noun"), root, prior=prior)
    words = trainer.fixed_noise_losses(trainer.initial, draws=8)
    assert words["base"] < 1e-10  # the learned noun starts as the base sentence's own word
    # By hand: the posterior's mean, 8 timesteps evenly over [0, 999], noise from the fixed seed.
    with torch.no_grad():
        latents = prior.vae.encode(trainer.image * 2 - 1).latent_dist.mean * prior.vae.config.scaling_factor
        t = torch.linspace(0, 999, 8).round().long()
        noise = torch.randn((8, *latents.shape[1:]), generator=torch.Generator().manual_seed(0))
        a = trainer.alphas_cumprod[t].view(-1, 1, 1, 1)
        eps = prior.unet(a.sqrt() * latents + (1 - a).sqrt() * noise, t,
                         encoder_hidden_states=encode_prompts(prior, ["An image of a mug"]).expand(8, -1, -1)).sample
    assert words["real"] == pytest.approx(float(F.mse_loss(eps, noise)), rel=1e-5)
    moved = trainer.initial + torch.randn(trainer.initial.shape, generator=torch.Generator().manual_seed(1))
    before = trainer.parameter.detach().clone()
    shifted = trainer.fixed_noise_losses(moved, draws=8)
    assert shifted["base"] > 1e-6 and torch.equal(trainer.parameter.detach(), before)  # scored, then restored
    assert trainer.fixed_noise_losses(moved, draws=8) == shifted  # the same draws every time


def test_training_reports_the_fixed_noise_check_before_and_after(tmp_path):
    root = write_described_workspace(tmp_path / "ws")
    metrics = train_descriptor(root, config(), progress=False, prior=tiny_prior()).metrics
    words, learned = metrics["fixed_noise_loss"]["words"], metrics["fixed_noise_loss"]["learned"]
    assert set(words) == set(learned) == {"real", "base"} and words != learned and words["base"] >= 0


def test_gradient_reaches_only_the_learned_parameter(tmp_path):
    root = write_described_workspace(tmp_path / "ws")
    prior = tiny_prior()
    trainer = DescriptorTrainer(config(), root, prior=prior)
    noisy, t, noise = trainer.noised_latents()
    real, base = trainer.losses_of(noisy, t, noise)
    (real + base).backward()
    assert trainer.parameter.grad is not None and float(trainer.parameter.grad.abs().sum()) > 0
    assert all(p.grad is None for p in prior.text_encoder.parameters())
    assert all(p.grad is None for p in prior.unet.parameters())
    # A prompt without the learned tokens is independent of the parameter.
    conditioning = encode_prompts(prior, ["An image of a mug"])
    assert not conditioning.requires_grad


def test_textual_inversion_files_load_in_diffusers_with_the_same_vectors(tmp_path):
    root = write_described_workspace(tmp_path / "ws")
    prior = tiny_prior()
    result = train_descriptor(root, config(), prior=prior, progress=False)
    learned = result.learned
    folder = root / EMBEDDINGS_DIR
    sentence = json.loads((folder / "sentence.json").read_text())
    assert sentence["template"] == "An image of {0}, {1}, a mug" and sentence["prompt"] == learned.prompt
    assert sentence["base_sentence"] == "An image of a mug" and sentence["words"] == ["red", "striped"]

    pipe = build_tiny_sd_pipeline(seed=0)  # a fresh pipeline, as a user would load it
    pipe.load_textual_inversion([str(folder / name) for name in sentence["files"]])
    ids = pipe.tokenizer.convert_tokens_to_ids(list(learned.tokens))
    table = pipe.text_encoder.get_input_embeddings().weight
    assert torch.equal(table[ids], learned.vectors)
    assert torch.equal(learned.vectors, LearnedSentence.load(folder).vectors)
    # The text encoder then gives the same conditioning as the trained prior's.
    with torch.no_grad():
        tokens = pipe.tokenizer([learned.prompt], padding="max_length", max_length=77, return_tensors="pt").input_ids
        assert torch.equal(pipe.text_encoder(tokens)[0], encode_prompts(prior, [learned.prompt]))
    # And our own loader installs them into another fresh prior identically.
    other = tiny_prior()
    LearnedSentence.load(folder).install(other.tokenizer, other.text_encoder)
    assert torch.equal(encode_prompts(other, [learned.prompt]), encode_prompts(prior, [learned.prompt]))
    metrics = json.loads((root / "descriptor" / "metrics.json").read_text())
    assert metrics["iters"] == 4 and metrics["tokens"] == ["<dt-red>", "<dt-striped>"]
    status = json.loads((root / "descriptor" / "progress.json").read_text())  # for the live viewer
    assert status["step"] == status["total"] == 4 and status["running"] is False and "real" in status["scalars"]


def test_interrupted_descriptor_training_resumes_bit_identically(tmp_path, monkeypatch):
    straight_root = write_described_workspace(tmp_path / "straight")
    straight = train_descriptor(straight_root, config(iters=6), prior=tiny_prior(), progress=False)

    resumed_root = write_described_workspace(tmp_path / "resumed")
    original = DescriptorTrainer.train_step

    def interrupted(self):
        if self.step == 5:  # the last checkpoint was written at step 4
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(DescriptorTrainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_descriptor(resumed_root, config(iters=6), prior=tiny_prior(), progress=False)
    assert Workspace(resumed_root / "descriptor").load_checkpoint()["step"] == 4
    monkeypatch.setattr(DescriptorTrainer, "train_step", original)
    with pytest.raises(DreamtextError, match="--resume"):
        train_descriptor(resumed_root, config(iters=6), prior=tiny_prior(), progress=False)
    resumed = train_descriptor(resumed_root, config(iters=6), resume=True, prior=tiny_prior(), progress=False)

    a = Workspace(straight_root / "descriptor").load_checkpoint()
    b = Workspace(resumed_root / "descriptor").load_checkpoint()
    assert a["step"] == b["step"] == 6 and torch.equal(a["losses"], b["losses"])
    assert torch.equal(a["parameter"], b["parameter"]) and torch.equal(a["generator"], b["generator"])
    assert torch.equal(straight.learned.vectors, resumed.learned.vectors)


def test_whole_sentence_mode_trains_the_conditioning(tmp_path):
    root = write_described_workspace(tmp_path / "ws")
    prior = tiny_prior()
    sentence_embedding = encode_prompts(prior, [SENTENCE["sentence"]])
    vocab = len(prior.tokenizer)
    result = train_descriptor(root, config(trainable="sentence", augment=NO_AUGMENTATION), prior=prior, progress=False)
    assert len(prior.tokenizer) == vocab and result.learned.tokens == () and result.learned.prompt == SENTENCE["sentence"]
    conditioning = LearnedSentence.load(root / EMBEDDINGS_DIR).conditioning
    assert conditioning.shape == sentence_embedding.shape[1:]
    assert not torch.equal(conditioning, sentence_embedding[0]) and torch.allclose(conditioning, sentence_embedding[0], atol=0.05)


def test_bad_workspaces_give_one_line_errors(tmp_path):
    with pytest.raises(DreamtextError, match="dreamtext describe"):
        train_descriptor(tmp_path / "empty", config(), prior=tiny_prior(), progress=False)
    # A describe.json that is really broken still stops with one line.
    root = write_described_workspace(tmp_path / "missing_word", {**SENTENCE, "sentence": "An image of a mug", "descriptors": ["red"]})
    with pytest.raises(DreamtextError, match="'red' is not in the sentence"):
        train_descriptor(root, config(), prior=tiny_prior(), progress=False)
    root = write_described_workspace(tmp_path / "no_list", {**SENTENCE, "descriptors": "red"})
    with pytest.raises(DreamtextError, match="lacks the sentence, noun or descriptor words"):
        train_descriptor(root, config(), prior=tiny_prior(), progress=False)
    root = write_described_workspace(tmp_path / "bad_json")
    (root / "describe.json").write_text("{")
    with pytest.raises(DreamtextError, match="not valid JSON"):
        train_descriptor(root, config(), prior=tiny_prior(), progress=False)


def test_a_failing_compiled_network_falls_back_to_eager(tmp_path, capsys):
    root = write_described_workspace(tmp_path / "ws")
    trainer = DescriptorTrainer(config(), root, prior=tiny_prior())
    assert not trainer.compiled  # torch.compile is used on CUDA only

    def broken(*args, **kwargs):
        raise RuntimeError("inductor could not compile")

    trainer.compiled, trainer.unet = True, broken  # as if compilation failed at the first call
    real, base = trainer.train_step()
    assert real > 0 and base > 0 and trainer.step == 1 and not trainer.compiled and trainer.unet is trainer.prior.unet
    assert "continues eagerly" in capsys.readouterr().err


PLAIN = {**SENTENCE, "sentence": "An image of a mug", "descriptors": []}  # no word in front of the noun helped


def test_a_sentence_without_descriptor_words_is_kept_as_it_is(tmp_path, capsys):
    root = write_described_workspace(tmp_path / "ws", PLAIN)
    # Nothing to learn: no prior is loaded (this model path does not exist), no optimiser, no checkpoint.
    result = train_descriptor(root, config(model=str(tmp_path / "no_model")), progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no descriptor words" in err[0] and "as it is" in err[0]
    assert result.learned.prompt == "An image of a mug" and result.learned.tokens == () and result.learned.vectors is None
    assert not Workspace(root / "descriptor").has_checkpoint()
    metrics = json.loads((root / "descriptor" / "metrics.json").read_text())
    assert metrics == result.metrics and metrics["iters"] == 0 and metrics["tokens"] == [] and "nothing was trained" in metrics["note"]
    assert metrics["prompt"] == "An image of a mug" and metrics["mean_loss_last_100"] is None
    saved = json.loads((root / "descriptor" / "config.json").read_text())
    assert saved["method"] == "descriptor" and saved["config"]["iters"] == 4
    status = json.loads((root / "descriptor" / "progress.json").read_text())
    assert status["step"] == status["total"] == 0 and status["running"] is False
    sentence = json.loads((root / EMBEDDINGS_DIR / "sentence.json").read_text())
    assert sentence["template"] == sentence["prompt"] == "An image of a mug" and sentence["files"] == sentence["tokens"] == []
    # It loads back and installs nothing: the prior's tokenizer and table stay as they were.
    loaded = LearnedSentence.load(root / EMBEDDINGS_DIR)
    assert loaded.prompt == "An image of a mug" and loaded.base_sentence == "An image of a mug"
    prior = tiny_prior()
    vocab, table = len(prior.tokenizer), prior.text_encoder.get_input_embeddings().weight.clone()
    assert loaded.install(prior.tokenizer, prior.text_encoder) == []
    assert len(prior.tokenizer) == vocab and torch.equal(prior.text_encoder.get_input_embeddings().weight, table)
    # A rerun, with or without --resume, writes the same; a prior handed in is left untouched and named.
    again = train_descriptor(root, config(), resume=True, prior=prior, progress=False)
    assert again.learned.prompt == "An image of a mug" and again.metrics["prior_dtype"] == "float32" and len(prior.tokenizer) == vocab
    assert train_descriptor(root, config(), progress=False).metrics["iters"] == 0
    # The trainer itself refuses the empty parameter list with one line.
    with pytest.raises(DreamtextError, match="nothing to train"):
        DescriptorTrainer(config(), root, prior=prior)
    # Braces in the sentence stay literal in the saved template.
    braces = write_described_workspace(tmp_path / "braces", {**PLAIN, "sentence": "An image of a {mug}", "noun": "{mug}"})
    assert train_descriptor(braces, config(), progress=False).learned.prompt == "An image of a {mug}"
    assert LearnedSentence.load(braces / EMBEDDINGS_DIR).prompt == "An image of a {mug}"


def test_a_sentence_without_descriptor_words_still_trains_in_the_other_modes(tmp_path):
    # RealFusion's noun and the whole-sentence embedding have something to learn: the usual trainer runs
    # (1 iteration keeps the test fast; the trainer's setup is what differs from the plain path).
    root = write_described_workspace(tmp_path / "noun", PLAIN)
    noun = train_descriptor(root, config(trainable="noun", iters=1), prior=tiny_prior(), progress=False)
    assert noun.learned.prompt == "An image of a <dt-mug>" and noun.learned.vectors.shape[0] == 1 and "note" not in noun.metrics
    root = write_described_workspace(tmp_path / "sentence", PLAIN)
    whole = train_descriptor(root, config(trainable="sentence", iters=1), prior=tiny_prior(), progress=False)
    assert whole.learned.conditioning is not None and "note" not in whole.metrics
