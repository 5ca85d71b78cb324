"""View-dependent prompts and their text embeddings, computed once and cached.

The thesis (6.1.7, after DreamFusion) appends the camera's view to the prompt ("..., front view") so
the prior is asked for the side the camera actually sees. The labels and their angle thresholds live
in `scene.cameras` (`VIEW_LABELS`, `view_label_ids`); this module turns them into embeddings.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Sequence

import torch
import tyro
from torch import Tensor

from ..errors import DreamtextError
from ..scene.cameras import VIEW_LABELS, VIEW_SUFFIXES, view_prompt  # noqa: F401  (view_prompt: re-exported)
from .loading import Prior
from .perp_neg import BACK, FRONT, SIDE, PerpNegConfig, perp_neg_plan



def view_prompts(prompt: str) -> list[str]:
    """The prompt with each suffix, in `VIEW_LABELS` order (index = view label id)."""
    return [view_prompt(prompt, label) for label in VIEW_LABELS]


@dataclass(frozen=True)
class PromptConfig:
    """What the prior is conditioned on.

    view_dependent: thesis 6.1.7 (on in both Stable DreamFusion and FitFusion).
    negative_prompt: the unconditional branch of classifier-free guidance; "" is the usual
        unconditional embedding (stable-dreamfusion's default).
    """

    prompt: Annotated[str, tyro.conf.Suppress]  # commands take it as their positional argument
    negative_prompt: str = ""
    view_dependent: bool = True


class TextEmbeddingCache:
    """Text encoder outputs keyed by prompt: each distinct prompt goes through the encoder once.

    After `freeze()` the encoder is no longer referenced (the prior may free it) and asking for an
    unseen prompt is an error instead of a silent recomputation.
    """

    def __init__(self, prior: Prior):
        self._prior = prior
        self._cache: dict[str, Tensor] = {}
        self._frozen = False

    def __len__(self) -> int:
        return len(self._cache)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> Tensor:
        """Embeddings [len(prompts), 77, D]; missing prompts are encoded together in one batch."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            if self._frozen or self._prior.text_encoder is None:
                raise DreamtextError(f"no cached text embedding for {missing[0]!r} and the text encoder was freed")
            for prompt, embedding in zip(missing, self._run_encoder(missing)):
                self._cache[prompt] = embedding
        return torch.stack([self._cache[p] for p in prompts])

    def _run_encoder(self, prompts: list[str]) -> Tensor:
        tokenizer = self._prior.tokenizer
        tokens = tokenizer(
            prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        )
        encoder = self._prior.text_encoder
        # Stable Diffusion conditions on the last hidden states of every token (not the pooled output).
        return encoder(tokens.input_ids.to(self._prior.device))[0].to(self._prior.dtype)

    def freeze(self) -> None:
        self._frozen = True


def check_prompt_length(tokenizer, prompts: list[str], view_dependent: bool) -> None:
    """The text encoder reads a fixed window of tokens (77 for Stable Diffusion) and cuts the rest. A view
    prompt cut short loses its view suffix, so every view would get the same conditioning: refused, with the
    count; a prompt without views that is cut is only warned about."""
    window = int(tokenizer.model_max_length)
    counts = [len(tokenizer(prompt, truncation=False).input_ids) for prompt in prompts]
    if max(counts) <= window:
        return
    longest = max(counts)
    if view_dependent:
        raise DreamtextError(f"the prompt with its view suffix is {longest} tokens but the text encoder reads {window}: the "
                             f"view (\"{VIEW_SUFFIXES['overhead'].lstrip(', ')}\") would be cut off; shorten the prompt by "
                             f"{longest - window} tokens")
    print(f"dreamtext: warning: the prompt is {longest} tokens; the text encoder reads the first {window}", file=sys.stderr)


class PromptEmbeddings:
    """Everything SDS needs from the text side of one run, encoded up front.

    Holds the conditional embedding of every view label (or of the bare prompt) and the negative one,
    so the text encoder can be freed right after construction (`free_encoder=True`).
    """

    def __init__(self, prior: Prior, config: PromptConfig, free_encoder: bool = False):
        if not config.prompt.strip():
            raise DreamtextError("the prompt is empty: describe the object to create")
        self.config = config
        self.cache = TextEmbeddingCache(prior)
        prompts = view_prompts(config.prompt) if config.view_dependent else [config.prompt]
        check_prompt_length(prior.tokenizer, prompts, config.view_dependent)
        embeddings = self.cache.encode([*prompts, config.negative_prompt])
        self._conditional = embeddings[:-1]  # [views or 1, 77, D]
        self._negative = embeddings[-1:]  # [1, 77, D]
        self.cache.freeze()
        if free_encoder:
            prior.free_text_encoder()

    def conditional(self, view_ids: Tensor) -> Tensor:
        """[B, 77, D] for cameras with `view_label_ids` [B] (ignored without view-dependent prompts)."""
        if not self.config.view_dependent:
            return self._conditional.expand(view_ids.shape[0], -1, -1)
        return self._conditional[view_ids.to(self._conditional.device)]

    def unconditional(self, batch: int) -> Tensor:
        return self._negative.expand(batch, -1, -1)

    def perp_neg(self, azimuth_deg: Tensor, view_ids: Tensor, config: PerpNegConfig = PerpNegConfig()
                 ) -> tuple[Tensor, Tensor, Tensor]:
        """Perp-Neg's conditioning (`prior.perp_neg`) for cameras at `azimuth_deg` [B] with `view_label_ids` [B]:
        the positive embeddings [B, 77, D] (the view prompts mixed by azimuth; overhead and bottom cameras
        keep their own), the negative prompts' [B, 2, 77, D] and their weights [B, 2]."""
        if not self.config.view_dependent:
            raise DreamtextError("Perp-Neg guidance needs view-dependent prompts (prompt.view_dependent)")
        views = self._conditional
        plan = perp_neg_plan(azimuth_deg.cpu(), view_ids.cpu(), config)
        device = views.device
        mixed = torch.einsum("bk,k...->b...", plan.mix.to(device), views[[FRONT, SIDE, BACK]].float())
        positive = torch.where(plan.own.to(device)[:, None, None], views[view_ids.to(device)].float(), mixed)
        return positive.to(views.dtype), views[plan.negative_ids.to(device)], plan.weights.to(device)
