"""``save``/``load``: trained parameters and fit results in one checksummed file, never pickled.

The file is the container of :mod:`ebm_ppl.train.checkpoint` (JSON header, raw arrays, SHA-256,
end marker): a parameter file (``kind = "params"``, the same file ``ebm-ppl fit`` writes as
``params.ebmparams`` and ``ebm-ppl sample --params`` reads) or a fit result
(``kind = "fit_result"``: parameters, the objective's state, the history and the flags). The
model's fingerprint (:func:`model_fingerprint`: its code, arguments and closures) is stored
with them and compared on load, so parameters are not silently read into another model.

Containers (dicts, lists, tuples, ``None`` and the named tuples of ebm_ppl, such as the
objectives' states) are rebuilt from a JSON description of their structure; anything else
(equinox or flax modules) is rebuilt from a template, by default the model's own
``EnergyModel.init_params``: pass ``model=``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.train.checkpoint import (
    _encode,
    _Invalid,
    _read_file,
    _restore_tree,
    _untemplated,
    _write_container,
    _write_durably,
    fingerprint,
)
from ebm_ppl.train.fit import FitResult
from ebm_ppl.train.history import History

__all__ = ["load", "model_fingerprint", "save"]

_KINDS = ("params", "fit_result")
#: modules whose named tuples a file may name (our own state types; nothing else is imported)
_TRUSTED_PREFIX = "ebm_ppl."


def model_fingerprint(
    model: Callable[..., Any] | EnergyModel,
    model_args: Sequence[Any] = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """The fingerprint of a model with its arguments, as :func:`~ebm_ppl.fit` records it.

    Args:
        model: a NumPyro EBM program, or an :class:`~ebm_ppl.EnergyModel` (arguments bound).
        model_args, model_kwargs: the arguments the program is called with.

    Returns:
        a 16-character hexadecimal string: equal for the same code and arguments, in any
        process.

    Examples:
        >>> from ebm_ppl.models import rbm
        >>> model_fingerprint(rbm.model, (6, 2)) == model_fingerprint(rbm.model, (6, 2))
        True
        >>> model_fingerprint(rbm.model, (6, 2)) == model_fingerprint(rbm.model, (6, 3))
        False
    """
    if isinstance(model, EnergyModel):
        if model_args or model_kwargs:
            raise ValueError(
                "model is an EnergyModel (arguments bound); model_args/model_kwargs must be empty"
            )
        return fingerprint((model.model, model.args, model.kwargs))
    if not callable(model):
        raise TypeError(f"model must be a NumPyro model or an EnergyModel, got {model!r}")
    return fingerprint((model, tuple(model_args), dict(model_kwargs or {})))


# ---------------------------------------------------------------------------------- structure
def _describe(tree: Any) -> Any:
    """JSON description of the containers of ``tree``, leaves in ``jax.tree`` flatten order."""
    if tree is None:
        return {"t": "none"}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        cls = type(tree)
        return {
            "t": "namedtuple",
            "cls": f"{cls.__module__}:{cls.__qualname__}",
            "fields": list(tree._fields),
            "c": [_describe(v) for v in tree],
        }
    if isinstance(tree, (list, tuple)):
        return {"t": type(tree).__name__, "c": [_describe(v) for v in tree]}
    if type(tree) is dict and all(isinstance(k, str) for k in tree):
        keys = sorted(tree)  # jax flattens dicts in sorted key order
        return {"t": "dict", "k": keys, "c": [_describe(tree[k]) for k in keys]}
    if isinstance(tree, (jax.Array, np.ndarray, np.generic, float, int, bool)):
        return {"t": "leaf"}
    return {"t": "opaque", "type": type(tree).__qualname__, "n": len(jax.tree.leaves(tree))}


def _named_tuple(name: str, fields: list[str]) -> Any:
    """The named-tuple class ``module:qualname`` if it is one of ebm_ppl's, else ``None``."""
    module, _, qualname = name.partition(":")
    if not module.startswith(_TRUSTED_PREFIX):
        return None
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    if (
        isinstance(obj, type)
        and issubclass(obj, tuple)
        and list(getattr(obj, "_fields", ())) == fields
    ):
        return obj
    return None


