"""Words of the world's images and of captions, as id rows, and which caption is true of which image.

Shared by the small CLIP's contrastive training (`clip.py`), the render pool (`render_pool.py`) and the
UNet's captions (`train.py`). A row holds noun, colour, size, pattern and view label ids; a caption that
leaves a word unsaid holds WILDCARD there and is true of every value of it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...scene.cameras import VIEW_LABELS, view_prompt
from ...world.vocabulary import COLOURS, NOUNS, PATTERNS, SIZES, describe

WILDCARD = -1  # a caption that does not name a word holds for every value of it
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SIZE_NAMES: tuple[str, ...] = tuple(SIZES)

# Columns of a word-id table: noun, colour, size, pattern, view.
WORD_FIELDS = ("noun", "colour", "size", "pattern", "view")


def image_word_ids(objects, view_ids: Tensor) -> Tensor:
    """[B, 5] long: each image's noun, colour, size, pattern and view label ids."""
    rows = [(NOUNS.index(o.noun), COLOUR_NAMES.index(o.colour), SIZE_NAMES.index(o.size), PATTERNS.index(o.pattern)) for o in objects]
    return torch.cat([torch.tensor(rows, dtype=torch.long).reshape(-1, 4), view_ids.cpu().long()[:, None]], dim=1)


def caption_from_words(words: list[int]) -> str:
    """The caption a word-id row stands for; WILDCARD columns are left unsaid."""
    noun, colour, size, pattern, view = words
    if noun == WILDCARD:  # the colour-only form
        text = describe("object", COLOUR_NAMES[colour])
    elif colour == WILDCARD:  # the noun-only form
        text = describe(NOUNS[noun], "")
    else:
        text = describe(NOUNS[noun], COLOUR_NAMES[colour], SIZE_NAMES[size], PATTERNS[pattern])
    return text if view == WILDCARD else view_prompt(text, VIEW_LABELS[view])


def caption_word_ids(image_words: Tensor, plain_prob: float, partial_prob: float, generator: torch.Generator) -> Tensor:
    """Word ids [B, 5] of a caption drawn for each image: full with its view, plain (no view), or
    partial (noun only or colour only, no view); unsaid words are WILDCARD."""
    count = image_words.shape[0]
    draw = torch.rand(count, generator=generator)
    noun_only = torch.rand(count, generator=generator) < 0.5
    plain = draw < plain_prob + partial_prob
    partial = draw < partial_prob
    words = image_words.clone()
    words[plain, 4] = WILDCARD
    words[partial, 2:4] = WILDCARD
    words[partial & noun_only, 1] = WILDCARD
    words[partial & ~noun_only, 0] = WILDCARD
    return words


def truth_matrix(caption_words: Tensor, image_words: Tensor) -> Tensor:
    """[C, B] bool: caption c is true of image b (every word it says matches)."""
    said = caption_words[:, None, :]
    return ((said == WILDCARD) | (said == image_words[None, :, :])).all(-1)
