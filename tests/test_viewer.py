"""The browser viewer: its pictures (exact on an analytic sphere), following a live run, and the
viser page in a real headless Chromium."""

import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from chromium import Chromium, external_requests, require_chromium
from dreamtext.cli.main import main
from dreamtext.errors import DreamtextError
from dreamtext.export.formats import save_mesh
from dreamtext.export.mesh import MeshExportConfig, extract_mesh
from dreamtext.export.outputs import ExportConfig
from dreamtext.methods.fit import BuiltinSceneConfig, FitConfig, Fitter, load_fit_data
from dreamtext.methods.trained import TrainedScene
from dreamtext.scene.cameras import look_at
from dreamtext.scene.field import FieldConfig, RadianceField
from dreamtext.scene.hash_encoding import HashGridConfig
from dreamtext.scene.renderer import RendererConfig, VolumeRenderer
from dreamtext.scene.shading import DEFAULT_AMBIENT
from dreamtext.utils.progress import Progress
from dreamtext.utils.workspace import Workspace
from dreamtext.viewer import VIEW_MODES, ViewPose, light_direction, pose_from_viser, render_view
from dreamtext.viewer.live import LiveWorkspace, describe_progress, read_progress, run_is_active
from dreamtext.viewer.render import quaternion_to_matrix
from dreamtext.viewer.server import ViewerConfig, WorkspaceViewer
from dreamtext.world.analytic import sphere_scene

RADIUS, ALBEDO, DISTANCE = 0.4, (0.8, 0.3, 0.2), 2.0


@pytest.fixture(scope="module")
def sphere() -> TrainedScene:
    renderer = VolumeRenderer(RendererConfig(use_occupancy_grid=False, num_samples=128))
    return TrainedScene(field=sphere_scene(RADIUS, ALBEDO), renderer=renderer, background=torch.ones(3), export=ExportConfig())


@pytest.fixture(scope="module")
def front() -> ViewPose:
    return ViewPose.looking_at_origin((0.0, 0.0, DISTANCE), fovy_deg=40.0, width=48, height=40)


