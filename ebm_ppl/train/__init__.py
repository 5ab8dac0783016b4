"""Training: the ``fit`` loop, checkpoints and history."""

from ebm_ppl.train.checkpoint import fingerprint, load_checkpoint, read_metadata, save_checkpoint
from ebm_ppl.train.fit import FitResult, bind_data, fit, resolve_objective
from ebm_ppl.train.history import History

__all__ = [
    "FitResult",
    "History",
    "bind_data",
    "fingerprint",
    "fit",
    "load_checkpoint",
    "read_metadata",
    "resolve_objective",
    "save_checkpoint",
]
