"""The sentence DreamText trains: read from `dreamtext describe`'s DIR/describe.json, turned into prompts.

Sentence selection (thesis 5.2.1) ends with a full sentence "An image of <w1>, ..., <wn>, <noun>" and
its noun; descriptor training (5.2.2) adds a base sentence "An image of a <noun>" and makes the
words of the full sentence other than the noun trainable. This module knows only the few fields it
reads from describe.json (the sentence, the descriptor words, the noun, the quantifier) and how a
sentence becomes a template with one slot per trained word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ...errors import DreamtextError
from ...utils.io import read_json
from ...utils.workspace_files import DESCRIBE_FILE

SENTENCE_PREFIX = "An image of"  # thesis 5.2.1: sentences start with "An image of"
DEFAULT_QUANTIFIER = "a"  # thesis 5.2.2: the base sentence is "An image of a <noun>"

Trainable = Literal["descriptors", "noun", "sentence", "none"]


@dataclass(frozen=True)
class DescribedImage:
    """What sentence selection chose for one image."""

    sentence: str  # the full sentence, e.g. "An image of red, striped, a mug"
    noun: str
    descriptors: tuple[str, ...]  # the words in front of the noun, in sentence order
    quantifier: str = DEFAULT_QUANTIFIER
    image: str | None = None  # the prepared input image (square, on white), relative to the workspace
    mask: str | None = None  # its object mask (grey image), when the input had alpha
    base: str | None = None  # describe's base sentence, when it recorded one

    @property
    def base_sentence(self) -> str:
        """Thesis 5.2.2: the noun alone, "An image of a <noun>"."""
        if self.base:
            return self.base
        quantified = f"{self.quantifier} {self.noun}" if self.quantifier else self.noun
        return f"{SENTENCE_PREFIX} {quantified}"


def _first(data: dict, *names: str):
    for name in names:
        if data.get(name) not in (None, ""):
            return data[name]
    return None


def read_described_image(workspace: str | Path) -> DescribedImage:
    """DIR/describe.json as a `DescribedImage`; a one-line error when it is missing or incomplete."""
    path = Path(workspace) / DESCRIBE_FILE
    data = read_json(path, "run describe again", missing=f"run `dreamtext describe IMAGE --workspace {workspace}` first")
    sentence, noun = _first(data, "sentence", "full_sentence"), _first(data, "noun")
    words = _first(data, "descriptors", "descriptor_words", "words")
    if not isinstance(sentence, str) or not isinstance(noun, str) or not isinstance(words, list):
        raise DreamtextError(f"{path} lacks the sentence, noun or descriptor words; run describe again")
    quantifier = data.get("quantifier")  # "" is a valid quantifier: none
    image = _first(data, "image", "prepared_image", "input_image")
    mask = _first(data, "mask", "mask_image")
    base = _first(data, "base_sentence")
    return DescribedImage(
        sentence=sentence, noun=noun, descriptors=tuple(str(w) for w in words),
        quantifier=DEFAULT_QUANTIFIER if quantifier is None else str(quantifier),
        image=None if image is None else str(image), mask=None if mask is None else str(mask),
        base=None if base is None else str(base),
    )


@dataclass(frozen=True)
class SentenceTemplate:
    """A sentence with numbered slots, `template.format(*tokens)` gives the prompt.

    words[i] is the word that slot i replaced (the learned token starts from its embedding).
    """

    template: str
    words: tuple[str, ...]

    def fill(self, tokens: list[str] | tuple[str, ...]) -> str:
        if len(tokens) != len(self.words):
            raise ValueError(f"the template has {len(self.words)} slots, got {len(tokens)} tokens")
        return self.template.format(*tokens)

    @property
    def plain(self) -> str:
        """The sentence with its own words back in the slots."""
        return self.fill(self.words)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def slot_words(sentence: str, words: tuple[str, ...] | list[str], from_end: bool = False) -> SentenceTemplate:
    """Replace one whole-word occurrence of each of `words` (in order, left to right; or the last one
    with `from_end`) by a numbered slot."""
    pieces: list[str] = []
    rest, found = sentence, []
    for word in words:
        matches = list(re.finditer(rf"(?<![\w-]){re.escape(word)}(?![\w-])", rest))
        if not matches:
            raise DreamtextError(f"the word {word!r} is not in the sentence {sentence!r}; run describe again")
        match = matches[-1] if from_end else matches[0]
        pieces.append(_escape(rest[: match.start()]) + "{" + str(len(found)) + "}")
        found.append(word)
        rest = rest[match.end():]
    return SentenceTemplate(template="".join(pieces) + _escape(rest), words=tuple(found))


def training_template(described: DescribedImage, trainable: Trainable) -> SentenceTemplate:
    """The sentence whose slots get learned tokens.

    descriptors: DreamText (thesis 5.2.2), the full sentence with every descriptor word a slot; the noun
        stays a fixed word. A sentence without descriptor words (no word in front of the noun raised the
        CLIP score) gives a template without slots: nothing to learn, the sentence is used as it is.
    noun: RealFusion-style textual inversion (thesis 6.3.1 "noun training"), the base sentence with the
        noun a slot.
    sentence: the thesis's first approach (6.3.1 "embedding training"): no slots, the whole conditioning
        embedding of the full sentence is trained instead.
    none: the plain sentence (a baseline): no slots, nothing trained, the sentence used as it is.
    """
    if trainable == "descriptors":
        return slot_words(described.sentence, described.descriptors)
    if trainable == "noun":
        return slot_words(described.base_sentence, (described.noun,), from_end=True)
    if trainable in ("sentence", "none"):
        return SentenceTemplate(template=_escape(described.sentence), words=())
    raise DreamtextError(f"unknown trainable part {trainable!r}; use descriptors, noun, sentence or none")
