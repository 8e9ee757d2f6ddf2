"""Reading a torch file without running pickled code, with errors that say what to do.

Below both the models (CLIP's text tower reads its file with it) and the checkpoint layout, so neither
imports the other for it.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from backend.portable.errors import CheckpointError

FETCH_FIX = "Run `python build.py weights` to download and install the official checkpoints."


def safe_load(path: Path, mmap: bool = False) -> Any:
    """``torch.load(path, map_location='cpu', weights_only=True)`` with user-facing errors.

    Missing file, truncated/corrupt archive and pickled code (refused, never run) each raise a
    :class:`CheckpointError` naming the file and the fix. ``mmap``: map the file instead of reading
    it, so tensors that are never used are never read (zip-format files only; the legacy format is
    read normally).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Missing checkpoint file {path}.", FETCH_FIX)
    try:
        mmap = mmap and zipfile.is_zipfile(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        # The safe unpickler names the callable it refused ("Unsupported GLOBAL ..."); other refusals
        # (unknown opcodes) mean the bytes are not a torch pickle at all.
        if "Weights only load failed" in text and "global" in text.lower():
            raise CheckpointError(
                f"Refusing to load {path}: it contains executable pickled code, which a checkpoint must "
                "not have (it may have been tampered with).",
                f"Delete it and re-download: {FETCH_FIX}") from None
        raise CheckpointError(f"{path} is corrupt (unreadable pickle: {text.splitlines()[0][:120]}).",
                              f"Delete it and re-download: {FETCH_FIX}") from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise CheckpointError(f"{path} is truncated or corrupt ({type(exc).__name__}: {detail}).",
                              f"Delete it and re-download: {FETCH_FIX}") from None
