"""The words of the procedural world: nouns, colour adjectives, sizes and patterns, with what they mean.

Every adjective has a ground truth: a colour is an RGB albedo, a size is a per-axis scale, a pattern is
an albedo function of position (two tones: the object's colour and a contrasting one). Sampling
weights favour plain objects, so most captions are as short as "a red mug".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .analytic import RGB
from .objects import ASYMMETRIC_NOUNS, BUILDERS

NOUNS: tuple[str, ...] = tuple(BUILDERS)
PRIMITIVE_NOUNS: tuple[str, ...] = tuple(noun for noun in NOUNS if noun not in ASYMMETRIC_NOUNS)

# Ours: saturated, well separated hues a 64 px render keeps apart, plus the three neutrals.
COLOURS: dict[str, RGB] = {
    "red": (0.80, 0.08, 0.07),
    "orange": (0.95, 0.48, 0.06),
    "yellow": (0.95, 0.85, 0.12),
    "green": (0.13, 0.58, 0.18),
    "cyan": (0.08, 0.72, 0.78),
    "blue": (0.10, 0.25, 0.85),
    "purple": (0.48, 0.18, 0.70),
    "pink": (0.96, 0.52, 0.70),
    "brown": (0.45, 0.26, 0.10),
    "white": (0.93, 0.93, 0.91),
    "gray": (0.48, 0.48, 0.50),
    "black": (0.07, 0.07, 0.08),
}

# Per-axis scale (x, y, z) of each size word; "" is the canonical size. Ours: every builder fits in
# [-0.46, 0.46]^3 once centred, so no factor may exceed 0.6 / 0.46 = 1.30 (the world's bound is 0.6).
SIZES: dict[str, tuple[float, float, float]] = {
    "": (1.0, 1.0, 1.0),
    "small": (0.65, 0.65, 0.65),
    "large": (1.25, 1.25, 1.25),
    "tall": (0.85, 1.28, 0.85),
    "flat": (1.2, 0.55, 1.2),
}
PATTERNS: tuple[str, ...] = ("", "striped", "checkered", "dotted")

# Sampling weights (ours): half of the objects have no size word and about half no pattern.
SIZE_WEIGHTS: dict[str, float] = {"": 4.0, "small": 1.0, "large": 1.0, "tall": 1.0, "flat": 1.0}
PATTERN_WEIGHTS: dict[str, float] = {"": 3.0, "striped": 1.0, "checkered": 1.0, "dotted": 1.0}

PatternKind = Literal["striped", "checkered", "dotted"]

# Pattern scales in scene units (ours): about 4-6 stripes, checks or dots across a canonical object,
# each still several pixels wide in a 64 px render.
STRIPE_PERIOD = 0.16
CHECK_SIZE = 0.14
DOT_SPACING = 0.13
DOT_RADIUS = 0.045


def contrast_colour(albedo: RGB) -> RGB:
    """The second tone of a pattern: near black on light colours, near white on dark ones."""
    luminance = 0.2126 * albedo[0] + 0.7152 * albedo[1] + 0.0722 * albedo[2]
    return (0.08, 0.08, 0.09) if luminance > 0.55 else (0.95, 0.95, 0.93)


@dataclass(frozen=True)
class TwoTonePattern:
    """Albedo as a function of world position: `primary` with `secondary` stripes, checks or dots.

    Stripes are horizontal bands (constant y); checks and dots live on a 3D lattice, so they show on
    any surface whatever its orientation.
    """

    kind: PatternKind
    primary: RGB
    secondary: RGB

    def secondary_mask(self, points: Tensor) -> Tensor:
        """Bool [...]: where the second tone shows."""
        if self.kind == "striped":
            return torch.floor(points[..., 1] / STRIPE_PERIOD).remainder(2) == 1
        if self.kind == "checkered":
            return torch.floor(points / CHECK_SIZE).sum(-1).remainder(2) == 1
        if self.kind == "dotted":
            nearest_lattice_point = torch.round(points / DOT_SPACING) * DOT_SPACING
            return (points - nearest_lattice_point).norm(dim=-1) < DOT_RADIUS
        raise ValueError(f"unknown pattern {self.kind!r}; known: {PATTERNS[1:]}")

    def __call__(self, points: Tensor) -> Tensor:
        primary = torch.tensor(self.primary, dtype=points.dtype, device=points.device)
        secondary = torch.tensor(self.secondary, dtype=points.dtype, device=points.device)
        return torch.where(self.secondary_mask(points).unsqueeze(-1), secondary, primary)


def make_pattern(kind: str, colour: str) -> TwoTonePattern | None:
    """The pattern of that name on an object of that colour; None for the plain "" pattern."""
    if kind == "":
        return None
    albedo = COLOURS[colour]
    return TwoTonePattern(kind, albedo, contrast_colour(albedo))  # type: ignore[arg-type]


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def describe(noun: str, colour: str, size: str = "", pattern: str = "") -> str:
    """The caption without a view: "a red mug", "a small striped blue cube", "an orange cone"."""
    words = " ".join(w for w in (size, pattern, colour, noun) if w)
    return f"{article(words)} {words}"

