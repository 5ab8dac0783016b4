"""Learning objectives: contrastive (CD, PCD, replay), NCE, score matching, variational."""

from ebm_ppl.objectives.base import Objective, ObjectiveSpec, stateless
from ebm_ppl.objectives.contrastive import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
    ReplayBuffer,
)

__all__ = [
    "ContrastiveDivergence",
    "Objective",
    "ObjectiveSpec",
    "PersistentContrastiveDivergence",
    "ReplayBuffer",
    "stateless",
]
