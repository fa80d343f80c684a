"""Writes that lose nothing: unique temporary names replaced atomically when complete, and one writer per
output at a time.

- :func:`atomic_write` writes through a temporary file with a unique name in the target's folder and
  replaces the target only when the write has finished; on any failure (a full disk, Ctrl-C) the temporary
  file is removed and the old target is left as it was.
- :func:`exclusive` takes an advisory lock (``flock``) on a hidden ``.NAME.lock`` file beside an output for
  the duration of a run. A second run that would write the same output stops at once with one line instead
  of replacing the first run's file half-way. On systems without ``fcntl`` (Windows) it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from coreperturb.errors import CorePerturbError


class OutputBusyError(CorePerturbError):
    """Another run is writing the same output."""


def temp_path(path: Path, suffix: str = ".tmp") -> Path:
    """A new, unique, empty file beside ``path`` (hidden; readable as the user's umask allows)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a unique temporary file beside ``path``, then replace ``path`` with it.

    Raises:
        OSError: The write failed (the old ``path`` is unchanged and no temporary file is left).
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """:func:`atomic_write` of bytes."""
    return atomic_write(path, lambda t: t.write_bytes(data))


@contextlib.contextmanager
def exclusive(path: str | Path, what: str = "run") -> Iterator[None]:
    """Hold the write lock of output ``path`` (a file or a directory) for the block.

    Raises:
        OutputBusyError: Another process holds it, naming the output.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks
        yield
        return
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CorePerturbError(f"{path}: cannot be written: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusyError(
                f"{path}: another coreperturb {what} is writing it now; wait for it to finish or choose "
                "another output"
            ) from None
        try:  # the lock file may have been removed (and made anew) by a run that just ended: lock the new one
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


__all__ = [
    "OutputBusyError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "exclusive",
    "temp_path",
]
