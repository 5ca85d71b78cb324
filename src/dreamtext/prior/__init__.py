"""The 2D prior: a frozen Stable Diffusion model scoring renders by score distillation (issue 3).

diffusers and transformers are imported lazily inside the functions that need them, so importing
this package stays cheap.
"""

from .loading import DEFAULT_MODEL_ID, Prior, load_prior
from .prompts import PromptConfig, PromptEmbeddings, TextEmbeddingCache, VIEW_SUFFIXES, view_prompt, view_prompts
from ..utils.schedules import ConstantValue, CosineValue, ExponentialValue, LinearValue, ScalarSchedule
from .schedules import AnnealedTimesteps, CosineTimesteps, LinearTimesteps, TimestepSchedule, UniformTimesteps
from .sds import SDSConfig, SDSInfo, ScoreDistillation, guided_noise, sds_weight
from .tokenizer import build_clip_tokenizer

__all__ = [
    "DEFAULT_MODEL_ID", "Prior", "load_prior",
    "PromptConfig", "PromptEmbeddings", "TextEmbeddingCache", "VIEW_SUFFIXES", "view_prompt", "view_prompts",
    "AnnealedTimesteps", "ConstantValue", "CosineTimesteps", "CosineValue", "ExponentialValue", "LinearTimesteps", "LinearValue", "ScalarSchedule",
    "TimestepSchedule", "UniformTimesteps",
    "SDSConfig", "SDSInfo", "ScoreDistillation", "guided_noise", "sds_weight",
    "build_clip_tokenizer",
]
