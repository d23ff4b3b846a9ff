"""latentnlp: latent-variable models of language in PyTorch.

The main entry points::

    from latentnlp import NVDM, NVDMConfig, TrainConfig, load_20news
"""

from .data import BowCorpus, build_bow, load_20news, read_feat
from .evaluation.perplexity import (
    PerplexityReport,
    corpus_perplexity,
    per_document_perplexity,
)
from .models.document.nvdm import NVDM, NVDMConfig
from .runs import RunDirectory
from .training.trainer import TrainConfig, Trainer, TrainResult

__version__ = "0.1.0"

__all__ = [
    "BowCorpus",
    "build_bow",
    "load_20news",
    "read_feat",
    "PerplexityReport",
    "corpus_perplexity",
    "per_document_perplexity",
    "NVDM",
    "NVDMConfig",
    "RunDirectory",
    "TrainConfig",
    "Trainer",
    "TrainResult",
    "__version__",
]
