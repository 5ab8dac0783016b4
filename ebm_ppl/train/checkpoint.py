"""Checkpoints in a non-executable format: ``.npz`` of pytree leaves plus JSON metadata.

Nothing is pickled: arrays are read with ``np.load(allow_pickle=False)`` and the structure of
each pytree comes from a *template* that the caller rebuilds (``fit`` re-runs its own
initialization), so loading a checkpoint never executes code from the file. The JSON holds the
step, the PRNG key, flags and the fingerprints ``fit`` compares before resuming.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CHECKPOINT_ARRAYS",
    "CHECKPOINT_META",
    "fingerprint",
    "has_checkpoint",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
]

CHECKPOINT_ARRAYS = "checkpoint.npz"
CHECKPOINT_META = "checkpoint.json"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------- fingerprints
def _update(h: Any, obj: Any, depth: int, seen: set[int]) -> None:
    """Feed a stable description of ``obj`` into the hash ``h`` (no memory addresses)."""
    put = lambda s: h.update(s.encode() if isinstance(s, str) else s)
    if depth > 24:
        put("<deep>")
        return
    if obj is None or isinstance(obj, (bool, int, float, complex, str)):
        put(f"{type(obj).__name__}:{obj!r};")
        return
    if isinstance(obj, bytes):
        put(b"bytes:" + obj)
        return
    if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        if isinstance(obj, jax.Array) and jnp.issubdtype(obj.dtype, jax.dtypes.prng_key):
            obj = jax.random.key_data(obj)
        arr = np.asarray(obj)
        put(f"array:{arr.dtype.str}:{arr.shape};")
        put(np.ascontiguousarray(arr).tobytes())
        return
    if id(obj) in seen:
        put("<cycle>")
        return
    seen = seen | {id(obj)}
    if isinstance(obj, types.ModuleType):
        put(f"module:{obj.__name__};")
        return
    if isinstance(obj, (list, tuple)):
        put(f"{type(obj).__qualname__}[")
        for item in obj:
            _update(h, item, depth + 1, seen)
        put("]")
        return
    if isinstance(obj, Mapping):
        put(f"{type(obj).__qualname__}{{")
        for key in sorted(obj, key=repr):
            put(repr(key) + "=")
            _update(h, obj[key], depth + 1, seen)
        put("}")
        return
    if isinstance(obj, functools.partial):
        put("partial(")
        _update(h, (obj.func, obj.args, obj.keywords), depth + 1, seen)
        put(")")
        return
    if isinstance(obj, types.MethodType):
        put("method(")
        _update(h, (obj.__func__, obj.__self__), depth + 1, seen)
        put(")")
        return
    if isinstance(obj, types.CodeType):
        put(f"code:{obj.co_name}:")
        put(obj.co_code)
        _update(h, obj.co_names, depth + 1, seen)
        _update(h, obj.co_consts, depth + 1, seen)
        return
    if isinstance(obj, types.FunctionType):
        # Bytecode, constants, defaults and closure cells: a function's behaviour, not its id.
        put(f"function:{obj.__module__}.{obj.__qualname__};")
        _update(h, obj.__code__, depth + 1, seen)
        _update(h, obj.__defaults__, depth + 1, seen)
        _update(h, obj.__kwdefaults__, depth + 1, seen)
        cells = []
        for cell in obj.__closure__ or ():
            try:
                cells.append(cell.cell_contents)
            except ValueError:  # empty cell
                cells.append("<empty>")
        _update(h, tuple(cells), depth + 1, seen)
        return
    if isinstance(obj, (types.BuiltinFunctionType, type)):
        put(f"{getattr(obj, '__module__', '')}.{obj.__qualname__};")
        return
    if dataclasses.is_dataclass(obj):
        put(f"dataclass:{type(obj).__module__}.{type(obj).__qualname__}(")
        for field in dataclasses.fields(obj):
            put(field.name + "=")
            _update(h, getattr(obj, field.name), depth + 1, seen)
        put(")")
        return
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    wrapped = getattr(obj, "__wrapped__", None)
    if wrapped is not None:
        put(f"wrapped:{name}(")
        _update(h, wrapped, depth + 1, seen)
        put(")")
        return
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        put(f"object:{name}(")
        _update(h, {k: v for k, v in state.items() if not k.startswith("__")}, depth + 1, seen)
        put(")")
        return
    put(f"opaque:{name};")


def fingerprint(obj: Any) -> str:
    """A stable hash of a configuration: values, arrays, dataclasses and functions' code.

    Functions are hashed by module, name, bytecode, constants, defaults and closure contents,
    never by memory address, so the same program gives the same fingerprint in a new process
    (same Python version), and a changed learning rate or energy does not.

    Args:
        obj: any object (nested containers, arrays, callables, optax transformations, ...).

    Returns:
        a 16-character hexadecimal string.

    Examples:
        >>> import optax
        >>> fingerprint(optax.adam(1e-3)) == fingerprint(optax.adam(1e-3))
        True
        >>> fingerprint(optax.adam(1e-3)) == fingerprint(optax.adam(2e-3))
        False
    """
    h = hashlib.sha256()
    _update(h, obj, 0, set())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------- save / load
def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_json(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray, jax.Array)):
        return np.asarray(obj).tolist()
    return obj


def has_checkpoint(directory: str | os.PathLike[str] | None) -> bool:
    """Whether ``directory`` holds a complete checkpoint.

    Examples:
        >>> has_checkpoint("/nonexistent/dir")
        False
    """
    if directory is None:
        return False
    path = Path(directory)
    return (path / CHECKPOINT_META).is_file() and (path / CHECKPOINT_ARRAYS).is_file()


def read_metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of the checkpoint in ``directory``.

    Raises:
        ValueError: if ``directory`` holds no checkpoint.

    Examples:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> save_checkpoint(d, {"params": {"w": np.ones(2)}}, {"step": 3})
        >>> read_metadata(d)["step"]
        3
    """
    if not has_checkpoint(directory):
        raise ValueError(f"checkpoint_dir {str(directory)!r} holds no checkpoint")
    with open(Path(directory) / CHECKPOINT_META) as f:
        return json.load(f)


