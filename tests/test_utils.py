import dataclasses
import os
from typing import Literal

import pytest
import torch

from dreamtext.errors import DreamtextError
from dreamtext.utils.config import config_from_dict, config_to_dict
from dreamtext.utils.io import atomic_torch_save, atomic_write_text, read_json
from dreamtext.utils.progress import Progress, format_duration
from dreamtext.utils.workspace import Workspace


@dataclasses.dataclass
class Inner:
    size: tuple[int, int] = (2, 3)
    mode: Literal["a", "b"] = "a"


@dataclasses.dataclass
class Outer:
    name: str | None = None
    ratio: float = 0.5
    inner: Inner = dataclasses.field(default_factory=Inner)
    maybe: Inner | None = None
    items: list[int] = dataclasses.field(default_factory=lambda: [1, 2])


def test_config_round_trip_rebuilds_nested_dataclasses_and_tuples():
    config = Outer(name="x", inner=Inner(size=(4, 5), mode="b"), maybe=Inner())
    rebuilt = config_from_dict(Outer, config_to_dict(config))
    assert rebuilt == config
    assert isinstance(rebuilt.inner.size, tuple)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="no fields"):
        config_from_dict(Outer, {"ratio": 1.0, "typo": 3})


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "state.pt"
    atomic_torch_save(target, {"a": torch.ones(2)})

    def broken(tmp):
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed")

    from dreamtext.utils.io import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert torch.load(target)["a"].tolist() == [1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]  # no temporary file left behind


def test_workspace_errors_are_one_line(tmp_path):
    blocker = tmp_path / "file"
    atomic_write_text(blocker, "not a folder")
    with pytest.raises(DreamtextError) as info:
        Workspace(blocker / "ws")
    assert "\n" not in str(info.value) and "workspace" in str(info.value)
    with pytest.raises(DreamtextError, match="no checkpoint"):
        Workspace(tmp_path / "new").load_checkpoint()
    broken = Workspace(tmp_path / "broken")
    broken.checkpoint_path.parent.mkdir(parents=True)
    broken.checkpoint_path.write_bytes(b"garbage")
    with pytest.raises(DreamtextError, match="cannot be read"):
        broken.load_checkpoint()


def test_read_json_names_the_file_the_fault_and_the_remedy(tmp_path):
    good = atomic_write_text(tmp_path / "good.json", '{"a": [1, 2]}')
    assert read_json(good, "unused") == {"a": [1, 2]}
    bad = atomic_write_text(tmp_path / "bad.json", '{"a": 1,\n "b": }')
    with pytest.raises(DreamtextError) as info:
        read_json(bad, "delete it")
    assert str(info.value) == f"{bad} is not valid JSON (Expecting value at line 2); delete it"
    with pytest.raises(DreamtextError, match=r"missing.json is missing; run describe first$"):
        read_json(tmp_path / "missing.json", "unused", missing="run describe first")
    with pytest.raises(FileNotFoundError):  # no `missing`: the caller handles absence itself
        read_json(tmp_path / "missing.json", "unused")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_workspace(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(DreamtextError, match="not writable"):
        Workspace(locked)


def test_workspace_config_and_metrics(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.save_config(Outer(name="y"), method="fit")
    assert ws.method() == "fit"
    assert config_from_dict(Outer, ws.load_config_dict()["config"]) == Outer(name="y")
    ws.write_metrics({"a": 1})
    ws.write_metrics({"b": 2})
    import json

    assert json.loads(ws.path("metrics.json").read_text()) == {"a": 1, "b": 2}


def test_progress_eta_and_durations():
    assert format_duration(59) == "00:59"
    assert format_duration(3725) == "1:02:05"
    with Progress(total=100, start=50, enabled=False) as bar:
        bar._t0 -= 10.0  # pretend 10 s have passed
        bar.update(60, loss=0.5)
        assert bar.rate == pytest.approx(1.0, rel=0.05)
        assert bar.eta_seconds == pytest.approx(40.0, rel=0.05)


def test_top_level_api_is_importable_lazily():
    import dreamtext
    from dreamtext.methods.fit import fit
    from dreamtext.methods.text_to_3d import text_to_3d

    assert dreamtext.fit is fit and dreamtext.text_to_3d is text_to_3d
    for name in dreamtext.__all__:
        assert getattr(dreamtext, name) is not None, name
    for name in ("text_to_3d", "image_to_3d", "render_workspace", "export_workspace", "load_trained"):  # help(dreamtext) shows the API
        assert name in dreamtext.__doc__ and name in dir(dreamtext)
    with pytest.raises(AttributeError):
        dreamtext.no_such_thing


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_and_folders_get_the_users_normal_permissions(tmp_path, umask):
    """Issue 31: atomic writes went through mkstemp / mkdtemp, whose 0600 / 0700 the rename kept."""
    from dreamtext.prior.small.assemble import write_directory_atomically

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "index.html", "<html></html>")
        folder = write_directory_atomically(tmp_path / "site", lambda staging: (staging / "a.txt").write_text("a"))
    finally:
        os.umask(old)
    assert (tmp_path / "index.html").stat().st_mode & 0o777 == 0o666 & ~umask
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (folder / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_survives(tmp_path, monkeypatch):
    """Issue 32: a full disk was a ~70-line chained traceback."""
    import errno

    from dreamtext.utils import io as io_module

    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_module.os, "replace", full)
    with pytest.raises(DreamtextError) as raised:
        atomic_write_text(target, "new")
    message = str(raised.value)
    assert "\n" not in message and str(target) in message and "disk is full" in message and "--resume" in message
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    workspace = Workspace(tmp_path / "ws")
    monkeypatch.undo()
    workspace.save_checkpoint({"step": 1})
    monkeypatch.setattr(io_module.os, "replace", full)
    with pytest.raises(DreamtextError, match="disk is full"):
        workspace.save_checkpoint({"step": 2})
    monkeypatch.undo()
    assert workspace.load_checkpoint()["step"] == 1


class _Crash(Exception):
    pass


def test_a_checkpoint_save_killed_at_any_rename_leaves_one_that_verifies(tmp_path, monkeypatch):
    """The save stopped before each of its file operations in turn (a kill -9 there): the workspace
    always loads either the new checkpoint or the one before it, never a damaged one."""
    from pathlib import Path

    real_replace, real_unlink = os.replace, Path.unlink
    crash_at = 0
    while True:
        folder = tmp_path / f"crash_{crash_at}"
        workspace = Workspace(folder)
        for step in (1, 2):
            workspace.save_checkpoint({"step": step, "value": torch.arange(1000) * step})
        done = []

        def counted(real):
            def operation(*args, **kwargs):
                if len(done) == crash_at:
                    raise _Crash
                done.append(1)
                return real(*args, **kwargs)
            return operation

        monkeypatch.setattr(os, "replace", counted(real_replace))
        monkeypatch.setattr(Path, "unlink", counted(real_unlink))
        try:
            workspace.save_checkpoint({"step": 3, "value": torch.arange(1000) * 3})
            finished = True
        except _Crash:
            finished = False
        monkeypatch.setattr(os, "replace", real_replace)
        monkeypatch.setattr(Path, "unlink", real_unlink)
        state = workspace.load_checkpoint()
        assert state["step"] in ((3,) if finished else (2, 3)), crash_at
        assert torch.equal(state["value"], torch.arange(1000) * state["step"])
        if finished:
            assert workspace.load_checkpoint(latest_only=True)["step"] == 3
            break
        crash_at += 1
    assert crash_at >= 5  # the save has that many steps to be killed between
