"""The shared training loop, checkpoints and multi-process support."""

from .checkpoint import CheckpointError, atomic_save_tensors, load_tensors
from .distributed import DistributedContext, init_from_env, shard_bounds
from .trainer import TrainConfig, Trainer, TrainResult

__all__ = [
    "CheckpointError",
    "atomic_save_tensors",
    "load_tensors",
    "DistributedContext",
    "init_from_env",
    "shard_bounds",
    "TrainConfig",
    "Trainer",
    "TrainResult",
]
