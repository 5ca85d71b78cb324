"""The procedural world: SDF signs, bounds, centring, seeded determinism, captions, the dev split,
front/back asymmetry and captioned renders."""

import pytest
import torch

from dreamtext.scene.cameras import VIEW_LABELS, CameraSamplerConfig
from dreamtext.world.analytic import AnalyticScene
from dreamtext.world.objects import ASYMMETRIC_NOUNS, CENTRING_OFFSETS, Paint, build_parts
from dreamtext.world.renders import RenderConfig, random_light_directions, render_objects, sample_render_batch
from dreamtext.world.vocabulary import COLOURS, NOUNS, PATTERNS, PRIMITIVE_NOUNS, SIZES, TwoTonePattern, describe
from dreamtext.world.world import (
    DEV_FRACTION, OBJECT_BOUND, Attributes, build_object, dev_objects, is_dev, sample_object, split_combinations,
)

GREY = Paint((0.5, 0.5, 0.5))

# A point inside each noun at canonical placement (before centring): the body, and for the
# asymmetric nouns also the feature that breaks the symmetry.
INSIDE = {
    "cube": [(0, 0, 0)], "sphere": [(0, 0, 0)], "cone": [(0, -0.2, 0)], "cylinder": [(0, 0, 0)],
    "torus": [(0.3, 0, 0)], "ring": [(0.34, 0, 0)], "pyramid": [(0, -0.2, 0)], "capsule": [(0, 0, 0)],
    "bowl": [(0, -0.275, 0)], "bottle": [(0, -0.2, 0)], "hourglass": [(0, -0.2, 0)], "dumbbell": [(0.3, 0, 0)],
    "mug": [(0, -0.25, 0), (0.39, 0, 0)], "chair": [(0, -0.04, 0), (0, 0.3, -0.255)],
    "lamp": [(0, -0.4, -0.12), (0, 0.14, 0.2)], "house": [(0, -0.2, 0), (0.1, -0.32, 0.3)],
    "car": [(0, -0.17, 0.3), (0.2, -0.27, 0.25)], "teapot": [(0, 0, 0), (0.29, 0.04, 0)],
    "mushroom": [(0, 0.1, 0), (0.24, -0.25, 0.2)], "snowman": [(0, -0.27, 0), (0, 0.19, 0.15)],
    "tree": [(0, 0.05, 0), (0.2, -0.05, 0.2)], "table": [(0, 0.1, 0), (0, 0.01, 0.27)],
}


def grid(n: int, half: float) -> torch.Tensor:
    axis = torch.linspace(-half, half, n)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)


def test_vocabulary_is_as_large_as_the_issue_asks():
    assert len(NOUNS) >= 20 and len(COLOURS) >= 10
    assert set(ASYMMETRIC_NOUNS) == {"mug", "chair", "lamp", "house", "car", "teapot", "mushroom", "snowman", "tree", "table"}
    assert {"cube", "sphere", "cone", "cylinder", "torus", "pyramid", "capsule", "ring"} <= set(PRIMITIVE_NOUNS)
    assert {"small", "large", "tall", "flat"} <= set(SIZES) and {"striped", "checkered", "dotted"} <= set(PATTERNS)
    assert all(0 <= c <= 1 for rgb in COLOURS.values() for c in rgb)


