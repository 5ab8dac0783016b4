"""Learning objectives: contrastive (CD, PCD, replay), NCE, score matching, pseudo-likelihood,
variational."""

from __future__ import annotations

from typing import Any

from ebm_ppl.objectives.base import Objective, ObjectiveSpec, stateless
from ebm_ppl.objectives.contrastive import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
    ReplayBuffer,
)
from ebm_ppl.objectives.nce import FCE, NCE, FlowContrastiveEstimation
from ebm_ppl.objectives.pseudo_likelihood import PseudoLikelihood
from ebm_ppl.objectives.score_matching import (
    DenoisingScoreMatching,
    ScoreMatching,
    SlicedScoreMatching,
)
from ebm_ppl.objectives.variational import MeanFieldPCD, VariationalML, _deprecated

__all__ = [
    "ContrastiveDivergence",
    "DenoisingScoreMatching",
    "FCE",
    "FlowContrastiveEstimation",
    "MeanFieldPCD",
    "NCE",
    "Objective",
    "ObjectiveSpec",
    "PersistentContrastiveDivergence",
    "PseudoLikelihood",
    "ReplayBuffer",
    "ScoreMatching",
    "SlicedScoreMatching",
    "VariationalML",
    "stateless",
]


def __getattr__(name: str) -> Any:  # PEP 562: deprecated names (ELBO -> MeanFieldPCD)
    return _deprecated(name, __name__, stacklevel=2)
