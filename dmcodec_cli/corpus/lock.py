"""One writer per store: an exclusive lock on ``X.h5.lock`` held while a run (or a merge) writes ``X.h5``.

The lock is ``fcntl.flock`` (``msvcrt.locking`` on Windows): the operating system drops it when the
holding process dies, so the lock file a ``kill -9`` leaves behind is simply taken over by the next
run. The holder writes its pid into the file for the refusal message, and deletes the file when it
lets go (while still holding it; a taker checks it locked the file that is still at the path).
Within one process the lock is re-entrant: a second acquire takes over the first (an earlier call
that raised before it could let go).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import DmcodecError

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

_PID_AT = 16  #: where the pid is written (msvcrt locks byte 0, which others then cannot read)
_held: dict[str, "StoreLock"] = {}  #: locks this process holds, by lock file path


def _try_lock(fd: int) -> bool:
    """Lock ``fd`` exclusively without waiting; False if another process holds it."""
    try:
        if sys.platform == "win32":
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):  # held (flock: EWOULDBLOCK; msvcrt: EACCES / EDEADLOCK)
        return False
    except OSError:  # a file system without locks (ENOLCK, EOPNOTSUPP): write unlocked rather than not at all
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


class StoreLock:
    """The exclusive lock of ``store`` (file ``<store>.lock`` beside it)."""

    def __init__(self, store: str | os.PathLike):
        self.store = Path(store)
        self.path = self.store.with_name(self.store.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise DmcodecError naming the pid of the run that holds it (touching nothing)."""
        key = os.path.abspath(self.path)
        if key in _held:  # this process holds it already (an earlier call that raised): take it over
            self._fd, _held[key]._fd = _held[key]._fd, None
            _held[key] = self
            return
        for _ in range(20):  # the holder may delete the file between our open and our lock: try again
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)  # as the store's writer would
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise DmcodecError(f"{self.store}: cannot create its lock file {self.path} ({exc.strerror}); "
                                   "check that the folder is writable") from None
            if not _try_lock(fd):
                pid = self._holder(fd)
                os.close(fd)
                raise DmcodecError(f"{self.store}: another dmcodec run (pid {pid}) is writing this store; wait "
                                   f"for it to finish or stop it (a lock left by a dead process is taken over)")
            if _same_file(fd, self.path):
                os.ftruncate(fd, 0)
                os.lseek(fd, _PID_AT, os.SEEK_SET)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                _held[key] = self
                return
            os.close(fd)
        raise DmcodecError(f"{self.path}: could not take the lock (it keeps being replaced); try again")

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            os.lseek(fd, _PID_AT, os.SEEK_SET)
            text = os.read(fd, 32).decode("ascii", "replace").strip()
        except OSError:
            text = ""
        return text if text.isdigit() else "unknown"

    def release(self) -> None:
        """Delete the lock file and let go (a no-op if not held, or taken over by a later acquire)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _held.pop(os.path.abspath(self.path), None)
        if sys.platform == "win32":
            os.close(fd)  # Windows cannot delete an open file
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass
        else:  # delete while still locked, so that a waiting taker sees another file
            self.path.unlink(missing_ok=True)
            os.close(fd)

    def __enter__(self) -> "StoreLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def store_lock(store: str | os.PathLike) -> Iterator[StoreLock]:
    """``with store_lock(path):`` write ``path`` while no other dmcodec process does."""
    with StoreLock(store) as lock:
        yield lock
