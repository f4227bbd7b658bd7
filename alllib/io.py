"""Atomic writes: a result either exists whole or not at all, so an interrupted study never
leaves a half-written file that looks finished. Files and folders get the permissions the user's
umask gives (tempfile alone would make every result private: 0600 and 0700). `file_record` and
`damaged` are the size and sha256 record of finished artifacts, and its check; `held` is the file
lock that keeps two processes from writing the same result at once."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock, Timeout

from alllib.errors import StudyError


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()  # read once, at import: os.umask can only be read by setting it


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~UMASK)  # what open() would have given the file
    os.close(fd)
    return Path(name)


WRITE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up", errno.EROFS: "read-only"}


def refuse_write(path, exc: OSError) -> StudyError:
    """A failed write as one line: the path, and what is short (space, with how much is free)."""
    reason = WRITE_ERRORS.get(exc.errno, exc.strerror or str(exc))
    try:
        free = f"; {shutil.disk_usage(Path(path).parent).free / 1e6:.1f} MB free there"
    except OSError:
        free = ""
    return StudyError(f"cannot write {path}: {reason}{free}; nothing was left under that name")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it is renamed onto `path`. A write that fails
    for want of space or permission is refused in one line (`refuse_write`), and leaves nothing."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_sibling(path, path.suffix)
    except OSError as exc:
        raise refuse_write(path, exc) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in WRITE_ERRORS or isinstance(exc, PermissionError):
            raise refuse_write(path, exc) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path, fix: str = "delete it and run the step that writes it again"):
    """The JSON in `path`; a file cut off or overwritten (not JSON) is refused by name, with `fix`."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        raise StudyError(f"{path} is damaged (not valid JSON: {exc}); {fix}") from None


def write_csv(path, frame, **kwargs) -> None:
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a fresh temporary directory beside `path`; on success it replaces `path` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    tmp.chmod(0o777 & ~UMASK)  # what mkdir would have given the folder
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in WRITE_ERRORS:
            raise refuse_write(path, exc) from None
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_record(path) -> dict:
    """What is recorded of a finished file so that damage is noticed later: its size and sha256."""
    return {"bytes": Path(path).stat().st_size, "sha256": sha256(path)}


def damaged(folder, records: dict, hashes: bool = True) -> list[str]:
    """The files of `folder` that do not match their `records` ({name: file_record}), each as
    "name: what is wrong"; empty when all match. Sizes are always compared, hashes when asked."""
    problems = []
    for name, rec in sorted(records.items()):
        path = Path(folder) / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        size = path.stat().st_size
        if size != rec["bytes"]:
            problems.append(f"{name}: {size} bytes, {rec['bytes']} recorded")
        elif hashes and sha256(path) != rec["sha256"]:
            problems.append(f"{name}: sha256 differs from the one recorded")
    return problems


@contextlib.contextmanager
def held(lock: FileLock | str | os.PathLike, waiting: str):
    """Hold `lock` (a FileLock, or the path of its file) for the block. When another process holds
    it, print `waiting` once and wait for it."""
    lock = lock if isinstance(lock, FileLock) else FileLock(lock)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(waiting, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
