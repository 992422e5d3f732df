"""One pipeline run per profile at a time: a lock file in the run folder naming its holder.

Two ``make book`` runs of one profile at once would both run every step in full and the last writer
would win. :func:`run_lock` creates ``runs/<profile>/pipeline.lock`` atomically (``O_EXCL``) with the
process, host, start time and command; a second run stops at once with one line naming the holder. A
lock left by a process that is gone (same host, no such process) is taken over with a message.
"""
from __future__ import annotations

import json
import os
import socket
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..utils import announce

LOCK_FILE = "pipeline.lock"


class LockError(RuntimeError):
    """Another live run holds the profile's lock; the message names it."""


def holder() -> dict[str, Any]:
    """This process as a lock's holder: pid, host, start time and command line."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv)}


def is_alive(pid: int) -> bool:
    """Whether a process of this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _read(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _is_stale(record: dict[str, Any]) -> bool:
    """A lock whose holder is known to be gone: same host and no such process, or unreadable."""
    if not isinstance(record.get("pid"), int):
        return True
    return record.get("host") == socket.gethostname() and not is_alive(record["pid"])


@contextmanager
def run_lock(run_dir: Path) -> Iterator[Path]:
    """Hold ``run_dir``'s lock while the block runs; :class:`LockError` when a live run holds it."""
    path = Path(run_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    me = holder()
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            record = _read(path)
            if not _is_stale(record):
                raise LockError(
                    f"{run_dir} is in use by another run: pid {record.get('pid')} on {record.get('host')} since "
                    f"{record.get('started')} ({record.get('command')}); wait for it to finish, or delete {path} "
                    "if that process is gone") from None
            announce(f"taking over the stale lock {path} of pid {record.get('pid')} on {record.get('host')} "
                     f"(started {record.get('started')}; that process is gone)")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield path
    finally:
        if _read(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
