"""Word lists sentence selection draws from, shipped as plain text files (one word a line).

A vocabulary is a folder with `nouns.txt` and `adjectives.txt`; blank lines and lines starting with
"#" are skipped. Two ship with the package under `vocabularies/`:

- general: common English (about 1500 concrete nouns, 550 adjectives), for real CLIP models;
- world: the procedural world's words (world/vocabulary.py: nouns; colours, sizes, patterns), for the
  built-in small CLIP, which knows nothing else.

Descriptor words (the ones put in front of the noun) are the adjectives and, where the vocabulary
allows it, the nouns too (thesis 5.2.1 adds "adjectives/nouns"); the world's captions never stack
nouns, so its descriptors are adjectives only.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import DreamtextError

NOUNS_FILE = "nouns.txt"
ADJECTIVES_FILE = "adjectives.txt"

# Shipped vocabularies and whether their nouns also serve as descriptor words.
BUILTIN_VOCABULARIES: dict[str, bool] = {"general": True, "world": False}


@dataclass(frozen=True)
class Vocabulary:
    name: str
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    nouns_describe: bool = True

    def descriptors(self, exclude: tuple[str, ...] | list[str] = ()) -> list[str]:
        """Descriptor candidates in file order (adjectives first), without repeats or `exclude`d words."""
        pool = self.adjectives + (self.nouns if self.nouns_describe else ())
        excluded = set(exclude)
        return [word for word in dict.fromkeys(pool) if word not in excluded]


def read_word_list(path: Any, required: bool = True) -> tuple[str, ...]:
    """The words of one list file (a Path or a package resource), in order, without repeats."""
    if not path.is_file():
        if required:
            raise DreamtextError(f"{path} is missing; a vocabulary folder holds {NOUNS_FILE} and {ADJECTIVES_FILE}")
        return ()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DreamtextError(f"{path} is unreadable ({type(error).__name__}); save it as UTF-8 text, one word a line") from None
    words = [line.strip() for line in lines]
    return tuple(dict.fromkeys(word for word in words if word and not word.startswith("#")))


def builtin_vocabulary_folder(name: str) -> Any:
    """The shipped folder of `name` (an importlib.resources Traversable: works from a wheel too)."""
    return resources.files(__package__) / "vocabularies" / name


def load_vocabulary(name_or_path: str) -> Vocabulary:
    """A shipped vocabulary by name ("general", "world") or a folder of word lists."""
    if name_or_path in BUILTIN_VOCABULARIES:
        folder = builtin_vocabulary_folder(name_or_path)
        nouns_describe = BUILTIN_VOCABULARIES[name_or_path]
    else:
        folder = Path(name_or_path).expanduser()
        if not folder.is_dir():
            known = ", ".join(BUILTIN_VOCABULARIES)
            raise DreamtextError(f"vocabulary {name_or_path!r} is neither a shipped one ({known}) nor a folder of word lists")
        nouns_describe = True
    nouns = read_word_list(folder / NOUNS_FILE)
    if not nouns:
        raise DreamtextError(f"{folder / NOUNS_FILE} holds no words; list one noun a line")
    return Vocabulary(name_or_path, nouns, read_word_list(folder / ADJECTIVES_FILE, required=False), nouns_describe)
