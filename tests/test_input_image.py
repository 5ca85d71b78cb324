"""The image-to-3D input: every pixel format, EXIF orientation, squaring, recentring and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dreamtext.data.input_image import InputImageConfig, load_input_image
from dreamtext.errors import DreamtextError
from dreamtext.utils.images import load_image, resize_area

RED = (200, 20, 10)


def config(size: int, **kwargs) -> InputImageConfig:
    return InputImageConfig(size=size, **{"min_side": 1, **kwargs})  # these tests frame tiny images on purpose


def test_rgb_is_padded_white_to_a_square_around_its_centre(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:] = RED
    pixels[0, 0] = (0, 0, 255)  # a marker in the top-left corner
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    prepared = load_input_image(tmp_path / "wide.png", config(40))
    assert prepared.mask is None and prepared.original_size == (40, 20) and prepared.crop_box == (0, -10, 40, 40)
    image = prepared.image.permute(1, 2, 0)
    assert image.shape == (40, 40, 3)
    assert torch.all(image[:10] == 1.0) and torch.all(image[30:] == 1.0)  # white bands above and below
    assert torch.allclose(image[10:30], torch.from_numpy(pixels).float() / 255)  # the picture itself, unscaled
    # Downscaled: the area average of the padded picture.
    small = load_input_image(tmp_path / "wide.png", config(16)).image.permute(1, 2, 0)
    assert torch.allclose(small, resize_area(image, 16, 16), atol=1e-6)


def test_rgba_object_is_cut_out_recentred_scaled_and_composited_on_white(tmp_path):
    pixels = np.zeros((48, 64, 4), np.uint8)
    pixels[..., 1] = 255  # hidden green under the transparent pixels must not bleed into the result
    pixels[30:46, 4:20] = (*RED, 255)  # a 16 x 16 opaque object in the lower-left corner
    Image.fromarray(pixels, "RGBA").save(tmp_path / "object.png")
    prepared = load_input_image(tmp_path / "object.png", config(10, object_fraction=0.8))
    # The object (16 px) covers 0.8 of a 20 px square centred on it; 20 -> 10 px halves it to 8 px.
    assert prepared.crop_box == (2, 28, 20, 20)
    mask, image = prepared.mask[0], prepared.image
    expected = torch.zeros(10, 10)
    expected[1:9, 1:9] = 1.0
    assert torch.allclose(mask, expected)
    red = torch.tensor(RED, dtype=torch.float32)[:, None] / 255
    assert torch.allclose(image[:, 1:9, 1:9], red.expand(3, 64).reshape(3, 8, 8))
    assert torch.all(image[:, mask == 0] == 1.0)  # white, not green, outside the object


def test_soft_alpha_composites_exactly_and_the_halo_does_not_move_the_centre(tmp_path):
    pixels = np.zeros((32, 32, 4), np.uint8)
    pixels[..., :3] = (0, 0, 255)
    pixels[8:24, 8:24, 3] = 128  # half transparent blue square, centred
    pixels[0, 31, 3] = 5  # a faint speck below the 0.05 threshold
    Image.fromarray(pixels, "RGBA").save(tmp_path / "soft.png")
    prepared = load_input_image(tmp_path / "soft.png", config(20, object_fraction=0.8))
    assert prepared.crop_box == (6, 6, 20, 20)  # centred on the square, the speck ignored
    centre = prepared.image[:, 10, 10]
    a = 128 / 255
    assert torch.allclose(centre, torch.tensor([1 - a, 1 - a, 1.0]), atol=1e-6)  # blue over white
    assert prepared.mask[0, 10, 10] == pytest.approx(a)


@pytest.mark.parametrize("mode", ["L", "I;16", "LA", "P"])
def test_grayscale_sixteen_bit_and_palette_files(tmp_path, mode):
    ramp = np.tile(np.arange(16, dtype=np.uint8) * 16, (16, 1))
    if mode == "L":
        Image.fromarray(ramp, "L").save(tmp_path / "x.png")
    elif mode == "I;16":
        Image.fromarray(ramp.astype(np.uint16) * 257).save(tmp_path / "x.png")
    elif mode == "LA":
        alpha = np.full_like(ramp, 255)
        alpha[:, :4] = 0
        Image.fromarray(np.stack([ramp, alpha], -1), "LA").save(tmp_path / "x.png")
    else:
        palette_image = Image.fromarray(ramp, "L").convert("P")
        palette_image.info["transparency"] = palette_image.getpixel((0, 0))
        palette_image.save(tmp_path / "x.png", transparency=palette_image.getpixel((0, 0)))
    prepared = load_input_image(tmp_path / "x.png", config(16, object_fraction=1.0))
    image = prepared.image
    assert image.shape == (3, 16, 16) and image.min() >= 0 and image.max() <= 1
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])  # grey stays grey
    if mode in ("L", "I;16"):
        assert prepared.mask is None
        assert torch.allclose(image[0], torch.from_numpy(ramp).float() / 255, atol=1e-6)
    else:
        assert prepared.mask is not None
        assert prepared.mask.min() == 0 and prepared.mask.max() == 1  # transparency became the mask
        assert torch.all(image[:, prepared.mask[0] == 0] == 1.0)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.full((20, 30, 3), 255, np.uint8)
    pixels[:4, :4] = (255, 0, 0)  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "rotated.png", exif=exif)
    rgb, _ = load_image(tmp_path / "rotated.png")
    assert rgb.shape[:2] == (30, 20)  # upright: portrait
    prepared = load_input_image(tmp_path / "rotated.png", config(30))
    assert prepared.original_size == (20, 30)
    image = prepared.image.permute(1, 2, 0)
    # Clockwise rotation carries the top-left corner to the top-right (inside the 5 px side padding).
    assert torch.allclose(image[1, 23], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(image[1, 6], torch.ones(3))


def test_enlarging_a_small_image_is_smooth_not_blocky(tmp_path):
    pixels = np.zeros((4, 4, 3), np.uint8)
    pixels[:, 2:] = 255
    Image.fromarray(pixels).save(tmp_path / "tiny.png")
    row = load_input_image(tmp_path / "tiny.png", config(32)).image[0, 16]
    assert row.shape == (32,) and 0.0 < float(row[15]) < 1.0  # an interpolated edge
    assert torch.all(row[1:] >= row[:-1])  # monotone, no ringing


def _one_line_error(path, **kwargs) -> str:
    with pytest.raises(DreamtextError) as caught:
        load_input_image(path, config(16, **kwargs))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_bad_files_give_one_line_errors(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty" in _one_line_error(tmp_path / "empty.png")
    (tmp_path / "notes.png").write_text("not an image\nat all")
    assert "not an image" in _one_line_error(tmp_path / "notes.png")
    assert "no such file" in _one_line_error(tmp_path / "missing.png")
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), "RGBA").save(tmp_path / "clear.png")
    assert "fully transparent" in _one_line_error(tmp_path / "clear.png")
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "big.png")
    assert "2000 pixels" in _one_line_error(tmp_path / "big.png", max_pixels=1000)
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(good)
    good.write_bytes(good.read_bytes()[:60])  # truncated
    assert "unreadable" in _one_line_error(good)


def test_save_writes_the_image_and_mask(tmp_path):
    pixels = np.zeros((10, 10, 4), np.uint8)
    pixels[2:8, 2:8] = (*RED, 255)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "in.png")
    prepared = load_input_image(tmp_path / "in.png", config(12))
    written = prepared.save(tmp_path / "out" / "input.png", tmp_path / "out" / "mask.png")
    assert [p.name for p in written] == ["input.png", "mask.png"]
    again, _ = load_image(written[0])
    assert torch.allclose(again, prepared.image.permute(1, 2, 0), atol=0.5 / 255)
    assert np.asarray(Image.open(written[1])).shape == (12, 12)


def test_tiny_images_are_refused_and_animated_ones_warned_about(tmp_path, capsys):
    """Issue 32: a 1x1 image went on into descriptor training; an animated GIF silently used its first frame."""
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    with pytest.raises(DreamtextError, match="only 1x1 pixels"):
        load_input_image(tmp_path / "dot.png")
    frames = [Image.fromarray(np.full((40, 40, 3), value, np.uint8)) for value in (0, 255)]
    frames[0].save(tmp_path / "blink.gif", save_all=True, append_images=frames[1:])
    prepared = load_input_image(tmp_path / "blink.gif", InputImageConfig(size=16))
    assert "animated (2 frames); using its first frame" in capsys.readouterr().err
    assert prepared.image.max() < 0.05  # the first (black) frame
