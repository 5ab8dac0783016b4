"""``bind_data``: training or evaluation data bound to the state and observed sites of a model.

Used by ``fit``, ``log_likelihood`` and the CLI alike, so every entry point reads data the same
way: an array for the one site whose shape matches, or a dict site -> array, each with a leading
example axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from ebm_ppl.energy.model import EnergyModel

__all__ = ["bind_data"]


def bind_data(model: EnergyModel, data: Any, data_site: str | None = None) -> dict[str, np.ndarray]:
    """Bind training data to sites of an energy model, checking shapes and values.

    Args:
        model: the :class:`~ebm_ppl.EnergyModel`.
        data: an array ``(num_examples, *site_shape)`` or a dict site -> such arrays (state sites
            are the data the model should generate; observed sites are conditioning inputs).
        data_site: site for an array ``data``; by default the only state or observed site whose
            shape matches ``data.shape[1:]``.

    Returns:
        dict site -> float array with a leading example axis.

    Raises:
        ValueError: for NaN/inf values, values outside a site's support (a discrete site's
            values, a continuous site's constraint), a trailing shape that does not match the
            site, unknown sites, different numbers of rows, or an ambiguous site; the message
            names the site.
        TypeError: for data that is not an array or a dict, or not real or integer numbers.

    Examples:
        >>> import numpyro, jax.numpy as jnp, ebm_ppl as ebm
        >>> def m():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", jnp.sum(x**2))
        >>> bind_data(ebm.EnergyModel(m), np.zeros((5, 2)))["x"].shape
        (5, 2)
        >>> def ising():
        ...     s = numpyro.sample("s", ebm.Spins(3))
        ...     ebm.energy("E", -jnp.sum(s[1:] * s[:-1]))
        >>> bind_data(ebm.EnergyModel(ising), np.ones((4, 3)) - 1.0)  # 0/1 data for spins
        Traceback (most recent call last):
        ...
        ValueError: data['s'] must hold values in {-1, 1} (the support of a binary site), got e.g. [0.0, 0.0, 0.0]
    """
    sites = model.sites
    bindable = [n for n, s in sites.items() if s.kind in ("state", "data")]
    if isinstance(data, Mapping):
        if data_site is not None:
            raise ValueError("data_site applies to array data only; data is already a dict")
        out = {}
        for name, value in data.items():
            if name not in bindable:
                raise ValueError(
                    f"data has site {name!r}, which is not a state or observed site of the "
                    f"model; expected some of {bindable}"
                )
            out[name] = value
    else:
        try:
            arr = np.asarray(data)
        except Exception as err:
            raise TypeError(
                f"data must be an array or a dict site -> array, got {type(data).__name__}"
            ) from err
        if arr.dtype == object or arr.ndim == 0:
            raise TypeError(
                f"data must be an array or a dict site -> array, got {type(data).__name__}"
            )
        if data_site is not None:
            if data_site not in bindable:
                raise ValueError(f"data_site must be one of {bindable}, got {data_site!r}")
            name = data_site
        else:
            matches = [n for n in bindable if sites[n].shape == tuple(arr.shape[1:])]
            if len(matches) > 1:
                raise ValueError(
                    f"data could bind to sites {matches} (all of shape {tuple(arr.shape[1:])}); "
                    "pass data_site= to choose one"
                )
            if not matches:
                shapes = {n: sites[n].shape for n in bindable}
                raise ValueError(
                    f"data has trailing shape {tuple(arr.shape[1:])}, which matches no site of "
                    f"the model (site shapes: {shapes}); each row of data is one value of a site"
                )
            name = matches[0]
        out = {name: arr}
    if not out:
        raise ValueError("data is an empty dict")
    bound: dict[str, np.ndarray] = {}
    num = None
    for name, value in out.items():
        arr = np.asarray(value)
        if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(
                f"data for site {name!r} must be real or integer numbers, got dtype {arr.dtype}"
            )
        arr = arr.astype(jnp.result_type(float))
        shape = sites[name].shape
        if arr.ndim != len(shape) + 1 or tuple(arr.shape[1:]) != shape:
            raise ValueError(
                f"data for site {name!r} has shape {arr.shape}; expected (num_examples, *{shape})"
            )
        if not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)).ravel()
            raise ValueError(
                f"data for site {name!r} contains NaN or inf (rows {bad[:5].tolist()}"
                f"{'...' if len(bad) > 5 else ''})"
            )
        if num is not None and len(arr) != num:
            raise ValueError(
                f"data sites have different numbers of rows: {num} and {len(arr)} ({name!r})"
            )
        # Against the site plan: values inside a discrete support (0/1 data for a Spins site,
        # 3.0 for Bits) and inside a continuous site's constraint.
        model.plan.validate_values({name: arr}, argument="data", batch_ndim=1)
        num = len(arr)
        bound[name] = arr
    return bound
