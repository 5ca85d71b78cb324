"""The spatial encodings a field can be built on: one config per kind, each with `setup()` building its module.

A field's `encoding` setting is any of `EncodingConfig` (`field.encoding.kind` chooses: `hash_grid`, the
thesis's multiresolution hash grid, or `triplane`, K-planes-style feature planes, the fast one on CPU). An
encoding maps points in [0, 1]^3 to features [..., output_dim] and has `set_progress(progress)` for
schedules over a run. A new encoding is one module with its config (a `kind` field naming it and `setup()`)
added to the union below.
"""

from __future__ import annotations

from typing import Protocol, Union

from torch import Tensor

from .hash_encoding import HashGridConfig
from .triplane import TriplaneConfig

EncodingConfig = Union[HashGridConfig, TriplaneConfig]


class Encoding(Protocol):
    output_dim: int

    def __call__(self, points01: Tensor) -> Tensor: ...

    def set_progress(self, progress: float) -> None: ...
