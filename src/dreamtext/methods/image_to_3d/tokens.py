"""Learned tokens: new rows of a CLIP text encoder's token table, trained apart from the frozen rows.

A descriptor word gets a token of its own ("<dt-red>"), added to the tokenizer and to the text
encoder's embedding table and initialised from the word's own embedding (thesis 5.2.2). The table
stays frozen: training splices a separate parameter holding only the new rows into the embedding
layer's output (`TokenSplice`), so no optimiser state, weight decay or numerical round-off can reach
any other row. Saved embeddings use the file format of diffusers' `load_textual_inversion`: one
safetensors file per token holding {token: vector [1, D]}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from ...errors import DreamtextError
from ...utils.io import atomic_write

TOKEN_PREFIX = "dt-"  # ours: "<dt-red>" cannot collide with CLIP's BPE vocabulary (no "<" pieces there)


def token_for(word: str) -> str:
    """The learned token's name for `word`: "<dt-red>", spaces and odd characters as dashes."""
    slug = re.sub(r"[^0-9a-z]+", "-", word.lower()).strip("-") or "word"
    return f"<{TOKEN_PREFIX}{slug}>"


def unique_tokens(words: Sequence[str]) -> list[str]:
    """One distinct token per word, in order (a repeated word gets "-2", "-3" ...)."""
    tokens: list[str] = []
    for word in words:
        token, count = token_for(word), 1
        while token in tokens:
            count += 1
            token = token_for(f"{word}-{count}")
        tokens.append(token)
    return tokens


def word_ids(tokenizer, word: str) -> list[int]:
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if not ids:
        raise DreamtextError(f"the word {word!r} has no tokens; describe the image again")
    return list(ids)


def word_embedding(tokenizer, text_encoder, word: str) -> Tensor:
    """The input embedding of `word` [D]: its token's row, or the mean of its pieces' rows when BPE splits it."""
    table = text_encoder.get_input_embeddings().weight
    return table[torch.tensor(word_ids(tokenizer, word), device=table.device)].float().mean(dim=0)


def add_tokens(tokenizer, text_encoder, tokens: Sequence[str], vectors: Tensor) -> list[int]:
    """Add `tokens` with embeddings `vectors` [n, D] to the tokenizer and the (frozen) text encoder; their ids.

    Tokens the tokenizer already has (a prior that trained them in this process) get their rows overwritten.
    """
    embedding = text_encoder.get_input_embeddings()
    if vectors.shape != (len(tokens), embedding.embedding_dim):
        raise DreamtextError(
            f"learned embeddings have shape {tuple(vectors.shape)}, the text encoder needs "
            f"[{len(tokens)}, {embedding.embedding_dim}]; they were trained for another model"
        )
    vocab = tokenizer.get_vocab()
    present = [token in vocab for token in tokens]
    if all(present):
        ids = tokenizer.convert_tokens_to_ids(list(tokens))
        set_token_rows(text_encoder, ids, vectors)
        return list(ids)
    if any(present):
        raise DreamtextError(f"the tokenizer already has some of the tokens {list(tokens)}; load the prior afresh")
    tokenizer.add_tokens(list(tokens))
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    rows = max(embedding.num_embeddings, max(ids) + 1)
    weight = torch.empty(rows, embedding.embedding_dim, dtype=embedding.weight.dtype, device=embedding.weight.device)
    weight[: embedding.num_embeddings] = embedding.weight.detach()
    weight[torch.tensor(ids, device=weight.device)] = vectors.to(weight)
    grown = nn.Embedding(rows, embedding.embedding_dim, _weight=weight, _freeze=True)
    text_encoder.set_input_embeddings(grown)
    text_encoder.config.vocab_size = rows
    return list(ids)


def set_token_rows(text_encoder, ids: Sequence[int], vectors: Tensor) -> None:
    """Write `vectors` [n, D] into the table rows `ids` (after training: the encoder then needs no splice)."""
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[torch.tensor(list(ids), device=weight.device)] = vectors.to(weight)


class TokenSplice:
    """While installed, the embedding layer returns `rows` [n, D] (a trainable parameter) for `ids`.

    Gradients reach `rows` only; the frozen table is read but never written.
    """

    def __init__(self, text_encoder, ids: Sequence[int], rows: nn.Parameter):
        self.layer = text_encoder.get_input_embeddings()
        self.first = int(ids[0])
        if list(ids) != list(range(self.first, self.first + len(ids))):
            raise ValueError(f"learned token ids must be consecutive, got {list(ids)}")
        self.rows = rows
        self._handle = self.layer.register_forward_hook(self._splice)

    def _splice(self, module, inputs, output: Tensor) -> Tensor:
        offset = inputs[0] - self.first
        learned = (offset >= 0) & (offset < self.rows.shape[0])
        spliced = self.rows[offset.clamp(0, self.rows.shape[0] - 1)].to(output.dtype)
        return torch.where(learned.unsqueeze(-1), spliced, output)

    def remove(self) -> None:
        self._handle.remove()


# -- files --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LearnedToken:
    token: str
    word: str  # the word it started from
    file: str  # file name inside the embeddings folder


def token_file_name(index: int, token: str) -> str:
    return f"{index:02d}_{token.strip('<>')}.safetensors"


def save_token_embedding(path: str | Path, token: str, vector: Tensor, word: str) -> Path:
    """One textual-inversion file, {token: [1, D] float32}, as diffusers' own training script writes it."""
    from safetensors.torch import save_file

    tensors = {token: vector.detach().float().reshape(1, -1).cpu().contiguous()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt", "word": word}))


def load_token_embedding(path: str | Path) -> tuple[str, Tensor]:
    """(token, vector [D]) from a file holding one token (diffusers' textual-inversion format)."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as error:  # missing, truncated or not safetensors
        raise DreamtextError(f"{path}: cannot read learned embedding ({type(error).__name__}); train the descriptor again") from None
    if len(tensors) != 1:
        raise DreamtextError(f"{path}: expected one token, found {len(tensors)}; train the descriptor again")
    (token, vector), = tensors.items()
    return token, vector.reshape(-1)