def ray_sphere_depth(pose: ViewPose) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact distance along each pixel's ray to the sphere, and each ray's closest approach to its centre."""
    rays = pose.cameras().generate_rays()
    o, d = rays.origins[0], rays.directions[0]
    b = (o * d).sum(-1)
    closest_squared = (o * o).sum(-1) - b**2
    return -b - (RADIUS**2 - closest_squared).clamp_min(0).sqrt(), closest_squared.sqrt()


# ---------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------


def test_albedo_shows_the_colour_over_the_chosen_background(sphere, front):
    view = render_view(sphere, front, "albedo")
    assert np.abs(view.image[20, 24].astype(int) - np.round(np.array(ALBEDO) * 255)).max() <= 2
    assert (view.image[0, 0] == 255).all()  # the run's own (white) background
    black = render_view(sphere, front, "albedo", background=(0.0, 0.0, 0.0))
    assert (black.image[0, 0] == 0).all() and (black.image[20, 24] == view.image[20, 24]).all()


def test_depth_is_the_distance_to_the_surface_and_shows_near_bright(sphere, front):
    view = render_view(sphere, front, "depth")
    exact, closest = ray_sphere_depth(front)
    inside = view.opacity[..., 0] > 0.99
    assert inside.sum() > 300 and (closest[inside] < RADIUS * 1.05).all()
    # Away from grazing rays (where the volume's soft edge sits in front of the exact surface) the
    # expected depth is the distance to the surface.
    core = closest < 0.8 * RADIUS
    assert (view.depth[..., 0][core] - exact[core]).abs().max() < 0.02
    assert abs(float(view.depth[20, 24, 0]) - (DISTANCE - RADIUS)) < 0.02
    # Along the middle row, from the centre outwards, the surface moves away and the grey darkens.
    row = slice(24, 33)
    depth, grey = view.depth[20, row, 0], view.image[20, row, 0].astype(int)
    assert inside[20, row].all()
    assert (depth[1:] > depth[:-1]).all()
    assert (np.diff(grey) <= 0).all() and grey[0] - grey[-1] > 50
    assert (view.image[0, 0] == 0).all()  # nothing hit: black


def test_normals_are_unit_outward_and_displayed_as_half_plus_half(sphere, front):
    view = render_view(sphere, front, "normals")
    inside = view.opacity[..., 0] > 0.99
    normals = view.normals[inside]
    assert (normals.norm(dim=-1) - 1).abs().max() < 1e-4
    rays = front.cameras().generate_rays()
    surface = rays.origins[0] + rays.directions[0] * view.depth
    outward = surface[inside] / surface[inside].norm(dim=-1, keepdim=True)
    assert (normals * outward).sum(-1).min() > 0.99
    decoded = view.image[inside.numpy()].astype(np.float64) / 255 * 2 - 1
    assert np.abs(np.linalg.norm(decoded, axis=-1) - 1).max() < 0.03
    assert np.abs(view.image[20, 24].astype(int) - np.array([128, 128, 255])).max() <= 8


def test_lambertian_and_textureless_follow_the_light(sphere, front):
    towards_top = light_direction(azimuth_deg=0.0, elevation_deg=90.0)
    assert torch.allclose(towards_top, torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    lit = render_view(sphere, front, "lambertian", light_dir=towards_top)
    inside = (lit.opacity[..., 0] > 0.99).numpy()
    intensity = DEFAULT_AMBIENT + (1 - DEFAULT_AMBIENT) * lit.normals[..., 1].clamp_min(0)
    expected = np.round((torch.tensor(ALBEDO) * intensity[..., None] * 255).numpy())
    assert np.abs(lit.image[inside].astype(int) - expected[inside]).max() <= 2
    top, bottom = lit.image[8:20][inside[8:20]], lit.image[21:33][inside[21:33]]
    assert top[:, 0].mean() > 3 * bottom[:, 0].mean()  # lit from above: only ambient light below

    grey = render_view(sphere, front, "textureless", light_dir=towards_top)
    assert (grey.image[..., 0] == grey.image[..., 1]).all() and (grey.image[..., 1] == grey.image[..., 2]).all()
    assert np.abs(grey.image[inside][:, 0].astype(int) - np.round(intensity.numpy()[inside] * 255)).max() <= 2
    # By default the light sits at the camera: the middle of the ball faces it fully.
    headlight = render_view(sphere, front, "textureless")
    assert headlight.image[20, 24, 0] >= 250


def test_every_mode_gives_its_own_picture(sphere, front):
    images = {mode: render_view(sphere, front, mode, light_dir=(0.3, 0.8, 0.5)).image.astype(int) for mode in VIEW_MODES}
    for a in VIEW_MODES:
        for b in VIEW_MODES:
            if a < b:
                assert np.abs(images[a] - images[b]).mean() > 5, (a, b)
    with pytest.raises(ValueError, match="unknown view mode"):
        render_view(sphere, front, "shiny")


def test_viser_cameras_become_opengl_poses():
    # viser reports OpenCV camera-to-world rotations: x right, y down, looking along +z.
    assert torch.allclose(quaternion_to_matrix((math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0)),
                          torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]]), atol=1e-6)  # 90 degrees about +y
    pose = pose_from_viser((0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 2.0), math.radians(50.0), aspect=1.5, height=64)
    assert torch.allclose(pose.c2w, look_at(torch.tensor([[0.0, 0.0, 2.0]]))[0], atol=1e-6)
    assert (pose.width, pose.height) == (96, 64) and abs(pose.fovy_deg - 50.0) < 1e-9


# ---------------------------------------------------------------------------------------------
# Following a run
# ---------------------------------------------------------------------------------------------

TINY_FIELD = FieldConfig(
    encoding=HashGridConfig(num_levels=2, log2_hashmap_size=10, max_resolution=32), hidden_dim=16, num_blocks=1,
    blob_density=40.0, blob_radius=0.45,  # a sharp ball before any training: something to look at
)


def save_untrained_run(root, albedo_logits, step) -> Workspace:
    """A fit workspace whose checkpoint holds an untrained field: its density blob, in one colour."""
    config = FitConfig(iters=100, field=TINY_FIELD)
    workspace = Workspace(root)
    workspace.save_config(config, method="fit")
    torch.manual_seed(0)
    field = RadianceField(TINY_FIELD)
    with torch.no_grad():
        field.mlp.output.bias[1:] = torch.tensor(albedo_logits)
    renderer = VolumeRenderer(config.renderer, occupancy=config.occupancy, bound=field.bound)
    renderer.occupancy_grid.update(field)
    workspace.save_checkpoint({"step": step, "field": field.state_dict(), "renderer": renderer.state_dict()})
    return workspace


RED, BLUE = (4.0, -4.0, -4.0), (-4.0, -4.0, 4.0)


def middle_colour(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return image[h // 3: 2 * h // 3, w // 3: 2 * w // 3].reshape(-1, 3).mean(0)


def test_progress_file_says_whether_a_run_is_live(tmp_path):
    path = tmp_path / "progress.json"
    with Progress(total=10, start=2, enabled=False, status_path=path, status_every_s=0.0) as bar:
        bar.update(3, loss=0.5)
        time.sleep(0.01)
        bar.update(4, loss=0.25)
        live = read_progress(path)
        assert (live["step"], live["total"], live["scalars"], live["running"]) == (4, 10, {"loss": 0.25}, True)
        assert live["pid"] == os.getpid() and live["eta_seconds"] > 0
        assert run_is_active(live)
        line = describe_progress(live)
        assert line.startswith("training: step 4 / 10") and "loss 0.25" in line and "ETA" in line
    stopped = read_progress(path)
    assert stopped["running"] is False and not run_is_active(stopped)
    assert describe_progress(stopped).startswith("stopped: step 4 / 10")
    # A run killed without a word: its process is gone.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not run_is_active({**live, "pid": int(gone.stdout)})
    # A run on another machine counts as live while its file is fresh.
    elsewhere = {**live, "host": "another-machine"}
    assert run_is_active(elsewhere, now=live["updated"] + 10) and not run_is_active(elsewhere, now=live["updated"] + 1000)
    assert read_progress(tmp_path / "missing.json") is None


def test_fit_training_writes_progress(tmp_path):
    config = FitConfig(iters=3, batch_rays=64, field=TINY_FIELD, renderer=RendererConfig(use_occupancy_grid=False),
                       builtin=BuiltinSceneConfig(views=3, size=8), eval_every=100, checkpoint_every=100)
    workspace = Workspace(tmp_path)
    fitter = Fitter(config, workspace, load_fit_data(config, workspace))
    fitter.train(progress=False)
    status = read_progress(workspace.progress_path)
    assert (status["step"], status["total"], status["running"], status["description"]) == (3, 3, False, "fit")
    assert set(status["scalars"]) == {"loss"}


def test_live_workspace_reloads_each_new_checkpoint(tmp_path, front):
    workspace = save_untrained_run(tmp_path, RED, step=10)
    live = LiveWorkspace(tmp_path, device="cpu")
    assert live.refresh() == {"scene"} and live.scene_step == 10
    assert live.refresh() == set()  # nothing changed
    red = middle_colour(render_view(live.scene, front, "albedo").image)
    assert red[0] > red[2] + 100

    save_untrained_run(tmp_path, BLUE, step=20)
    (tmp_path / "mesh.glb").write_bytes(b"glTF placeholder")
    with Progress(total=50, enabled=False, status_path=workspace.progress_path) as bar:
        bar.update(20, loss=0.1)
        assert live.refresh() == {"scene", "mesh", "progress"}
        assert live.scene_step == 20 and live.mesh_glb == b"glTF placeholder"
        assert "training: step 20 / 50" in live.summary() and "checkpoint of step 20" in live.summary()
    assert live.refresh() == {"progress"} and "stopped: step 20 / 50" in live.summary()
    blue = middle_colour(render_view(live.scene, front, "albedo").image)
    assert blue[2] > blue[0] + 100

    workspace.checkpoint_path.write_bytes(b"not a checkpoint")
    assert live.refresh() == set() and live.scene_step == 20  # a bad file keeps the last good scene
    assert "cut short" in live.load_error  # checked against its .sha256 sidecar; previous.pt is not shown


def test_live_workspace_of_an_image_workspace_shows_its_reconstruction(tmp_path, front):
    save_untrained_run(tmp_path / "reconstruction", RED, step=10)
    (tmp_path / "stage.json").write_text("{}")  # the marker of an image-to-3D workspace (methods/registry.py)
    live = LiveWorkspace(tmp_path, device="cpu")
    assert live.workspace.root == tmp_path / "reconstruction" and live.refresh() == {"scene"} and live.scene_step == 10


def test_view_refuses_bad_input(tmp_path, capsys):
    with pytest.raises(DreamtextError, match="config.json is missing"):
        WorkspaceViewer(tmp_path)
    save_untrained_run(tmp_path, RED, step=1)
    for config, message in ((ViewerConfig(port=70000), "no port number"), (ViewerConfig(host="192.0.2.1"), "cannot be listened on"),
                            (ViewerConfig(render_height=4), "out of range")):
        with pytest.raises(DreamtextError, match=message):
            config.check()
    assert main(["view", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("dreamtext: error: workspace")


# ---------------------------------------------------------------------------------------------
# The viser page in a browser
# ---------------------------------------------------------------------------------------------


def wait_for(condition, timeout_s: float = 30.0):
    """Poll `condition` until it gives a true value, and return that value."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)
    return value


