"""Training history: per-update metrics as NumPy arrays."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["History"]


class History(Mapping[str, np.ndarray]):
    """Per-update training metrics, one array per metric, aligned with ``history["step"]``.

    ``history["step"][i]`` is the global update index (0-based) of row ``i``; ``"loss"`` and every
    metric an objective reports (``"pos_energy"``, ``"neg_energy"``, ``"energy_gap"``,
    ``"acceptance_rate"``, ...) have one value per recorded update. Host-side diagnostics
    recorded between chunks (such as the split R-hat of persistent chains) live in
    :attr:`events`, a list of dicts with a ``"step"`` entry.

    Examples:
        >>> h = History()
        >>> h.append({"step": np.arange(3), "loss": np.array([3.0, 2.0, 1.0])})
        >>> h["loss"].tolist(), len(h)
        ([3.0, 2.0, 1.0], 3)
        >>> h.last()["loss"]
        1.0
    """

    def __init__(self, arrays: Mapping[str, Any] | None = None, events: list[dict] | None = None):
        self._chunks: dict[str, list[np.ndarray]] = {}
        self._cache: dict[str, np.ndarray] | None = None
        self.events: list[dict[str, Any]] = list(events or [])
        if arrays:
            self.append(arrays)

    def append(self, chunk: Mapping[str, Any]) -> None:
        """Append aligned arrays (one entry per update) for each metric."""
        if "step" not in chunk:
            raise ValueError("a history chunk needs a 'step' array")
        n = len(np.asarray(chunk["step"]))
        if n == 0:
            return
        before = len(self)
        names = sorted(set(self._chunks) | set(chunk))
        for name in names:
            if name in chunk:
                value = np.asarray(chunk[name]).reshape(n)
            else:  # a metric missing from this chunk: keep columns aligned
                value = np.full(n, np.nan)
            if name not in self._chunks:
                self._chunks[name] = [np.full(before, np.nan)] if before else []
            self._chunks[name].append(value)
        self._cache = None

    def _arrays(self) -> dict[str, np.ndarray]:
        if self._cache is None:
            self._cache = {
                k: np.concatenate(v) if v else np.zeros(0) for k, v in self._chunks.items()
            }
        return self._cache

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays())

    def __len__(self) -> int:
        steps = self._chunks.get("step")
        return int(sum(len(c) for c in steps)) if steps else 0

    def last(self) -> dict[str, float]:
        """The metrics of the latest recorded update (empty dict if none)."""
        if not len(self):
            return {}
        return {k: float(v[-1]) for k, v in self._arrays().items()}

    def truncate(self, num_steps: int) -> None:
        """Keep only rows with ``step < num_steps``."""
        keep = self._arrays().get("step", np.zeros(0)) < num_steps
        arrays = {k: v[keep] for k, v in self._arrays().items()}
        self._chunks = {k: [v] for k, v in arrays.items()}
        self._cache = None
        self.events = [e for e in self.events if e.get("step", 0) < num_steps]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable dict ``{"metrics": {name: list}, "events": [...]}``."""
        return {
            "metrics": {k: v.tolist() for k, v in self._arrays().items()},
            "events": [{k: float(v) for k, v in e.items()} for e in self.events],
        }

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` to ``path`` (non-finite values become ``null``)."""

        def clean(obj: Any) -> Any:
            if isinstance(obj, float) and not np.isfinite(obj):
                return None
            if isinstance(obj, list):
                return [clean(v) for v in obj]
            if isinstance(obj, dict):
                return {k: clean(v) for k, v in obj.items()}
            return obj

        with open(path, "w") as f:
            json.dump(clean(self.to_dict()), f)

    def to_dataframe(self) -> Any:
        """A ``pandas.DataFrame`` indexed by step (requires pandas).

        Examples:
            >>> df = History({"step": np.arange(2), "loss": np.ones(2)}).to_dataframe()
            >>> list(df.columns)
            ['loss']
        """
        import pandas as pd

        arrays = self._arrays()
        df = pd.DataFrame({k: v for k, v in arrays.items() if k != "step"})
        if "step" in arrays:
            df.index = pd.Index(arrays["step"].astype(np.int64), name="step")
        return df

    def __repr__(self) -> str:
        return f"History({len(self)} updates; {', '.join(k for k in self if k != 'step')})"
