"""What descriptor training leaves in a workspace, and how the prior takes it back.

DIR/embeddings/ holds one textual-inversion file per learned token ({token: [1, D]}, the format of
diffusers' `load_textual_inversion`) and sentence.json with the sentence template, so
`template.format(*tokens)` is the prompt reconstruction uses. The whole-sentence baseline trains the
text encoder's output instead of tokens; it is kept in conditioning.safetensors ([77, D]).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ...errors import DreamtextError
from ...utils.io import atomic_write, atomic_write_json, read_json
from .sentence import Trainable
from .tokens import add_tokens, load_token_embedding, save_token_embedding, token_file_name

SENTENCE_FILE = "sentence.json"
CONDITIONING_FILE = "conditioning.safetensors"


@dataclass
class LearnedSentence:
    """A trained sentence: its template, learned tokens and their vectors (or a trained conditioning)."""

    trainable: Trainable
    template: str
    words: tuple[str, ...]  # the word each token started from
    tokens: tuple[str, ...]
    base_sentence: str
    vectors: Tensor | None = None  # [n, D] float32, one row per token
    conditioning: Tensor | None = None  # [77, D] float32, whole-sentence mode only

    @property
    def prompt(self) -> str:
        """The full sentence with the learned tokens in their slots."""
        return self.template.format(*self.tokens)

    def save(self, folder: str | Path) -> list[Path]:
        folder = Path(folder)
        written = []
        files = [token_file_name(i, token) for i, token in enumerate(self.tokens)]
        for i, (token, word, name) in enumerate(zip(self.tokens, self.words, files)):
            written.append(save_token_embedding(folder / name, token, self.vectors[i], word))
        if self.conditioning is not None:
            from safetensors.torch import save_file

            tensors = {"conditioning": self.conditioning.detach().float().cpu().contiguous()}
            written.append(atomic_write(folder / CONDITIONING_FILE, lambda tmp: save_file(tensors, str(tmp))))
        written.append(atomic_write_json(folder / SENTENCE_FILE, {
            "trainable": self.trainable, "template": self.template, "prompt": self.prompt,
            "base_sentence": self.base_sentence, "words": list(self.words), "tokens": list(self.tokens),
            "files": files, "conditioning": CONDITIONING_FILE if self.conditioning is not None else None,
        }))
        return written

    @classmethod
    def load(cls, folder: str | Path) -> "LearnedSentence":
        folder = Path(folder)
        path = folder / SENTENCE_FILE
        data = read_json(path, "run `dreamtext descriptor` again", missing="run `dreamtext descriptor` on the workspace first")
        vectors = []
        for token, name in zip(data["tokens"], data["files"]):
            stored, vector = load_token_embedding(folder / name)
            if stored != token:
                raise DreamtextError(f"{folder / name} holds {stored!r}, sentence.json expects {token!r}; train again")
            vectors.append(vector.float())
        conditioning = None
        if data.get("conditioning"):
            from safetensors.torch import load_file

            conditioning = load_file(str(folder / data["conditioning"]))["conditioning"].float()
        return cls(
            trainable=data["trainable"], template=data["template"], words=tuple(data["words"]),
            tokens=tuple(data["tokens"]), base_sentence=data["base_sentence"],
            vectors=torch.stack(vectors) if vectors else None, conditioning=conditioning,
        )

    def install(self, tokenizer, text_encoder) -> list[int]:
        """Add the learned tokens to a tokenizer and text encoder (e.g. a `Prior`'s); their ids."""
        if not self.tokens:
            return []
        return add_tokens(tokenizer, text_encoder, self.tokens, self.vectors.to(text_encoder.get_input_embeddings().weight))
