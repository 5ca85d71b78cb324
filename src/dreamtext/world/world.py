"""The procedural world: captioned objects drawn deterministically from a seed, and its held-out split.

An object is a noun with a colour, a size and a pattern (vocabulary.py), built from coloured SDF parts
(objects.py), centred on the origin and scaled, so it lies inside [-0.6, 0.6]^3 with its front facing
+z. Its `scene` is an `AnalyticScene`: exact occupancy, SDF and albedo for ground truth, and a `Field`
the renderers and metrics accept.

The dev split holds out whole attribute combinations, not seeds: a combination is dev when a hash of
its words falls in the first `DEV_FRACTION` of the hash range. The same red striped mug can then
never reach training under another seed, and the split depends on nothing but the words, so it stays
put as long as the vocabulary does.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from ..errors import DreamtextError
from ..scene.cameras import view_prompt
from .analytic import AnalyticScene, Part
from .objects import CENTRING_OFFSETS, Paint, build_parts
from .sdf import Scale, Stretch, Translate
from .vocabulary import COLOURS, NOUNS, PATTERN_WEIGHTS, PATTERNS, SIZE_WEIGHTS, SIZES, describe, make_pattern

Split = Literal["train", "dev"]

# Ours: a tenth of the attribute combinations (about 530 of 5280) are held out for evaluation.
DEV_FRACTION = 0.1
# Ours: the world's objects lie in [-0.6, 0.6]^3, leaving room in the unit scene cube for cameras at 1.0.
OBJECT_BOUND = 0.6


@dataclass(frozen=True)
class Attributes:
    noun: str
    colour: str
    size: str = ""
    pattern: str = ""

    def __post_init__(self):
        for value, known, what in ((self.noun, NOUNS, "noun"), (self.colour, tuple(COLOURS), "colour"),
                                   (self.size, tuple(SIZES), "size"), (self.pattern, PATTERNS, "pattern")):
            if value not in known:
                raise ValueError(f"unknown {what} {value!r}; known: {list(known)}")

    def caption(self) -> str:
        return describe(self.noun, self.colour, self.size, self.pattern)


@dataclass(frozen=True)
class WorldObject:
    """One object of the world: its words and its ground-truth scene."""

    attributes: Attributes
    scene: AnalyticScene
    seed: int | None = None

    @property
    def noun(self) -> str:
        return self.attributes.noun

    @property
    def colour(self) -> str:
        return self.attributes.colour

    @property
    def size(self) -> str:
        return self.attributes.size

    @property
    def pattern(self) -> str:
        return self.attributes.pattern

    def caption(self, view_label: str | None = None) -> str:
        """"a small striped blue cube", with the SDS view suffix (", front view") when a label is given."""
        caption = self.attributes.caption()
        return caption if view_label is None else view_prompt(caption, view_label)


@dataclass(frozen=True)
class WorldConfig:
    """How objects are drawn. Weights: vocabulary.py (ours: favour plain, unsized objects)."""

    size_weights: tuple[tuple[str, float], ...] = tuple(SIZE_WEIGHTS.items())
    pattern_weights: tuple[tuple[str, float], ...] = tuple(PATTERN_WEIGHTS.items())


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


def build_object(attributes: Attributes, seed: int | None = None) -> WorldObject:
    """The object for these words: canonical parts, centred on the origin, then sized."""
    paint = Paint(COLOURS[attributes.colour], make_pattern(attributes.pattern, attributes.colour))
    shift = CENTRING_OFFSETS.get(attributes.noun, (0.0, 0.0, 0.0))
    factors = SIZES[attributes.size]

    def placed(part: Part) -> Part:
        shape = Translate(part.shape, shift)
        if factors != (1.0, 1.0, 1.0):
            # Uniform sizes keep the exact distance; only tall and flat need the bounded stretch.
            shape = Scale(shape, factors[0]) if len(set(factors)) == 1 else Stretch(shape, factors)
        return Part(shape, part.albedo, part.name, part.pattern)

    parts = tuple(placed(part) for part in build_parts(attributes.noun, paint))
    return WorldObject(attributes, AnalyticScene(parts), seed)


# ---------------------------------------------------------------------------------------------
# Sampling and the dev split
# ---------------------------------------------------------------------------------------------


def is_dev(attributes: Attributes) -> bool:
    """Whether this combination of words is held out (stable: a hash of the words only)."""
    key = "|".join((attributes.noun, attributes.colour, attributes.size, attributes.pattern)).encode()
    bucket = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
    return bucket < DEV_FRACTION


@lru_cache(maxsize=None)
def split_combinations(split: Split) -> tuple[Attributes, ...]:
    """Every attribute combination of the split, in vocabulary order."""
    if split not in ("train", "dev"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'dev'")
    combos = (Attributes(*words) for words in itertools.product(NOUNS, COLOURS, SIZES, PATTERNS))
    return tuple(a for a in combos if is_dev(a) == (split == "dev"))


@lru_cache(maxsize=1)
def _attributes_by_caption() -> dict[str, Attributes]:
    return {a.caption(): a for a in itertools.starmap(Attributes, itertools.product(NOUNS, COLOURS, SIZES, PATTERNS))}


def attributes_from_caption(caption: str) -> Attributes:
    """The words of a world caption ("a small striped blue cube"; no view suffix); a one-line error naming
    the world's nouns otherwise."""
    attributes = _attributes_by_caption().get(" ".join(caption.lower().split()))
    if attributes is None:
        raise DreamtextError(f"{caption!r} is not a caption of the built-in world: write [a|an] [size] [pattern] colour "
                             f"noun, e.g. \"a red mug\" (nouns: {', '.join(NOUNS)})")
    return attributes


def sample_attributes(seed: int, split: Split = "train", config: WorldConfig = WorldConfig()) -> Attributes:
    """Words drawn by seed: uniform noun and colour, weighted size and pattern, inside the split."""
    size_weights, pattern_weights = dict(config.size_weights), dict(config.pattern_weights)
    combos = split_combinations(split)
    weights = [size_weights[a.size] * pattern_weights[a.pattern] for a in combos]
    # A string seed hashes the same way on every run and platform (random.seed uses sha512 for str).
    rng = random.Random(f"dreamtext-world/{split}/{seed}")
    return rng.choices(combos, weights=weights, k=1)[0]


def sample_object(seed: int, split: Split = "train", config: WorldConfig = WorldConfig()) -> WorldObject:
    """The object of this seed in this split; the same seed always gives the same object."""
    return build_object(sample_attributes(seed, split, config), seed)


def dev_objects(count: int, config: WorldConfig = WorldConfig()) -> list[WorldObject]:
    """The first `count` distinct held-out objects (a fixed list, for benchmarks)."""
    available = len(split_combinations("dev"))
    if not 0 <= count <= available:
        raise ValueError(f"count must be in [0, {available}] (the dev combinations), got {count}")
    seen: dict[Attributes, int] = {}
    for seed in itertools.count():
        if len(seen) == count:
            break
        seen.setdefault(sample_attributes(seed, "dev", config), seed)
    return [build_object(attributes, seed) for attributes, seed in seen.items()]


__all__ = [
    "Attributes", "WorldObject", "WorldConfig", "DEV_FRACTION", "OBJECT_BOUND",
    "attributes_from_caption", "build_object", "dev_objects", "is_dev", "sample_attributes", "sample_object",
    "split_combinations",
]
