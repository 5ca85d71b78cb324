"""The run lifecycle with real processes: kill -9 after a time-based checkpoint, SIGTERM at a step boundary,
a damaged last checkpoint; each resumed run ends exactly as an uninterrupted one (tiny pipeline, CPU)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dreamtext.errors import DreamtextError
from dreamtext.utils.preemption import EXIT_SIGTERM
from dreamtext.utils.workspace import Workspace

ITERS = 40
TOY_FLAGS = [
    "--preset", "dreamfusion", "--device", "cpu", "--render-size", "16", "--field.hidden-dim", "16", "--field.num-blocks", "1",
    "--field.encoding.log2-hashmap-size", "12", "--field.encoding.max-resolution", "64", "--renderer.num-samples", "16",
    "--validation-size", "16", "--validation-views", "2", "--eval-every", "1000", "--shading.albedo-only-epochs", "0",
    "--export.mesh.resolution", "24", "--export.mesh.density-threshold", "5", "--export.video-frames", "2",
    "--export.video-size", "16", "--export.views", "front", "--export.views-size", "16", "--quiet",
]


def command(model: str, workspace: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dreamtext.cli", "text", "a red mug", "--workspace", str(workspace), "--model", model,
            "--iters", str(ITERS), *TOY_FLAGS, *extra]


@pytest.fixture(scope="module")
def straight(tiny_model, tmp_path_factory) -> Path:
    workspace = tmp_path_factory.mktemp("straight") / "ws"
    subprocess.run(command(tiny_model, workspace), check=True)
    return workspace


def wait_for_step(workspace: Path, process: subprocess.Popen, at_least: int, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "the run never reached the step"
        try:
            if json.loads((workspace / "progress.json").read_text())["step"] >= at_least:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)


def same_outputs(a: Path, b: Path) -> None:
    """Every output of two finished runs is the same file (mesh, videos, views), so are the metrics (all but the
    wall times of the stages) and the state."""
    for name in ("mesh.glb", "turntable.gif", "views/front.png", "validation/final.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    results = [json.loads((run / "metrics.json").read_text()) for run in (a, b)]
    for metrics in results:
        assert metrics.pop("stage_seconds")["training"] > 0
    assert results[0] == results[1]
    first, second = Workspace(a).load_checkpoint(), Workspace(b).load_checkpoint()
    assert first["step"] == second["step"] == ITERS and first["losses"] == second["losses"]
    for key, value in first["field"].items():
        assert torch.equal(value, second["field"][key]), key


def test_kill_9_after_time_based_checkpoints_and_a_cut_short_last_one_still_ends_as_an_uninterrupted_run(tiny_model, straight, tmp_path):
    workspace = tmp_path / "ws"
    # A checkpoint by time after every step or so; none by steps (every 1000).
    process = subprocess.Popen(command(tiny_model, workspace, "--checkpoint-every", "1000", "--checkpoint-minutes", "0.0005"))
    try:
        wait_for_step(workspace, process, 5)
        while not Workspace(workspace, create=False).previous_checkpoint_path.is_file():
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    killed_at = Workspace(workspace).load_checkpoint()["step"]
    assert 0 < killed_at < ITERS
    # And the last checkpoint cut in half on top: the resume falls back to the one before, same final result.
    # (A kill between save_checkpoint's renames can already have left no last.pt: the same fallback.)
    last = Workspace(workspace).checkpoint_path
    if last.is_file():
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    resumed = subprocess.run(command(tiny_model, workspace, "--resume"), check=True, stderr=subprocess.PIPE, text=True)
    assert "using previous.pt instead" in resumed.stderr
    same_outputs(straight, workspace)


def test_sigterm_checkpoints_at_a_step_boundary_exits_143_and_resumes_bit_identically(tiny_model, straight, tmp_path):
    workspace = tmp_path / "ws"
    process = subprocess.Popen(command(tiny_model, workspace), stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(workspace, process, 3)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == EXIT_SIGTERM == 143
    stopped = Workspace(workspace).load_checkpoint()["step"]
    assert 3 <= stopped < ITERS and f"stopped after step {stopped}" in err and "--resume" in err
    assert json.loads((workspace / "progress.json").read_text())["step"] == stopped
    subprocess.run(command(tiny_model, workspace, "--resume"), check=True)
    same_outputs(straight, workspace)


def test_a_cut_short_last_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    workspace = Workspace(tmp_path)
    workspace.save_checkpoint({"step": 1, "value": torch.arange(1000)})
    workspace.save_checkpoint({"step": 2, "value": torch.arange(1000)})
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "last.pt", "last.pt.sha256", "previous.pt", "previous.pt.sha256"]
    last = workspace.checkpoint_path
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    assert workspace.load_checkpoint()["step"] == 1
    assert "cut short" in capsys.readouterr().err
    previous = workspace.previous_checkpoint_path
    data = bytearray(previous.read_bytes())
    data[-10] ^= 0xFF  # damaged, same size
    previous.write_bytes(bytes(data))
    with pytest.raises(DreamtextError, match="damaged"):
        workspace.load_checkpoint()


def test_resume_of_a_finished_run_whose_last_checkpoint_is_damaged_trains_its_last_steps_again(tiny_model, straight, tmp_path):
    workspace = tmp_path / "ws"
    subprocess.run(command(tiny_model, workspace, "--checkpoint-every", "10"), check=True)
    assert Workspace(workspace).load_checkpoint(latest_only=True)["step"] == ITERS
    last = Workspace(workspace).checkpoint_path
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    resumed = subprocess.run(command(tiny_model, workspace, "--resume"), check=True, stderr=subprocess.PIPE, text=True)
    assert "training its last steps again from previous.pt" in resumed.stderr
    assert Workspace(workspace).load_checkpoint(latest_only=True)["step"] == ITERS  # whole again
    same_outputs(straight, workspace)


HOLD_LOCK = """
import fcntl, json, os, sys, time
handle = open(sys.argv[1], "a+")
fcntl.flock(handle, fcntl.LOCK_EX)
handle.truncate(0)
handle.write(json.dumps({"pid": os.getpid(), "host": "elsewhere", "since": time.time()}))
handle.flush()
print("held", flush=True)
time.sleep(600)
"""


def test_a_workspace_held_by_another_run_is_refused_and_freed_when_that_run_dies(tiny_model, tmp_path):
    """Issue 40: two runs on one workspace must not mix their checkpoints. The lock dies with its process."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(workspace / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run(command(tiny_model, workspace, "--iters", "2"), capture_output=True, text=True)
        assert second.returncode == 2
        assert f"in use by another dreamtext run (pid {holder.pid} on elsewhere" in second.stderr
        assert sorted(path.name for path in workspace.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    finished = subprocess.run(command(tiny_model, workspace, "--iters", "2"), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert Workspace(workspace).load_checkpoint()["step"] == 2


def test_holding_a_workspace_is_reentrant_in_one_process_and_exclusive_across_processes(tmp_path):
    workspace = Workspace(tmp_path / "ws", create=False, must_exist=False)
    with workspace.held():
        with workspace.held():  # an image run holds its folder while its stages write into it
            pass
        probe = subprocess.run([sys.executable, "-c", "import sys; from dreamtext.utils.workspace import Workspace; "
                                "Workspace(sys.argv[1]).check_free()", str(workspace.root)], capture_output=True, text=True)
        assert probe.returncode != 0 and f"pid {__import__('os').getpid()}" in probe.stderr
        workspace.check_free()  # this process's own hold is no obstacle
    probe = subprocess.run([sys.executable, "-c", "import sys; from dreamtext.utils.workspace import Workspace; "
                            "Workspace(sys.argv[1]).check_free()", str(workspace.root)], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
