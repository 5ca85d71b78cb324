"""DreamText's augmentations (thesis 6.1.9): shape, range, white fill, exact geometry, the thesis's probabilities."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dreamtext.methods.image_to_3d.augment import (
    LUMA, NO_AUGMENTATION, AugmentConfig, adjust_contrast, adjust_hue, augment, color_jitter, crop, draw,
    gaussian_blur, gaussian_kernels, hsv_to_rgb, rgb_to_hsv, rotate, white_fraction,
)


def only(**changes) -> AugmentConfig:
    return dataclasses.replace(NO_AUGMENTATION, **changes)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_thesis_augmentations_keep_shape_and_range_and_are_seeded():
    images = torch.rand(6, 3, 24, 24, generator=generator(1))
    out = augment(images, AugmentConfig(), generator(7), size=16)
    assert out.shape == (6, 3, 16, 16) and out.dtype == images.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out, augment(images, AugmentConfig(), generator(7), size=16))  # same seed, same copies
    assert not torch.equal(out, augment(images, AugmentConfig(), generator(8), size=16))
    # Without any augmentation only the resize acts; at the input size nothing changes at all.
    assert torch.equal(augment(images, NO_AUGMENTATION, generator(0)), images)


def test_random_stream_consumption_does_not_depend_on_outcomes():
    # A resumed run must continue the same stream whatever was applied: every draw takes the same numbers.
    a, b = generator(3), generator(3)
    draw(5, AugmentConfig(), a, "cpu")
    draw(5, NO_AUGMENTATION, b, "cpu")
    assert torch.equal(a.get_state(), b.get_state())


def test_probabilities_are_the_thesis_values():
    d = draw(20000, AugmentConfig(), generator(0), "cpu")
    rates = {name: float(getattr(d, name).float().mean()) for name in ("flip", "rotate", "blur", "crop", "grayscale", "jitter")}
    expected = {"flip": 0.5, "rotate": 0.9, "blur": 0.25, "crop": 0.5, "grayscale": 0.1, "jitter": 0.5}
    for name, p in expected.items():
        assert rates[name] == pytest.approx(p, abs=0.015), name
    assert float(d.angle_deg.abs().max()) <= 10.0 and float(d.angle_deg.abs().max()) > 9.9
    assert 0.1 <= float(d.sigma.min()) and float(d.sigma.max()) <= 2.0
    assert float((d.jitter_factors[:, :3] - 1).abs().max()) <= 0.1 and float(d.jitter_factors[:, 3].abs().max()) <= 0.1
    assert torch.equal(d.jitter_order.sort(dim=1).values, torch.arange(4).expand(20000, 4))  # permutations


def test_geometry_and_blur_keep_a_white_image_white():
    white = torch.ones(8, 3, 20, 20)
    out = augment(white, dataclasses.replace(AugmentConfig(), jitter_p=0.0, rotation_p=1.0, blur_p=1.0, crop_p=1.0), generator(0))
    assert float((out - 1).abs().max()) < 1e-5


def test_rotation_fills_uncovered_corners_with_exact_white():
    black = torch.zeros(2, 3, 41, 41)
    out = rotate(black, torch.tensor([10.0, -10.0]), fill=1.0)
    assert torch.all(out[:, :, 0, 0] == 1.0) and torch.all(out[:, :, -1, -1] == 1.0)  # corners: fill
    assert torch.all(out[:, :, 20, 20] == 0.0)  # centre: image
    # The white area equals the part of the picture that the turned square does not cover, computed on a fine grid.
    u = (torch.arange(400) + 0.5) / 400 * 2 - 1
    y, x = torch.meshgrid(u, u, indexing="ij")
    t = torch.deg2rad(torch.tensor(10.0))
    source_x, source_y = torch.cos(t) * x - torch.sin(t) * y, torch.sin(t) * x + torch.cos(t) * y
    outside = ((source_x.abs() > 1) | (source_y.abs() > 1)).float().mean()
    assert float(out[0, 0].mean()) == pytest.approx(float(outside), abs=0.01)
    assert torch.allclose(out[0].flip(-1), out[1], atol=1e-5)  # +10 and -10 degrees mirror each other
    # Positive angles turn counter-clockwise as seen (torchvision's convention): right of centre goes up.
    dot = torch.ones(1, 3, 21, 21)
    dot[0, :, 10, 16] = 0.0
    turned = rotate(dot, torch.tensor([90.0]))
    assert (turned[0, 0] < 0.5).nonzero().tolist() == [[4, 10]]


def test_crop_zooms_into_a_window_and_zooming_out_fills_white():
    half = torch.ones(1, 3, 40, 40)
    half[..., :20] = 0.0  # left half black
    # A window of 0.8 of the side at the far left: 20 black columns of its 32 become 62.5% of the output.
    left = crop(half, 0.8, torch.tensor([[0.0, 0.5]]))
    assert float((left[0, 0] < 0.5).float().mean()) == pytest.approx(20 / 32, abs=1 / 40)
    right = crop(half, 0.8, torch.tensor([[1.0, 0.5]]))
    assert float((right[0, 0] < 0.5).float().mean()) == pytest.approx(12 / 32, abs=1 / 40)
    # fraction > 1 shows more than the image: the margin is white fill (1/1.25 of the side is image).
    zoomed_out = crop(torch.zeros(1, 3, 40, 40), 1.25, torch.tensor([[0.5, 0.5]]))
    assert float(white_fraction(zoomed_out)) == pytest.approx(1 - (1 / 1.25) ** 2, abs=0.03)


def test_flip_and_grayscale_are_exact():
    images = torch.rand(3, 3, 8, 8, generator=generator(2))
    assert torch.equal(augment(images, only(flip_p=1.0), generator(0)), images.flip(-1))
    gray = augment(images, only(grayscale_p=1.0), generator(0))
    luma = sum(w * images[:, i] for i, w in enumerate(LUMA))
    for channel in range(3):
        assert torch.allclose(gray[:, channel], luma, atol=1e-6)


def test_blur_is_a_normalised_separable_gaussian():
    kernels = gaussian_kernels(torch.tensor([0.1, 1.0, 2.0]), 5)
    assert torch.allclose(kernels.sum(dim=1), torch.ones(3))
    assert torch.allclose(kernels[1], torch.exp(-torch.arange(-2.0, 3.0) ** 2 / 2) / torch.exp(-torch.arange(-2.0, 3.0) ** 2 / 2).sum())
    delta = torch.zeros(1, 3, 11, 11)
    delta[..., 5, 5] = 1.0
    blurred = gaussian_blur(delta, torch.tensor([1.0]), 5)
    assert torch.allclose(blurred[0, 0, 3:8, 3:8], kernels[1][:, None] * kernels[1][None, :], atol=1e-7)
    assert float((gaussian_blur(delta, torch.tensor([0.1]), 5) - delta).abs().max()) < 1e-6  # sigma 0.1: almost nothing


def test_color_jitter_operations():
    images = torch.rand(4, 3, 6, 6, generator=generator(4)) * 0.5 + 0.25
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(images)), images, atol=1e-6)
    assert torch.allclose(adjust_hue(images, torch.ones(4)), images, atol=1e-5)  # a full turn
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(adjust_hue(red, torch.tensor([1 / 3])), torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2), atol=1e-6)
    luma = lambda x: sum(w * x[:, i] for i, w in enumerate(LUMA)).mean(dim=(1, 2))  # noqa: E731
    assert torch.allclose(luma(adjust_contrast(images, torch.full((4,), 0.9))), luma(images), atol=1e-6)
    factors = torch.tensor([[1.1, 1.0, 1.0, 0.0]]).expand(4, 4)
    order = torch.arange(4).expand(4, 4)
    assert torch.allclose(color_jitter(images, factors, order), (images * 1.1).clamp(0, 1), atol=1e-6)
    # Brightness and contrast are linear around the mean luma: without clamping either order gives the same image.
    both = torch.tensor([[0.95, 1.05, 1.0, 0.0]]).expand(4, 4)
    forward, backward = color_jitter(images, both, order), color_jitter(images, both, torch.tensor([1, 0, 2, 3]).expand(4, 4))
    assert torch.allclose(forward, backward, atol=1e-6)
