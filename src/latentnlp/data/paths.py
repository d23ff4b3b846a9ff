"""Where the toolkit looks for its data sets.

The data root is chosen, in order of precedence, from

1. an explicit argument (the CLI's ``--data-dir``),
2. the ``LATENTNLP_DATA`` environment variable,
3. a per-user cache folder: ``$XDG_CACHE_HOME/latentnlp`` when ``XDG_CACHE_HOME``
   is set to an absolute path, else ``~/.cache/latentnlp``.

Each data set is a sub-folder of the root (for example ``20news-nvdm/``). Nothing
here downloads, copies or creates anything.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV_VAR", "resolve_data_dir", "dataset_path"]

DATA_ENV_VAR = "LATENTNLP_DATA"
"""Name of the environment variable that points at the data root."""


def _resolve_with_source(data_dir: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """Return ``(root, where_it_came_from)``; see :func:`resolve_data_dir`."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "the data_dir argument (--data-dir)"
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser(), f"the {DATA_ENV_VAR} environment variable"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "latentnlp", "the default cache folder ($XDG_CACHE_HOME/latentnlp)"
    return Path.home() / ".cache" / "latentnlp", "the default cache folder (~/.cache/latentnlp)"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root folder.

    Args:
        data_dir: an explicit folder (e.g. the CLI's ``--data-dir``); wins when not ``None``.

    Returns:
        ``data_dir`` if given, else ``$LATENTNLP_DATA`` if set and non-empty, else
        ``$XDG_CACHE_HOME/latentnlp`` (only when ``XDG_CACHE_HOME`` is absolute, as the
        XDG spec asks) or ``~/.cache/latentnlp``. ``~`` is expanded. The folder is not
        created and need not exist.
    """
    return _resolve_with_source(data_dir)[0]


def dataset_path(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder of data set ``name``: ``resolve_data_dir(data_dir) / name``.

    Args:
        name: the data set's folder name, e.g. ``"20news-nvdm"``.
        data_dir: see :func:`resolve_data_dir`.

    Raises:
        FileNotFoundError: the folder does not exist; the message names the path looked
            at, where the root came from, and how to point at the data
            (``--data-dir`` or ``LATENTNLP_DATA``).
    """
    root, source = _resolve_with_source(data_dir)
    path = root / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"data set {name!r} not found: no folder {path} (data root {root} taken from {source}). "
            f"Point at the folder that holds {name}/ with --data-dir or the {DATA_ENV_VAR} "
            "environment variable."
        )
    return path
