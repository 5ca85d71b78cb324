"""CLIP's tokenizer offline: from the vocabulary the built-in prior ships, or from open_clip's BPE file.

No model hub is reachable on the project's machines, so tests (and users whose checkpoint lacks a
tokenizer) need CLIP's tokenizer from a local file. The built-in prior's `tokenizer/` folder carries
CLIP's `vocab.json` + `merges.txt` (the pair transformers' `CLIPTokenizer` reads, in every transformers
version); without it, open_clip_torch's `open_clip/bpe_simple_vocab_16e6.txt.gz` is located with
importlib (importing open_clip would pull torchvision), turned into that pair and written once into a
cache folder (`ensure_tokenizer_files`), which is also how the shipped pair was made.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
from pathlib import Path

from ..errors import DreamtextError
from ..utils.io import staging_folder

BPE_FILE_NAME = "bpe_simple_vocab_16e6.txt.gz"
# CLIP's vocabulary: 256 byte symbols, the same with "</w>", 48894 merges, then two special tokens.
CLIP_VOCAB_SIZE = 49408
CLIP_MERGE_COUNT = CLIP_VOCAB_SIZE - 2 * 256 - 2
START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"
CLIP_MAX_LENGTH = 77  # CLIP's context length
CACHE_SUBFOLDER = "clip-bpe-16e6"


def default_cache_root() -> Path:
    """`$DREAMTEXT_CACHE`, else `$XDG_CACHE_HOME/dreamtext`, else `~/.cache/dreamtext`."""
    if os.environ.get("DREAMTEXT_CACHE"):
        return Path(os.environ["DREAMTEXT_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dreamtext"


def find_bpe_vocabulary() -> Path:
    """Path of open_clip's gzipped BPE file, found without importing open_clip."""
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        candidate = Path(folder) / BPE_FILE_NAME
        if candidate.is_file():
            return candidate
    raise DreamtextError(
        f"the CLIP vocabulary {BPE_FILE_NAME} was not found: install it with "
        "`pip install --no-deps open_clip_torch==3.3.0`"
    )


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible map from the 256 byte values to printable unicode characters.

    Printable latin-1 bytes map to themselves; the others are moved past 255, in byte order, so BPE
    never sees whitespace or control characters.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def clip_vocabulary(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    """(token -> id, merge lines) in CLIP's order: bytes, bytes + "</w>", merged pairs, specials."""
    lines = gzip.decompress(bpe_path.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : 1 + CLIP_MERGE_COUNT]  # line 0 is a version header
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split(" ")) for m in merges] + [START_TOKEN, END_TOKEN]
    if len(tokens) != CLIP_VOCAB_SIZE:
        raise DreamtextError(f"{bpe_path} holds {len(merges)} merges, expected {CLIP_MERGE_COUNT}")
    return {token: index for index, token in enumerate(tokens)}, merges


def ensure_tokenizer_files(cache_root: str | Path | None = None) -> Path:
    """The folder holding `vocab.json` and `merges.txt`, written on first use.

    The files are written into a temporary sibling folder that is renamed into place, so a killed
    process or a concurrent writer never leaves a half-written tokenizer behind.
    """
    folder = Path(cache_root) if cache_root is not None else default_cache_root()
    folder = folder / CACHE_SUBFOLDER
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return folder
    vocab, merges = clip_vocabulary(find_bpe_vocabulary())
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(folder)
    try:
        (staging / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (staging / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        try:
            os.replace(staging, folder)
        except OSError:
            if not (folder / "vocab.json").is_file():  # not a concurrent writer that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def shipped_vocabulary_folder() -> Path | None:
    """The built-in prior's tokenizer folder when it holds CLIP's vocab.json and merges.txt."""
    folder = Path(__file__).resolve().parent / "builtin" / "pipeline" / "tokenizer"
    return folder if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file() else None


def build_clip_tokenizer(cache_root: str | Path | None = None, pad_token: str = END_TOKEN):
    """A transformers `CLIPTokenizer` built without network access.

    pad_token: Stable Diffusion 1.x pads with "<|endoftext|>", 2.x with "!"; the token only matters
    together with a text encoder trained with it.
    """
    from transformers import CLIPTokenizer

    folder = shipped_vocabulary_folder() or ensure_tokenizer_files(cache_root)
    return CLIPTokenizer(
        vocab=str(folder / "vocab.json"),
        merges=str(folder / "merges.txt"),
        pad_token=pad_token,
        model_max_length=CLIP_MAX_LENGTH,
    )
