"""The run lock: one ``ft train`` at a time per output directory.

The lock is a small JSON file ``.<name>.ft-lock`` next to the output directory (next to, so that it
exists before the run directory does and survives its renames), created with ``O_CREAT | O_EXCL``:
creating it is the atomic test. It records who holds it (host, pid, start time) so that a second run
can say so in one line. A lock whose holder is gone (same host, no such process) is stale and taken
over; a lock from another host is never judged stale (its pid means nothing here). In a
multi-process run only rank 0 takes it. Cost: one small file written and removed per run.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ftcore.errors import RunDirError

LOCK_SUFFIX = ".ft-lock"


def lock_path(output: Path) -> Path:
    """The lock file that guards ``output`` (a hidden sibling)."""
    return output.with_name(f".{output.name}{LOCK_SUFFIX}")


def _holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}


def _read(path: Path) -> dict[str, Any] | None:
    """The lock's holder, ``{}`` for an unreadable (half-written) lock, ``None`` when there is no lock."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _alive(pid: int) -> bool:
    """True when a process ``pid`` runs on this host (it may belong to another user); a zombie is gone.

    A killed process stays a zombie until its parent reaps it, and a worker whose launcher was killed with
    it may wait long for that; it holds nothing any more.
    """
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _stale(holder: dict[str, Any]) -> bool:
    """A lock is stale when its holder ran on this host and that process is gone."""
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)


def describe(holder: dict[str, Any]) -> str:
    """``host H, pid P, started YYYY-MM-DD HH:MM:SS UTC`` for a lock holder."""
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float)) else "?"
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started {when}"


class RunLock:
    """Hold the lock of one output directory for the duration of a ``with`` block (or acquire/release)."""

    def __init__(self, output: Path) -> None:
        self.path = lock_path(output)
        self.output = output
        self.held = False

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; :class:`RunDirError` naming the holder when it is held."""
        for _ in range(3):
            if self._create():
                self.held = True
                return
            holder = _read(self.path)
            if holder is None:
                continue  # released between our attempt and the read: try again
            if not _stale(holder):
                raise self._busy(holder)
            self._take_over(holder)
        raise RunDirError(f"{self.output}: could not take the run lock {self.path}; another ft train keeps taking it")

    def check(self) -> None:
        """Raise :class:`RunDirError` when a live process holds the lock (taking nothing): a check before launch."""
        holder = _read(self.path)
        if holder is not None and not _stale(holder):
            raise self._busy(holder)

    def _busy(self, holder: dict[str, Any]) -> RunDirError:
        return RunDirError(
            f"{self.output} is in use by another ft train ({describe(holder)}); wait for it to finish or "
            f"choose another --output-dir (if that process is gone, remove {self.path})"
        )

    def _create(self) -> bool:
        """Create the lock file (False when it exists); an output location that cannot be written is one line."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            # The lock exists only when its directory does; a file where a parent must be is a path error.
            if isinstance(exc, FileExistsError) and self.path.parent.is_dir():
                return False
            from ftcore.run.preflight import nearest_existing

            raise RunDirError(f"output directory {self.output} cannot be written: {nearest_existing(self.path.parent)}: "
                              f"{exc.strerror or type(exc).__name__}; choose another --output-dir") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(_holder(), handle)
        return True

    def _take_over(self, holder: dict[str, Any]) -> None:
        """Remove a stale lock, unless another process replaced it meanwhile (then the next attempt decides)."""
        if _read(self.path) == holder:
            self.path.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held and (_read(self.path) or {}).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
