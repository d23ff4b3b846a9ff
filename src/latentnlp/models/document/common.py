"""What the bag-of-words document models share: training on a :class:`~latentnlp.data.bow.BowCorpus`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from ...data.bow import BowCorpus
    from ...training.trainer import TrainConfig

__all__ = ["fit_bow_model", "set_unigram_bias"]


def fit_bow_model(
    model: nn.Module,
    train: "BowCorpus",
    valid: "BowCorpus | None",
    config: "TrainConfig | None",
    run_dir: str | None,
    validate: Callable[[nn.Module], dict[str, float]],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Train ``model`` on dense ``(D, V)`` count rows of ``train`` with the shared Trainer.

    Checks both corpora's vocabulary size against ``model.config.vocab_size``, sets the
    decoder bias from the training counts (``model.init_decoder_bias``), validates on
    ``valid`` with ``validate(model)`` (skipped when ``valid`` is ``None``) and keeps the
    :class:`~latentnlp.training.TrainResult` in ``model.train_result_``.

    Raises:
        ValueError: if a corpus's vocabulary size differs from the model's.
    """
    from ...training.trainer import TrainConfig, Trainer

    vocab_size = model.config.vocab_size
    for name, corpus in (("train", train), ("valid", valid)):
        if corpus is not None and corpus.vocab_size != vocab_size:
            raise ValueError(f"{name} corpus has V = {corpus.vocab_size}, the model has V = {vocab_size}")
    x_train = train.to_dense(dtype=dtype).to(device)  # (D, V); 20 Newsgroups: 11k x 2k floats, 90 MB
    model.init_decoder_bias(x_train.sum(0))
    trainer = Trainer(
        model,
        config or TrainConfig(),
        n_train=len(train),
        collate=lambda idx: x_train[idx],
        validate=validate if valid is not None else None,
        run_dir=run_dir,
    )
    model.train_result_ = trainer.fit()
    return model


def set_unigram_bias(bias: torch.Tensor, word_counts: torch.Tensor) -> None:
    """Set a ``(V,)`` output bias to the add-one smoothed log unigram distribution of ``word_counts``.

    Raises:
        ValueError: if ``word_counts`` does not have ``V`` entries.
    """
    counts = torch.as_tensor(word_counts, dtype=torch.float64).flatten()
    if counts.numel() != bias.numel():
        raise ValueError(f"word_counts has shape {tuple(counts.shape)}, expected ({bias.numel()},)")
    probs = (counts + 1.0) / (counts + 1.0).sum()
    with torch.no_grad():
        bias.copy_(probs.log().to(bias.dtype))
