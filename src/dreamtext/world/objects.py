"""The nouns of the procedural world: one short builder per noun, returning coloured SDF parts.

A builder takes a `Paint` (the object's adjective colour and optional pattern) and returns the parts
of the object at its canonical size, inside about [-0.46, 0.46]^3, y up, its front facing +z (the
package's convention, cameras.py). Details that give a noun its identity keep fixed accent colours
(a snowman's carrot nose, a car's wheels); everything else takes the paint. `world.py` centres the
parts on the origin and applies the size adjective.

Asymmetric nouns (`ASYMMETRIC_NOUNS`) are not invariant under a half turn about y, so a back view
shows something a front view does not: a handle on the other side, a door only at the front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from .analytic import RGB, Part, default_scene
from .sdf import (
    Box, CappedCone, Capsule, Cylinder, HalfSpace, Intersection, Rotate, Shape, Sphere, Stretch, Torus, Translate,
    Union,
)

# Accent colours of the parts a noun keeps whatever its adjective (ours: the everyday colour of each).
BLACK: RGB = (0.06, 0.06, 0.07)
WOOD: RGB = (0.45, 0.28, 0.13)
CREAM: RGB = (0.93, 0.89, 0.80)
METAL: RGB = (0.60, 0.61, 0.64)
GLASS: RGB = (0.55, 0.75, 0.90)
LIGHT: RGB = (1.00, 0.95, 0.65)
CARROT: RGB = (0.95, 0.45, 0.05)
ROOF: RGB = (0.30, 0.22, 0.20)

Y: tuple[float, float, float] = (0.0, 1.0, 0.0)
X: tuple[float, float, float] = (1.0, 0.0, 0.0)
Z: tuple[float, float, float] = (0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Paint:
    """The adjective colour of an object and an optional pattern (albedo function of position)."""

    albedo: RGB
    pattern: Callable[[Tensor], Tensor] | None = None

    def part(self, shape: Shape, name: str) -> Part:
        return Part(shape, self.albedo, name, pattern=self.pattern)


def plane_through(point: tuple[float, float, float], normal: tuple[float, float, float]) -> HalfSpace:
    """The half-space below the plane through `point` with outward `normal`."""
    unit = HalfSpace(normal, 0.0).normal
    return HalfSpace(unit, sum(u * p for u, p in zip(unit, point)))


def accent(shape: Shape, albedo: RGB, name: str) -> Part:
    return Part(shape, albedo, name)


# ---------------------------------------------------------------------------------------------
# Primitives (each symmetric under a half turn about y)
# ---------------------------------------------------------------------------------------------


def cube(paint: Paint) -> list[Part]:
    return [paint.part(Box((0, 0, 0), (0.3, 0.3, 0.3), rounding=0.01), "cube")]


def sphere(paint: Paint) -> list[Part]:
    return [paint.part(Sphere((0, 0, 0), 0.36), "sphere")]


def cone(paint: Paint) -> list[Part]:
    return [paint.part(CappedCone((0, 0, 0), 0.33, 0.0, 0.36), "cone")]


def cylinder(paint: Paint) -> list[Part]:
    return [paint.part(Cylinder((0, 0, 0), 0.28, 0.34), "cylinder")]


def torus(paint: Paint) -> list[Part]:
    """Lying flat: most training cameras look down on it and see the hole."""
    return [paint.part(Torus((0, 0, 0), 0.3, 0.12), "torus")]


def ring(paint: Paint) -> list[Part]:
    """A thin upright ring facing the front."""
    return [paint.part(Torus((0, 0, 0), 0.34, 0.05, axis=Z), "ring")]


def pyramid(paint: Paint) -> list[Part]:
    """Square base of half width 0.36 at y = -0.3, apex at y = 0.32."""
    half, bottom, apex = 0.36, -0.3, 0.32
    height = apex - bottom
    # A face's normal is (height, half) in (outward, up) components; the face passes through the apex.
    faces = [plane_through((0, apex, 0), (nx * height, half, nz * height)) for nx, nz in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    return [paint.part(Intersection((HalfSpace((0, -1, 0), -bottom), *faces)), "pyramid")]


def capsule(paint: Paint) -> list[Part]:
    return [paint.part(Capsule((0, -0.2, 0), (0, 0.2, 0), 0.2), "capsule")]


def bowl(paint: Paint) -> list[Part]:
    shell = Sphere((0, 0.12, 0), 0.42) - Sphere((0, 0.12, 0), 0.37)
    return [paint.part(Intersection((shell, HalfSpace(Y, 0.05))), "bowl")]


def bottle(paint: Paint) -> list[Part]:
    body = Cylinder((0, -0.17, 0), 0.16, 0.25)
    shoulder = CappedCone((0, 0.14, 0), 0.16, 0.06, 0.06)
    neck = Cylinder((0, 0.28, 0), 0.055, 0.1)
    return [paint.part(Union((body, shoulder, neck)), "bottle"), accent(Cylinder((0, 0.4, 0), 0.065, 0.03), BLACK, "cap")]


def hourglass(paint: Paint) -> list[Part]:
    glass = Union((CappedCone((0, -0.16, 0), 0.22, 0.03, 0.16), CappedCone((0, 0.16, 0), 0.03, 0.22, 0.16)))
    plates = Union((Cylinder((0, -0.35, 0), 0.27, 0.03), Cylinder((0, 0.35, 0), 0.27, 0.03)))
    return [paint.part(glass, "glass"), accent(plates, WOOD, "frame")]


def dumbbell(paint: Paint) -> list[Part]:
    bar = Capsule((-0.3, 0, 0), (0.3, 0, 0), 0.05)
    weights = Union((Sphere((-0.3, 0, 0), 0.15), Sphere((0.3, 0, 0), 0.15)))
    return [paint.part(weights, "weights"), accent(bar, METAL, "bar")]


# ---------------------------------------------------------------------------------------------
# Asymmetric nouns
# ---------------------------------------------------------------------------------------------


def mug(paint: Paint) -> list[Part]:
    """The built-in mug (analytic.default_scene): handle on the right (+x), cream glaze inside."""
    return [
        accent(part.shape, part.albedo, part.name) if part.name == "glaze" else paint.part(part.shape, part.name)
        for part in default_scene().parts
    ]


def chair(paint: Paint) -> list[Part]:
    seat = Box((0, -0.04, 0), (0.28, 0.035, 0.28), rounding=0.01)
    legs = Union(tuple(Cylinder((sx * 0.24, -0.26, sz * 0.24), 0.03, 0.19) for sx in (-1, 1) for sz in (-1, 1)))
    backrest = Box((0, 0.2, -0.255), (0.28, 0.21, 0.025), rounding=0.01)
    return [paint.part(seat, "seat"), paint.part(backrest, "backrest"), accent(legs, WOOD, "legs")]


def lamp(paint: Paint) -> list[Part]:
    """A desk lamp: its arm reaches forward and its shade faces down towards the front."""
    base = Cylinder((0, -0.4, -0.12), 0.18, 0.03)
    pole = Capsule((0, -0.37, -0.12), (0, 0.2, -0.12), 0.025)
    arm = Capsule((0, 0.2, -0.12), (0, 0.22, 0.12), 0.025)
    shade_axis = (0.0, 1.0, -0.7)  # the narrow end points up and back
    shade = CappedCone((0, 0.14, 0.2), 0.17, 0.06, 0.1, axis=shade_axis)
    bulb = Sphere((0, 0.07, 0.25), 0.06)
    return [paint.part(shade, "shade"), paint.part(base, "base"), accent(Union((pole, arm)), METAL, "arm"),
            accent(bulb, LIGHT, "bulb")]


def house(paint: Paint) -> list[Part]:
    """Walls, a pitched roof with a chimney, a door and two windows on the front (+z)."""
    walls = Box((0, -0.2, 0), (0.32, 0.25, 0.28))
    half_side = 0.4 / 2**0.5  # a square turned 45 degrees spans +-0.4 at the eaves
    prism = Translate(Rotate.from_axis_angle(Box((0, 0, 0), (half_side, half_side, 0.32)), Z, 45.0), (0, 0.05, 0))
    roof = Intersection((prism, HalfSpace((0, -1, 0), -0.05)))
    chimney = Box((-0.18, 0.28, -0.08), (0.05, 0.13, 0.05))
    door = Box((0.1, -0.32, 0.29), (0.08, 0.13, 0.02))
    windows = Union((Box((-0.16, -0.14, 0.29), (0.07, 0.06, 0.015)), Box((0.16, -0.07, 0.29), (0.05, 0.05, 0.015))))
    return [paint.part(walls, "walls"), accent(Union((roof, chimney)), ROOF, "roof"), accent(door, WOOD, "door"),
            accent(windows, GLASS, "windows")]


def car(paint: Paint) -> list[Part]:
    """Bonnet towards the front (+z), the cabin set back, headlights at the front."""
    body = Box((0, -0.17, 0), (0.22, 0.09, 0.42), rounding=0.05)
    cabin = Box((0, -0.01, -0.08), (0.19, 0.09, 0.2), rounding=0.05)
    windscreen = Box((0, 0.0, 0.115), (0.16, 0.06, 0.015))
    wheels = Union(tuple(Cylinder((sx * 0.2, -0.27, sz * 0.25), 0.1, 0.035, axis=X) for sx in (-1, 1) for sz in (-1, 1)))
    lights = Union((Sphere((-0.13, -0.15, 0.4), 0.035), Sphere((0.13, -0.15, 0.4), 0.035)))
    return [paint.part(Union((body, cabin)), "body"), accent(windscreen, GLASS, "windscreen"),
            accent(wheels, BLACK, "wheels"), accent(lights, LIGHT, "headlights")]


def teapot(paint: Paint) -> list[Part]:
    """Spout on the right (+x), handle on the left."""
    body = Stretch(Sphere((0, 0, 0), 0.27), (1.0, 0.8, 1.0))
    spout = Capsule((0.18, -0.06, 0), (0.4, 0.14, 0), 0.04)
    handle = Torus((-0.27, 0.0, 0), 0.11, 0.028, axis=Z) - body
    lid = Union((Cylinder((0, 0.22, 0), 0.12, 0.02), Sphere((0, 0.26, 0), 0.04)))
    # Three painted parts rather than their union (the same surface and albedo), so measures can name them.
    return [paint.part(body, "pot"), paint.part(spout, "spout"), paint.part(handle, "handle"), accent(lid, CREAM, "lid")]


def mushroom(paint: Paint) -> list[Part]:
    """A big mushroom with a small one growing at its front right."""
    stem = Cylinder((0, -0.2, 0), 0.09, 0.22)
    cap = Intersection((Sphere((0, -0.06, 0), 0.34), HalfSpace((0, -1, 0), 0.0)))
    small_stem = Cylinder((0.24, -0.35, 0.2), 0.04, 0.07)
    small_cap = Intersection((Sphere((0.24, -0.3, 0.2), 0.12), HalfSpace((0, -1, 0), 0.3)))
    return [paint.part(Union((cap, small_cap)), "cap"), accent(Union((stem, small_stem)), CREAM, "stem")]


def snowman(paint: Paint) -> list[Part]:
    """Three balls, a top hat, coal eyes and buttons and a carrot nose on the front (+z)."""
    body = Union((Sphere((0, -0.27, 0), 0.18), Sphere((0, -0.01, 0), 0.13), Sphere((0, 0.19, 0), 0.1)))
    hat = Union((Cylinder((0, 0.275, 0), 0.11, 0.012), Cylinder((0, 0.34, 0), 0.07, 0.065)))
    coal = Union((Sphere((-0.035, 0.22, 0.085), 0.017), Sphere((0.035, 0.22, 0.085), 0.017),
                  Sphere((0, 0.02, 0.128), 0.02), Sphere((0, -0.05, 0.122), 0.02)))
    nose = CappedCone((0, 0.19, 0.14), 0.03, 0.0, 0.06, axis=Z)
    return [paint.part(body, "body"), accent(Union((hat, coal)), BLACK, "hat"), accent(nose, CARROT, "nose")]


def tree(paint: Paint) -> list[Part]:
    """A trunk under a lopsided round crown (a big branch out to the front right)."""
    trunk = Cylinder((0, -0.3, 0), 0.06, 0.16)
    crown = Union((Sphere((0, 0.05, -0.04), 0.26), Sphere((0.17, -0.05, 0.15), 0.17), Sphere((-0.12, 0.22, -0.05), 0.15)))
    return [paint.part(crown, "crown"), accent(trunk, WOOD, "trunk")]


def table(paint: Paint) -> list[Part]:
    """A table with a drawer and its knob on the front (+z)."""
    top = Box((0, 0.1, 0), (0.42, 0.03, 0.28), rounding=0.01)
    legs = Union(tuple(Box((sx * 0.37, -0.14, sz * 0.23), (0.025, 0.21, 0.025)) for sx in (-1, 1) for sz in (-1, 1)))
    drawer = Box((0, 0.01, 0.16), (0.2, 0.06, 0.1))
    knob = Sphere((0, 0.01, 0.27), 0.025)
    return [paint.part(top, "top"), paint.part(legs, "legs"), accent(drawer, WOOD, "drawer"), accent(knob, METAL, "knob")]


Builder = Callable[[Paint], list[Part]]

BUILDERS: dict[str, Builder] = {
    "cube": cube, "sphere": sphere, "cone": cone, "cylinder": cylinder, "torus": torus, "ring": ring,
    "pyramid": pyramid, "capsule": capsule, "bowl": bowl, "bottle": bottle, "hourglass": hourglass,
    "dumbbell": dumbbell,
    "mug": mug, "chair": chair, "lamp": lamp, "house": house, "car": car, "teapot": teapot,
    "mushroom": mushroom, "snowman": snowman, "tree": tree, "table": table,
}

ASYMMETRIC_NOUNS: tuple[str, ...] = ("mug", "chair", "lamp", "house", "car", "teapot", "mushroom", "snowman", "tree", "table")

# The parts a reconstruction most easily loses: at most about 0.06 across (a mug's handle, a chair's legs),
# a pixel or two of a 32 px training render. Surface measures report their recall apart (bench world).
THIN_PARTS: dict[str, tuple[str, ...]] = {
    "mug": ("handle",), "chair": ("legs",), "lamp": ("arm",), "teapot": ("spout", "handle"), "table": ("legs",),
    "dumbbell": ("bar",),
}


# The shift that centres each noun's bounding box on the origin, measured on an 81^3 occupancy grid
# over [-0.5, 0.5]^3 (tests/test_world.py re-measures it): builders place parts where they read best.
CENTRING_OFFSETS: dict[str, tuple[float, float, float]] = {
    "pyramid": (0.0, -0.013, 0.0), "bowl": (0.0, 0.119, 0.0), "bottle": (0.0, -0.006, 0.0),
    "mug": (-0.087, 0.0, 0.0), "chair": (0.0, 0.019, 0.0), "lamp": (0.0, 0.088, -0.05),
    "car": (0.0, 0.144, -0.006), "teapot": (-0.019, -0.038, 0.0), "mushroom": (-0.013, 0.069, 0.0),
    "snowman": (0.0, 0.025, -0.006), "tree": (-0.038, 0.044, -0.013), "table": (0.0, 0.106, -0.006),
}


def build_parts(noun: str, paint: Paint) -> list[Part]:
    """The parts of `noun` at its canonical size and place (before `world.py` centres and sizes it)."""
    if noun not in BUILDERS:
        raise ValueError(f"unknown noun {noun!r}; known: {sorted(BUILDERS)}")
    return BUILDERS[noun](paint)
