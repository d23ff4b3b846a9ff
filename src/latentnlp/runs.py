"""The run directory: one folder per training run, readable without the code that wrote it.

Layout::

    RUN_DIR/
      config.json              model name, model config, train config, data source (JSON)
      vocab.txt                the model's vocabulary, one word per line
      model.safetensors        the final (best-on-validation) weights
      checkpoint.safetensors   full training state for resuming (weights, Adam moments, RNG)
      metrics.jsonl            one JSON object per epoch
      learning_curve.png       training loss and validation metric by epoch
      evaluation.json          written by ``latentnlp evaluate``

Weights are only ever read through safetensors; configs only through JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write_text
from .training.checkpoint import atomic_save_tensors, load_tensors
from .training.trainer import CHECKPOINT_NAME

__all__ = ["RunDirectory", "MODEL_REGISTRY", "register_model"]

# name -> (model class, config class). An explicit registry: no lookups in module __dict__.
MODEL_REGISTRY: dict[str, tuple[type[nn.Module], type]] = {}


def register_model(name: str, model_cls: type[nn.Module], config_cls: type) -> None:
    """Make ``name`` loadable from a run directory."""
    MODEL_REGISTRY[name] = (model_cls, config_cls)


def _register_builtin() -> None:
    from .models.document.nvdm import NVDM, NVDMConfig

    register_model("nvdm", NVDM, NVDMConfig)
    from .models.document.docnade import DocNADE, DocNADEConfig
    from .models.document.rsm import ReplicatedSoftmax, RSMConfig
    from .models.document.sbn import DocumentSBN, SBNConfig

    register_model("sbn", DocumentSBN, SBNConfig)  # prior="factorized"; the config records the prior
    register_model("fdarn", DocumentSBN, SBNConfig)  # prior="darn"
    register_model("docnade", DocNADE, DocNADEConfig)
    register_model("rsm", ReplicatedSoftmax, RSMConfig)
    from .models.density.made import MADE, MADEConfig
    from .models.density.nade import NADE, NADEConfig
    from .models.density.rbm import BernoulliRBM, RBMConfig

    register_model("nade", NADE, NADEConfig)
    register_model("made", MADE, MADEConfig)
    register_model("rbm", BernoulliRBM, RBMConfig)
    from .models.language.rnnlm import RNNLanguageModel, RNNLMConfig

    register_model("rnnlm", RNNLanguageModel, RNNLMConfig)
    from .models.language.sentence_vae import SentenceVAE, SentenceVAEConfig

    register_model("sentence-vae", SentenceVAE, SentenceVAEConfig)


_register_builtin()


def _build_model(header: dict[str, Any], weights: dict[str, torch.Tensor], source: Path) -> nn.Module:
    """The registered model named by ``header["model"]``, built from ``header["model_config"]``, in eval mode."""
    name = header.get("model")
    if name not in MODEL_REGISTRY:
        raise KeyError(f"{source}: unknown model {name!r}; known: {sorted(MODEL_REGISTRY)}")
    model_cls, config_cls = MODEL_REGISTRY[name]
    model = model_cls(config_cls(**header["model_config"]))
    model.load_state_dict(weights)
    model.eval()
    return model


class RunDirectory:
    """A training run's folder (see the module docstring for its layout).

    Args:
        path: the folder; created on the first write.
    """

    CONFIG = "config.json"
    VOCAB = "vocab.txt"
    WEIGHTS = "model.safetensors"
    CHECKPOINT = CHECKPOINT_NAME  # written by the Trainer
    METRICS = "metrics.jsonl"
    CURVE = "learning_curve.png"
    EVALUATION = "evaluation.json"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    # ---------------------------------------------------------------- config
    def write_config(self, config: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.file(self.CONFIG), json.dumps(config, indent=2, sort_keys=True) + "\n")

    def read_config(self) -> dict[str, Any]:
        """Raises FileNotFoundError if the folder is not a run directory."""
        path = self.file(self.CONFIG)
        if not path.is_file():
            raise FileNotFoundError(f"{self.path} is not a run directory: {path} is missing")
        return json.loads(path.read_text())

    # ----------------------------------------------------------------- vocab
    def write_vocab(self, vocab: tuple[str, ...] | list[str]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.file(self.VOCAB), "".join(w + "\n" for w in vocab))

    def read_vocab(self) -> tuple[str, ...]:
        path = self.file(self.VOCAB)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        return tuple(path.read_text().splitlines())

    # --------------------------------------------------------------- weights
    def save_model(self, name: str, model: nn.Module) -> None:
        """Write ``model``'s weights with its registry name and config in the header."""
        meta = {"model": name, "model_config": model.config.to_dict()}
        atomic_save_tensors(self.file(self.WEIGHTS), model.state_dict(), meta)

    def load_model(self, map_location: str | torch.device = "cpu") -> nn.Module:
        """Rebuild the model from ``model.safetensors`` (no unpickling).

        Raises:
            FileNotFoundError: if the weights are missing.
            KeyError: if the model name is not registered.
        """
        tensors, meta = load_tensors(self.file(self.WEIGHTS), device=map_location)
        return _build_model(meta, tensors, self.file(self.WEIGHTS))

    def load_checkpoint_model(self, map_location: str | torch.device = "cpu") -> tuple[nn.Module, int]:
        """Rebuild an unfinished run's model from ``checkpoint.safetensors``: ``(model, epoch)``.

        The weights are those after the last completed epoch ``epoch`` (not the best ones
        on validation), with the model name and config from ``config.json``.

        Raises:
            FileNotFoundError: if ``config.json`` or the checkpoint is missing.
            KeyError: if the model name is not registered.
        """
        config = self.read_config()
        tensors, meta = load_tensors(self.file(self.CHECKPOINT), device=map_location)
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        return _build_model(config, weights, self.file(self.CONFIG)), int(meta["epoch"])

    # --------------------------------------------------------------- metrics
    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.file(self.METRICS)
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write_evaluation(self, result: dict[str, Any]) -> None:
        atomic_write_text(self.file(self.EVALUATION), json.dumps(result, indent=2) + "\n")

    def plot_learning_curve(
        self,
        train_key: str = "train_loss",
        valid_key: str | None = None,
        x_key: str = "epoch",
        train_label: str | None = None,
    ) -> Path | None:
        """Plot ``train_key`` (and ``valid_key``, on its own axis) against ``x_key`` to ``learning_curve.png``.

        Returns the PNG's path, or ``None`` if there is no history yet.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        history = self.read_metrics()
        if not history:
            return None
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        epochs = [r[x_key] for r in history if train_key in r]
        ax.plot(epochs, [r[train_key] for r in history if train_key in r], color="tab:blue", label=train_key)
        ax.set_xlabel(x_key)
        ax.set_ylabel(train_label or f"{train_key} (nats / document)", color="tab:blue")
        if valid_key is not None and any(valid_key in r for r in history):
            ax2 = ax.twinx()
            ve = [r[x_key] for r in history if valid_key in r]
            ax2.plot(ve, [r[valid_key] for r in history if valid_key in r], color="tab:red", label=valid_key)
            ax2.set_ylabel(valid_key, color="tab:red")
        ax.set_title(self.path.name)
        fig.tight_layout()
        out = self.file(self.CURVE)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
        fig.savefig(tmp)
        plt.close(fig)
        os.replace(tmp, out)
        return out
