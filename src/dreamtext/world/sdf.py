"""Signed distance functions as data: primitives, rigid/uniform transforms and CSG.

Every shape is a small frozen dataclass with an `sdf(points)` method taking points [..., 3] and
returning signed distances [...] (negative inside), vectorised in torch and differentiable with
respect to the points. Parameters are plain floats and tuples, so shapes are hashable, printable and
cheap to build in bulk (the procedural world composes them into captioned objects).

Exactness (what sphere tracing and the analytic normals rely on):
- exact Euclidean distance: Sphere, Box (rounded or not), Cylinder, CappedCone, Torus, Capsule;
  Translate, Rotate and Scale keep a child's exactness; Union is exact outside the shapes;
- lower bounds of the distance (still 1-Lipschitz, so sphere tracing never oversteps):
  Intersection and Subtraction (max-based CSG), SmoothUnion (polynomial smooth minimum: below the
  true distance near the blend, which only makes tracing take shorter steps).

Axes of revolution (Cylinder, CappedCone, Torus) are given as a direction; y is the default (up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

Vec3 = tuple[float, float, float]


def _vec3(value: Sequence[float], name: str) -> Vec3:
    values = tuple(float(v) for v in value)
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be three finite numbers, got {value!r}")
    return values  # type: ignore[return-value]


def _unit3(value: Sequence[float], name: str) -> Vec3:
    x, y, z = _vec3(value, name)
    length = math.sqrt(x * x + y * y + z * z)
    if length < 1e-12:
        raise ValueError(f"{name} must be a non-zero direction, got {value!r}")
    return (x / length, y / length, z / length)


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _as_tensor(values: Sequence[float] | Sequence[Sequence[float]], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _axial_radial(offset: Tensor, axis: Vec3) -> tuple[Tensor, Tensor]:
    """Split offsets [..., 3] from a centre into the signed height along `axis` and the distance to it."""
    axis_t = _as_tensor(axis, offset)
    height = (offset * axis_t).sum(-1)
    radial = (offset - height.unsqueeze(-1) * axis_t).norm(dim=-1)
    return height, radial


def _box_2d(q: Tensor, r: Tensor) -> Tensor:
    """Exact 2D distance to the rectangle |x| <= q-bounds, given per-axis excesses `q`, `r` (both [...])."""
    outside = torch.stack([q.clamp_min(0), r.clamp_min(0)], dim=-1).norm(dim=-1)
    inside = torch.maximum(q, r).clamp_max(0)
    return outside + inside


def _segment_distance_2d(px: Tensor, py: Tensor, a: tuple[float, float], b: tuple[float, float]) -> Tensor:
    """Distance from 2D points (px, py) to the segment a-b (a point when a == b)."""
    ex, ey = b[0] - a[0], b[1] - a[1]
    length_sq = ex * ex + ey * ey
    dx, dy = px - a[0], py - a[1]
    t = ((dx * ex + dy * ey) / max(length_sq, 1e-30)).clamp(0.0, 1.0)
    return torch.stack([dx - t * ex, dy - t * ey], dim=-1).norm(dim=-1)


# ---------------------------------------------------------------------------------------------
# The base class: operators that build composite shapes
# ---------------------------------------------------------------------------------------------


class Shape:
    """A solid given by its signed distance. Subclasses are frozen dataclasses implementing `sdf`."""

    def sdf(self, points: Tensor) -> Tensor:
        raise NotImplementedError

    def contains(self, points: Tensor) -> Tensor:
        """Bool [...]: the points strictly inside the solid."""
        return self.sdf(points) < 0

    # Composition reads like set algebra: a | b, a & b, a - b.
    def __or__(self, other: "Shape") -> "Union":
        return Union((self, other))

    def __and__(self, other: "Shape") -> "Intersection":
        return Intersection((self, other))

    def __sub__(self, other: "Shape") -> "Subtraction":
        return Subtraction(self, other)

    def translated(self, offset: Sequence[float]) -> "Translate":
        return Translate(self, offset)

    def rotated(self, axis: Sequence[float], angle_deg: float) -> "Rotate":
        """Rotated about the world origin by `angle_deg` around `axis` (right-hand rule)."""
        return Rotate(self, rotation_matrix(axis, angle_deg))

    def scaled(self, factor: float) -> "Scale":
        """Scaled uniformly about the world origin."""
        return Scale(self, factor)


# ---------------------------------------------------------------------------------------------
# Primitives (all exact)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sphere(Shape):
    center: Vec3
    radius: float

    def __post_init__(self):
        object.__setattr__(self, "center", _vec3(self.center, "Sphere.center"))
        object.__setattr__(self, "radius", _positive(self.radius, "Sphere.radius"))

    def sdf(self, points: Tensor) -> Tensor:
        return (points - _as_tensor(self.center, points)).norm(dim=-1) - self.radius


@dataclass(frozen=True)
class Box(Shape):
    """Axis-aligned box of half extents `half_size`; `rounding` rounds its edges without growing it."""

    center: Vec3
    half_size: Vec3
    rounding: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "center", _vec3(self.center, "Box.center"))
        half = _vec3(self.half_size, "Box.half_size")
        for h in half:
            _positive(h, "Box.half_size")
        object.__setattr__(self, "half_size", half)
        rounding = float(self.rounding)
        if not 0 <= rounding <= min(half):
            raise ValueError(f"Box.rounding must be in [0, min(half_size)], got {rounding}")
        object.__setattr__(self, "rounding", rounding)

    def sdf(self, points: Tensor) -> Tensor:
        # Distance to the shrunken box, minus the rounding radius: exact for rounded boxes too.
        excess = (points - _as_tensor(self.center, points)).abs() - (_as_tensor(self.half_size, points) - self.rounding)
        outside = excess.clamp_min(0).norm(dim=-1)
        inside = excess.amax(dim=-1).clamp_max(0)
        return outside + inside - self.rounding


@dataclass(frozen=True)
class Cylinder(Shape):
    """Capped cylinder around `axis` through `center`, extending `half_height` each way."""

    center: Vec3
    radius: float
    half_height: float
    axis: Vec3 = (0.0, 1.0, 0.0)

    def __post_init__(self):
        object.__setattr__(self, "center", _vec3(self.center, "Cylinder.center"))
        object.__setattr__(self, "radius", _positive(self.radius, "Cylinder.radius"))
        object.__setattr__(self, "half_height", _positive(self.half_height, "Cylinder.half_height"))
        object.__setattr__(self, "axis", _unit3(self.axis, "Cylinder.axis"))

    def sdf(self, points: Tensor) -> Tensor:
        height, radial = _axial_radial(points - _as_tensor(self.center, points), self.axis)
        return _box_2d(radial - self.radius, height.abs() - self.half_height)


@dataclass(frozen=True)
class CappedCone(Shape):
    """Cone frustum around `axis`: radius `radius_bottom` at -half_height, `radius_top` at +half_height.

    A radius of 0 gives a pointed cone. Exact: the distance to a solid of revolution is the 2D
    distance, in the (radial, height) half-plane, to its cross-section, here a trapezoid whose
    boundary is the two caps and the slanted side.
    """

    center: Vec3
    radius_bottom: float
    radius_top: float
    half_height: float
    axis: Vec3 = (0.0, 1.0, 0.0)

    def __post_init__(self):
        object.__setattr__(self, "center", _vec3(self.center, "CappedCone.center"))
        rb, rt = float(self.radius_bottom), float(self.radius_top)
        if rb < 0 or rt < 0 or max(rb, rt) <= 0:
            raise ValueError(f"CappedCone radii must be >= 0 and not both 0, got {rb}, {rt}")
        object.__setattr__(self, "radius_bottom", rb)
        object.__setattr__(self, "radius_top", rt)
        object.__setattr__(self, "half_height", _positive(self.half_height, "CappedCone.half_height"))
        object.__setattr__(self, "axis", _unit3(self.axis, "CappedCone.axis"))

    def sdf(self, points: Tensor) -> Tensor:
        height, radial = _axial_radial(points - _as_tensor(self.center, points), self.axis)
        h, rb, rt = self.half_height, self.radius_bottom, self.radius_top
        distance = torch.minimum(
            torch.minimum(
                _segment_distance_2d(radial, height, (0.0, -h), (rb, -h)),  # bottom cap
                _segment_distance_2d(radial, height, (0.0, h), (rt, h)),  # top cap
            ),
            _segment_distance_2d(radial, height, (rb, -h), (rt, h)),  # slanted side
        )
        radius_here = rb + (rt - rb) * (height + h) / (2 * h)
        inside = (height.abs() <= h) & (radial <= radius_here)
        return torch.where(inside, -distance, distance)


@dataclass(frozen=True)
class Torus(Shape):
    """Ring of tube radius `minor_radius` around a circle of `major_radius` in the plane normal to `axis`."""

    center: Vec3
    major_radius: float
    minor_radius: float
    axis: Vec3 = (0.0, 1.0, 0.0)

    def __post_init__(self):
        object.__setattr__(self, "center", _vec3(self.center, "Torus.center"))
        object.__setattr__(self, "major_radius", _positive(self.major_radius, "Torus.major_radius"))
        object.__setattr__(self, "minor_radius", _positive(self.minor_radius, "Torus.minor_radius"))
        object.__setattr__(self, "axis", _unit3(self.axis, "Torus.axis"))

    def sdf(self, points: Tensor) -> Tensor:
        height, radial = _axial_radial(points - _as_tensor(self.center, points), self.axis)
        return torch.stack([radial - self.major_radius, height], dim=-1).norm(dim=-1) - self.minor_radius


@dataclass(frozen=True)
class Capsule(Shape):
    """All points within `radius` of the segment from `start` to `end`."""

    start: Vec3
    end: Vec3
    radius: float

    def __post_init__(self):
        object.__setattr__(self, "start", _vec3(self.start, "Capsule.start"))
        object.__setattr__(self, "end", _vec3(self.end, "Capsule.end"))
        object.__setattr__(self, "radius", _positive(self.radius, "Capsule.radius"))

    def sdf(self, points: Tensor) -> Tensor:
        start = _as_tensor(self.start, points)
        segment = _as_tensor(self.end, points) - start
        offset = points - start
        t = ((offset * segment).sum(-1) / segment.dot(segment).clamp_min(1e-30)).clamp(0.0, 1.0)
        return (offset - t.unsqueeze(-1) * segment).norm(dim=-1) - self.radius


# ---------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------


def rotation_matrix(axis: Sequence[float], angle_deg: float) -> tuple[Vec3, Vec3, Vec3]:
    """3x3 rotation by `angle_deg` around `axis` (right-hand rule), as nested tuples (Rodrigues)."""
    x, y, z = _unit3(axis, "rotation axis")
    angle = math.radians(angle_deg)
    c, s = math.cos(angle), math.sin(angle)
    k = 1 - c
    return (
        (c + x * x * k, x * y * k - z * s, x * z * k + y * s),
        (y * x * k + z * s, c + y * y * k, y * z * k - x * s),
        (z * x * k - y * s, z * y * k + x * s, c + z * z * k),
    )


@dataclass(frozen=True)
class Translate(Shape):
    shape: Shape
    offset: Vec3

    def __post_init__(self):
        object.__setattr__(self, "offset", _vec3(self.offset, "Translate.offset"))

    def sdf(self, points: Tensor) -> Tensor:
        return self.shape.sdf(points - _as_tensor(self.offset, points))


@dataclass(frozen=True)
class Rotate(Shape):
    """The child rotated about the world origin by `matrix` (a 3x3 rotation, rows as tuples)."""

    shape: Shape
    matrix: tuple[Vec3, Vec3, Vec3]

    def __post_init__(self):
        rows = tuple(_vec3(row, "Rotate.matrix row") for row in self.matrix)
        if len(rows) != 3:
            raise ValueError("Rotate.matrix must be 3x3")
        m = torch.tensor(rows, dtype=torch.float64)
        if not torch.allclose(m @ m.T, torch.eye(3, dtype=torch.float64), atol=1e-6) or torch.det(m) < 0:
            raise ValueError("Rotate.matrix must be a rotation (orthonormal, determinant +1)")
        object.__setattr__(self, "matrix", rows)

    @classmethod
    def from_axis_angle(cls, shape: Shape, axis: Sequence[float], angle_deg: float) -> "Rotate":
        return cls(shape, rotation_matrix(axis, angle_deg))

    def sdf(self, points: Tensor) -> Tensor:
        # A point p of the rotated shape is R q for a point q of the child: q = R^T p (row vectors: p R).
        return self.shape.sdf(points @ _as_tensor(self.matrix, points))


@dataclass(frozen=True)
class Scale(Shape):
    """The child scaled uniformly by `factor` about the world origin (distances scale with it)."""

    shape: Shape
    factor: float

    def __post_init__(self):
        object.__setattr__(self, "factor", _positive(self.factor, "Scale.factor"))

    def sdf(self, points: Tensor) -> Tensor:
        return self.shape.sdf(points / self.factor) * self.factor


# ---------------------------------------------------------------------------------------------
# Constructive solid geometry
# ---------------------------------------------------------------------------------------------


def _shape_tuple(shapes: Sequence[Shape], name: str) -> tuple[Shape, ...]:
    shapes = tuple(shapes)
    if not shapes:
        raise ValueError(f"{name} needs at least one shape")
    return shapes


@dataclass(frozen=True)
class Union(Shape):
    shapes: tuple[Shape, ...]

    def __post_init__(self):
        object.__setattr__(self, "shapes", _shape_tuple(self.shapes, "Union"))

    def sdf(self, points: Tensor) -> Tensor:
        return torch.stack([s.sdf(points) for s in self.shapes], dim=-1).amin(dim=-1)


@dataclass(frozen=True)
class Intersection(Shape):
    shapes: tuple[Shape, ...]

    def __post_init__(self):
        object.__setattr__(self, "shapes", _shape_tuple(self.shapes, "Intersection"))

    def sdf(self, points: Tensor) -> Tensor:
        return torch.stack([s.sdf(points) for s in self.shapes], dim=-1).amax(dim=-1)


@dataclass(frozen=True)
class Subtraction(Shape):
    """`base` with everything inside `cut` removed."""

    base: Shape
    cut: Shape

    def sdf(self, points: Tensor) -> Tensor:
        return torch.maximum(self.base.sdf(points), -self.cut.sdf(points))


@dataclass(frozen=True)
class SmoothUnion(Shape):
    """Union whose seams are filleted over a width of about `smoothness` (polynomial smooth minimum)."""

    shapes: tuple[Shape, ...]
    smoothness: float

    def __post_init__(self):
        object.__setattr__(self, "shapes", _shape_tuple(self.shapes, "SmoothUnion"))
        object.__setattr__(self, "smoothness", _positive(self.smoothness, "SmoothUnion.smoothness"))

    def sdf(self, points: Tensor) -> Tensor:
        k = self.smoothness
        result = self.shapes[0].sdf(points)
        for shape in self.shapes[1:]:
            other = shape.sdf(points)
            # Quadratic blend: equals min(a, b) once |a - b| >= k, dips by at most k / 4 where they meet.
            blend = (k - (result - other).abs()).clamp_min(0) / k
            result = torch.minimum(result, other) - blend * blend * k / 4
        return result


# ---------------------------------------------------------------------------------------------
# Added for the procedural world: planes and per-axis stretching
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HalfSpace(Shape):
    """Every point p with dot(p, normal) <= offset (exact: the signed distance to the plane)."""

    normal: Vec3
    offset: float

    def __post_init__(self):
        object.__setattr__(self, "normal", _unit3(self.normal, "HalfSpace.normal"))
        object.__setattr__(self, "offset", float(self.offset))

    def sdf(self, points: Tensor) -> Tensor:
        return (points * _as_tensor(self.normal, points)).sum(-1) - self.offset


@dataclass(frozen=True)
class Stretch(Shape):
    """The child scaled by `factors` per axis about the world origin.

    sdf(p / s) * min(s) is a lower bound of the true distance (1-Lipschitz), so sphere tracing stays
    safe; with equal factors it is exact, like `Scale`.
    """

    shape: Shape
    factors: Vec3

    def __post_init__(self):
        factors = _vec3(self.factors, "Stretch.factors")
        for f in factors:
            _positive(f, "Stretch.factors")
        object.__setattr__(self, "factors", factors)

    def sdf(self, points: Tensor) -> Tensor:
        return self.shape.sdf(points / _as_tensor(self.factors, points)) * min(self.factors)
