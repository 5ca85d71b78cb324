"""Image I/O and posed image sets: formats, round trips, downscaling, and one-line errors on bad input."""

import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dreamtext.data.posed_images import PosedImages, load_posed_images, save_posed_images
from dreamtext.errors import DreamtextError
from dreamtext.scene.cameras import Cameras, look_at, orbit_cameras
from dreamtext.utils.images import (
    composite_on_background,
    load_image,
    resize_area,
    resize_area_with_alpha,
    save_image,
)

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand, for pixel formats (and broken headers) PIL will not write."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under `folder` with its size and modification time: to prove nothing was written."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            stat = os.stat(os.path.join(root, name))
            entries[os.path.relpath(os.path.join(root, name), folder)] = (stat.st_size, stat.st_mtime_ns)
    return entries


def write_set(folder: Path, n: int = 3, width: int = 8, height: int = 6, **meta_overrides) -> dict:
    """A small valid set on disk (RGB PNGs, top-level fl_x) and its meta, for tests to break."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(0)
    cameras = orbit_cameras(n, width, height).cameras
    frames = []
    for i in range(n):
        Image.fromarray(generator.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"img_{i}.png")
        frames.append({"file_path": f"img_{i}.png", "transform_matrix": cameras.c2w[i].tolist()})
    meta = {"fl_x": 7.0, "fl_y": 7.0, "cx": width / 2, "cy": height / 2, "w": width, "h": height, "frames": frames}
    meta.update(meta_overrides)
    (folder / "transforms.json").write_text(json.dumps(meta))
    return meta


def expect_error(path, folder: Path, names: str, **kwargs) -> str:
    """load_posed_images fails with a one-line DreamtextError naming `names`, and `folder` is untouched."""
    before = snapshot(folder) if folder.exists() else None
    with pytest.raises(DreamtextError) as info:
        load_posed_images(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert names in message, message
    if before is not None:
        assert snapshot(folder) == before
    return message


# ---------------------------------------------------------------------------------------------
# Single images
# ---------------------------------------------------------------------------------------------


def test_rgb_and_rgba_round_trip_within_quantisation(tmp_path):
    rgb = torch.rand(5, 7, 3)
    alpha = torch.rand(5, 7, 1)
    save_image(tmp_path / "a.png", rgb)
    save_image(tmp_path / "b.png", torch.cat([rgb, alpha], dim=-1))
    loaded, no_alpha = load_image(tmp_path / "a.png")
    assert no_alpha is None and loaded.dtype == torch.float32 and loaded.shape == (5, 7, 3)
    assert (loaded - rgb).abs().max() <= 0.5 / 255 + 1e-6
    loaded_rgb, loaded_alpha = load_image(tmp_path / "b.png")
    assert (loaded_rgb - rgb).abs().max() <= 0.5 / 255 + 1e-6
    assert (loaded_alpha - alpha).abs().max() <= 0.5 / 255 + 1e-6
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_grayscale_and_gray_alpha(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    rgb, alpha = load_image(tmp_path / "g.png")
    assert alpha is None and rgb.shape == (3, 4, 3)
    for channel in range(3):
        assert torch.allclose(rgb[..., channel], torch.from_numpy(gray / 255.0).float())
    Image.fromarray(np.stack([gray, 255 - gray], -1), mode="LA").save(tmp_path / "la.png")
    rgb, alpha = load_image(tmp_path / "la.png")
    assert torch.allclose(alpha[..., 0], torch.from_numpy((255 - gray) / 255.0).float())


def test_sixteen_bit_grayscale_keeps_its_precision(tmp_path):
    values = np.array([[0, 1000, 30000], [40000, 65000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    rgb, alpha = load_image(tmp_path / "g16.png")
    assert alpha is None
    # 1000 / 65535 is no multiple of 1 / 255: an 8-bit reduction would be off by up to 2e-3.
    assert torch.allclose(rgb[..., 1], torch.from_numpy(values / 65535.0).float(), atol=1e-7)


def test_sixteen_bit_colour_loads_to_eight_bit_precision(tmp_path):
    values = np.random.default_rng(1).integers(0, 65536, (2, 3, 4)).astype(">u2")
    rows = b"".join(b"\x00" + values[y].tobytes() for y in range(2))
    (tmp_path / "rgba16.png").write_bytes(png_bytes(3, 2, 16, 6, rows))
    rgb, alpha = load_image(tmp_path / "rgba16.png")
    expected = torch.from_numpy(values.astype(np.float64) / 65535.0).float()
    assert (rgb - expected[..., :3]).abs().max() <= 1 / 255 and (alpha - expected[..., 3:]).abs().max() <= 1 / 255


def test_palette_with_transparent_index(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    image.save(tmp_path / "p.png", transparency=1)
    rgb, alpha = load_image(tmp_path / "p.png")
    assert torch.equal(alpha[..., 0], torch.from_numpy((indices != 1).astype(np.float32)))
    assert torch.equal(rgb[0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(rgb[0, 2], torch.tensor([0.0, 0.0, 1.0]))


def test_exif_orientation_turns_the_photo_upright(tmp_path):
    # Stored sideways: 32 wide, 16 tall, left half red, right half blue. EXIF orientation 6 says
    # "rotate 90 degrees clockwise to display", so upright it is 16 wide, 32 tall, red on top.
    stored = np.zeros((16, 32, 3), dtype=np.uint8)
    stored[:, :16, 0] = 255
    stored[:, 16:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    rgb, alpha = load_image(tmp_path / "photo.jpg")
    assert alpha is None and rgb.shape == (32, 16, 3)
    expected = torch.from_numpy(np.rot90(stored, k=-1).copy()).float() / 255
    assert (rgb[2:14] - expected[2:14]).abs().max() < 0.1 and (rgb[18:30] - expected[18:30]).abs().max() < 0.1
    assert rgb[4, 8, 0] > 0.9 and rgb[28, 8, 2] > 0.9  # red on top, blue below


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("text.png", b"this is not an image\n", "not an image"),
        ("empty.png", b"", "empty"),
        ("zero.png", png_bytes(0, 0, 8, 2, b""), "not an image"),
        ("truncated.png", None, "truncated"),
        ("bomb.png", png_bytes(100_000, 100_000, 8, 2, b"\x00"), "too large"),
    ],
)
def test_bad_image_files_give_one_line_errors(tmp_path, name, content, fragment):
    if content is None:  # a real PNG cut in half
        noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(tmp_path / "full.png")
        content = (tmp_path / "full.png").read_bytes()[:600]
    (tmp_path / name).write_bytes(content)
    for max_pixels in (1 << 26, None):  # PIL's own bomb guard is caught too
        with pytest.raises(DreamtextError) as info:
            load_image(tmp_path / name, max_pixels=max_pixels)
        assert "\n" not in str(info.value) and name in str(info.value) and fragment in str(info.value)


def test_pixel_limit_missing_file_and_folder(tmp_path):
    save_image(tmp_path / "big.png", torch.zeros(40, 50, 3))
    with pytest.raises(DreamtextError, match=r"big\.png.*2000 pixels, more than the limit of 1000"):
        load_image(tmp_path / "big.png", max_pixels=1000)
    with pytest.raises(DreamtextError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(DreamtextError, match="is a folder"):
        load_image(tmp_path)


def test_composite_on_background():
    rgb = torch.tensor([[[1.0, 0.0, 0.0]]])
    alpha = torch.tensor([[[0.25]]])
    assert torch.allclose(composite_on_background(rgb, alpha, 1.0), torch.tensor([[[1.0, 0.75, 0.75]]]))
    assert torch.allclose(composite_on_background(rgb, alpha, (0.0, 0.0, 1.0)), torch.tensor([[[0.25, 0.0, 0.75]]]))
    assert composite_on_background(rgb, None, 1.0) is rgb


# ---------------------------------------------------------------------------------------------
# Area resampling
# ---------------------------------------------------------------------------------------------


def test_resize_area_is_exact_box_averaging():
    images = torch.rand(2, 12, 18, 3)
    pooled = F.avg_pool2d(images.permute(0, 3, 1, 2), 3).permute(0, 2, 3, 1)
    assert torch.allclose(resize_area(images, 4, 6), pooled, atol=1e-6)
    # Non-integer factor: every output pixel is a convex combination, so the mean and constants survive.
    small = resize_area(images, 5, 7)
    assert small.shape == (2, 5, 7, 3)
    assert torch.allclose(small.mean(dim=(1, 2)), images.mean(dim=(1, 2)), atol=1e-5)
    assert torch.allclose(resize_area(torch.full((10, 10, 1), 0.3), 3, 7), torch.full((3, 7, 1), 0.3))
    # A 1D check of the weights at factor 2.5: pixel 0 covers inputs [0, 2.5).
    row = torch.arange(5.0).reshape(1, 5, 1)
    expected = torch.tensor([(0 + 1 + 0.5 * 2) / 2.5, (0.5 * 2 + 3 + 4) / 2.5])
    assert torch.allclose(resize_area(row, 1, 2).flatten(), expected)


def test_resize_with_alpha_commutes_with_compositing():
    rgb, alpha = torch.rand(9, 11, 3), (torch.rand(9, 11, 1) > 0.5).float()
    small_rgb, small_alpha = resize_area_with_alpha(rgb, alpha, 4, 5)
    for background in (0.0, 1.0):
        direct = resize_area(composite_on_background(rgb, alpha, background), 4, 5)
        assert torch.allclose(composite_on_background(small_rgb, small_alpha, background), direct, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Posed image sets
# ---------------------------------------------------------------------------------------------


def cameras_close(a: Cameras, b: Cameras, atol: float = 1e-5) -> bool:
    return (a.width, a.height) == (b.width, b.height) and all(
        torch.allclose(getattr(a, name), getattr(b, name), atol=atol) for name in ("c2w", "fx", "fy", "cx", "cy")
    )


def test_save_load_round_trip(tmp_path):
    cameras = orbit_cameras(4, 10, 6, radius=2.0, polar_deg=60.0).cameras
    cameras.cx = cameras.cx + 0.3  # an off-centre principal point survives
    images, alphas = torch.rand(4, 6, 10, 3), torch.rand(4, 6, 10, 1)
    path = save_posed_images(tmp_path / "set", images, cameras, alphas=alphas, extra={"aabb_scale": 2})
    meta = json.loads(path.read_text())
    assert meta["w"] == 10 and meta["h"] == 6 and meta["aabb_scale"] == 2
    assert math.isclose(meta["camera_angle_x"], 2 * math.atan(0.5 * 10 / meta["fl_x"]), rel_tol=1e-6)
    before = snapshot(tmp_path)
    loaded = load_posed_images(tmp_path / "set")
    assert snapshot(tmp_path) == before  # loading never writes
    assert cameras_close(loaded.cameras, cameras)
    assert (loaded.images - images).abs().max() <= 0.5 / 255 + 1e-6
    assert (loaded.alphas - alphas).abs().max() <= 0.5 / 255 + 1e-6
    assert loaded.extra == {"aabb_scale": 2} and len(loaded.paths) == 4 and loaded.paths[0].endswith(".png")

    # Per-camera intrinsics go into the frames.
    fx = cameras.fx * torch.tensor([1.0, 1.1, 1.2, 1.3])
    varied = Cameras(cameras.c2w, fx, cameras.fy, cameras.cx, cameras.cy, 10, 6)
    save_posed_images(tmp_path / "varied", images, varied)
    assert "fl_x" not in json.loads((tmp_path / "varied" / "transforms.json").read_text())
    reloaded = load_posed_images(tmp_path / "varied")
    assert cameras_close(reloaded.cameras, varied) and reloaded.alphas is None


def test_instant_ngp_style_file(tmp_path):
    """NeRF-synthetic layout: camera_angle_x only, extension-less "./" paths, RGBA, named split files."""
    (tmp_path / "train").mkdir()
    cameras = orbit_cameras(2, 8, 8).cameras
    frames = []
    for i in range(2):
        save_image(tmp_path / "train" / f"r_{i}.png", torch.rand(8, 8, 4))
        frames.append({"file_path": f"./train/r_{i}", "rotation": 0.1, "transform_matrix": cameras.c2w[i].tolist()})
    meta = {"camera_angle_x": 0.6911112070083618, "frames": frames}
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    loaded = load_posed_images(tmp_path / "transforms_train.json")
    focal = 0.5 * 8 / math.tan(0.5 * 0.6911112070083618)
    assert torch.allclose(loaded.cameras.fx, torch.full((2,), focal))
    assert torch.allclose(loaded.cameras.fy, loaded.cameras.fx)
    assert torch.allclose(loaded.cameras.cx, torch.full((2,), 4.0)) and loaded.alphas is not None
    assert torch.allclose(loaded.cameras.c2w, cameras.c2w)
    # The folder itself points at the split file it holds.
    expect_error(tmp_path, tmp_path, "transforms_train.json")


def test_frame_intrinsics_override_and_camera_angle_y(tmp_path):
    meta = write_set(tmp_path, n=2, camera_angle_x=1.0, camera_angle_y=0.8)
    for key in ("fl_x", "fl_y", "cx", "cy"):
        del meta[key]
    meta["frames"][1]["fl_x"] = 3.0
    meta["frames"][1]["cx"] = 5.0
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    cams = load_posed_images(tmp_path).cameras
    assert torch.allclose(cams.fx, torch.tensor([4.0 / math.tan(0.5), 3.0]))
    assert torch.allclose(cams.fy, torch.full((2,), 3.0 / math.tan(0.4)))
    assert torch.allclose(cams.cx, torch.tensor([4.0, 5.0]))


def test_downscale_and_max_images(tmp_path):
    cameras = orbit_cameras(5, 12, 8).cameras
    images, alphas = torch.rand(5, 8, 12, 3), (torch.rand(5, 8, 12, 1) > 0.3).float()
    save_posed_images(tmp_path, images, cameras, alphas=alphas)
    full = load_posed_images(tmp_path)
    half = load_posed_images(tmp_path, downscale=2)
    assert half.images.shape == (5, 4, 6, 3) and half.cameras.width == 6
    assert cameras_close(half.cameras, cameras.resized(6, 4))
    # Area averaging of the composited image, so no aliasing and no colour bleeding from hidden pixels.
    pooled = F.avg_pool2d(full.composited(1.0).permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    assert torch.allclose(half.composited(1.0), pooled, atol=1e-5)
    sized = load_posed_images(tmp_path, downscale=(5, 3), max_images=3)
    assert sized.images.shape == (3, 3, 5, 3) and cameras_close(sized.cameras, cameras[[0, 2, 4]].resized(5, 3))
    assert [Path(p).name for p in sized.paths] == ["frame_0000.png", "frame_0002.png", "frame_0004.png"]


def test_split_subset_and_composited():
    c2w = look_at(torch.randn(6, 3) * 3)
    cameras = Cameras.from_fovy(c2w, 50.0, 2, 2)
    posed = PosedImages(torch.rand(6, 2, 2, 3), torch.rand(6, 2, 2, 1), cameras, [f"{i}" for i in range(6)])
    train, held_out = posed.split(holdout_every=3)
    assert held_out.paths == ["0", "3"] and train.paths == ["1", "2", "4", "5"]
    assert torch.equal(train.images, posed.images[[1, 2, 4, 5]]) and torch.equal(held_out.cameras.c2w, c2w[[0, 3]])
    assert torch.allclose(posed.composited(0.0), posed.images * posed.alphas)
    assert posed.subset([5]).alphas.shape == (1, 2, 2, 1)


def test_save_refuses_to_overwrite(tmp_path):
    cameras = orbit_cameras(2, 4, 4).cameras
    save_posed_images(tmp_path / "set", torch.rand(2, 4, 4, 3), cameras)
    before = snapshot(tmp_path / "set")
    with pytest.raises(DreamtextError, match="not empty") as info:
        save_posed_images(tmp_path / "set", torch.rand(2, 4, 4, 3), cameras)
    assert "set" in str(info.value) and snapshot(tmp_path / "set") == before
    new_images = torch.rand(2, 4, 4, 3)
    save_posed_images(tmp_path / "set", new_images, cameras, overwrite=True)
    assert (load_posed_images(tmp_path / "set").images - new_images).abs().max() <= 0.5 / 255 + 1e-6


# ---------------------------------------------------------------------------------------------
# Bad posed sets: one-line error naming the file, nothing changed on disk
# ---------------------------------------------------------------------------------------------


def test_missing_empty_and_imageless_folders(tmp_path):
    expect_error(tmp_path / "nope", tmp_path, "nope")
    (tmp_path / "empty").mkdir()
    assert "empty" in expect_error(tmp_path / "empty", tmp_path / "empty", "empty")
    (tmp_path / "notes.txt").write_text("hello")
    expect_error(tmp_path / "notes.txt", tmp_path, "notes.txt")
    (tmp_path / "photos").mkdir()
    save_image(tmp_path / "photos" / "a.png", torch.rand(4, 4, 3))
    message = expect_error(tmp_path / "photos", tmp_path / "photos", "photos")
    assert "1 image(s) but no transforms.json" in message and "Instant-NGP" in message


@pytest.mark.parametrize(
    "corrupt, fragment",
    [
        (lambda m: "{\"frames\": [\n  {\"file_path\": \"img_0.png\",,}\n]}", "malformed JSON at line 2, column"),
        (lambda m: "[1, 2]", "not an object"),
        (lambda m: {k: v for k, v in m.items() if k != "frames"}, "missing key 'frames'"),
        (lambda m: {**m, "frames": []}, "no images"),
        (lambda m: {**m, "frames": [{"file_path": "img_0.png"}]}, "frame 0 has no 'transform_matrix'"),
        (lambda m: {**m, "frames": [{**m["frames"][0], "transform_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}]}, "shape (3, 3)"),
        (lambda m: {**m, "frames": [{**m["frames"][0], "transform_matrix": [[float("nan")] * 4] * 4}]}, "NaN"),
        (lambda m: {**m, "frames": [{**m["frames"][0], "transform_matrix": [["a"] * 4] * 4}]}, "not a 4x4"),
        (lambda m: {k: v for k, v in m.items() if k not in ("fl_x", "fl_y")}, "no intrinsics"),
        (lambda m: {**m, "fl_x": -3.0}, "fl_x = -3.0 must be positive"),
        (lambda m: {**m, "k1": 0.1}, "distortion k1"),
        (lambda m: {**m, "camera_model": "OPENCV_FISHEYE"}, "not a pinhole"),
    ],
)
def test_bad_transforms_file(tmp_path, corrupt, fragment):
    meta = write_set(tmp_path)
    broken = corrupt(meta)
    (tmp_path / "transforms.json").write_text(broken if isinstance(broken, str) else json.dumps(broken))
    message = expect_error(tmp_path, tmp_path, str(tmp_path / "transforms.json"))
    assert fragment in message, message


def test_missing_image_non_image_and_mixed_sizes(tmp_path):
    write_set(tmp_path)
    (tmp_path / "img_1.png").unlink()
    message = expect_error(tmp_path, tmp_path, "img_1.png")
    assert "does not exist" in message

    (tmp_path / "img_1.png").write_text("not a picture")
    assert "not an image" in expect_error(tmp_path, tmp_path, "img_1.png")

    (tmp_path / "img_1.png").unlink()
    save_image(tmp_path / "img_1.png", torch.rand(5, 8, 3))
    message = expect_error(tmp_path, tmp_path, "img_1.png")
    assert "8x5" in message and "img_0.png is 8x6" in message

    # The declared size disagrees with every image.
    write_set(tmp_path, w=16)
    assert "w=16" in expect_error(tmp_path, tmp_path, "img_0.png")
    meta = write_set(tmp_path, h=99)
    del meta["w"]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    assert "w=None, h=99" in expect_error(tmp_path, tmp_path, "img_0.png")


def test_path_with_a_line_break_still_gives_one_line(tmp_path):
    folder = tmp_path / "odd\nname"
    folder.mkdir()
    message = expect_error(folder, folder, "odd\\nname")
    assert "\n" not in message
