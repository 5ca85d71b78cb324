"""The learned radiance field, its normals and the background: closed forms, gradients, a small fit."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from dreamtext.errors import DreamtextError
from dreamtext.scene.background import Background, BackgroundConfig, FrequencyEncoding
from dreamtext.scene.field import FieldConfig, RadianceField, truncated_exp
from dreamtext.scene.hash_encoding import HashGridConfig
from dreamtext.scene.normals import density_normals
from dreamtext.scene.protocols import Field

# A small grid keeps the CPU tests fast; the architecture around it is the default one.
SMALL_GRID = HashGridConfig(num_levels=4, log2_hashmap_size=14, max_resolution=256)


def zero_network_output(field: RadianceField) -> None:
    with torch.no_grad():
        field.mlp.output.weight.zero_()
        field.mlp.output.bias.zero_()


# ---------------------------------------------------------------------------------------------
# Density prior
# ---------------------------------------------------------------------------------------------

# Points at radius 0, 0.25, 0.5, 0.6 and 1.
BLOB_POINTS = torch.tensor([[0.0, 0.0, 0.0], [0.25, 0.0, 0.0], [0.0, 0.3, 0.4], [0.0, -0.6, 0.0], [0.6, 0.0, -0.8]])
BLOB_RADII = [0.0, 0.25, 0.5, 0.6, 1.0]


def thesis_blob(r: float) -> float:  # thesis eq. 6.1, v = 10, b = 0.5
    return 10.0 * (1.0 - r / 0.5)


def gaussian_blob(r: float) -> float:  # threestudio: scale 10, std 0.5
    return 10.0 * math.exp(-(r**2) / (2 * 0.5**2))


ACTIVATIONS = {"softplus": lambda x: math.log1p(math.exp(x)), "exp": math.exp}


@pytest.mark.parametrize("activation", ["softplus", "exp"])
@pytest.mark.parametrize("blob", ["thesis", "gaussian", "none"])
def test_density_is_activation_of_blob_when_network_output_is_zero(blob, activation):
    field = RadianceField(FieldConfig(encoding=SMALL_GRID, density_blob=blob, density_activation=activation))
    zero_network_output(field)
    bias = {"thesis": thesis_blob, "gaussian": gaussian_blob, "none": lambda r: 0.0}[blob]
    expected = torch.tensor([ACTIVATIONS[activation](bias(r)) for r in BLOB_RADII])
    outputs = field(BLOB_POINTS)
    torch.testing.assert_close(outputs.density, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(field.density(BLOB_POINTS), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(outputs.albedo, torch.full((5, 3), 0.5))  # sigmoid(0)


def test_truncated_exp_forward_is_exp_and_gradient_is_clamped():
    x = torch.tensor([-3.0, 0.0, 2.0, 14.0, 16.0, 20.0], dtype=torch.float64, requires_grad=True)
    y = truncated_exp(x)
    torch.testing.assert_close(y, torch.exp(x))
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, torch.exp(x.detach().clamp(max=15.0)))
    # Below the clamp it is exactly exp, to second order (analytic normals differentiate it twice).
    small = torch.linspace(-2, 3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(truncated_exp, (small,))


def test_config_rejects_unknown_choices():
    with pytest.raises(DreamtextError, match="density_blob"):
        FieldConfig(density_blob="cube")
    with pytest.raises(DreamtextError, match="normal_method"):
        FieldConfig(normal_method="sobel")


# ---------------------------------------------------------------------------------------------
# Normals
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["analytic", "finite_difference"])
def test_normals_of_a_radial_density_point_away_from_its_centre(method):
    centre = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)

    def density(points):  # a ball of fuzz: densest at the centre
        return 5.0 * torch.exp(-((points - centre) ** 2).sum(-1) / 0.3)

    points = torch.rand(4, 50, 3, dtype=torch.float64) * 2 - 1
    expected = F.normalize(points - centre, dim=-1)
    with torch.no_grad():  # analytic normals must work in evaluation renders too
        normals = density_normals(density, points, method=method, eps=1e-4)
    assert normals.shape == (4, 50, 3)
    torch.testing.assert_close(normals, expected, atol=1e-6, rtol=0)


def test_unknown_normal_method_is_an_error():
    with pytest.raises(ValueError, match="normal method"):
        density_normals(lambda p: p.sum(-1), torch.zeros(2, 3), method="sobel")


def cosine_between_methods(config: FieldConfig, points: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Cosine between finite-difference and analytic normals of one field (same weights)."""
    fd = RadianceField(replace(config, normal_method="finite_difference")).to(dtype)
    analytic = RadianceField(replace(config, normal_method="analytic")).to(dtype)
    analytic.load_state_dict(fd.state_dict())
    with torch.no_grad():
        n_fd = fd(points.to(dtype), with_normals=True).normals
        n_an = analytic(points.to(dtype), with_normals=True).normals
    torch.testing.assert_close(n_fd.norm(dim=-1), torch.ones(len(points), dtype=dtype))
    return (n_fd * n_an).sum(-1)


