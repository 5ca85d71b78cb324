"""`dreamtext describe IMAGE --workspace DIR`: prepare the input image and choose its sentence.

Writes into the workspace (all atomically):

    input.png        the prepared image: square, on white, `InputImageConfig.size` px
    input_mask.png   the object mask (grey PNG), only when the file had transparency
    describe.json    the selection, read by descriptor training (methods/image_to_3d/sentence.py)

describe.json (version 1):

    version        1
    sentence       the full sentence, "An image of red, a mug"
    base_sentence  the noun alone, "An image of a mug" (thesis 5.2.2)
    noun           "mug"
    quantifier     "a" (the article before the noun; "" for none)
    descriptors    the words in front of the noun, in sentence order: ["red"]
    prefix         "An image of";  separator ", "  (sentence = prefix + " " + separator-joined
                   descriptors and "<quantifier> <noun>")
    score          the final sentence's cosine similarity with the image
    stop_reason    why the search ended ("no word improves the similarity", ...)
    noun_given     whether --noun fixed the noun
    steps          every step, in order: {step, kind ("noun" | "descriptor"), word (the best
                   candidate), sentence, score, kept, candidates (how many were scored),
                   top ([[word, score], ...] best first)}; the last descriptor step is the one
                   whose best word was not kept, unless the search ran out of words
    image          "input.png";  mask  "input_mask.png" or null  (relative to the workspace)
    source         the input file as given
    clip           {kind ("small" | "transformers" | "open_clip"), name, image_size}
    vocabulary     {name, nouns, descriptors}: the word lists and their sizes
    seconds        time spent in the selection
    config         the SentenceConfig and InputImageConfig used
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...data.input_image import InputImageConfig, load_input_image
from ...prior.clip_backends import load_clip_backend
from ...utils.device import Device, resolve_device
from ...utils.io import atomic_write_json
from ...utils.workspace import Workspace
from ...utils.workspace_files import DESCRIBE_FILE
from .selection import Selection, SentenceConfig, select_sentence
from .vocabulary import load_vocabulary

IMAGE_FILE = "input.png"
MASK_FILE = "input_mask.png"
FORMAT_VERSION = 1


@dataclass
class DescribeConfig:
    """Which CLIP and word lists choose the sentence, how it is built and how the image is framed."""

    clip: str | None = None
    """CLIP model: a folder, a cached hub id (e.g. openai/clip-vit-large-patch14), small:PATH,
    open_clip:MODEL[:PRETRAINED] (None: the built-in small CLIP)."""
    vocabulary: str | None = None
    """Word lists: general, world, or a folder with nouns.txt and adjectives.txt (None: the CLIP's own)."""
    device: Device = "auto"
    sentence: SentenceConfig = field(default_factory=SentenceConfig)
    image: InputImageConfig = field(default_factory=InputImageConfig)


def describe_image(image_path: str | Path, workspace: str | Path, config: DescribeConfig = DescribeConfig(), backend=None) -> Selection:
    """Prepare `image_path`, select its sentence, and write the workspace files listed above.

    backend: an already loaded `ClipBackend` (tests, or a caller describing many images); loaded from
    `config.clip` when None.
    """
    prepared = load_input_image(image_path, config.image)  # bad input fails before any model loads
    space = Workspace(workspace)
    if backend is None:
        backend = load_clip_backend(config.clip, resolve_device(config.device))
    vocabulary = load_vocabulary(config.vocabulary or backend.default_vocabulary)
    start = time.perf_counter()
    selection = select_sentence(backend, prepared.image, vocabulary, config.sentence)
    seconds = time.perf_counter() - start

    prepared.save(space.path(IMAGE_FILE), space.path(MASK_FILE))
    if not prepared.has_mask and space.path(MASK_FILE).exists():
        space.path(MASK_FILE).unlink()  # a stale mask from an earlier image must not pair with this one
    record = {
        "version": FORMAT_VERSION,
        **selection.to_dict(),
        "noun_given": config.sentence.noun is not None,
        "image": IMAGE_FILE,
        "mask": MASK_FILE if prepared.has_mask else None,
        "source": str(image_path),
        "clip": backend.info(),
        "vocabulary": {
            "name": vocabulary.name,
            "nouns": len(vocabulary.nouns),
            "descriptors": len(vocabulary.descriptors()),
        },
        "seconds": seconds,
        "config": {"sentence": asdict(config.sentence), "image": asdict(config.image)},
    }
    atomic_write_json(space.path(DESCRIBE_FILE), record)
    return selection

