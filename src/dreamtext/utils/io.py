"""Atomic file writes: a killed process never leaves a half-written checkpoint or output behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import DreamtextError


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back: POSIX has no plain getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode a plain `open()` or `mkdir()` would give: 0o666 or 0o777 less the umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def staging_folder(target: Path) -> Path:
    """A hidden temporary folder beside `target`, to be renamed onto it, with the mode a new folder gets
    (mkdtemp's are 0700, which a renamed folder would keep)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(default_mode(directory=True))
    return staging


def atomic_write(path: str | Path, write: Callable[[Path], None], shown_as: str | Path | None = None) -> Path:
    """Call `write(tmp_path)` and move the result over `path` in one rename; an error names `shown_as` (the file
    a staged write stands for) or `path`.

    The temporary file lives in the destination folder so the rename never crosses file systems. The file
    gets the mode a plain write would (mkstemp's are 0600, which the rename would keep), so a workspace
    or gallery shared with others or served by a web server stays readable.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        write(tmp_path)
        tmp_path.chmod(default_mode())
        os.replace(tmp_path, path)
    except OSError as error:  # a full disk, a lost mount, no permission: one line, the old file untouched
        raise DreamtextError(write_error(Path(shown_as or path), error)) from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()
    return path


def _as_os_error(path: Path, error: RuntimeError) -> OSError:
    """The OSError a failed write reported as a RuntimeError stands for: a full disk when (almost) nothing is
    left on it, else an I/O error with the writer's words."""
    try:
        full = shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        full = False
    return OSError(errno.ENOSPC, "No space left on device") if full else OSError(errno.EIO, str(error).splitlines()[0])


def write_error(path: Path, error: OSError) -> str:
    """What went wrong writing `path`, and what to do, in one line."""
    if error.errno == errno.ENOSPC:
        return f"cannot write {path}: the disk is full; free some space (or choose a --workspace elsewhere) and rerun with --resume"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path}: {error.strerror}; choose a --workspace you can write to"
    return f"cannot write {path}: {error.strerror or error}; check the disk and rerun with --resume"


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path, remedy: str, missing: str | None = None) -> Any:
    """The JSON in `path`, or a one-line DreamtextError naming the file, the fault and `remedy` (what to do);
    a missing file says `missing` when given (else FileNotFoundError propagates)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        if missing is None:
            raise
        raise DreamtextError(f"{path} is missing; {missing}") from None
    except json.JSONDecodeError as error:
        raise DreamtextError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); {remedy}") from None


def atomic_torch_save(path: str | Path, obj: Any, shown_as: str | Path | None = None) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # closed even when the write fails, so deleting it frees its space
            try:
                torch.save(obj, handle)
            except RuntimeError as error:  # torch.save's writer reports a failed write as RuntimeError
                raise _as_os_error(tmp, error) from None

    return atomic_write(path, write, shown_as)
