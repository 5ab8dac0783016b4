"""Learning objectives: contrastive (CD, PCD, replay), NCE, score matching, variational."""

from ebm_ppl.objectives.base import Objective, ObjectiveSpec, stateless
from ebm_ppl.objectives.contrastive import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
    ReplayBuffer,
)
from ebm_ppl.objectives.variational import ELBO, VariationalML

__all__ = [
    "ContrastiveDivergence",
    "ELBO",
    "Objective",
    "ObjectiveSpec",
    "PersistentContrastiveDivergence",
    "ReplayBuffer",
    "VariationalML",
    "stateless",
]