def test_finite_difference_and_analytic_normals_agree_on_the_default_field():
    points = torch.rand(512, 3) * 2 - 1
    points = points[points.norm(dim=-1) > 0.05]  # the cone tip of the blob has no normal
    cosine = cosine_between_methods(FieldConfig(), points)
    assert cosine.min() > 0.99
    assert cosine.mean() > 0.999


def test_finite_difference_and_analytic_normals_agree_where_the_hash_grid_shapes_the_density():
    # No blob, a coarse grid with large random features: the normals come from the grid and MLP alone.
    grid = HashGridConfig(num_levels=2, log2_hashmap_size=14, max_resolution=32, init_scale=0.5)
    config = FieldConfig(encoding=grid, density_blob="none", normal_eps=1e-6)
    cosine = cosine_between_methods(config, torch.rand(512, 3) * 1.8 - 0.9, dtype=torch.float64)
    assert cosine.min() > 0.99
    assert cosine.mean() > 0.9999


def test_analytic_normals_backpropagate_to_the_mlp_when_recording():
    grid = HashGridConfig(num_levels=2, log2_hashmap_size=10, max_resolution=32, init_scale=0.5)
    field = RadianceField(FieldConfig(encoding=grid, hidden_dim=16, num_blocks=2, normal_method="analytic")).double()
    points = torch.rand(64, 3, dtype=torch.float64) * 1.6 - 0.8
    target = F.normalize(torch.randn(64, 3, dtype=torch.float64), dim=-1)

    def loss_fn() -> torch.Tensor:
        return (field(points, with_normals=True).normals * target).sum()

    loss = loss_fn()
    loss.backward()
    weight = field.mlp.blocks[0].linear.weight
    assert field.mlp.input.weight.grad.abs().sum() > 0 and field.encoding.table.grad.abs().sum() > 0
    # The double-backward gradient equals the finite difference of the loss in one weight.
    h = 1e-6
    with torch.no_grad():
        weight[2, 3] += h
        plus = loss_fn()
        weight[2, 3] -= 2 * h
        minus = loss_fn()
        weight[2, 3] += h
    numeric = (plus - minus) / (2 * h)
    assert abs(numeric) > 1e-4
    torch.testing.assert_close(weight.grad[2, 3], numeric, rtol=1e-4, atol=1e-8)
    with torch.no_grad():  # evaluation renders get detached normals
        assert not field(points, with_normals=True).normals.requires_grad


def test_field_outputs_are_consistent_across_paths_and_shapes():
    field = RadianceField(FieldConfig(encoding=SMALL_GRID))
    assert isinstance(field, Field) and field.bound == 1.0
    points = torch.rand(2, 7, 3) * 2 - 1
    plain = field(points)
    with_normals = field(points, with_normals=True)
    assert plain.normals is None and with_normals.normals.shape == (2, 7, 3)
    assert plain.density.shape == (2, 7) and plain.albedo.shape == (2, 7, 3)
    torch.testing.assert_close(with_normals.density, plain.density)
    torch.testing.assert_close(with_normals.albedo, plain.albedo)
    torch.testing.assert_close(field.density(points), plain.density)
    assert (plain.density >= 0).all() and ((plain.albedo >= 0) & (plain.albedo <= 1)).all()


def test_bound_scales_the_blob_and_the_grid_mapping():
    field = RadianceField(FieldConfig(encoding=SMALL_GRID, bound=2.0))
    zero_network_output(field)
    # The blob is in world units: radius 0.5 gives pre-activation 0 whatever the bound.
    torch.testing.assert_close(field.density(torch.tensor([[0.5, 0.0, 0.0]])), torch.tensor([math.log(2.0)]))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def test_parameter_groups_train_the_hash_grid_ten_times_faster():
    field = RadianceField(FieldConfig(encoding=SMALL_GRID))
    groups = {group["name"]: group for group in field.parameter_groups(lr=2e-3)}
    assert groups["encoding"]["lr"] == pytest.approx(2e-2)
    assert groups["mlp"]["lr"] == pytest.approx(2e-3)
    grouped = [id(p) for group in groups.values() for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in field.parameters())  # each parameter exactly once
    assert [id(p) for p in groups["encoding"]["params"]] == [id(field.encoding.table)]


