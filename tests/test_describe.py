"""Sentence selection (thesis 5.2.1): the greedy search on a backend whose similarities we set, the
shipped vocabularies, the CLIP backends (preprocessing, chunking, offline errors), a small CLIP trained
here on world renders, the shipped built-in CLIP when it exists, and `dreamtext describe` end to end."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dreamtext.cli.main import main
from dreamtext.data.input_image import InputImageConfig
from dreamtext.errors import DreamtextError
from dreamtext.methods.describe import DescribeConfig, SentenceConfig, Vocabulary, describe_image, load_vocabulary, select_sentence
from dreamtext.methods.describe.vocabulary import builtin_vocabulary_folder
from dreamtext.prior import clip_backends
from dreamtext.prior.clip_backends import CLIP_MEAN, CLIP_STD, ImagePreprocessing, load_clip_backend
from dreamtext.world.vocabulary import COLOURS, NOUNS, PATTERNS, SIZES

# ---------------------------------------------------------------------------------------------
# A backend whose cosine similarities are whatever the test says
# ---------------------------------------------------------------------------------------------


class ScriptedClip:
    """Image embedding e0; a sentence's embedding is s e0 + sqrt(1 - s^2) e1 with s = score(sentence),
    so its cosine similarity with the image is exactly s. Records the size of every text call."""

    name = "scripted"
    default_vocabulary = "world"

    def __init__(self, score):
        self.score = score
        self.calls: list[int] = []

    def encode_image(self, images):
        return torch.eye(2, dtype=torch.float64)[:1].expand(images.shape[0], 2).float()

    def encode_text(self, texts):
        self.calls.append(len(texts))
        s = torch.tensor([self.score(t) for t in texts], dtype=torch.float64)
        return torch.stack([s, (1 - s**2).sqrt()], dim=1).float()

    def info(self):
        return {"kind": "scripted", "name": self.name, "image_size": 8}


NOUN_SCORES = {"mug": 0.30, "apple": 0.25, "cat": 0.20}
WORD_BONUS = {"red": 0.05, "old": 0.03, "shiny": 0.02, "big": -0.01, "tiny": -0.02}


def bag_of_words_score(sentence: str) -> float:
    """The noun's score plus a bonus per word in front of it (a noun there costs 0.1); "shiny" next to
    "old" costs 0.04 (an interaction)."""
    *words, noun = sentence.removeprefix("An image of ").replace(",", " ").split()
    score = NOUN_SCORES.get(noun, 0.0) + sum(WORD_BONUS.get(w, -0.1 if w in NOUN_SCORES else 0.0) for w in words)
    if "shiny" in words and "old" in words:
        score -= 0.04
    return score


VOCABULARY = Vocabulary("test", ("cat", "mug", "apple"), ("red", "big", "shiny", "old", "tiny"), nouns_describe=False)
IMAGE = torch.zeros(3, 8, 8)


def test_greedy_selection_picks_the_noun_then_improving_words_and_stops():
    backend = ScriptedClip(bag_of_words_score)
    selection = select_sentence(backend, IMAGE, VOCABULARY)
    assert selection.noun == "mug" and selection.quantifier == "a"
    # red (+0.05) first, then old (+0.03); then shiny would be +0.02 - 0.04 and big -0.01: stop.
    assert selection.descriptors == ["old", "red"]
    assert selection.sentence == "An image of old, red, a mug"
    assert selection.base_sentence == "An image of a mug"
    assert selection.score == pytest.approx(0.38, abs=1e-6)
    assert [(s.kind, s.word, s.kept) for s in selection.steps] == [
        ("noun", "mug", True), ("descriptor", "red", True), ("descriptor", "old", True), ("descriptor", "big", False)]
    assert [round(s.score, 6) for s in selection.steps] == [0.30, 0.35, 0.38, 0.37]
    assert selection.steps[1].top[:3] == [("red", pytest.approx(0.35)), ("old", pytest.approx(0.33)), ("shiny", pytest.approx(0.32))]
    assert selection.stop_reason == "no word improves the similarity"
    # One text-encoder call per step with every candidate of that step.
    assert backend.calls == [3, 5, 4, 3]


def test_an_equal_score_is_not_an_improvement_and_min_gain_raises_the_bar():
    tie = ScriptedClip(lambda s: 0.5 if "mug" in s else 0.1)  # every word leaves the score unchanged
    selection = select_sentence(tie, IMAGE, VOCABULARY)
    assert selection.descriptors == [] and selection.sentence == "An image of a mug"
    assert len(selection.steps) == 2 and not selection.steps[1].kept
    strict = select_sentence(ScriptedClip(bag_of_words_score), IMAGE, VOCABULARY, SentenceConfig(min_gain=0.04))
    assert strict.descriptors == ["red"]  # old's +0.03 is below the bar


def test_selection_runs_out_of_words_or_hits_max_words():
    everything_helps = ScriptedClip(lambda s: 0.1 * s.count(",") + (0.3 if "mug" in s else 0.0))
    selection = select_sentence(everything_helps, IMAGE, VOCABULARY)
    assert len(selection.descriptors) == 5 and selection.stop_reason == "every descriptor word is in the sentence"
    # Ties in a step go to the earliest word in file order; each new word goes to the front.
    assert selection.descriptors == ["tiny", "old", "shiny", "big", "red"]
    capped = select_sentence(everything_helps, IMAGE, VOCABULARY, SentenceConfig(max_words=2))
    assert capped.descriptors == ["big", "red"] and capped.stop_reason == "max_words (2) reached"


def test_given_noun_and_quantifier_and_automatic_article():
    backend = ScriptedClip(lambda s: bag_of_words_score(s) + (0.5 if "apple" in s else 0.0))
    auto = select_sentence(backend, IMAGE, VOCABULARY)
    assert auto.noun == "apple" and auto.base_sentence == "An image of an apple"
    backend.calls.clear()
    given = select_sentence(backend, IMAGE, VOCABULARY, SentenceConfig(noun="mugs", quantifier="two"))
    assert given.noun == "mugs" and given.steps[0].candidates == 1 and backend.calls[0] == 1
    assert given.sentence == "An image of old, red, two mugs"
    none = select_sentence(backend, IMAGE, VOCABULARY, SentenceConfig(noun="teapot", quantifier=""))
    assert none.base_sentence == "An image of teapot"
    with pytest.raises(DreamtextError):
        select_sentence(backend, IMAGE, VOCABULARY, SentenceConfig(noun="  "))


def test_nouns_serve_as_descriptors_where_the_vocabulary_allows_it():
    vocabulary = Vocabulary("v", ("cat", "mug"), ("red", "cat"), nouns_describe=True)
    assert vocabulary.descriptors(exclude=["mug"]) == ["red", "cat"]  # no repeats, chosen noun left out
    assert Vocabulary("w", ("cat", "mug"), ("red",), nouns_describe=False).descriptors() == ["red"]


# ---------------------------------------------------------------------------------------------
# Shipped vocabularies
# ---------------------------------------------------------------------------------------------


def test_general_vocabulary_is_large_clean_and_shipped_as_text():
    general = load_vocabulary("general")
    assert len(general.nouns) >= 1000 and len(general.adjectives) >= 300
    for word in general.nouns + general.adjectives:
        assert word == word.strip().lower() and word.replace("-", "").isalpha(), word
    assert len(set(general.nouns)) == len(general.nouns)
    assert set(NOUNS) <= set(general.nouns)  # the world's objects are common words too
    assert general.nouns_describe and len(general.descriptors()) > len(general.adjectives)
    assert (builtin_vocabulary_folder("general") / "nouns.txt").is_file()


def test_world_vocabulary_files_match_the_world():
    world = load_vocabulary("world")
    assert world.nouns == NOUNS
    assert world.adjectives == (*COLOURS, *[s for s in SIZES if s], *[p for p in PATTERNS if p])
    assert not world.nouns_describe


def test_vocabulary_folders_and_their_errors(tmp_path):
    (tmp_path / "nouns.txt").write_text("# my nouns\nrobot\n\nrobot\nkettle\n")
    custom = load_vocabulary(str(tmp_path))
    assert custom.nouns == ("robot", "kettle") and custom.adjectives == ()
    (tmp_path / "nouns.txt").write_text("# nothing\n")
    with pytest.raises(DreamtextError, match="holds no words"):
        load_vocabulary(str(tmp_path))
    with pytest.raises(DreamtextError, match="neither a shipped one"):
        load_vocabulary(str(tmp_path / "absent"))


# ---------------------------------------------------------------------------------------------
# CLIP backends
# ---------------------------------------------------------------------------------------------


def tiny_clip_model(image_size: int = 32):
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    torch.manual_seed(0)
    text = CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                          max_position_embeddings=77, projection_dim=16, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    vision = CLIPVisionConfig(image_size=image_size, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2, projection_dim=16)
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)).eval()


def smooth_image(height: int, width: int) -> torch.Tensor:
    """A smooth RGB image in [0, 1], quantised to 8 bits like a file."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    image = torch.stack([x, y, 0.5 + 0.4 * torch.sin(3 * x + 2 * y)])
    return (image * 255).round() / 255


