"""Atomic text writes: the one place the toolkit replaces a file.

Text goes to a temporary file in the same folder, is flushed to disk, and then
replaces the target with :func:`os.replace`, so a reader (or a run killed
mid-write) sees either the old file or the new one, never a partial file.
Binary tensors go through :func:`latentnlp.training.checkpoint.atomic_save_tensors`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_text"]


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line endings) to ``path`` atomically.

    Creates missing parent folders. A new file gets mode 0644; an existing file keeps its mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
