"""The static results gallery: its contents on disk, and the page in a real headless Chromium."""

import json
import time
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pygltflib
import pytest
import torch
from PIL import Image

from chromium import Chromium, external_requests, require_chromium, serve_folder
from dreamtext.cli.main import main
from dreamtext.errors import DreamtextError
from dreamtext.export.mesh import MeshExportConfig
from dreamtext.export.outputs import ExportConfig, export_all
from dreamtext.gallery import build_gallery, summarize_run
from dreamtext.gallery.site import MARKER_FILE, STATIC_FILES
from dreamtext.scene.renderer import RendererConfig, VolumeRenderer
from dreamtext.utils.workspace import Workspace
from dreamtext.world.analytic import sphere_scene, two_tone_test_scene
from dreamtext.world.posed_views import write_scene_views

PROMPT = 'a red <ball> & "sphere"'
PAGE_BACKGROUND = np.array([243, 244, 246])  # glb-viewer.js's clear colour (#f3f4f6)


def analytic_run(root: Path, scene, saved: dict, texture: bool = False, metrics: dict | None = None) -> Path:
    """A workspace with everything a finished run exports, made from an analytic scene in a second."""
    workspace = Workspace(root)
    config = ExportConfig(mesh=MeshExportConfig(resolution=32), texture=texture, video_frames=4, video_size=32,
                          views=("front", "right"), views_size=32)
    renderer = VolumeRenderer(RendererConfig(use_occupancy_grid=False, num_samples=48))
    stats = export_all(scene, renderer, workspace, config, background=torch.ones(3))
    (workspace.root / "config.json").write_text(json.dumps(saved))
    workspace.write_metrics({**stats, **(metrics or {})})
    return workspace.root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    base = tmp_path_factory.mktemp("runs")
    red = analytic_run(base / "a" / "run", sphere_scene(0.5, (0.9, 0.15, 0.1)), {"method": "text", "config": {"prompt": {"prompt": PROMPT}}},
                       metrics={"final_loss": 0.125})
    fit = base / "fit run"
    write_scene_views(two_tone_test_scene(), fit / "input", views=3, size=16, seed=0)
    analytic_run(fit, two_tone_test_scene(), {"method": "fit", "config": {"data": None}}, metrics={"heldout_psnr": 31.25})
    # Same folder name as the first run: the gallery must keep both.
    blue = analytic_run(base / "b" / "run", sphere_scene(0.5, (0.1, 0.2, 0.9)), {"method": "text", "config": {"prompt": {"prompt": "a blue ball"}}},
                        texture=True)
    # An image-to-3D run that has only described its input so far: no mesh, video or metrics yet.
    image = base / "image"
    image.mkdir()
    Image.new("RGB", (24, 24), (40, 160, 60)).save(image / "input.png")
    (image / "describe.json").write_text(json.dumps({"image": "input.png", "sentence": "An image of green, cube"}))
    return [red, fit, blue, image]


