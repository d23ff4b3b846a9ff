"""The training loop every gradient-trained model of the toolkit shares.

What it does, in order, for each epoch (one pass over the training set):

1. shuffles the documents with its own seeded generator and cuts global batches;
2. asks the model for the batch's noise (``model.sample_noise``), then gives each
   process its contiguous shard of documents and noise, so one process and N
   processes under ``torchrun`` compute the same gradient (common random numbers);
3. calls ``model(x, noise)`` (the model's ``forward`` returns per-example ``(B,)``
   terms with a ``"loss"`` entry, nats, and optionally a ``"surrogate"`` entry whose
   gradient is the estimator's: the loss is then only reported, the surrogate is
   differentiated, as in Pyro) and steps the optimiser of the current phase (the
   paper's alternating encoder/decoder updates, or one joint phase) at the
   learning rate the schedule gives for this epoch;
4. validates every ``validate_every`` epochs, keeps the best weights, stops early
   after ``patience`` validations without improvement or when the time budget
   is spent;
5. writes a metrics line (JSONL) and an atomic checkpoint, from which
   ``resume=True`` continues to exactly the state an uninterrupted run reaches.

A non-finite loss raises :class:`FloatingPointError` naming the epoch, step and
term; the last checkpoint is left intact.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from .checkpoint import (
    atomic_save_tensors,
    flatten_optimizer_state,
    load_tensors,
    unflatten_optimizer_state,
)
from .distributed import DistributedContext, shard_bounds

__all__ = ["TrainConfig", "TrainResult", "Trainer"]

log = logging.getLogger("latentnlp.training")

CHECKPOINT_NAME = "checkpoint.safetensors"
METRICS_NAME = "metrics.jsonl"


@dataclass
class TrainConfig:
    """Optimisation settings. Defaults are the toolkit's; the paper's values are noted per field.

    Attributes:
        epochs: maximum passes over the training set.
        batch_size: documents per global batch, summed over processes (NVDM paper: 64).
        learning_rate: (initial) step size (NVDM released code: 5e-5 with Adam).
        betas: Adam moment decay rates (paper: TensorFlow defaults 0.9, 0.999).
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``; the classic choice for
            RBMs trained by contrastive divergence).
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty coefficient handed to the optimiser (``0``: none).
        lr_schedule: ``"constant"``; ``"linear"`` decays the rate linearly to 0 at the
            last epoch (Tieleman 2008 for PCD); ``"cosine"`` decays it along a half
            cosine; ``"step"`` multiplies it by ``lr_decay`` every epoch from epoch
            ``lr_decay_start`` (1-based) on (Zaremba et al. 2014: 0.5 from epoch 5 for
            the small LSTM). The rate is a function of the epoch alone, so resuming is exact.
        lr_decay: the ``"step"`` schedule's factor per epoch.
        lr_decay_start: the first epoch (1-based) trained at a decayed rate.
        alternate: update encoder and decoder in turn with separate optimisers (paper
            Algorithm 1) instead of jointly.
        alternate_every: epochs spent on one phase before switching (released code: 10).
        validate_every: epochs between validations.
        patience: validations without improvement before stopping; 0 never stops early.
        monitor: key of the validation metrics to minimise.
        max_minutes: wall-clock budget for this call; training stops at the end of
            the first epoch that exceeds it. ``None``: no budget.
        grad_clip: clip the global gradient norm to this value; ``None``: no clipping.
        shuffle: visit the training examples in a fresh random order every epoch; ``False``
            keeps their order (continuous truncated-BPTT language models carry their state
            from one example to the next).
        seed: seeds shuffling and noise (the model's initial weights are seeded by its builder).
        progress: show a progress bar with the running loss (main process only).
        resume: continue from ``run_dir/checkpoint.safetensors`` if it exists.
    """

    epochs: int = 100
    batch_size: int = 64
    learning_rate: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_decay: float = 0.5
    lr_decay_start: int = 5
    alternate: bool = False
    alternate_every: int = 10
    validate_every: int = 1
    patience: int = 10
    monitor: str = "valid_perplexity_bound"
    max_minutes: float | None = None
    grad_clip: float | None = None
    shuffle: bool = True
    seed: int = 0
    progress: bool = True
    resume: bool = True

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "alternate_every", "validate_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"TrainConfig.optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.lr_schedule not in ("constant", "linear", "cosine", "step"):
            raise ValueError(f"TrainConfig.lr_schedule must be 'constant', 'linear', 'cosine' or 'step', got {self.lr_schedule!r}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"TrainConfig.lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if self.lr_decay_start < 1:
            raise ValueError(f"TrainConfig.lr_decay_start must be >= 1, got {self.lr_decay_start!r}")
        if not self.weight_decay >= 0.0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"TrainConfig.momentum must be in [0, 1), got {self.momentum!r}")
        if self.patience < 0:
            raise ValueError(f"TrainConfig.patience must be >= 0, got {self.patience!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"TrainConfig.max_minutes must be > 0 or None, got {self.max_minutes!r}")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]

    def to_dict(self) -> dict:
        return asdict(self)

    def learning_rate_at(self, epoch: int) -> float:
        """Step size during epoch ``epoch`` (0-based) under ``lr_schedule``."""
        progress = min(max(epoch / self.epochs, 0.0), 1.0)
        if self.lr_schedule == "linear":
            return self.learning_rate * (1.0 - progress)
        if self.lr_schedule == "cosine":
            return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.lr_schedule == "step":
            return self.learning_rate * self.lr_decay ** max(epoch + 2 - self.lr_decay_start, 0)
        return self.learning_rate


def _make_optimizer(params: list, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay)


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did."""

    epochs_completed: int
    steps: int
    best_epoch: int | None
    best_value: float | None
    stop_reason: str
    seconds: float
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Mini-batch training with validation, early stopping, checkpoints, resume and DDP.

    Args:
        model: an ``nn.Module`` whose ``forward(x, noise)`` returns a dict of ``(B,)``
            per-example tensors including ``"loss"`` (to minimise, e.g. ``-ELBO`` in nats),
            with ``optimization_phases(alternate) -> dict[name, params]`` and, if it
            needs noise, ``sample_noise(batch_size, generator) -> (S, batch_size, ...)``.
        config: a :class:`TrainConfig`.
        n_train: number of training examples.
        collate: maps a list of example indices to the model's input ``x``.
        validate: ``model -> dict[str, float]``, computed identically on every process;
            must contain ``config.monitor``. ``None``: no validation and no early stopping.
        run_dir: where checkpoints and the metrics log go; ``None`` keeps nothing on disk.
        ctx: the distributed context (default: the current process group, if any).
        on_step: called as ``on_step(trainer, epoch, step)`` after every optimiser step.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        n_train: int,
        collate: Callable[[Sequence[int]], torch.Tensor],
        validate: Callable[[nn.Module], dict[str, float]] | None = None,
        run_dir: str | Path | None = None,
        ctx: DistributedContext | None = None,
        on_step: Callable[["Trainer", int, int], None] | None = None,
    ) -> None:
        if n_train < 1:
            raise ValueError("the training set is empty")
        self.model = model
        self.config = config
        self.n_train = n_train
        self.collate = collate
        self.validate = validate
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.ctx = ctx or DistributedContext.current()
        self.on_step = on_step
        phases = model.optimization_phases(config.alternate)
        self.optimizers = {name: _make_optimizer(params, config) for name, params in phases.items()}
        self.phase_names = list(self.optimizers)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.step = 0
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.bad_validations = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict] = []
        if self.ctx.enabled:
            self.net: nn.Module = nn.parallel.DistributedDataParallel(model)
        else:
            self.net = model

    # ------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / CHECKPOINT_NAME

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to resume: ``(tensors, json_metadata)``."""
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
        tensors["rng.generator"] = self.generator.get_state()
        optim_meta = {}
        for name, opt in self.optimizers.items():
            t, m = flatten_optimizer_state(opt.state_dict(), f"optim.{name}")
            tensors.update(t)
            optim_meta[name] = m
        meta = {
            "epoch": self.epoch,
            "step": self.step,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_validations": self.bad_validations,
            "history": self.history,
            "optimizers": optim_meta,
            "train_config": self.config.to_dict(),
        }
        return tensors, meta

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is None or not self.ctx.is_main:
            return
        tensors, meta = self.state_tensors()
        atomic_save_tensors(self.checkpoint_path, tensors, meta)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore the state saved by :meth:`save_checkpoint`."""
        tensors, meta = load_tensors(path)
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model_state)
        best = {k[len("best."):]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best_state = best or None
        self.generator.set_state(tensors["rng.generator"])
        for name, opt in self.optimizers.items():
            if name not in meta["optimizers"]:
                raise ValueError(f"{path}: checkpoint has optimisers {sorted(meta['optimizers'])}, this run needs {name!r}")
            opt.load_state_dict(unflatten_optimizer_state(tensors, meta["optimizers"][name], f"optim.{name}"))
        self.epoch = meta["epoch"]
        self.step = meta["step"]
        self.best_value = meta["best_value"]
        self.best_epoch = meta["best_epoch"]
        self.bad_validations = meta["bad_validations"]
        self.history = meta["history"]
        if self.run_dir is not None and self.ctx.is_main:
            self._rewrite_metrics()
        log.info("resumed from %s at epoch %d (step %d)", path, self.epoch, self.step)

    def _rewrite_metrics(self) -> None:
        assert self.run_dir is not None
        atomic_write_text(self.run_dir / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in self.history))

    def _append_metrics(self, record: dict) -> None:
        if self.run_dir is None or not self.ctx.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / METRICS_NAME, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    # --------------------------------------------------------------- the loop
    def _agree(self, flag: bool) -> bool:
        """The main process's decision, shared with every process (avoids deadlocks on time budgets)."""
        if not self.ctx.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        dist.broadcast(t, src=0)
        return bool(t.item())

    def _reduce(self, values: torch.Tensor) -> torch.Tensor:
        if self.ctx.enabled:
            dist.all_reduce(values)
        return values

    def train_one_epoch(self) -> dict[str, float]:
        """One pass over the training set; returns mean per-example terms (nats)."""
        cfg = self.config
        phase = self.phase_names[(self.epoch // cfg.alternate_every) % len(self.phase_names)]
        optimizer = self.optimizers[phase]
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate_at(self.epoch)
        self.model.train()
        perm = torch.randperm(self.n_train, generator=self.generator) if cfg.shuffle else torch.arange(self.n_train)
        sums: dict[str, float] = {}
        count = 0
        n_batches = math.ceil(self.n_train / cfg.batch_size)
        bar = tqdm(
            total=n_batches,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs} [{phase}]",
            disable=not (cfg.progress and self.ctx.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        sample_noise = getattr(self.model, "sample_noise", None)
        for b in range(n_batches):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            lo, hi = shard_bounds(len(idx), self.ctx)
            x = self.collate(idx[lo:hi].tolist())
            noise = None
            if sample_noise is not None:
                noise = sample_noise(len(idx), self.generator)
                noise = None if noise is None else noise[:, lo:hi]
            out = self.net(x, noise)
            per_example = out["surrogate"] if "surrogate" in out else out["loss"]
            # Scaled so that DDP's average over processes equals the global batch mean.
            loss = per_example.sum() * (self.ctx.world_size / len(idx))
            if not torch.isfinite(loss) or not torch.isfinite(out["loss"]).all():
                bad = [k for k, v in out.items() if not torch.isfinite(v).all()]
                raise FloatingPointError(
                    f"non-finite training loss at epoch {self.epoch + 1}, step {self.step + 1} "
                    f"(non-finite terms: {bad}); the last checkpoint is intact"
                    + (f" at {self.checkpoint_path}" if self.checkpoint_path else "")
                )
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            optimizer.step()
            self.step += 1
            with torch.no_grad():
                for k, v in out.items():
                    if k != "surrogate":
                        sums[k] = sums.get(k, 0.0) + float(v.detach().sum())
            count += hi - lo
            if b % 10 == 0 or b == n_batches - 1:
                bar.set_postfix(loss=f"{sums['loss'] / max(count, 1):.1f}")
            bar.update(1)
            if self.on_step is not None:
                self.on_step(self, self.epoch, self.step)
        bar.close()
        keys = sorted(sums)
        totals = self._reduce(torch.tensor([sums[k] for k in keys] + [float(count)], dtype=torch.float64))
        return {f"train_{k}": float(totals[i] / totals[-1]) for i, k in enumerate(keys)} | {
            "phase": phase,
            "learning_rate": optimizer.param_groups[0]["lr"],
        }

    def fit(self) -> TrainResult:
        """Train until ``epochs``, early stopping or the time budget; restore the best weights.

        Returns:
            A :class:`TrainResult`; the history is also in ``run_dir/metrics.jsonl``.
        """
        cfg = self.config
        if cfg.resume and self.checkpoint_path is not None and self.checkpoint_path.is_file():
            self.load_checkpoint(self.checkpoint_path)
        elif self.run_dir is not None and self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / METRICS_NAME).write_text("")
        start = time.perf_counter()
        stop_reason = "epochs"
        while self.epoch < cfg.epochs:
            if self.validate is not None and cfg.patience and self.bad_validations >= cfg.patience:
                stop_reason = "early stopping"
                break
            over = cfg.max_minutes is not None and (time.perf_counter() - start) / 60 >= cfg.max_minutes
            if self._agree(over):
                stop_reason = "time budget"
                break
            t0 = time.perf_counter()
            record: dict[str, Any] = {"epoch": self.epoch + 1}
            record.update(self.train_one_epoch())
            self.epoch += 1
            record["step"] = self.step
            record["epoch_seconds"] = time.perf_counter() - t0
            if self.validate is not None and (self.epoch % cfg.validate_every == 0 or self.epoch == cfg.epochs):
                metrics = self.validate(self.model)
                if cfg.monitor not in metrics:
                    raise KeyError(f"validation returned {sorted(metrics)}, which lacks the monitored {cfg.monitor!r}")
                record.update(metrics)
                value = float(metrics[cfg.monitor])
                if self.best_value is None or value < self.best_value:
                    self.best_value, self.best_epoch, self.bad_validations = value, self.epoch, 0
                    self.best_state = copy.deepcopy(self.model.state_dict())
                else:
                    self.bad_validations += 1
                record["best_epoch"] = self.best_epoch
            self.history.append(record)
            self._append_metrics(record)
            self.save_checkpoint()
            if self.ctx.is_main:
                # 2 decimals for nats and seconds; a step size keeps 3 significant digits (3e-4 is not 0.0)
                shown = {k: (float(f"{v:.3g}") if k == "learning_rate" else round(v, 2)) if isinstance(v, float) else v
                         for k, v in record.items()}
                log.info("%s", shown)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return TrainResult(
            epochs_completed=self.epoch,
            steps=self.step,
            best_epoch=self.best_epoch,
            best_value=self.best_value,
            stop_reason=stop_reason,
            seconds=time.perf_counter() - start,
            history=list(self.history),
        )