def test_field_fits_a_coloured_ball_in_200_steps():
    """Regress density and albedo at random points to an off-centre ball: the default blob must be
    unlearned outside the ball, so this exercises the whole forward and backward."""
    field = RadianceField(FieldConfig(encoding=SMALL_GRID))
    optimizer = torch.optim.Adam(field.parameter_groups(lr=5e-3), betas=(0.9, 0.99), eps=1e-15)
    centre, radius, colour = torch.tensor([0.25, 0.1, -0.15]), 0.4, torch.tensor([0.9, 0.2, 0.1])

    def inside(points):
        return (points - centre).norm(dim=-1) < radius

    for _ in range(200):
        points = torch.rand(512, 3) * 2 - 1
        mask = inside(points)
        outputs = field(points)
        density_loss = F.mse_loss(torch.log1p(outputs.density), torch.log1p(20.0 * mask.float()))
        albedo_loss = ((outputs.albedo - colour) ** 2)[mask].sum(-1).mean()
        optimizer.zero_grad()
        (density_loss + albedo_loss).backward()
        optimizer.step()

    with torch.no_grad():
        points = torch.rand(20000, 3) * 2 - 1
        mask = inside(points)
        outputs = field(points)
    accuracy = ((outputs.density > 1.0) == mask).float().mean()
    assert accuracy > 0.98
    assert (outputs.albedo[mask] - colour).abs().mean() < 0.02


# ---------------------------------------------------------------------------------------------
# Background
# ---------------------------------------------------------------------------------------------


def random_directions(n: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, 3), dim=-1)


def test_solid_background_returns_its_colour():
    directions = random_directions(10)
    torch.testing.assert_close(Background(BackgroundConfig(kind="solid"))(directions), torch.ones(10, 3))
    grey = Background(BackgroundConfig(kind="solid", color=(0.2, 0.4, 0.6)))
    torch.testing.assert_close(grey(directions), torch.tensor([[0.2, 0.4, 0.6]]).expand(10, 3))
    assert grey.parameter_groups(1e-3) == []


def test_mlp_background_is_in_unit_range_depends_on_direction_and_trains():
    background = Background(BackgroundConfig(kind="mlp"))
    assert [type(m).__name__ for m in background.mlp] == ["Linear", "ReLU", "Linear"]
    assert background.mlp[0].out_features == 64
    directions = random_directions(256)
    rgb = background(directions)
    assert rgb.shape == (256, 3) and ((rgb > 0) & (rgb < 1)).all()
    assert rgb.std(dim=0).min() > 1e-3
    assert not torch.allclose(background(directions[:1]), background(-directions[:1]))
    # A few steps towards a sky gradient (white above, blue below) reduce the error.
    target = torch.where(directions[:, 1:2] > 0, torch.ones(3), torch.tensor([0.1, 0.2, 0.8]))
    optimizer = torch.optim.Adam(background.parameter_groups(1e-2))
    first = None
    for _ in range(100):
        loss = F.mse_loss(background(directions), target)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first


def test_random_background_is_reproducible_and_fixed_in_eval_mode():
    directions = random_directions(5)
    config = BackgroundConfig(kind="random", color=(0.0, 0.0, 0.0))
    a = Background(config, generator=torch.Generator().manual_seed(7))
    b = Background(config, generator=torch.Generator().manual_seed(7))
    first_a, second_a = a(directions), a(directions)
    torch.testing.assert_close(first_a, b(directions))
    torch.testing.assert_close(second_a, b(directions))
    assert (first_a == first_a[:1]).all()  # one colour for the whole call
    assert not torch.allclose(first_a, second_a)  # a new colour per call
    call_generator = torch.Generator().manual_seed(3)
    expected = torch.rand(3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a(directions, generator=call_generator)[0], expected)
    torch.testing.assert_close(
        Background(config).random_color(torch.Generator().manual_seed(3)), expected
    )
    a.eval()
    torch.testing.assert_close(a(directions), torch.zeros(5, 3))
    # A range maps the same draw into it: the built-in prior's light backdrops.
    light = Background(BackgroundConfig(kind="random", random_range=(0.75, 1.0)))
    torch.testing.assert_close(light.random_color(torch.Generator().manual_seed(3)), 0.75 + 0.25 * expected)


def test_frequency_encoding_closed_form():
    encoding = FrequencyEncoding(num_frequencies=2)
    x = torch.tensor([[0.5, -1.0, 0.25]])
    angles = torch.tensor([[0.5, -1.0, 0.25, 1.0, -2.0, 0.5]])  # frequency 1 for xyz, then 2
    expected = torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)
    assert encoding.output_dim == 15
    torch.testing.assert_close(encoding(x), expected)


