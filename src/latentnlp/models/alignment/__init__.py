"""Word-alignment models: IBM Model 1, fast_align's IBM Model 2, and symmetrisation."""

from latentnlp.models.alignment.ibm import (
    AlignmentSet,
    ExpectedCounts,
    IBM1Config,
    IBM2Config,
    IBMModel1,
    IBMModel2,
    diagonal_feature,
    log_partition,
)
from latentnlp.models.alignment.symmetrize import (
    POSTERIOR_COMBINATIONS,
    SYMMETRIZATIONS,
    grow_diag_final_and,
    intersection,
    posterior_symmetrize,
    symmetrize,
    union,
)

__all__ = [
    "POSTERIOR_COMBINATIONS",
    "SYMMETRIZATIONS",
    "AlignmentSet",
    "ExpectedCounts",
    "IBM1Config",
    "IBM2Config",
    "IBMModel1",
    "IBMModel2",
    "diagonal_feature",
    "grow_diag_final_and",
    "intersection",
    "log_partition",
    "posterior_symmetrize",
    "symmetrize",
    "union",
]
