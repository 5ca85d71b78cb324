"""Sentence selection (thesis 5.2.1): CLIP as a zero-shot judge builds the sentence that describes an image.

Step 0 picks the noun: every "An image of <quantifier> <noun>" is scored by the cosine similarity of
its CLIP text embedding with the image's. Each later step tries every unused descriptor word in
front of the words already chosen,

    "An image of <new>, <w1>, ..., <wn>, <quantifier> <noun>",

keeps the best one only when it raises the similarity (by more than `min_gain`), and stops as soon
as no word does. All candidates of a step go to the text encoder in one call.

The quantifier sits with the noun: the base sentence of descriptor training (thesis 5.2.2) is
"An image of a <noun>", and the full sentence is that noun phrase with the descriptors in front.
Given no quantifier, the English article that fits the noun is used ("a mug", "an orange").
Each new word goes to the front, so the first-found word, usually the most telling one (the colour),
stays next to the noun as English orders adjectives ("small, striped, red, a mug").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated

import torch
import tyro
from torch import Tensor

from ...errors import DreamtextError
from ...world.vocabulary import article
from .vocabulary import Vocabulary


@dataclass(frozen=True)
class SentenceConfig:
    """How sentences are built and when selection stops.

    prefix / separator: thesis 5.2.1, "An image of <w1>, <w2>, ..., <wn>, <noun>".
    noun / quantifier: thesis 8.1 (descriptor.py --noun watch --quantifier a): fixed by the user when
        given; otherwise the best noun of the vocabulary and the article that fits it.
    max_words: ours, 8: a guard against a vocabulary whose words keep adding tiny gains (the thesis
        stops only when no word helps); 8 words stay far below CLIP's 77 tokens.
    min_gain: thesis, 0: any improvement of the cosine similarity keeps a word.
    record_top: ours, 5: the best candidates of each step saved with it, to see how close the race was.
    """

    prefix: str = "An image of"
    separator: str = ", "
    noun: Annotated[str | None, tyro.conf.arg(aliases=("--noun",))] = None
    quantifier: str | None = None
    max_words: int = 8
    min_gain: float = 0.0
    record_top: int = 5


@dataclass
class SelectionStep:
    """One step of the greedy search: its best candidate and whether it was kept."""

    step: int
    kind: str  # "noun" or "descriptor"
    word: str
    sentence: str
    score: float  # cosine similarity of `sentence` with the image
    kept: bool
    candidates: int
    top: list[tuple[str, float]] = field(default_factory=list)  # best candidates, best first


@dataclass
class Selection:
    """The chosen sentence and how it was reached."""

    sentence: str
    base_sentence: str
    noun: str
    quantifier: str
    descriptors: list[str]  # in sentence order
    score: float
    stop_reason: str
    steps: list[SelectionStep]
    prefix: str
    separator: str

    def to_dict(self) -> dict:
        return asdict(self)


def compose(config: SentenceConfig, words: list[str], quantifier: str, noun: str) -> str:
    """ "<prefix> <w1><sep>...<sep><wn><sep><quantifier> <noun>"."""
    noun_phrase = f"{quantifier} {noun}" if quantifier else noun
    body = config.separator.join([*words, noun_phrase])
    return f"{config.prefix} {body}" if config.prefix else body


def quantifier_for(noun: str, config: SentenceConfig) -> str:
    return article(noun) if config.quantifier is None else config.quantifier


def _score(backend, image_embedding: Tensor, sentences: list[str]) -> Tensor:
    """Cosine similarities [len(sentences)] of every sentence with the image (one encoder call)."""
    return (backend.encode_text(sentences).float() @ image_embedding.float().reshape(-1, 1))[:, 0].cpu()


def _best(words: list[str], scores: Tensor, record_top: int) -> tuple[int, list[tuple[str, float]]]:
    """Index of the highest score (the first on ties: file order decides) and the top entries."""
    order = torch.sort(scores, descending=True, stable=True).indices
    return int(order[0]), [(words[i], float(scores[i])) for i in order[:record_top].tolist()]


@torch.no_grad()
def select_sentence(backend, image: Tensor, vocabulary: Vocabulary, config: SentenceConfig = SentenceConfig()) -> Selection:
    """Run the greedy selection for one image [3, H, W] (or [1, 3, H, W]) in [0, 1]."""
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"expected one RGB image [3, H, W], got {tuple(image.shape)}")
    if config.noun is not None and not config.noun.strip():
        raise DreamtextError("--noun is empty; give a noun or leave it out to let CLIP choose one")
    image_embedding = backend.encode_image(image)[0]

    nouns = [config.noun.strip()] if config.noun is not None else list(vocabulary.nouns)
    sentences = [compose(config, [], quantifier_for(noun, config), noun) for noun in nouns]
    scores = _score(backend, image_embedding, sentences)
    index, top = _best(nouns, scores, config.record_top)
    noun, quantifier, score = nouns[index], quantifier_for(nouns[index], config), float(scores[index])
    steps = [SelectionStep(0, "noun", noun, sentences[index], score, True, len(nouns), top)]

    words: list[str] = []
    stop_reason = ""
    while not stop_reason:
        candidates = vocabulary.descriptors(exclude=[*words, noun])
        if not candidates:
            stop_reason = "every descriptor word is in the sentence"
            break
        if len(words) >= config.max_words:
            stop_reason = f"max_words ({config.max_words}) reached"
            break
        sentences = [compose(config, [word, *words], quantifier, noun) for word in candidates]
        scores = _score(backend, image_embedding, sentences)
        index, top = _best(candidates, scores, config.record_top)
        kept = float(scores[index]) > score + config.min_gain
        steps.append(SelectionStep(len(steps), "descriptor", candidates[index], sentences[index], float(scores[index]), kept, len(candidates), top))
        if kept:
            words.insert(0, candidates[index])
            score = float(scores[index])
        else:
            stop_reason = "no word improves the similarity"

    return Selection(
        sentence=compose(config, words, quantifier, noun),
        base_sentence=compose(config, [], quantifier, noun),
        noun=noun,
        quantifier=quantifier,
        descriptors=words,
        score=score,
        stop_reason=stop_reason,
        steps=steps,
        prefix=config.prefix,
        separator=config.separator,
    )
