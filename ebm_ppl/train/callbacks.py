"""Training monitors for ``fit(..., callbacks=[...])``: JSON Lines and TensorBoard logs.

Every ``log_every`` updates a monitor writes one record: the loss, the objective's metrics
(the energy gap ``pos_energy - neg_energy``, the negative chains' ``acceptance_rate``, ...), the
gradient norm, and, for objectives with persistent negative chains (PCD), how well those chains
mix: their nested R-hat (:func:`ebm_ppl.diagnostics.nested_rhat`, superchains = consecutive
blocks of chains, valid down to one draw per chain) and bulk ESS on the chains' energies over the
objective's trace window.

Alarms (a :class:`MonitorWarning` by default, once per crossing; ``on_alarm="raise"`` raises
:class:`MonitorError` and ``on_alarm="stop"`` stops the fit):

* **energy gap**: ``|energy_gap| / sd > energy_gap_max`` (default 3), ``sd`` the spread of the
  negative chains' energies at the last update. At equilibrium the chains sample the model and
  the gap is the data's distance from it in energy units; a gap several chain spreads wide that
  persists means the negatives lag behind the model (too few MCMC steps, too large a learning
  rate) and the gradient is biased. Without chain energies the raw ``|energy_gap|`` is compared.
* **nested R-hat** of the chains' energies above
  :func:`~ebm_ppl.diagnostics.nested_rhat_threshold` (``1 + δ``, ``δ = 0.01``, of Margossian et
  al. 2024, on top of the chance level of ``K`` superchains of ``M`` chains): blocks of chains
  sample different energy levels, the chains do not mix.

Examples:
    >>> import jax, optax, tempfile, ebm_ppl as ebm
    >>> from pathlib import Path
    >>> logs = Path(tempfile.mkdtemp())
    >>> monitors = [JSONLLogger(logs / "train.jsonl", log_every=100),
    ...             TensorBoardLogger(logs / "tb", log_every=100)]
    >>> # ebm.fit(model, data, ..., log_every=100, callbacks=monitors)
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ebm_ppl.diagnostics import ess, nested_rhat, nested_rhat_threshold

__all__ = [
    "JSONLLogger",
    "Monitor",
    "MonitorError",
    "MonitorWarning",
    "TensorBoardLogger",
    "chain_record",
]

_ALARMS = ("warn", "raise", "stop")


class MonitorWarning(UserWarning):
    """A monitored quantity crossed its threshold (the energy gap or the chains' R-hat).

    Examples:
        >>> issubclass(MonitorWarning, UserWarning)
        True
    """


class MonitorError(RuntimeError):
    """Raised by a monitor with ``on_alarm="raise"``; ``fit`` checkpoints, then re-raises it.

    Examples:
        >>> issubclass(MonitorError, RuntimeError)
        True
    """


def _ordered_trace(obj_state: Any) -> np.ndarray | None:
    """The negative chains' energies ``(chain, draw)`` in update order, or ``None``."""
    trace = getattr(obj_state, "energy_trace", None)
    count = getattr(obj_state, "num_updates", None)
    if trace is None or count is None:
        return None
    trace = np.asarray(trace, np.float64)
    count = int(np.asarray(count))
    if trace.ndim != 2 or trace.shape[0] == 0 or count == 0:
        return None
    window = trace.shape[0]
    if count < window:
        ordered = trace[:count]
    else:
        start = count % window
        ordered = np.concatenate([trace[start:], trace[:start]], axis=0)
    return ordered.T


def chain_record(obj_state: Any, *, num_superchains: int = 4) -> dict[str, float]:
    """Mixing of an objective's persistent negative chains, from their energy trace.

    Reads ``obj_state.energy_trace`` (``(window, num_chains)``, a ring buffer) and
    ``obj_state.num_updates`` (as in :class:`~ebm_ppl.objectives.contrastive.PCDState`).

    Returns:
        ``chains_nested_rhat`` (nested R-hat of the energies, ``num_superchains`` consecutive
        blocks of chains), ``chains_nested_rhat_threshold`` (for that design), ``chains_ess``
        (bulk ESS, with 4 or more draws per chain), ``chains_energy_sd`` (spread of the chains'
        energies at the last update) and ``chains_draws``; an empty dict for objectives
        without persistent chains or before the first update.

    Examples:
        >>> import numpy as np
        >>> from ebm_ppl.objectives.contrastive import PCDState
        >>> trace = np.random.default_rng(0).normal(size=(1, 400))  # one draw of 400 chains
        >>> r = chain_record(PCDState({}, trace, np.int32(1)))
        >>> r["chains_draws"], r["chains_nested_rhat"] < r["chains_nested_rhat_threshold"]
        (1, True)
    """
    energies = _ordered_trace(obj_state)
    if energies is None or not np.all(np.isfinite(energies)):
        return {}
    num_chains, num_draws = energies.shape
    out: dict[str, float] = {
        "chains_draws": num_draws,
        "chains_energy_sd": float(np.std(energies[:, -1], ddof=1)) if num_chains > 1 else 0.0,
    }
    k = min(num_superchains, num_chains)
    if k >= 2 and np.ptp(energies) > 0:
        per = num_chains // k
        use = energies[: per * k]
        groups = np.repeat(np.arange(k), per)
        out["chains_nested_rhat"] = float(nested_rhat(use, groups))
        out["chains_nested_rhat_threshold"] = nested_rhat_threshold(k, per)
    if num_draws >= 4 and num_chains >= 2 and np.ptp(energies) > 0:
        out["chains_ess"] = float(ess(energies, "bulk"))
    return out


class Monitor:
    """Base of the training monitors: a ``fit`` callback writing a record every ``log_every``.

    Subclasses implement :meth:`write` (and :meth:`close`); a plain ``Monitor`` writes nothing
    and only raises its alarms. A monitor is called by ``fit``
    after every compiled chunk; it writes when ``log_every`` updates have passed since its last
    record (so set ``fit``'s ``log_every`` to a divisor of it).

    Args:
        log_every: updates between records (>= 1).
        num_superchains: blocks of negative chains compared by the nested R-hat (>= 2).
        energy_gap_max: alarm threshold of ``|energy_gap|`` in units of the chains' energy
            spread (see the module docstring); ``None`` disables it.
        rhat_delta: ``δ`` of the nested R-hat threshold; ``None`` disables the alarm.
        on_alarm: ``"warn"`` (a :class:`MonitorWarning`), ``"raise"`` (:class:`MonitorError`,
            after writing the record) or ``"stop"`` (the fit stops and checkpoints).

    Examples:
        >>> class Printer(Monitor):
        ...     def write(self, record):
        ...         print(record["step"], record["loss"])
        >>> p = Printer(log_every=10)
        >>> p(10, {}, None, {"loss": 0.5}), p(15, {}, None, {"loss": 0.4})
        10 0.5
        (None, None)
    """

    #: ``fit`` records the gradient norm (``grad_norm``) for callbacks that set this.
    needs_grad_norm = True

    def __init__(
        self,
        *,
        log_every: int = 100,
        num_superchains: int = 4,
        energy_gap_max: float | None = 3.0,
        rhat_delta: float | None = 0.01,
        on_alarm: str = "warn",
    ):
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
            raise ValueError(f"log_every must be an int >= 1, got {log_every!r}")
        if isinstance(num_superchains, bool) or not isinstance(num_superchains, int):
            raise ValueError(f"num_superchains must be an int >= 2, got {num_superchains!r}")
        if num_superchains < 2:
            raise ValueError(f"num_superchains must be an int >= 2, got {num_superchains!r}")
        if energy_gap_max is not None and not energy_gap_max > 0:
            raise ValueError(f"energy_gap_max must be > 0 or None, got {energy_gap_max!r}")
        if rhat_delta is not None and not rhat_delta > 0:
            raise ValueError(f"rhat_delta must be > 0 or None, got {rhat_delta!r}")
        if on_alarm not in _ALARMS:
            raise ValueError(f"on_alarm must be one of {_ALARMS}, got {on_alarm!r}")
        self.log_every = log_every
        self.num_superchains = num_superchains
        self.energy_gap_max = energy_gap_max
        self.rhat_delta = rhat_delta
        self.on_alarm = on_alarm
        self._last_step: int | None = None
        self._alarmed: set[str] = set()

    def record(self, step: int, obj_state: Any, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The record at ``step``: the metrics (floats), the gradient norm, the chains' mixing."""
        rec: dict[str, Any] = {"step": int(step)}
        for name, value in metrics.items():
            if name != "step":
                rec[name] = float(value)
        rec.update(chain_record(obj_state, num_superchains=self.num_superchains))
        if self.rhat_delta is not None and "chains_nested_rhat" in rec:
            num_chains = int(np.asarray(obj_state.energy_trace).shape[1])
            k = min(self.num_superchains, num_chains)
            rec["chains_nested_rhat_threshold"] = nested_rhat_threshold(
                k, num_chains // k, delta=self.rhat_delta
            )
        return rec

    def alarms(self, rec: Mapping[str, Any]) -> list[str]:
        """Messages for the thresholds that ``rec`` crosses."""
        out = []
        gap = rec.get("energy_gap")
        if self.energy_gap_max is not None and gap is not None and math.isfinite(gap):
            sd = rec.get("chains_energy_sd")
            scaled = abs(gap) / sd if sd else abs(gap)
            unit = " chain energy sd" if sd else ""
            if scaled > self.energy_gap_max:
                out.append(
                    f"energy_gap: the energy gap {gap:.4g} is {scaled:.3g}{unit} wide, above "
                    f"energy_gap_max={self.energy_gap_max:g}: the negative chains lag behind the "
                    "model (more MCMC steps per update or a smaller learning rate)"
                )
        rhat = rec.get("chains_nested_rhat")
        if self.rhat_delta is not None and rhat is not None:
            threshold = rec["chains_nested_rhat_threshold"]
            if rhat > threshold:
                out.append(
                    f"chains_nested_rhat: the negative chains' nested R-hat {rhat:.4f} is above "
                    f"{threshold:.4f}: blocks of chains sample different energies (they do not "
                    "mix; more MCMC steps per update, another kernel, or more chains)"
                )
        return out

    def __call__(
        self, step: int, params: Any, obj_state: Any, metrics: Mapping[str, Any]
    ) -> bool | None:
        del params
        if self._last_step is not None and step - self._last_step < self.log_every:
            return None
        self._last_step = int(step)
        rec = self.record(step, obj_state, metrics)
        messages = self.alarms(rec)
        kinds = {m.split(":", 1)[0] for m in messages}
        rec["alarms"] = sorted(kinds)
        self.write(rec)
        new = [m for m in messages if m.split(":", 1)[0] not in self._alarmed]
        self._alarmed = kinds  # warn again only after the quantity came back below
        if not new:
            return None
        text = f"update {step}: " + "; ".join(new)
        if self.on_alarm == "raise":
            raise MonitorError(text)
        warnings.warn(text, MonitorWarning, stacklevel=3)
        return True if self.on_alarm == "stop" else None

    def write(self, record: Mapping[str, Any]) -> None:
        """Write one record: nothing here, so a plain ``Monitor`` only watches the alarms."""

    def close(self) -> None:
        """Flush and close (``fit`` calls it when it ends)."""


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


class JSONLLogger(Monitor):
    """Append one JSON object per record to a file (JSON Lines), flushed at every record.

    Each line holds ``step``, the metrics (``loss``, ``energy_gap``, ``acceptance_rate``,
    ``grad_norm``, ...), the chains' ``chains_nested_rhat``, ``chains_ess`` and the names of
    the thresholds crossed (``alarms``). NaN is written as ``null``. Read it with
    ``[json.loads(l) for l in open(path)]`` or ``pandas.read_json(path, lines=True)``.

    Args:
        path: the file (appended to; its folder is created).
        **options: see :class:`Monitor`.

    Examples:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> log = JSONLLogger(Path(tempfile.mkdtemp()) / "log.jsonl", log_every=1)
        >>> log(1, {}, None, {"loss": 0.25, "grad_norm": 2.0})
        >>> log.close()
        >>> json.loads(log.path.read_text())
        {'step': 1, 'loss': 0.25, 'grad_norm': 2.0, 'alarms': []}
    """

    def __init__(self, path: str | os.PathLike[str], **options: Any):
        super().__init__(**options)
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise ValueError(f"path {str(self.path)!r} is not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: Any = None

    def write(self, record: Mapping[str, Any]) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        clean = {k: _json_value(v) for k, v in record.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class TensorBoardLogger(Monitor):
    """Write every record as TensorBoard scalars (``tensorboardX``; no TensorFlow needed).

    Scalars are tagged ``train/<name>`` (loss, metrics, gradient norm) and ``chains/<name>``
    (nested R-hat, its threshold, ESS, energy spread), at the record's update. Watch them live
    with ``tensorboard --logdir DIR``. Needs the ``tensorboard`` extra
    (``pip install 'ebm_ppl[tensorboard]'``).

    Args:
        logdir: folder for the event files (created).
        **options: see :class:`Monitor`.

    Raises:
        ImportError: without tensorboardX, naming the extra.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> tb = TensorBoardLogger(Path(tempfile.mkdtemp()), log_every=1)
        >>> tb(1, {}, None, {"loss": 0.25})
        >>> tb.close()
        >>> [p.name.startswith("events.out.tfevents") for p in tb.logdir.iterdir()]
        [True]
    """

    def __init__(self, logdir: str | os.PathLike[str], **options: Any):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:  # pragma: no cover - exercised without the extra
            raise ImportError(
                "TensorBoardLogger needs tensorboardX: pip install 'ebm_ppl[tensorboard]'"
            ) from err
        super().__init__(**options)
        self.logdir = Path(logdir)
        if self.logdir.exists() and not self.logdir.is_dir():
            raise ValueError(f"logdir {str(self.logdir)!r} is a file, not a folder")
        self._writer_cls = SummaryWriter
        self._writer: Any = None

    def write(self, record: Mapping[str, Any]) -> None:
        if self._writer is None:
            self._writer = self._writer_cls(str(self.logdir))
        step = int(record["step"])
        for name, value in record.items():
            if name in ("step", "alarms") or not isinstance(value, (int, float)):
                continue
            tag = (
                f"chains/{name[len('chains_') :]}"
                if name.startswith("chains_")
                else f"train/{name}"
            )
            self._writer.add_scalar(tag, float(value), step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
