"""Training: the ``fit`` loop, checkpoints and history."""

from ebm_ppl.energy.binding import bind_data
from ebm_ppl.train.callbacks import (
    JSONLLogger,
    Monitor,
    MonitorError,
    MonitorWarning,
    TensorBoardLogger,
)
from ebm_ppl.train.checkpoint import (
    CheckpointWarning,
    fingerprint,
    latest_checkpoint,
    load_checkpoint,
    load_params,
    read_metadata,
    save_checkpoint,
    save_params,
)
from ebm_ppl.train.fit import FitResult, fit, resolve_objective
from ebm_ppl.train.history import History
from ebm_ppl.train.saving import load, model_fingerprint, save

__all__ = [
    "CheckpointWarning",
    "FitResult",
    "History",
    "JSONLLogger",
    "Monitor",
    "MonitorError",
    "MonitorWarning",
    "TensorBoardLogger",
    "bind_data",
    "fingerprint",
    "fit",
    "latest_checkpoint",
    "load",
    "load_checkpoint",
    "load_params",
    "model_fingerprint",
    "read_metadata",
    "resolve_objective",
    "save",
    "save_checkpoint",
    "save_params",
]