def save_checkpoint(
    directory: str | os.PathLike[str],
    trees: Mapping[str, Any],
    metadata: Mapping[str, Any],
    arrays: Mapping[str, Any] | None = None,
) -> None:
    """Write named pytrees and metadata to ``directory`` (atomically replacing an older one).

    Args:
        directory: folder, created if needed.
        trees: name -> pytree of arrays (PRNG key leaves are stored as their key data).
        metadata: JSON-serializable dict (numpy scalars and small arrays are converted).
        arrays: extra name -> array entries stored as they are (e.g. history).

    Examples:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> save_checkpoint(d, {"params": {"w": np.arange(3.0)}}, {"step": 1})
        >>> trees, meta = load_checkpoint(d, {"params": {"w": np.zeros(3)}})
        >>> trees["params"]["w"].tolist(), meta["step"]
        ([0.0, 1.0, 2.0], 1)
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    store: dict[str, np.ndarray] = {}
    structure: dict[str, Any] = {}
    for name, tree in trees.items():
        leaves, treedef = jax.tree.flatten(tree)
        info = []
        for i, leaf in enumerate(leaves):
            key_impl = None
            if _is_key(leaf):
                key_impl = str(jax.random.key_impl(leaf))
                leaf = jax.random.key_data(leaf)
            arr = np.asarray(leaf)
            store[f"{name}/{i}"] = arr
            info.append({"shape": list(arr.shape), "dtype": arr.dtype.str, "key_impl": key_impl})
        structure[name] = {"treedef": str(treedef), "leaves": info}
    for name, value in (arrays or {}).items():
        store[f"extra/{name}"] = np.asarray(value)
    meta = {
        "format_version": FORMAT_VERSION,
        **_to_json(dict(metadata)),
        "structure": structure,
        "extra": sorted(arrays or {}),
    }
    store["__step__"] = np.asarray(meta.get("step", -1), dtype=np.int64)
    # Write to temporary files and rename: a crash mid-write leaves the previous checkpoint.
    tmp_arrays = path / (CHECKPOINT_ARRAYS + ".tmp.npz")
    with open(tmp_arrays, "wb") as f:
        # numpy's stub types **kwds as savez's ``allow_pickle``; the call is correct.
        np.savez(f, **store)  # type: ignore[arg-type]
    tmp_meta = path / (CHECKPOINT_META + ".tmp")
    with open(tmp_meta, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    os.replace(tmp_arrays, path / CHECKPOINT_ARRAYS)
    os.replace(tmp_meta, path / CHECKPOINT_META)


def load_checkpoint(
    directory: str | os.PathLike[str], templates: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the checkpoint in ``directory`` into the structure of ``templates``.

    Args:
        directory: folder written by :func:`save_checkpoint`.
        templates: name -> pytree with the expected structure, shapes and dtypes.

    Returns:
        ``(trees, metadata)``; ``metadata["extra_arrays"]`` holds the extra arrays.

    Raises:
        ValueError: naming ``checkpoint_dir`` when the files are missing, inconsistent, or the
            stored structure, shapes or dtypes differ from the templates.

    Examples:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> save_checkpoint(d, {"p": (np.ones(2),)}, {"step": 0})
        >>> load_checkpoint(d, {"p": (np.ones(3),)})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: checkpoint_dir ... leaf 0 of 'p' has shape (2,), expected (3,)
    """
    meta = read_metadata(directory)
    with np.load(Path(directory) / CHECKPOINT_ARRAYS, allow_pickle=False) as npz:
        store = {k: npz[k] for k in npz.files}
    where = f"checkpoint_dir {str(directory)!r}"
    if int(store.get("__step__", -2)) != int(meta.get("step", -1)):
        raise ValueError(f"{where}: arrays and metadata disagree on the step (interrupted write?)")
    trees: dict[str, Any] = {}
    for name, template in templates.items():
        if name not in meta["structure"]:
            raise ValueError(f"{where} has no {name!r}")
        stored = meta["structure"][name]
        leaves, treedef = jax.tree.flatten(template)
        if stored["treedef"] != str(treedef):
            raise ValueError(
                f"{where}: the structure of {name!r} differs from this run's "
                f"({stored['treedef']} vs {treedef})"
            )
        out = []
        for i, (leaf, info) in enumerate(zip(leaves, stored["leaves"], strict=True)):
            arr = store[f"{name}/{i}"]
            if info["key_impl"] is not None:
                if not _is_key(leaf):
                    raise ValueError(
                        f"{where}: leaf {i} of {name!r} is a PRNG key, expected an array"
                    )
                out.append(jax.random.wrap_key_data(jnp.asarray(arr), impl=info["key_impl"]))
                continue
            expected = np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
            if tuple(arr.shape) != tuple(expected.shape):
                raise ValueError(
                    f"{where}: leaf {i} of {name!r} has shape {tuple(arr.shape)}, "
                    f"expected {tuple(expected.shape)}"
                )
            if arr.dtype != expected.dtype:
                raise ValueError(
                    f"{where}: leaf {i} of {name!r} has dtype {arr.dtype}, "
                    f"expected {expected.dtype}"
                )
            out.append(jnp.asarray(arr))
        trees[name] = jax.tree.unflatten(treedef, out)
    meta["extra_arrays"] = {
        k[len("extra/") :]: v for k, v in store.items() if k.startswith("extra/")
    }
    return trees, meta
