"""What rays see behind the object: a learned colour per view direction, a plain colour, or a random one.

The renderer composites the field's colour over `Background(directions)` with the remaining
transmittance. The kinds:
- "mlp": the thesis's background network (6.1.3): 2 linear layers, 64 wide, ReLU, on the view
  direction, sigmoid output. The direction is first passed through a small sinusoidal encoding,
  because a 64-wide two-layer net on raw xyz can only draw a backdrop that varies almost linearly
  across the sphere.
- "solid": one fixed colour (white by default).
- "random": while training, one random colour per call for the whole batch (threestudio-style
  augmentation: an object cannot hide in a background it cannot predict); in eval mode it renders
  the fixed `color`, so evaluation images do not flicker. `random_color()` draws one colour to
  hold fixed over a render made of several chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from dreamtext.errors import DreamtextError

BackgroundKind = Literal["mlp", "solid", "random"]


@dataclass(frozen=True)
class BackgroundConfig:
    """kind: ours, "mlp", the thesis's learned background (6.1.3).
    color: ours, white, for "solid" and for "random" in eval mode (white is also the fill colour of
        the thesis's image augmentations, so photos and renders agree).
    random_range: ours, [0, 1]: the interval each channel of a "random" colour is drawn from. A prior
        trained on light backdrops (the built-in one: [0.75, 1], world/renders.py) wants the same here.
    hidden_dim: thesis 6.1.3 (64).
    num_frequencies: ours, 6 octaves of sin/cos per axis (frequencies 1 to 32 on the unit sphere):
        enough for a backdrop with some structure, far too few to paint per-pixel detail.
    """

    kind: BackgroundKind = "mlp"
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    random_range: tuple[float, float] = (0.0, 1.0)
    hidden_dim: int = 64
    num_frequencies: int = 6

    def __post_init__(self):
        if self.kind not in ("mlp", "solid", "random"):
            raise DreamtextError(f"BackgroundConfig.kind must be 'mlp', 'solid' or 'random', got {self.kind!r}")
        if len(self.color) != 3 or any(not 0.0 <= c <= 1.0 for c in self.color):
            raise DreamtextError(f"BackgroundConfig.color must be three values in [0, 1], got {self.color!r}")
        low, high = self.random_range
        if not 0.0 <= low <= high <= 1.0:
            raise DreamtextError(f"BackgroundConfig.random_range must satisfy 0 <= low <= high <= 1, got {self.random_range!r}")


class FrequencyEncoding(nn.Module):
    """x -> [x, sin(2^k x), cos(2^k x) for k < num_frequencies], per component."""

    def __init__(self, num_frequencies: int, in_dim: int = 3):
        super().__init__()
        self.register_buffer("frequencies", 2.0 ** torch.arange(num_frequencies), persistent=False)
        self.output_dim = in_dim * (1 + 2 * num_frequencies)

    def forward(self, x: Tensor) -> Tensor:
        angles = (x[..., None, :] * self.frequencies[:, None].to(x)).flatten(-2)  # [..., K * D]
        return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)


class Background(nn.Module):
    """Background colour [R, 3] in [0, 1] for unit ray directions [R, 3]."""

    def __init__(self, config: BackgroundConfig = BackgroundConfig(), generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        self.generator = generator  # used by "random" when a call passes none
        self.encoding: FrequencyEncoding | None = None
        self.mlp: nn.Sequential | None = None
        if config.kind == "mlp":
            self.encoding = FrequencyEncoding(config.num_frequencies)
            self.mlp = nn.Sequential(
                nn.Linear(self.encoding.output_dim, config.hidden_dim),
                nn.ReLU(),
                nn.Linear(config.hidden_dim, 3),
            )

    def forward(self, directions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.mlp is not None:
            return torch.sigmoid(self.mlp(self.encoding(directions)))
        if self.config.kind == "random" and self.training:
            color = self.random_color(generator).to(directions)
        else:
            color = directions.new_tensor(self.config.color)
        return color.expand(*directions.shape[:-1], 3)

    def random_color(self, generator: torch.Generator | None = None) -> Tensor:
        """One random colour [3] (the call's generator, else the module's, else torch's global one).

        The renderer calls the background once per chunk of rays; a training loop that renders in
        chunks draws the colour here once per image and passes that tensor as the background.
        """
        generator = generator if generator is not None else self.generator
        # Drawn on the generator's device (CPU by default), then moved: seeded runs match across devices.
        low, high = self.config.random_range
        unit = torch.rand(3, generator=generator, device=generator.device if generator is not None else "cpu")
        return low + (high - low) * unit

    def parameter_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups (none for the parameter-free kinds)."""
        if self.mlp is None:
            return []
        return [{"name": "background", "params": list(self.mlp.parameters()), "lr": lr}]
