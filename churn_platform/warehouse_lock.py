"""A cross-process readers/writer lock beside the DuckDB warehouse file.

DuckDB lets one process write a file or several processes read it, and a process that finds
the file taken fails at once. Every process of the platform that opens the warehouse (steps,
and the dbt runs they start) takes this lock first, writers exclusive and readers shared, so
concurrent runs queue instead of failing, whether or not Dagster pools are configured.
It is an flock: the kernel releases it when its holder exits, even on SIGKILL.
Plain logic without Dagster, so any tool can take it cheaply.
"""

import fcntl
import logging
import os
import time
from pathlib import Path

_LOG = logging.getLogger(__name__)
_FIRST_PAUSE_SECONDS = 0.01
_LONGEST_PAUSE_SECONDS = 0.5  # a waiter notices a release within this


class WarehouseLockTimeout(RuntimeError):
    """Another process held the warehouse lock for the whole timeout."""


def lock_path(warehouse_path: str | Path) -> Path:
    return Path(f"{warehouse_path}.lock")


class HeldLock:
    """This process's hold on the lock, until `release()` or the end of a `with` block."""

    def __init__(self, fd: int, path: Path):
        self._fd: int | None = fd
        self.path = path

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "HeldLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire_lock(
    warehouse_path: str | Path, exclusive: bool, timeout_seconds: float, log: logging.Logger = _LOG
) -> HeldLock:
    """Wait up to timeout_seconds for the lock: exclusive to write, shared to read.

    Not re-entrant: a second hold asked for while this process keeps a conflicting one waits
    for itself until the timeout."""
    path = lock_path(warehouse_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        if not _try(fd, exclusive):
            _wait(fd, path, exclusive, timeout_seconds, log)
    except BaseException:
        os.close(fd)
        raise
    return HeldLock(fd, path)


def _try(fd: int, exclusive: bool) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait(fd: int, path: Path, exclusive: bool, timeout_seconds: float, log: logging.Logger) -> None:
    """Poll until the lock is free (flock has no timeout of its own); the log shows the wait."""
    mode = "write" if exclusive else "read"
    log.info(f"waiting for the {mode} lock on {path}: the warehouse is in use")
    started = time.monotonic()
    pause = _FIRST_PAUSE_SECONDS
    while not _try(fd, exclusive):
        waited = time.monotonic() - started
        if waited >= timeout_seconds:
            raise WarehouseLockTimeout(
                f"the {mode} lock on {path} is still held by another process after {waited:.0f} s "
                f"(`fuser -v {path}` lists the processes using the warehouse)"
            )
        time.sleep(min(pause, timeout_seconds - waited))
        pause = min(pause * 2, _LONGEST_PAUSE_SECONDS)
    log.info(f"got the {mode} lock on {path} after {time.monotonic() - started:.1f} s")
