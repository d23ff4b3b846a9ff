"""Atomic, pickle-free checkpoints: tensors in safetensors, everything else as JSON metadata.

A checkpoint file holds named tensors (model weights, optimiser moments, random
generator states) and one JSON document (epoch, history, optimiser
hyperparameters) in the safetensors header. Nothing is ever unpickled, so a
checkpoint from an untrusted source cannot run code.

Writes go to a temporary file in the same directory, are flushed to disk, and
then replace the old file with :func:`os.replace`, so a run killed at any moment
leaves either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = [
    "CheckpointError",
    "atomic_save_tensors",
    "load_tensors",
    "flatten_optimizer_state",
    "unflatten_optimizer_state",
]

_META_KEY = "latentnlp"


class CheckpointError(RuntimeError):
    """A checkpoint or weights file is missing, truncated or not ours."""


def atomic_save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None) -> None:
    """Write ``tensors`` (and JSON-serialisable ``metadata``) to ``path`` atomically.

    Raises:
        TypeError: if ``metadata`` is not JSON-serialisable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    header = {_META_KEY: json.dumps(metadata or {})}
    # safetensors refuses views that share storage; give it compact copies.
    compact = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    try:
        save_file(compact, str(tmp), metadata=header)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`atomic_save_tensors`: ``(tensors, metadata)``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CheckpointError: if the file is not a readable safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint or weights file at {path}")
    try:
        tensors = load_file(str(path), device=str(device))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        metadata = json.loads(header.get(_META_KEY, "{}"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt metadata ({exc})") from exc
    return tensors, metadata


def flatten_optimizer_state(state_dict: dict, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (keyed ``prefix.state.<param>.<name>``) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.state.{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    meta = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    return tensors, meta


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str) -> dict:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    head = f"{prefix}.state."
    for key, value in tensors.items():
        if key.startswith(head):
            param_id, name = key[len(head):].split(".", 1)
            state.setdefault(int(param_id), {})[name] = value
    for param_id, values in meta.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}
