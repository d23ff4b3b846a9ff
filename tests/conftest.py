"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real data root: ``$LATENTNLP_DATA`` if set, else ``<repo>/../shared/data``;
    skips the test when the folder does not exist."""
    env = os.environ.get("LATENTNLP_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not found (set LATENTNLP_DATA to run these tests)")
    return path


@pytest.fixture
def one_thread():
    """Small tensors: one torch thread (two threads on a busy machine can be many times slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