@pytest.mark.parametrize("noun", NOUNS)
def test_sdf_sign_inside_and_far_outside(noun):
    canonical = AnalyticScene(tuple(build_parts(noun, GREY)))
    assert (canonical.sdf(torch.tensor(INSIDE[noun], dtype=torch.float32)) < 0).all()
    corners = torch.tensor([(sx * 0.9, sy * 0.9, sz * 0.9) for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    assert (canonical.sdf(corners) > 0.2).all()
    # The placed object is the canonical one moved by the centring offset.
    placed = build_object(Attributes(noun, "red")).scene
    shift = torch.tensor(CENTRING_OFFSETS.get(noun, (0.0, 0.0, 0.0)))
    points = torch.rand(500, 3) - 0.5
    torch.testing.assert_close(placed.sdf(points + shift), canonical.sdf(points), atol=1e-5, rtol=0)


def test_every_noun_is_centred_and_sized_objects_stay_in_bounds():
    points = grid(33, 0.48)  # a step of 0.03
    for noun in NOUNS:
        inside = points[build_object(Attributes(noun, "red")).scene.occupancy(points)]
        centre = (inside.amin(0) + inside.amax(0)) / 2
        assert centre.abs().max() <= 0.035, (noun, centre)
    # Random points outside [-0.6, 0.6]^3 but inside the scene cube: never inside any object.
    outside = torch.rand(8000, 3) * 2 - 1
    outside = outside[outside.abs().amax(-1) > OBJECT_BOUND]
    objects = [build_object(Attributes(noun, "red", size)) for noun in NOUNS for size in ("large", "tall", "flat")]
    objects += [sample_object(seed) for seed in range(20)]
    for obj in objects:
        assert not obj.scene.occupancy(outside).any(), obj.caption()
        assert obj.scene.sdf(torch.zeros(1, 3) + 0.95).item() > 0


def test_sizes_scale_the_geometry():
    """The cube (half size 0.3, on the origin): distances from the sized cube's faces in closed form."""
    for size, (sx, sy, _) in SIZES.items():
        scene = build_object(Attributes("cube", "red", size)).scene
        half_x, half_y = 0.3 * sx, 0.3 * sy
        probes = torch.tensor([[half_x - 0.005, 0, 0], [half_x + 0.005, 0, 0], [0, half_y - 0.005, 0], [0, half_y + 0.005, 0]])
        assert scene.occupancy(probes).tolist() == [True, False, True, False], size
        if sx == sy:  # uniform sizes keep the exact distance
            assert scene.sdf(torch.tensor([[0.9, 0.0, 0.0]])).item() == pytest.approx(0.9 - half_x, abs=1e-5)


def test_objects_are_deterministic_by_seed():
    assert sample_object(7) == sample_object(7)
    assert sample_object(7, "dev") == sample_object(7, "dev")
    captions = {sample_object(seed).caption() for seed in range(30)}
    assert len(captions) > 20  # seeds really vary the objects


def test_captions_match_the_attributes_and_view_labels():
    obj = build_object(Attributes("cube", "blue", "small", "striped"))
    assert obj.caption() == "a small striped blue cube"
    assert obj.caption("front") == "a small striped blue cube, front view"
    assert build_object(Attributes("mug", "red")).caption("overhead") == "a red mug, overhead view"
    assert describe("mug", "orange") == "an orange mug"
    with pytest.raises(ValueError):
        Attributes("spaceship", "red")
    for seed in range(20):
        obj = sample_object(seed)
        words = obj.caption().split()
        assert words[-1] == obj.noun and words[-2] == obj.colour
        assert (obj.size in words) == bool(obj.size) and (obj.pattern in words) == bool(obj.pattern)


def test_patterns_paint_two_tones_on_the_painted_parts_only():
    pattern = TwoTonePattern("striped", (1.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    heights = torch.tensor([[0.0, 0.05, 0.0], [0.0, 0.2, 0.0]])  # one stripe period is 0.16
    torch.testing.assert_close(pattern(heights), torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    for kind in ("checkered", "dotted"):
        mask = TwoTonePattern(kind, (1.0, 0.0, 0.0), (1.0, 1.0, 1.0)).secondary_mask(torch.rand(4000, 3) - 0.5)
        assert 0.05 < mask.float().mean() < 0.95
    # A striped snowman: the body shows both tones, the carrot nose keeps its colour.
    scene = build_object(Attributes("snowman", "blue", pattern="striped")).scene
    body = torch.tensor([[0.0, y, 0.0] for y in torch.linspace(-0.4, -0.1, 12).tolist()])
    colours = {tuple(round(c, 2) for c in rgb) for rgb in scene.albedo(body).tolist()}
    assert colours == {COLOURS["blue"], (0.95, 0.95, 0.93)}
    nose = torch.tensor([[0.0, 0.19 - 0.025, 0.15 + 0.006]])
    torch.testing.assert_close(scene.albedo(nose), torch.tensor([[0.95, 0.45, 0.05]]))


def test_dev_split_is_stable_disjoint_and_covers_every_noun():
    dev, train = split_combinations("dev"), split_combinations("train")
    assert not set(dev) & set(train)
    assert len(dev) + len(train) == len(NOUNS) * len(COLOURS) * len(SIZES) * len(PATTERNS)
    assert len(dev) / (len(dev) + len(train)) == pytest.approx(DEV_FRACTION, abs=0.02)
    assert {a.noun for a in dev} == set(NOUNS)
    # Pinned: the split and the first held-out objects never move.
    assert [obj.caption() for obj in dev_objects(3)] == ["a large black torus", "a flat blue car", "a small orange cone"]
    assert not is_dev(Attributes("mug", "red"))  # README's example prompt is seen in training
    assert all(not is_dev(sample_object(seed).attributes) for seed in range(1000))
    assert all(is_dev(sample_object(seed, "dev").attributes) for seed in range(100))


def test_asymmetric_nouns_differ_front_and_back():
    """Occupancy IoU of each object with itself turned half way round y (front <-> back)."""
    points = grid(29, 0.56)  # a step of 0.04: symmetric about the origin, so a half turn maps it to itself
    turned = points * torch.tensor([-1.0, 1.0, -1.0])
    for noun in NOUNS:
        scene = build_object(Attributes(noun, "red")).scene
        a, b = scene.occupancy(points), scene.occupancy(turned)
        iou = ((a & b).sum() / (a | b).sum()).item()
        if noun in ASYMMETRIC_NOUNS:
            assert iou < 0.99, noun
        else:
            assert iou > 0.999, noun


def test_render_batch_shapes_range_background_and_determinism():
    batch = sample_render_batch(6, seed=3, config=RenderConfig(resolution=32))
    assert batch.images.shape == (6, 3, 32, 32) and batch.alpha.shape == (6, 1, 32, 32)
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    for image, alpha in zip(batch.images, batch.alpha):
        assert (alpha > 0.5).sum() >= 10  # the object is in view
        background = image[:, alpha[0] == 0]
        assert background.min() >= 0.75 - 1e-6 and (background.std(dim=1) < 1e-5).all()  # plain and light
    assert batch.captions == [obj.caption(VIEW_LABELS[i]) for obj, i in zip(batch.objects, batch.view_ids.tolist())]
    again = sample_render_batch(6, seed=3, config=RenderConfig(resolution=32))
    torch.testing.assert_close(batch.images, again.images, atol=0, rtol=0)


@pytest.mark.parametrize(("polar", "azimuth", "label"), [
    ((85.0, 90.0), (0.0, 1.0), "front"), ((85.0, 90.0), (180.0, 181.0), "back"),
    ((85.0, 90.0), (100.0, 120.0), "side"), ((5.0, 10.0), (0.0, 360.0), "overhead"),
])
def test_render_captions_carry_the_camera_view(polar, azimuth, label):
    cameras = CameraSamplerConfig(uniform_cube_rate=0.0, polar_range_deg=polar, azimuth_range_deg=azimuth)
    obj = build_object(Attributes("mug", "red"))
    batch = render_objects([obj], RenderConfig(resolution=16, cameras=cameras, views_per_object=2), torch.Generator().manual_seed(0))
    assert batch.captions == [f"a red mug, {label} view"] * 2
    assert (batch.view_ids == VIEW_LABELS.index(label)).all()


def test_front_and_back_renders_of_the_mug_differ_but_a_spheres_do_not():
    def render(noun, azimuth):
        cameras = CameraSamplerConfig(uniform_cube_rate=0.0, radius_range=(1.3, 1.3), fovy_range_deg=(50, 50),
                                      polar_range_deg=(90, 90), azimuth_range_deg=(azimuth, azimuth))
        config = RenderConfig(resolution=32, cameras=cameras, ambient_range=(1.0, 1.0), background_range=(1.0, 1.0))
        return render_objects([build_object(Attributes(noun, "red"))], config, torch.Generator().manual_seed(0)).images[0]

    assert (render("mug", 0.0) - render("mug", 180.0)).abs().mean() > 0.02
    assert (render("sphere", 0.0) - render("sphere", 180.0)).abs().mean() < 1e-3


def test_lights_face_the_camera():
    to_camera = torch.nn.functional.normalize(torch.randn(500, 3), dim=-1)
    lights = random_light_directions(to_camera, 0.3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(lights.norm(dim=-1), torch.ones(500))
    assert (lights * to_camera).sum(-1).min() >= 0.3 - 1e-5


def test_thin_parts_name_parts_of_their_nouns():
    from dreamtext.world.objects import THIN_PARTS

    for noun, names in THIN_PARTS.items():
        parts = {part.name for part in build_parts(noun, GREY)}
        assert set(names) <= parts, noun


def test_a_caption_names_its_world_object():
    from dreamtext.errors import DreamtextError
    from dreamtext.world.world import attributes_from_caption

    assert attributes_from_caption("a red mug") == Attributes("mug", "red")
    assert attributes_from_caption("A small  striped blue cube") == Attributes("cube", "blue", "small", "striped")
    with pytest.raises(DreamtextError, match="not a caption of the built-in world.*nouns: "):
        attributes_from_caption("a red spaceship")
