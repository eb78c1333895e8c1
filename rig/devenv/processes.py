"""Processes the environment started, found by pid and checked by command line before any signal."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _state(pid: int) -> str | None:
    """The process state letter from /proc (None when there is no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name sits in parentheses and may hold spaces; the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def alive(pid: int, marker: str | None = None) -> bool:
    """True while ``pid`` runs (a zombie has already exited) and, if given, its command line has ``marker``.

    The marker (a folder or port only this environment uses) guards against a recycled pid: a process
    that merely inherited the number is never reported as ours, nor signalled.
    """
    state = _state(pid)
    if state is None or state in ("Z", "X"):
        return False
    return marker is None or marker in cmdline(pid)


def terminate(pids: list[int], marker: str | None, timeout: float = 10.0) -> list[int]:
    """SIGTERM each live pid of ours, SIGKILL whatever is left after ``timeout``; returns pids still alive."""
    ours = [pid for pid in pids if alive(pid, marker)]
    for pid in ours:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    ours = wait_gone(ours, marker, timeout)
    for pid in ours:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return wait_gone(ours, marker, 5.0)


def wait_gone(pids: list[int], marker: str | None, timeout: float) -> list[int]:
    """Poll until none of ``pids`` is alive or ``timeout`` passes; returns the ones still alive."""
    deadline = time.monotonic() + timeout
    remaining = [pid for pid in pids if alive(pid, marker)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = [pid for pid in remaining if alive(pid, marker)]
    return remaining