def _rebuild(where: str, name: str, desc: Any, leaves: list[Any]) -> Any:
    """The tree ``desc`` describes, consuming ``leaves`` in order."""
    kind = desc["t"]
    if kind == "none":
        return None
    if kind == "leaf":
        return leaves.pop(0)
    if kind == "opaque":
        raise ValueError(
            f"{where}: {name} holds a {desc['type']} (e.g. an equinox module); pass model= "
            "(its init_params give the structure) or template= to rebuild it"
        )
    children = [_rebuild(where, name, c, leaves) for c in desc["c"]]
    if kind == "dict":
        return dict(zip(desc["k"], children, strict=True))
    if kind == "list":
        return children
    if kind == "tuple":
        return tuple(children)
    if kind == "namedtuple":
        cls = _named_tuple(desc["cls"], desc["fields"])
        if cls is None:  # not ours: the fields as a dict, never an import of foreign code
            return dict(zip(desc["fields"], children, strict=True))
        return cls(*children)
    raise ValueError(f"{where}: unknown structure node {kind!r} in {name}")


def _stored_leaves(header: Mapping[str, Any], arrays: Mapping[str, Any], name: str) -> list[Any]:
    out = []
    for i, info in enumerate(header["trees"][name]["leaves"]):
        arr = jnp.asarray(arrays[f"{name}/{i}"])
        if info.get("key_impl") is not None:
            arr = jax.random.wrap_key_data(arr, impl=info["key_impl"])
        out.append(arr)
    return out


# ---------------------------------------------------------------------------------- save / load
def save(
    path: str | os.PathLike[str],
    params_or_result: Any,
    *,
    model: Callable[..., Any] | EnergyModel | None = None,
    model_args: Sequence[Any] = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Save parameters or a :class:`~ebm_ppl.FitResult` to one file, atomically.

    Parameters (a dict site -> array, or any pytree with equinox/flax module parameters) are
    written as a parameter file, the format of ``ebm-ppl fit``'s ``params.ebmparams``; a
    ``FitResult`` also keeps the objective's state (persistent chains), the history and the
    flags. Arrays are stored bit for bit; nothing is pickled.

    Args:
        path: the file (conventionally ``*.ebmparams`` or ``*.ebmfit``); its folder must exist.
        params_or_result: parameters or a ``FitResult``.
        model: the model the parameters belong to (recommended): its fingerprint is stored and
            checked by :func:`load`. A ``FitResult`` from :func:`~ebm_ppl.fit` carries its
            model's fingerprint already.
        model_args, model_kwargs: the model's arguments.

    Returns:
        the path written.

    Raises:
        ValueError: a missing folder, or a ``FitResult`` whose recorded model differs from
            ``model``.
        TypeError: leaves that are not numeric arrays.

    Examples:
        >>> import tempfile, jax, ebm_ppl as ebm
        >>> from pathlib import Path
        >>> from ebm_ppl.models import rbm
        >>> params = ebm.EnergyModel(rbm.model, 6, 2).init_params(jax.random.PRNGKey(0))
        >>> path = ebm.save(Path(tempfile.mkdtemp()) / "rbm.ebmparams", params,
        ...                 model=rbm.model, model_args=(6, 2))
        >>> ebm.load(path, model=rbm.model, model_args=(6, 2))["W"].shape
        (6, 2)
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"path {str(path)!r}: the folder {str(path.parent)!r} does not exist")
    fp = None if model is None else model_fingerprint(model, model_args, model_kwargs)
    if isinstance(params_or_result, FitResult):
        result = params_or_result
        recorded = result.flags.get("model_fingerprint")
        if fp is not None and recorded is not None and fp != recorded:
            raise ValueError(
                f"the fit result was trained on another model (fingerprint {recorded}) than "
                f"model= ({fp})"
            )
        fp = fp or recorded
        trees = {"params": result.params, "obj_state": result.obj_state}
        history = result.history
        arrays = {f"history/{k}": np.asarray(v) for k, v in history.items()}
        metadata = {
            "fingerprint": fp,
            "structure": {k: _describe(v) for k, v in trees.items()},
            "flags": dict(result.flags),
            "events": list(history.events),
            "history": list(history),
        }
        kind = "fit_result"
    else:
        trees = {"params": params_or_result}
        arrays = None
        metadata = {"fingerprint": fp, "structure": {"params": _describe(params_or_result)}}
        kind = "params"
    head, payload = _encode(kind, trees, metadata, arrays)
    _write_durably(path, lambda f: _write_container(f, head, payload))
    return path


