"""NumPyro's own NUTS and HMC, registered as ``kernel="nuts"`` and ``kernel="hmc"``."""

from __future__ import annotations

from typing import Any

from numpyro import handlers
from numpyro.infer import HMC, NUTS

from ebm_ppl.infer.registry import register_kernel

__all__: list[str] = []


def _substituted(model: Any, params: dict[str, Any] | None) -> Any:
    return handlers.substitute(model, data=dict(params)) if params else model


register_kernel("nuts", lambda model, params: NUTS(_substituted(model, params)))
register_kernel("hmc", lambda model, params: HMC(_substituted(model, params)))