def test_background_config_rejects_bad_values():
    with pytest.raises(DreamtextError, match="kind"):
        BackgroundConfig(kind="sky")
    with pytest.raises(DreamtextError, match="color"):
        BackgroundConfig(color=(1.5, 0.0, 0.0))
    with pytest.raises(DreamtextError, match="random_range"):
        BackgroundConfig(random_range=(0.9, 0.2))


# ---------------------------------------------------------------------------------------------
# Tri-plane encoding and the encoding choice
# ---------------------------------------------------------------------------------------------


def test_triplane_reads_each_plane_at_the_points_two_coordinates():
    from dreamtext.scene.triplane import TriplaneConfig

    encoding = TriplaneConfig(resolutions=(5,), features=2, aggregate="sum").setup()
    with torch.no_grad():
        planes = encoding.planes[0]
        planes.zero_()
        planes[0, 0, 3, 1] = 1.0  # plane xy: row y = 3, column x = 1
        planes[1, 1, 2, 4] = 2.0  # plane xz: row z = 2, column x = 4
    # Texel i sits at i / (R - 1) (its corners on the cube's faces)
    at = torch.tensor([[1 / 4, 3 / 4, 0.5], [1.0, 0.0, 0.5], [1 / 8, 3 / 4, 0.0]])
    features = encoding(at)
    assert features.shape == (3, 2) and encoding.output_dim == 2
    torch.testing.assert_close(features[0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(features[1], torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(features[2], torch.tensor([0.5, 0.0]))  # half way between texels x = 0 and 1


def test_triplane_product_is_large_only_where_all_three_planes_agree_and_trains():
    from dreamtext.scene.triplane import TriplaneConfig

    encoding = TriplaneConfig(resolutions=(4, 8), features=3).setup()
    assert encoding.output_dim == 6 and all(0.1 <= p.min() and p.max() <= 0.5 for p in encoding.planes)
    with torch.no_grad():
        for planes in encoding.planes:
            planes.fill_(2.0)
        encoding.planes[0][2].fill_(0.5)  # plane yz of the coarse scale
    features = encoding(torch.rand(10, 3))
    torch.testing.assert_close(features[:, :3], torch.full((10, 3), 2.0 * 2.0 * 0.5))
    torch.testing.assert_close(features[:, 3:], torch.full((10, 3), 8.0))
    features.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoding.planes)


def test_field_on_triplanes_fits_a_coloured_ball():
    from dreamtext.scene.triplane import TriplaneConfig

    field = RadianceField(FieldConfig(encoding=TriplaneConfig(resolutions=(16, 32)), hidden_dim=32, num_blocks=1, mlp="plain"))
    optimizer = torch.optim.Adam(field.parameter_groups(lr=5e-3), betas=(0.9, 0.99), eps=1e-15)
    centre, radius = torch.tensor([0.25, 0.1, -0.15]), 0.4
    for _ in range(300):
        points = torch.rand(512, 3) * 2 - 1
        inside = (points - centre).norm(dim=-1) < radius
        loss = F.mse_loss(torch.log1p(field(points).density), torch.log1p(20.0 * inside.float()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        points = torch.rand(20000, 3) * 2 - 1
        accuracy = ((field.density(points) > 1.0) == ((points - centre).norm(dim=-1) < radius)).float().mean()
    assert accuracy > 0.97


def test_the_encoding_is_chosen_by_its_kind_and_saved_configs_load_either():
    from dreamtext.scene.triplane import TriplaneConfig
    from dreamtext.utils.config import config_from_dict, config_to_dict, set_dotted

    config = set_dotted(FieldConfig(), "encoding.kind", "triplane")
    assert config.encoding == TriplaneConfig()
    assert set_dotted(config, "encoding.kind", "triplane") is config  # the same kind keeps its settings
    assert config_from_dict(FieldConfig, config_to_dict(config)) == config
    saved_before_kinds = config_to_dict(FieldConfig(encoding=SMALL_GRID))
    del saved_before_kinds["encoding"]["kind"]
    assert config_from_dict(FieldConfig, saved_before_kinds).encoding == SMALL_GRID
    with pytest.raises(AttributeError, match="hash_grid, triplane"):
        set_dotted(FieldConfig(), "encoding.kind", "voxels")
    assert isinstance(RadianceField(FieldConfig(encoding=TriplaneConfig(), mlp="plain", num_blocks=1)).mlp, torch.nn.Sequential)
