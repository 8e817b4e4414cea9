"""Files on disk: atomic writes, checkpoint loading that never runs code, content digests.

Every artifact of the pipeline is written through :func:`atomic_path` (a unique temporary name in
the same directory, renamed into place when complete), so a killed run never leaves a file that
looks complete and two processes never write the same temporary file. Checkpoints are read with
``torch.load(weights_only=True)``: a pickle's ``__reduce__`` is never executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely, or is not what the caller expects."""


def temporary_name(path: str | Path) -> Path:
    """``<name>.tmp-<pid>-<random>`` beside ``path``: unique per process and call."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write (a file or a directory); rename it to ``path`` on success.

    On an exception the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():  # os.replace cannot replace a non-empty directory
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=1, sort_keys=True))


def read_json(path: str | Path) -> Any | None:
    """The JSON content of ``path``, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def save_torch(path: str | Path, obj: Mapping[str, Any]) -> Path:
    """``torch.save`` atomically. Keep ``obj`` to tensors and plain containers so that
    :func:`load_torch` can read it without unpickling code."""
    with atomic_path(path) as tmp:
        torch.save(dict(obj), tmp)
    return Path(path)


def load_torch(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (tensors and plain containers only).

    Raises:
        CheckpointError: the file is missing, truncated, not a torch checkpoint, or holds
            objects that would need code to be executed to be restored.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one named error
        first = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
        raise CheckpointError(
            f"{path}: not a checkpoint that can be loaded safely (weights only): {first}"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    return obj


def digest(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj`` (a config, or a mapping of other digests)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def clean_temporaries(root: str | Path) -> int:
    """Remove temporaries (``*.tmp-<pid>-*`` files and directories) under ``root`` left by killed
    processes; those of live processes are left alone. Returns how many were removed."""
    n = 0
    for tmp in Path(root).rglob("*.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[-1].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            n += 1
    return n


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@contextmanager
def directory_lock(directory: str | Path) -> Iterator[None]:
    """Hold an advisory lock on ``directory`` (``<directory>/.lock``, POSIX ``flock``) for the block.

    A second process asking for the same lock waits, saying which process holds it; the lock is
    released when the block ends or the holder dies (the kernel drops it with the process).
    """
    import fcntl

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            print(
                f"{directory} is in use by another run (pid {holder}); waiting for it to finish",
                flush=True,
            )
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
