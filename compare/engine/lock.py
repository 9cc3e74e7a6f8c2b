"""One run at a time in a results folder: ``OUT/.lock``.

Two ``cnn-compare run`` (or ``ablate``) into the same ``--out`` at once would delete each
other's run folders and mix their reports. The first takes ``OUT/.lock``, created atomically
(``O_CREAT | O_EXCL``) with its pid, host, command and start time; the second finds it and
refuses, naming the first. A run killed without removing its lock does not leave the folder
stuck: a lock whose process is gone on this host is taken over, with a line saying so. A lock
of another host (a shared file system) cannot be checked from here and is never taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from cnn_common.errors import UserError
from compare.engine.layout import LOCK_FILE

__all__ = ["LOCK_FILE", "FolderLock", "check_out_folder", "command_line", "describe"]
# A lock file younger than this may still be being written by the process that created it.
WRITE_GRACE_S = 10.0


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict[str, Any] | None:
    """The holder a lock file names; None when it is empty or unreadable (half written)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def describe(holder: dict[str, Any]) -> str:
    """``pid 123 on host, `cnn-compare run ...`, started 2024-05-01 12:00:00``."""
    return (
        f"pid {holder['pid']} on {holder.get('host', '?')}, `{holder.get('command', '?')}`, "
        f"started {holder.get('started', '?')}"
    )


def check_out_folder(folder: Path) -> None:
    """Refuse an ``--out`` that exists but is not a folder, before anything is written."""
    if folder.exists() and not folder.is_dir():
        raise UserError(
            f"{folder} is a file, not a folder", "give --out a folder (it is created when missing)"
        )


def command_line() -> str:
    """This process's command: ``CNN_COMMAND`` as ``run_cli`` sets it, else its arguments."""
    return os.environ.get("CNN_COMMAND") or shlex.join(sys.argv)


class FolderLock:
    """``OUT/.lock`` held for the life of a ``with`` block (or ``acquire`` ... ``release``).

    ``log`` is told when a stale lock is taken over. ``resume``, the command that finishes an
    interrupted run, is printed when Ctrl-C ends the block: the finished runs stay in the folder.
    """

    def __init__(self, folder: Path, log: Callable[[str], None] = print, resume: str = "") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.log = log
        self.resume = resume
        self.held = False

    def acquire(self) -> None:
        """Take the lock; raise ``UserError`` naming the run that holds it."""
        check_out_folder(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command_line(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        for _ in range(3):  # a stale lock removed by two runs at once: one of them wins
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale(me["host"])
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self.held = True
            return
        self._refuse(_read(self.path))

    def _take_over_if_stale(self, host: str) -> None:
        """Remove the lock when its process is gone; refuse when it runs (or may)."""
        holder = _read(self.path)
        if holder is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return  # released meanwhile: try again
            if age < WRITE_GRACE_S:
                self._refuse(None)
            self.log(f"{self.path} is empty or unreadable (a run killed as it started); taking it")
        elif holder.get("host") != host or _alive(holder["pid"]):
            self._refuse(holder)
        else:
            self.log(
                f"{self.path} was left by a run that is no longer running ({describe(holder)}); "
                "taking it over"
            )
        # Out of the way under a name of our own: if another run took the stale lock over first,
        # what was moved is its live lock, which goes back.
        moved = self.path.with_name(f"{LOCK_FILE}.{os.getpid()}")
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return
        if _read(moved) != holder:
            with contextlib.suppress(FileExistsError):
                os.link(moved, self.path)
        moved.unlink()

    def _refuse(self, holder: dict[str, Any] | None) -> None:
        if holder is None:
            raise UserError(
                f"{self.folder} is in use by another run that is just starting ({self.path})",
                "wait for it to finish, or choose another --out",
            )
        elsewhere = holder.get("host") != socket.gethostname()
        raise UserError(
            f"{self.folder} is in use by another run: {describe(holder)}",
            f"wait for it to finish, stop it (kill {holder['pid']}"
            + (f" on {holder.get('host')}" if elsewhere else "")
            + "), or choose another --out"
            + (f"; if it is gone, delete {self.path}" if elsewhere else ""),
        )

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()
        if isinstance(error, KeyboardInterrupt) and self.resume:
            print(
                f"stopped: the runs that finished are kept in {self.folder}; "
                f"to finish the others: {self.resume}",
                file=sys.stderr,
                flush=True,
            )