def is_red(page: np.ndarray) -> bool:
    colour = middle_colour(page)
    return bool(colour[0] > colour[1] + 80 and colour[0] > colour[2] + 80)


def is_green(page: np.ndarray) -> bool:
    colour = middle_colour(page)
    return bool(colour[1] > colour[0] + 40 and colour[1] > colour[2] + 40)


def is_blue(page: np.ndarray) -> bool:
    colour = middle_colour(page)
    return bool(colour[2] > colour[0] + 80 and colour[2] > colour[1] + 40)


def test_viewer_page_in_headless_chromium(tmp_path):
    binary = require_chromium()
    save_untrained_run(tmp_path, RED, step=10)
    viewer = WorkspaceViewer(tmp_path, ViewerConfig(port=0, device="cpu", render_height=64, poll_s=0.2, settle_s=0.1))
    url = viewer.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        with Chromium(binary) as browser:
            browser.open(url)
            # The client reports its camera (first its built-in default, then the viewer's initial one,
            # where the run's videos start); a full-size frame of it follows once the camera is still.
            start = np.array([0.0, 1.3 * math.cos(math.radians(70)), 1.3 * math.sin(math.radians(70))])
            wait_for(lambda: len(viewer._browsers) == 1)
            (state,) = viewer._browsers.values()
            wait_for(lambda: state.camera is not None and np.allclose(state.camera[1], start, atol=1e-3))
            wait_for(lambda: state.shown == (state.version, True))
            wxyz, position, fov, aspect = state.camera
            assert abs(math.degrees(fov) - 50.0) < 1e-3
            pose = pose_from_viser(wxyz, position, fov, aspect, 64)
            assert torch.allclose(pose.c2w, look_at(torch.tensor([list(position)], dtype=torch.float32))[0], atol=1e-3)

            # The red ball, drawn behind the panel, on the run's white background.
            wait_for(lambda: is_red(browser.screenshot()))
            page = browser.screenshot()
            corner = page[-40:, 200:400].reshape(-1, 3)
            assert (corner.min(0) >= 240).all()  # the run's white background around it

            # A new checkpoint (blue) while the page is open: the viewer reloads it and redraws.
            sent = viewer.frames_sent
            save_untrained_run(tmp_path, BLUE, step=20)
            wait_for(lambda: viewer.live.scene_step == 20 and viewer.frames_sent > sent)
            wait_for(lambda: is_blue(browser.screenshot()))
            panel = browser.evaluate("document.body.innerText")
            assert "checkpoint of step 20" in panel and "fit of the built-in scene" in panel  # Markdown escapes render away

            # The mesh, once exported, is offered in the panel and drawn by the page itself.
            save_mesh(extract_mesh(sphere_scene(0.4, (0.1, 0.8, 0.1)), MeshExportConfig(resolution=32)), tmp_path / "mesh.glb")
            wait_for(lambda: "mesh" in viewer._show.options)
            viewer._show.value = "mesh"  # as choosing it in the panel does
            wait_for(lambda: is_green(browser.screenshot()))

            assert browser.log.errors == []
            assert external_requests(browser.log.requests, url) == []
    finally:
        viewer.stop()
    assert viewer.last_error is None