def test_transformers_clip_preprocesses_like_clip_and_embeds_unit_vectors(tmp_path):
    from transformers import CLIPImageProcessorPil

    folder = tmp_path / "clip"
    tiny_clip_model().save_pretrained(folder)
    config = {"crop_size": {"height": 32, "width": 32}, "size": {"shortest_edge": 32}, "image_mean": list(CLIP_MEAN),
              "image_std": list(CLIP_STD), "image_processor_type": "CLIPImageProcessor"}
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    backend = load_clip_backend(str(folder))
    assert backend.kind == "transformers" and backend.default_vocabulary == "general"
    assert backend.preprocessing == ImagePreprocessing(32, 32, CLIP_MEAN, CLIP_STD)

    image = smooth_image(48, 72)  # not square: shorter side to 32, then a centre crop
    pil = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    reference = CLIPImageProcessorPil(**{k: v for k, v in config.items() if k != "image_processor_type"})(images=pil, return_tensors="pt")
    ours = backend.pixel_values(image[None])
    # PIL resamples with its own bicubic kernel and rounds to 8 bits: agreement to about 1/255 / std.
    assert (ours - reference["pixel_values"]).abs().max() < 0.02
    embeddings = backend.encode_image(torch.stack([image, image.flip(-1)]))
    assert embeddings.shape == (2, 16) and torch.allclose(embeddings.norm(dim=-1), torch.ones(2), atol=1e-5)
    with torch.no_grad():
        direct = F.normalize(backend.model.get_image_features(pixel_values=reference["pixel_values"]).pooler_output, dim=-1)
    assert torch.allclose(embeddings[0], direct[0], atol=0.02)