@pytest.fixture(scope="module")
def site(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build_gallery(runs, out, title="test gallery")
    return out


class _Links(HTMLParser):
    """Every URL the page refers to, with the tag, and the text of the page."""

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        for name in ("src", "href", "data-src", "data-gif"):
            if attributes.get(name):
                self.urls.append((tag, attributes[name]))


def parse_page(site: Path) -> tuple[_Links, str]:
    text = (site / "index.html").read_text()
    parser = _Links()
    parser.feed(text)
    return parser, text


def glb_triangles(path: Path) -> int:
    gltf = pygltflib.GLTF2().load(str(path))
    return sum(gltf.accessors[p.indices].count // 3 for mesh in gltf.meshes for p in mesh.primitives)


# ---------------------------------------------------------------------------------------------
# The files
# ---------------------------------------------------------------------------------------------


def test_summaries_name_each_runs_inputs(runs):
    red, fit, blue, image = (summarize_run(run) for run in runs)
    assert (red.method, red.title, red.inputs) == ("text", PROMPT, [])
    assert red.mesh and red.turntable_mp4 and red.turntable_gif and list(red.views) == ["front", "right"]
    assert red.metrics["final_loss"] == 0.125
    assert fit.title == "fit of the built-in scene"
    assert [path.name for path in fit.inputs] == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    assert (image.method, image.title, image.inputs) == ("image", "An image of green, cube", [runs[3] / "input.png"])
    assert image.mesh is None and image.metrics is None and image.views == {}


def test_page_refers_only_to_files_beside_it(site, runs):
    links, text = parse_page(site)
    assert links.urls, "the page links nothing"
    for tag, url in links.urls:
        parts = urlsplit(url)
        if parts.scheme == "data" or url.startswith("#"):
            continue
        assert not parts.scheme and not parts.netloc, f"<{tag}> points off the site: {url}"
        assert (site / unquote(parts.path)).is_file(), f"<{tag}> points at a missing file: {url}"
    # Scripts and style are the package's own files, byte for byte.
    static = resources.files("dreamtext.gallery") / "static"
    for name in STATIC_FILES:
        assert (site / "assets" / name).read_bytes() == (static / name).read_bytes()
    scripts = [attributes["src"] for tag, attributes in links.tags if tag == "script"]
    assert scripts == ["assets/gallery.js", "assets/glb-viewer.js"]
    # The copied meshes are the runs' own.
    meshes = [unquote(url) for tag, url in links.urls if tag == "canvas"]
    assert len(meshes) == 3
    assert sorted((site / mesh).read_bytes() for mesh in meshes) == sorted((run / "mesh.glb").read_bytes() for run in runs[:3])
    assert (site / MARKER_FILE).is_file()


def test_page_shows_prompts_inputs_metrics_and_gaps(site, runs):
    links, text = parse_page(site)
    assert "a red &lt;ball&gt; &amp; &quot;sphere&quot;" in text and PROMPT not in text  # escaped, never raw HTML
    assert text.count('<article class="run"') == 4
    folders = sorted(path.name for path in (site / "runs").iterdir())
    assert folders == ["fit-run", "image", "run", "run-2"]  # two workspaces named "run" kept apart
    assert len(list((site / "runs" / "fit-run" / "input").iterdir())) == 3
    assert (site / "runs" / "image" / "input" / "0.png").read_bytes() == (runs[3] / "input.png").read_bytes()
    videos = [attributes for tag, attributes in links.tags if tag == "video"]
    assert len(videos) == 3 and all(v["data-gif"].endswith("turntable.gif") for v in videos)
    # The comparison table has one row per metric and one column per run.
    compare = text[text.index('<div class="compare">'): text.index('<div class="runs">')]
    assert "<th>heldout_psnr</th>" in compare and ">31.25<" in compare and ">0.125<" in compare
    assert compare.count("<tr>") == 1 + len({"final_loss", "heldout_psnr", "mesh_faces", "mesh_vertices", "mesh_volume"})
    assert "no mesh exported yet" in text and "no turntable yet" in text


def test_rebuilding_replaces_a_gallery_but_never_a_foreign_folder(runs, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["gallery", str(runs[0]), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    (out / "runs" / "stale").mkdir()
    build_gallery([runs[1]], out)
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["fit-run"]

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(DreamtextError, match="holds no gallery"):
        build_gallery([runs[0]], foreign)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["gallery", str(empty), "--out", str(tmp_path / "new")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("dreamtext: error:") and "no config.json" in error and error.count("\n") == 1
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------------
# The page in a browser
# ---------------------------------------------------------------------------------------------


def object_pixels(image: np.ndarray, background: np.ndarray = PAGE_BACKGROUND, threshold: int = 30) -> np.ndarray:
    return np.abs(image.astype(int) - background).max(axis=-1) > threshold


def middle(image: np.ndarray, fraction: float = 0.2) -> np.ndarray:
    h, w = image.shape[:2]
    dh, dw = int(h * fraction / 2), int(w * fraction / 2)
    return image[h // 2 - dh: h // 2 + dh, w // 2 - dw: w // 2 + dw]


def test_gallery_in_headless_chromium(site, runs):
    binary = require_chromium()
    with serve_folder(site) as origin, Chromium(binary) as browser:
        browser.open(f"{origin}/index.html")
        states = browser.wait_until(
            "(() => { const s = Array.from(document.querySelectorAll('canvas.glb-viewer')).map(c => c.dataset.state);"
            " return s.every(x => x === 'ready' || x === 'error') && s; })()")
        assert states == ["ready"] * 3
        triangles = browser.evaluate("Array.from(document.querySelectorAll('canvas.glb-viewer')).map(c => +c.dataset.triangles)")
        assert triangles == [glb_triangles(run / "mesh.glb") for run in runs[:3]]
        # Every turntable plays (Chromium decodes the H.264 mp4) or has fallen back to its gif.
        browser.wait_until("Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 2)")

        shots = {index: browser.screenshot(f"#run-{index} canvas.glb-viewer") for index in (1, 2, 3)}
        for index, shot in shots.items():
            assert np.abs(shot[5, shot.shape[1] // 2].astype(int) - PAGE_BACKGROUND).max() <= 2, index  # background at the edge
            assert 0.05 < object_pixels(shot).mean() < 0.8, index
        for index in (1, 3):  # the balls fill the middle of their views
            assert object_pixels(middle(shots[index])).mean() > 0.95, index
        red, blue = middle(shots[1]).reshape(-1, 3).mean(0), middle(shots[3]).reshape(-1, 3).mean(0)
        assert red[0] > red[1] + 60 and red[0] > red[2] + 60  # vertex colours
        # ... stored linear in the GLB (glTF's rule) and shown in sRGB again: the albedo's green / red ratio
        # (0.15 / 0.9), not the linear one (0.02 / 0.79), under one white light
        assert 0.12 < red[1] / red[0] < 0.22
        assert blue[2] > blue[0] + 60 and blue[2] > blue[1] + 40  # a baked texture under a white material

        # Dragging orbits the (asymmetric) two-tone scene: the picture changes, the object stays in view.
        browser.drag("#run-2 canvas.glb-viewer", 120, 0)
        time.sleep(0.3)
        turned = browser.screenshot("#run-2 canvas.glb-viewer")
        assert np.abs(turned.astype(int) - shots[2].astype(int)).mean() > 2
        assert object_pixels(turned).mean() > 0.05

        assert browser.log.errors == []
        assert external_requests(browser.log.requests, origin) == []
        assert any(url.endswith("mesh.glb") for url in browser.log.requests)



def test_the_gallery_copies_only_files_inside_each_workspace(runs, tmp_path, capsys):
    """Issue 32: a describe.json naming /etc/passwd, or a mesh.glb that links out of the workspace, must not
    put this machine's files into the site."""
    import shutil

    secret = tmp_path / "secret.glb"
    secret.write_bytes(b"not for the gallery")
    run = tmp_path / "foreign"
    shutil.copytree(runs[3], run)
    (run / "describe.json").write_text(json.dumps({"image": "/etc/passwd", "sentence": "An image of a cube"}))
    (run / "mesh.glb").symlink_to(secret)
    (run / "views").mkdir()
    (run / "views" / "front.png").symlink_to("../input.png")  # a link that stays inside is fine
    summary = summarize_run(run)
    assert summary.inputs == [] and summary.mesh is None and list(summary.views) == ["front"]
    err = capsys.readouterr().err
    assert "skipping /etc/passwd" in err and "secret.glb" not in err and "mesh.glb" in err
    site = tmp_path / "site"
    build_gallery([run], site)
    copied = [p for p in (site / "runs").rglob("*") if p.is_file()]
    assert all(b"not for the gallery" not in p.read_bytes() and b"root:" not in p.read_bytes() for p in copied)


def test_the_gallery_reads_no_json_from_outside_a_workspace(runs, tmp_path, capsys):
    """Issue 40: a metrics.json or config.json linking out of the workspace is neither copied nor shown."""
    import shutil

    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"api_key": "do-not-publish", "iters": 424242}))
    run = tmp_path / "linked"
    shutil.copytree(runs[0], run)
    (run / "metrics.json").unlink(missing_ok=True)
    (run / "metrics.json").symlink_to(secret)
    summary = summarize_run(run)
    assert summary.metrics is None and "skipping" in capsys.readouterr().err
    (run / "config.json").unlink()
    (run / "config.json").symlink_to(secret)
    with pytest.raises(DreamtextError, match="no config.json"):
        summarize_run(run)  # what is left is not a workspace the gallery can show
    site = tmp_path / "site"
    other = tmp_path / "other"
    shutil.copytree(runs[0], other)
    (other / "metrics.json").unlink(missing_ok=True)
    (other / "metrics.json").symlink_to(secret)
    build_gallery([other], site)
    texts = [p.read_bytes() for p in site.rglob("*") if p.is_file()]
    assert all(b"do-not-publish" not in text and b"424242" not in text for text in texts)
