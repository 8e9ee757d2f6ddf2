"""The backend's log file, kept small: one rotation rule for both processes.

The add-on rotates the log before it starts a backend (on Windows a file that any process holds open
cannot be renamed, and the backend holds its log open as its stderr from its first instant); the
backend applies the same rule when it is started by hand with ``--log``. Stdlib only: the add-on
loads this file by path.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: A log above this size is rotated (one ``<log>.1`` kept) when a backend starts.
LOG_ROTATE_BYTES = 5 * 1024 * 1024


def rotate_log(path: Path, limit: int = LOG_ROTATE_BYTES) -> None:
    """Keep one old log (``<log>.1``) once the log has passed ``limit`` bytes.

    Best effort: a log that cannot be renamed (another Blender's backend writes to it) is emptied
    instead, and if even that fails it is left as it is. A log must never stop a start.
    """
    try:
        if path.stat().st_size <= limit:
            return
    except OSError:  # no log yet
        return
    try:
        os.replace(path, path.with_name(path.name + ".1"))
    except OSError:
        with contextlib.suppress(OSError), open(path, "r+b") as handle:
            handle.truncate(0)
