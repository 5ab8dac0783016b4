"""Learning objectives: contrastive (CD, PCD, replay), NCE, score matching, variational."""

from ebm_ppl.objectives.base import Objective, ObjectiveSpec, stateless

__all__ = ["Objective", "ObjectiveSpec", "stateless"]
