"""Seeding that does not leak into the caller's global random state."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["seeded"]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block (e.g. a model's weight initialisation) with torch's global RNG seeded by ``seed``,
    restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
