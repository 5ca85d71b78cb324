"""`dreamtext bench viewer`: the viewer's memory over many browser visits.

Each visit is a WebSocket client speaking viser's protocol: it connects from the viewer's own origin, reports
its camera twice (the viewer draws a preview and then a full-size frame for it), waits for the frames and
leaves. After one warm-up visit, the resident set is read every eighth of the visits and the Python heap is
traced, in two child processes side by side: the viewer as shipped (free heap handed back when a browser leaves) and one that
keeps it (`ViewerConfig.release_memory=False`). A leak shows as a Python heap or resident set that keeps
growing with the visits; memory kept by the C allocator shows as a plateau above the start.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
import tracemalloc
from pathlib import Path

import msgspec.msgpack
import torch
from websockets.sync.client import connect

from ..methods.fit import FitConfig
from ..scene.field import RadianceField
from ..scene.renderer import VolumeRenderer
from ..utils.memory import resident_mb
from ..utils.workspace import Workspace
from ..viewer.server import ViewerConfig, WorkspaceViewer

CAMERA_REPORTS = 2  # per visit: a moving camera, then a still one


def untrained_workspace(root: Path) -> None:
    """A fit workspace whose checkpoint holds the untrained field (its density blob): something to draw."""
    config = FitConfig(iters=100)
    workspace = Workspace(root)
    workspace.save_config(config, method="fit")
    torch.manual_seed(0)
    field = RadianceField(config.field)
    renderer = VolumeRenderer(config.renderer, occupancy=config.occupancy, bound=field.bound)
    renderer.occupancy_grid.update(field)
    workspace.save_checkpoint({"step": 1, "field": field.state_dict(), "renderer": renderer.state_dict()})


def _camera_message(distance: float) -> bytes:
    """What viser's web client sends when its camera moves (viser's ViewerCameraMessage)."""
    return msgspec.msgpack.encode({
        "type": "ViewerCameraMessage", "wxyz": [1.0, 0.0, 0.0, 0.0], "position": [0.0, 0.45, distance], "fov": 0.87,
        "near": 0.01, "far": 100.0, "image_height": 480, "image_width": 640, "look_at": [0.0, 0.0, 0.0],
        "up_direction": [0.0, 1.0, 0.0]})


def _visit(viewer: WorkspaceViewer, url: str, subprotocol: str, index: int, timeout_s: float = 60.0) -> None:
    """One browser: connect, report the camera, wait for the viewer's frame of it, leave."""
    frames_before, origin = viewer.frames_sent, url.rstrip("/")
    with connect(url.replace("http", "ws", 1), origin=origin, subprotocols=[subprotocol], open_timeout=30,
                 max_size=None) as socket:
        for report in range(CAMERA_REPORTS):
            time.sleep(0.2)  # viser registers a client at its first camera report; the second one is drawn
            socket.send(_camera_message(1.3 + 0.001 * index + 0.01 * report))
        deadline = time.monotonic() + timeout_s
        while viewer.frames_sent < frames_before + CAMERA_REPORTS - 1 and time.monotonic() < deadline:
            try:
                socket.recv(timeout=0.1)
            except TimeoutError:
                pass
        time.sleep(0.1)


def measure_visits(visits: int, height: int, release_memory: bool) -> dict:
    """Run one viewer through `visits` visits in this process; its resident set and Python heap as they go."""
    import viser  # the viewer's own backend, already imported by it; named for its protocol version

    with tempfile.TemporaryDirectory() as root:
        untrained_workspace(Path(root))
        viewer = WorkspaceViewer(root, ViewerConfig(port=0, device="cpu", render_height=height, settle_s=0.1,
                                                    release_memory=release_memory))
        url = viewer.start()
        protocol = f"viser-v{viser.__version__}"
        try:
            started_rss = resident_mb()
            _visit(viewer, url, protocol, -1)  # warm-up: the first frames' caches
            time.sleep(0.5)
            tracemalloc.start()
            warm_rss, (warm_heap, _) = resident_mb(), tracemalloc.get_traced_memory()
            rss = []
            every = max(visits // 8, 1)
            for index in range(visits):
                _visit(viewer, url, protocol, index)
                if (index + 1) % every == 0:
                    time.sleep(0.5)  # the disconnect is handled
                    rss.append(round(resident_mb(), 1))
            heap, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            return {"rss_started_mb": round(started_rss, 1), "rss_warm_mb": round(warm_rss, 1), "rss_mb": rss,
                    "rss_end_mb": rss[-1], "rss_growth_mb": round(rss[-1] - warm_rss, 1),
                    "python_heap_growth_mb": round((heap - warm_heap) / 2**20, 3), "frames_sent": viewer.frames_sent,
                    "browsers_left": len(viewer._browsers), "error": viewer.last_error}
        finally:
            viewer.stop()


def bench_viewer(quick: bool = False, device: torch.device | str = "cpu") -> dict:
    """The shipped viewer and one that keeps its free heap, each in a fresh process, over the same visits.
    The viewer draws on the CPU here whatever `device` says: the question is the server process's memory."""
    visits, height = (8, 32) if quick else (160, 128)
    spawn = multiprocessing.get_context("spawn")
    result = {"suite": "viewer", "device": "cpu", "visits": visits, "frame_height": height,
              "camera_reports_per_visit": CAMERA_REPORTS}
    for name, release in (("release_on_leave", True), ("keep_free_heap", False)):
        with spawn.Pool(1) as pool:
            result[name] = pool.apply(measure_visits, (visits, height, release))
    result["rss_end_ratio_keep_vs_release"] = round(result["keep_free_heap"]["rss_end_mb"] / result["release_on_leave"]["rss_end_mb"], 3)
    return result
