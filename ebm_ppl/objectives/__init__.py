"""Learning objectives: contrastive (CD, PCD, replay), NCE, score matching, variational."""

from ebm_ppl.objectives.base import Objective, ObjectiveSpec, stateless
from ebm_ppl.objectives.contrastive import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
    ReplayBuffer,
)
from ebm_ppl.objectives.nce import FCE, NCE, FlowContrastiveEstimation
from ebm_ppl.objectives.score_matching import (
    DenoisingScoreMatching,
    ScoreMatching,
    SlicedScoreMatching,
)
from ebm_ppl.objectives.variational import ELBO, VariationalML

__all__ = [
    "ContrastiveDivergence",
    "DenoisingScoreMatching",
    "ELBO",
    "FCE",
    "FlowContrastiveEstimation",
    "NCE",
    "Objective",
    "ObjectiveSpec",
    "PersistentContrastiveDivergence",
    "ReplayBuffer",
    "ScoreMatching",
    "SlicedScoreMatching",
    "VariationalML",
    "stateless",
]