def load(
    path: str | os.PathLike[str],
    model: Callable[..., Any] | EnergyModel | None = None,
    *,
    model_args: Sequence[Any] = (),
    model_kwargs: Mapping[str, Any] | None = None,
    template: Any = None,
) -> Any:
    """Load what :func:`save` (or ``ebm-ppl fit``) wrote: parameters or a ``FitResult``.

    With ``model=``, the fingerprint stored in the file must be the model's (same code, same
    arguments), and the parameters are rebuilt in the structure of the model's own
    ``init_params`` (so equinox/flax modules come back as modules) and validated against its
    site plan. Without it, dicts, lists, tuples and ebm_ppl's named tuples are rebuilt from the
    file; module parameters then need ``template=``.

    Args:
        path: the file.
        model: the model the parameters are for (checked by fingerprint).
        model_args, model_kwargs: its arguments.
        template: a params pytree with the expected structure, shapes and dtypes (overrides
            the model's ``init_params``).

    Returns:
        the parameters, or a :class:`~ebm_ppl.FitResult` for a saved fit result.

    Raises:
        ValueError: naming the file when it is missing, not of this format, damaged
            (truncated, altered: the checksum fails), written for another model, or does not
            match the model's parameters.

    Examples:
        >>> import tempfile, jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> from pathlib import Path
        >>> from ebm_ppl.models import rbm
        >>> path = ebm.save(Path(tempfile.mkdtemp()) / "p.ebmparams", {"W": jnp.ones((6, 3)),
        ...                 "b": jnp.zeros(6), "c": jnp.zeros(3)}, model=rbm.model,
        ...                 model_args=(6, 3))
        >>> ebm.load(path, model=rbm.model, model_args=(6, 2))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: file '.../p.ebmparams' was saved for another model (fingerprint ...
    """
    path = Path(path)
    where = f"file {str(path)!r}"
    if not path.is_file():
        raise ValueError(f"{where} {'is not a file' if path.exists() else 'does not exist'}")
    try:
        header, arrays = _read_file(path)
    except _Invalid as err:
        raise ValueError(f"{where} is not a readable ebm_ppl file: {err}") from None
    kind = header.get("kind")
    if kind not in _KINDS:
        raise ValueError(
            f"{where} holds a {kind}, not parameters or a fit result (a checkpoint folder is "
            "read by ebm_ppl.train.load_checkpoint)"
        )
    meta = header.get("metadata", {})
    em = None
    if model is not None:
        em = (
            model
            if isinstance(model, EnergyModel)
            else EnergyModel(model, *model_args, **dict(model_kwargs or {}))
        )
        expected = model_fingerprint(model, model_args, model_kwargs)
        stored = meta.get("fingerprint")
        if stored is not None and stored != expected:
            raise ValueError(
                f"{where} was saved for another model (fingerprint {stored}, this model and "
                f"its arguments give {expected})"
            )
        if template is None:
            template = em.init_params(jax.random.PRNGKey(0))
    structure = meta.get("structure", {})
    if template is not None:
        params = _restore_tree(where, "params", header["trees"]["params"], arrays, template)
    elif "params" in structure:
        params = _rebuild(
            where, "params", structure["params"], _stored_leaves(header, arrays, "params")
        )
    else:  # a parameter file without a description (older writers): dicts of arrays
        params = _untemplated(where, header["trees"]["params"], arrays)
    if em is not None:
        params = em.validate_params(params, argument=f"the parameters in {where}")
    if kind == "params":
        return params
    obj_state = _rebuild(
        where, "obj_state", structure["obj_state"], _stored_leaves(header, arrays, "obj_state")
    )
    hist = {name: arrays[f"extra/history/{name}"] for name in meta.get("history", [])}
    history = History(hist if hist else None, events=meta.get("events", []))
    return FitResult(params, obj_state, history, dict(meta.get("flags", {})))