def test_viewer_refuses_foreign_origins_and_hosts(tmp_path):
    """Issue 32: any page the user visits could open a WebSocket to the viewer (cross-site), and a domain
    that resolves to 127.0.0.1 could load it (DNS rebinding); both get 403, this machine's page does not."""
    import http.client

    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from dreamtext.viewer.origin import refusal

    save_untrained_run(tmp_path, RED, step=1)
    viewer = WorkspaceViewer(tmp_path, ViewerConfig(port=0, device="cpu", render_height=32))
    viewer.start()
    port = viewer.server.get_port()
    try:
        own = f"http://127.0.0.1:{port}"
        with connect(f"ws://127.0.0.1:{port}", origin=own, subprotocols=["viser-v1"], open_timeout=10) as socket:
            assert socket.response.status_code == 101
        for origin in ("http://evil.example.com", f"http://localhost:{port + 1}", "null"):
            with pytest.raises(InvalidStatus) as refused:
                connect(f"ws://127.0.0.1:{port}", origin=origin, subprotocols=["viser-v1"], open_timeout=10)
            assert refused.value.response.status_code == 403, origin
        for host, expected in ((f"127.0.0.1:{port}", 200), (f"localhost:{port}", 200), ("attacker.example", 403),
                               (f"attacker.example:{port}", 403)):
            request = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            request.request("GET", "/", headers={"Host": host})
            assert request.getresponse().status == expected, host
            request.close()
    finally:
        viewer.stop()
    assert refusal({"Host": "192.168.1.5:8080", "Origin": "http://192.168.1.5:8080"}) is None  # an address literal
    assert refusal({"Host": "viewer.lan:8080"}, {"viewer.lan"}) is None  # the host it was asked to listen on