def test_text_chunks_give_the_same_vectors_as_one_batch(tmp_path, monkeypatch):
    folder = tmp_path / "clip"
    tiny_clip_model().save_pretrained(folder)
    backend = load_clip_backend(str(folder))  # no preprocessor config: OpenAI's mean/std at the model's size
    assert backend.preprocessing == ImagePreprocessing(32, 32, CLIP_MEAN, CLIP_STD)
    texts = ["An image of a mug", "An image of red, a mug", "An image of a cat", "a much longer sentence with many words in it", "x"]
    whole = backend.encode_text(texts)
    monkeypatch.setattr(clip_backends, "TEXT_CHUNK", 2)
    assert torch.allclose(backend.encode_text(texts), whole, atol=1e-6)
    assert torch.allclose(whole.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert not torch.allclose(whole[0], whole[1])


def test_small_clip_backend_matches_the_small_clip_code(tmp_path):
    from dreamtext.prior.small.clip import SmallClipConfig, build_small_clip, rank_captions, save_small_clip
    from dreamtext.prior.tokenizer import build_clip_tokenizer

    config = SmallClipConfig(text_hidden=32, text_layers=1, text_heads=2, text_mlp=64, projection_dim=16, image_size=16,
                             patch_size=8, vision_hidden=32, vision_layers=1, vision_heads=2, vision_mlp=64)
    tokenizer = build_clip_tokenizer()
    save_small_clip(build_small_clip(config), tokenizer, tmp_path / "small", metrics={"steps": 0})
    backend = load_clip_backend(str(tmp_path / "small"))  # recognised by its training_metrics.json
    assert backend.kind == "small" and backend.default_vocabulary == "world"
    assert backend.info() == {"kind": "small", "name": str(tmp_path / "small"), "image_size": 16}
    images, captions = torch.rand(2, 3, 16, 16), ["a red mug", "An image of blue, a cube"]
    expected = rank_captions(backend.model, tokenizer, images, captions)
    assert torch.allclose(backend.encode_image(images) @ backend.encode_text(captions).T, expected, atol=1e-5)
    assert load_clip_backend(f"small:{tmp_path / 'small'}").kind == "small"
    # Larger inputs are resized to the model's 16 px.
    assert backend.encode_image(torch.rand(1, 3, 64, 64)).shape == (1, 16)


def test_backend_errors_are_one_line(tmp_path, monkeypatch):
    def error_of(spec) -> str:
        with pytest.raises(DreamtextError) as caught:
            load_clip_backend(spec)
        assert "\n" not in str(caught.value)
        return str(caught.value)

    monkeypatch.setattr(clip_backends, "BUILTIN_CLIP_DIR", tmp_path / "not-shipped")
    assert "built-in CLIP is not installed" in error_of(None)
    assert "local cache" in error_of("someone/clip-not-cached")
    assert "not found" in error_of(str(tmp_path / "nothing-here"))
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    assert "is a file" in error_of(str(tmp_path / "weights.safetensors"))
    assert "no small CLIP" in error_of(f"small:{tmp_path}")
    monkeypatch.setitem(sys.modules, "open_clip", None)  # importing it now fails, as on this CPU stack
    assert "open_clip cannot be imported" in error_of("open_clip:ViT-L-14:openai")


# ---------------------------------------------------------------------------------------------
# A real (small) CLIP: trained here on world renders, and the shipped one
# ---------------------------------------------------------------------------------------------

TRAINED_NOUNS, TRAINED_COLOURS = ("cube", "mug", "cone"), ("red", "green", "blue")


@pytest.fixture(scope="module")
def trained_clip(tmp_path_factory):
    """A small CLIP trained for 100 steps on 72 renders of 3 nouns x 3 colours (about 8 s on 2 idle cores)."""
    from dreamtext.prior.small.clip import RenderPool, SmallClipConfig, image_word_ids, train_small_clip
    from dreamtext.world.renders import RenderConfig, render_objects
    from dreamtext.world.world import Attributes, build_object

    objects = [build_object(Attributes(noun, colour)) for noun in TRAINED_NOUNS for colour in TRAINED_COLOURS]
    train = render_objects(objects, RenderConfig(resolution=32, supersample=1, views_per_object=8), torch.Generator().manual_seed(0))
    test = render_objects(objects, RenderConfig(resolution=32, supersample=1, views_per_object=2), torch.Generator().manual_seed(1))
    config = SmallClipConfig(text_hidden=32, text_layers=2, text_heads=2, text_mlp=128, projection_dim=64, image_size=32,
                             patch_size=8, vision_hidden=64, vision_layers=2, vision_heads=2, vision_mlp=256, batch_size=32,
                             lr=2e-3, warmup_steps=5, pool_size=72, renders_per_step=0, seed=3, partial_caption_prob=0.5)
    pool = RenderPool(train.images.clone(), image_word_ids(train.objects, train.view_ids))
    folder = tmp_path_factory.mktemp("trained") / "clip"
    train_small_clip(config, folder, progress=False, steps=100, pool=pool)
    return folder, test


def test_a_trained_small_clip_adds_the_colour_and_stops(trained_clip):
    folder, renders = trained_clip
    backend = load_clip_backend(str(folder))
    vocabulary = Vocabulary("trained", TRAINED_NOUNS, TRAINED_COLOURS, nouns_describe=False)
    colour_exact = noun_right = 0
    for image, obj in zip(renders.images, renders.objects):
        given = select_sentence(backend, image, vocabulary, SentenceConfig(noun=obj.noun))
        colour_exact += given.descriptors == [obj.colour]  # the colour, and then nothing more
        noun_right += select_sentence(backend, image, vocabulary).noun == obj.noun
    count = len(renders.objects)  # 18 held-out views; measured: colour 16/18, noun 11/18
    assert colour_exact >= 14, f"colour exact in {colour_exact}/{count}"
    assert noun_right >= 9, f"noun right in {noun_right}/{count} (chance: 6)"


def shipped_clip_folder() -> Path | None:
    """The built-in CLIP, or DREAMTEXT_TEST_CLIP (a small CLIP folder) to run the check on another one."""
    override = os.environ.get("DREAMTEXT_TEST_CLIP")
    if override:
        return Path(override)
    return clip_backends.BUILTIN_CLIP_DIR if (clip_backends.BUILTIN_CLIP_DIR / "config.json").is_file() else None


@pytest.mark.skipif(shipped_clip_folder() is None, reason=f"no built-in CLIP shipped yet ({clip_backends.BUILTIN_CLIP_DIR} is missing)")
def test_shipped_clip_picks_the_right_noun_and_colour_on_world_renders():
    """Issue 5's check: on held-out world renders, with the built-in CLIP and the world vocabulary."""
    from dreamtext.world.renders import RenderConfig, sample_render_batch

    folder = shipped_clip_folder()
    backend = load_clip_backend("builtin" if folder == clip_backends.BUILTIN_CLIP_DIR else f"small:{folder}")
    vocabulary = load_vocabulary("world")
    renders = sample_render_batch(32, 5, "dev", RenderConfig(resolution=backend.preprocessing.crop, supersample=1))
    selections = [select_sentence(backend, image, vocabulary) for image in renders.images]
    nouns = sum(s.noun == o.noun for s, o in zip(selections, renders.objects)) / len(selections)
    colours = sum(o.colour in s.descriptors for s, o in zip(selections, renders.objects)) / len(selections)
    # The shipped CLIP (1707 GPU steps) measured: noun 72%, colour 78% of these 32 renders (chance: 5% / 8%).
    # These bounds guard that level; issue 4's target for the prior is higher and needs a better-trained CLIP.
    assert nouns >= 0.65 and colours >= 0.7, f"noun right in {nouns:.0%}, colour in {colours:.0%} of 32 dev renders"


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def rgba_file(path: Path) -> Path:
    pixels = np.zeros((40, 60, 4), np.uint8)
    pixels[10:30, 5:25] = (200, 30, 20, 255)
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def test_describe_writes_the_image_mask_and_a_record_descriptor_training_reads(tmp_path):
    from dreamtext.methods.image_to_3d.sentence import read_described_image

    workspace = tmp_path / "ws"
    backend = ScriptedClip(bag_of_words_score)
    config = DescribeConfig(vocabulary=str(tmp_path / "vocab"), image=InputImageConfig(size=64))
    (tmp_path / "vocab").mkdir()
    (tmp_path / "vocab" / "nouns.txt").write_text("\n".join(VOCABULARY.nouns))
    (tmp_path / "vocab" / "adjectives.txt").write_text("\n".join(VOCABULARY.adjectives))
    selection = describe_image(rgba_file(tmp_path / "in.png"), workspace, config, backend=backend)
    record = json.loads((workspace / "describe.json").read_text())
    assert record["version"] == 1 and record["sentence"] == selection.sentence == "An image of old, red, a mug"
    assert record["descriptors"] == ["old", "red"] and record["noun"] == "mug" and record["quantifier"] == "a"
    assert record["base_sentence"] == "An image of a mug" and record["prefix"] == "An image of" and record["separator"] == ", "
    assert [step["score"] for step in record["steps"]] == pytest.approx([0.30, 0.35, 0.38, 0.37])
    assert record["image"] == "input.png" and record["mask"] == "input_mask.png" and not record["noun_given"]
    assert record["clip"]["kind"] == "scripted" and record["vocabulary"]["nouns"] == 3
    assert Image.open(workspace / "input.png").size == (64, 64) and Image.open(workspace / "input_mask.png").mode == "L"
    described = read_described_image(workspace)  # descriptor training's reader agrees
    assert (described.sentence, described.noun, described.descriptors, described.quantifier) == (
        selection.sentence, "mug", ("old", "red"), "a")
    assert described.base_sentence == record["base_sentence"]

    # Describing an opaque image in the same workspace leaves no stale mask behind.
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(tmp_path / "grey.jpg")
    describe_image(tmp_path / "grey.jpg", workspace, config, backend=backend)
    assert json.loads((workspace / "describe.json").read_text())["mask"] is None
    assert not (workspace / "input_mask.png").exists()
    assert not [p for p in workspace.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_describe_command_with_a_trained_clip_and_its_bad_input(tmp_path, trained_clip, capsys):
    folder, _ = trained_clip
    vocab = tmp_path / "vocab"
    vocab.mkdir()
    (vocab / "nouns.txt").write_text("\n".join(TRAINED_NOUNS))
    (vocab / "adjectives.txt").write_text("\n".join(TRAINED_COLOURS))
    args = ["--workspace", str(tmp_path / "ws"), "--describe.clip", str(folder), "--describe.vocabulary", str(vocab),
            "--describe.image.size", "64", "--describe.device", "cpu"]
    assert main(["describe", str(rgba_file(tmp_path / "in.png")), *args, "--noun", "cube"]) == 0
    record = json.loads((tmp_path / "ws" / "describe.json").read_text())
    assert record["noun"] == "cube" and record["noun_given"] and record["clip"]["kind"] == "small"
    assert record["sentence"].startswith("An image of ") and record["sentence"].endswith("a cube")
    assert record["score"] == [step["score"] for step in record["steps"] if step["kept"]][-1]
    assert '"An image of' in capsys.readouterr().out

    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    assert main(["describe", str(tmp_path / "broken.png"), *args]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("dreamtext: error:") and "broken.png" in error and "\n" not in error
