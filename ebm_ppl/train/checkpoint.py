"""Checkpoints and parameter files: one self-describing, checksummed file each, never pickled.

A checkpoint is one file, ``ckpt-00001200.ebmckpt`` for the state after update 1200, in a small
container format of our own (little endian)::

    8 bytes   magic  b"\\x89EBMPPL\\n"
    8 bytes   length H of the header (unsigned 64-bit)
    H bytes   header: UTF-8 JSON (kind, step, metadata, pytree layouts, array table)
    padding   zero bytes up to a multiple of 64
    payload   the raw bytes of every array, each at a 64-byte aligned offset
    32 bytes  SHA-256 of everything above
    8 bytes   end marker b"\\nEBMEND\\n"

Reading one never executes anything from the file: the header is JSON, arrays are raw bytes with
a dtype name and a shape, and the structure of each pytree comes from a *template* that the
caller rebuilds (``fit`` re-runs its own initialization); only the paths of the leaves are
stored, so equinox/flax module parameters (``numpyro.contrib.module``) round-trip like dicts.
A truncated, zero-length, byte-flipped or spliced file fails the checksum or the size checks, and
a file whose name and content disagree on the step (a rewound or renamed copy) is refused.

Writes are atomic and durable: a temporary file in the same folder is written, flushed and
``fsync``-ed, renamed into place with ``os.replace`` and the folder ``fsync``-ed, so a crash
(even ``kill -9`` or a power cut) leaves either the previous set of checkpoints or the new one.
The newest ``keep`` checkpoints are kept. On resume the newest one that verifies is used; any that
fail are named in a :class:`CheckpointWarning` and left in place (never deleted).

:func:`save_params`/:func:`load_params` write and read standalone parameter files in the same
format (``kind = "params"``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import struct
import types
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CHECKPOINT_SUFFIX",
    "Checkpoint",
    "CheckpointWarning",
    "checkpoint_name",
    "fingerprint",
    "has_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_params",
    "prepare_directory",
    "read_checkpoint",
    "read_metadata",
    "remove_temporaries",
    "save_checkpoint",
    "save_params",
    "write_atomic",
]

CHECKPOINT_SUFFIX = ".ebmckpt"
FORMAT_VERSION = 2
_MAGIC = b"\x89EBMPPL\n"
_END = b"\nEBMEND\n"
_ALIGN = 64
_DIGEST = 32
_NAME_RE = re.compile(r"^ckpt-(\d+)\.ebmckpt$")
_TMP_MARK = ".tmp."
#: file names of the format before one-file checkpoints (refused, never overwritten).
_LEGACY = ("checkpoint.npz", "checkpoint.json")


class CheckpointWarning(UserWarning):
    """A checkpoint file failed verification and was skipped (it is left in place).

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("error", CheckpointWarning)  # make skipping fatal
        ...     issubclass(CheckpointWarning, UserWarning)
        True
    """


# ---------------------------------------------------------------------------------- fingerprints
#: Top-level packages whose classes' methods a strict fingerprint does not hash (their code is
#: fixed for the life of a process; a user's class can be redefined in a notebook).
_LIBRARY_PACKAGES = frozenset(
    (
        "builtins",
        "jax",
        "jaxlib",
        "numpy",
        "scipy",
        "numpyro",
        "optax",
        "ebm_ppl",
        "equinox",
        "flax",
    )
)


class _Strict:
    """A hash that refuses what a fingerprint cannot describe (see ``fingerprint(strict=True)``)."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def _class_code(cls: type) -> tuple[Any, ...]:
    """Methods and plain class attributes of ``cls`` and its bases outside the libraries."""
    out = []
    for klass in cls.__mro__:
        if (getattr(klass, "__module__", "") or "").split(".")[0] in _LIBRARY_PACKAGES:
            continue
        for name, value in sorted(vars(klass).items()):
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                value = (value.fget, value.fset)
            # methods whatever their name (``__call__`` is behaviour too); plain values unless
            # they are Python's own bookkeeping (``__module__``, ``__doc__``, ...)
            method = isinstance(value, (types.FunctionType, tuple))
            plain = value is None or isinstance(value, (bool, int, float, str))
            if method or (plain and not name.startswith("__")):
                out.append((klass.__qualname__, name, value))
    return tuple(out)


def _update(h: Any, obj: Any, depth: int, seen: set[int]) -> None:
    """Feed a stable description of ``obj`` into the hash ``h`` (no memory addresses)."""
    put = lambda s: h.update(s.encode() if isinstance(s, str) else s)
    strict = isinstance(h, _Strict)
    if depth > 24:
        if strict:
            raise TypeError("configuration nested too deeply to fingerprint")
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
    if obj is Ellipsis or obj is NotImplemented:
        # singletons (``x[..., 0]`` puts Ellipsis among a function's constants): the bytes a
        # non-strict fingerprint always gave them, so saved fingerprints stay valid
        put(f"opaque:builtins.{type(obj).__name__};")
        return
    if id(obj) in seen:
        put("<cycle>")
        return
    seen = seen | {id(obj)}
    if strict and isinstance(obj, slice):
        put("slice(")
        _update(h, (obj.start, obj.stop, obj.step), depth + 1, seen)
        put(")")
        return
    if strict and isinstance(obj, (set, frozenset)):
        # ``x in {"a", "b"}`` puts a frozenset among a function's constants
        put(f"{type(obj).__name__}{{")
        for item in sorted(obj, key=repr):
            _update(h, item, depth + 1, seen)
        put("}")
        return
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
    if strict and not isinstance(obj, type):
        _update(h, _class_code(type(obj)), depth + 1, seen)
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
    if strict:
        raise TypeError(f"cannot fingerprint an object of type {name}")
    put(f"opaque:{name};")


def fingerprint(obj: Any, *, strict: bool = False) -> str:
    """A stable hash of a configuration: values, arrays, dataclasses and functions' code.

    Functions are hashed by module, name, bytecode, constants, defaults and closure contents,
    never by memory address, so the same program gives the same fingerprint in a new process
    (same Python version), and a changed learning rate or energy does not.

    Args:
        obj: any object (nested containers, arrays, callables, optax transformations, ...).
        strict: for deciding that two configurations compute the same thing (``fit`` reuses a
            compiled program on it): the methods of the objects' classes (outside JAX, NumPy,
            NumPyro, optax, Equinox, Flax and ebm_ppl) are hashed too, and an object it cannot
            describe (no ``__dict__``, fields or ``__wrapped__``; nesting deeper than 24)
            raises ``TypeError`` instead of being hashed by its type name.

    Returns:
        a 16-character hexadecimal string.

    Raises:
        TypeError: with ``strict=True``, an object it cannot describe.

    Examples:
        >>> import optax
        >>> fingerprint(optax.adam(1e-3)) == fingerprint(optax.adam(1e-3))
        True
        >>> fingerprint(optax.adam(1e-3)) == fingerprint(optax.adam(2e-3))
        False
    """
    h: Any = _Strict() if strict else hashlib.sha256()
    _update(h, obj, 0, set())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------- durable writes
def _fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where folders cannot be opened)."""
    if os.name == "nt":  # pragma: no cover - Windows has no directory fsync
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, write: Any) -> None:
    """Write ``path`` via a temporary file in its folder: flush, fsync, replace, fsync folder."""
    tmp = path.with_name(f"{path.name}{_TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Replace ``path`` with ``data`` atomically and durably (temporary file, fsync, rename).

    A reader (or a process resumed after a crash) sees the old content or the new one, never a
    partial file. Text is written as UTF-8.

    Args:
        path: the file to write; its folder must exist.
        data: bytes, or a string.

    Returns:
        the path written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> p = write_atomic(Path(tempfile.mkdtemp()) / "command.json", '{"steps": 10}')
        >>> p.read_text()
        '{"steps": 10}'
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else bytes(data)
    _write_durably(path, lambda f: f.write(payload))
    return path


def prepare_directory(directory: str | os.PathLike[str], *, name: str = "checkpoint_dir") -> Path:
    """Create ``directory`` if needed and check that files can be written in it.

    Meant to run before any expensive work, so that a path that is a file, lies under a file, or
    is read-only fails at once instead of when the first checkpoint is written.

    Args:
        directory: the folder.
        name: the argument name used in error messages.

    Returns:
        the folder as a :class:`~pathlib.Path`.

    Raises:
        ValueError: naming ``name`` and the path when the folder cannot be created or written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> d = Path(tempfile.mkdtemp())
        >>> prepare_directory(d / "run").is_dir()
        True
        >>> (d / "file").write_text("x")
        1
        >>> prepare_directory(d / "file" / "run")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: checkpoint_dir '.../file/run' cannot be created: '.../file' is a file...
    """
    path = Path(directory)
    where = f"{name} {str(path)!r}"
    if path.exists() and not path.is_dir():
        raise ValueError(f"{where} is a file, not a folder; pass a folder for {name}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"{where} cannot be created: {str(parent)!r} is a file, not a folder"
                )
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{where} cannot be created: {err.strerror or err}") from None
    probe = path / f".write-probe{_TMP_MARK}{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"probe")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as err:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
        raise ValueError(f"{where} is not writable: {err.strerror or err}") from None
    return path


def remove_temporaries(directory: str | os.PathLike[str]) -> list[str]:
    """Remove the temporary files that interrupted writes left in ``directory``.

    Only files named like this module's temporaries (``ckpt-*.ebmckpt.tmp.PID`` and write
    probes) are removed; call it when no other process writes to the folder.

    Returns:
        the names removed.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / "ckpt-00000010.ebmckpt.tmp.123").write_bytes(b"partial")
        >>> remove_temporaries(d)
        ['ckpt-00000010.ebmckpt.tmp.123']
    """
    removed: list[str] = []
    path = Path(directory)
    if not path.is_dir():
        return removed
    for entry in sorted(os.listdir(path)):
        base, mark, pid = entry.rpartition(_TMP_MARK)
        if not mark or not pid.isdigit():
            continue
        if _NAME_RE.match(base) or base == ".write-probe":
            (path / entry).unlink(missing_ok=True)
            removed.append(entry)
    return removed


# ---------------------------------------------------------------------------------- the container
class _Invalid(Exception):
    """A file that is not a valid container; the message is the reason."""


def _to_json(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray, jax.Array)):
        return np.asarray(obj).tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _finite(arr: np.ndarray) -> bool:
    if not jnp.issubdtype(arr.dtype, jnp.inexact):
        return True
    if arr.dtype.kind not in "fc":  # bfloat16 and other ml_dtypes
        arr = arr.astype(np.float32)
    return bool(np.all(np.isfinite(arr)))


def _path_entry(entry: Any) -> list[Any]:
    """One step of a pytree path as JSON: ``["key", k]``, ``["attr", name]`` or ``["index", i]``."""
    if isinstance(entry, jax.tree_util.DictKey):
        key = entry.key
        return ["key", key if isinstance(key, (str, int)) else repr(key)]
    if isinstance(entry, jax.tree_util.GetAttrKey):
        return ["attr", entry.name]
    if isinstance(entry, jax.tree_util.SequenceKey):
        return ["index", entry.idx]
    if isinstance(entry, jax.tree_util.FlattenedIndexKey):
        return ["index", entry.key]
    return ["other", str(entry)]


def _leaf_paths(tree: Any) -> tuple[list[list[list[Any]]], list[Any], Any]:
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [[_path_entry(e) for e in path] for path, _ in with_path]
    return paths, [leaf for _, leaf in with_path], treedef


def _path_str(path: list[list[Any]]) -> str:
    out = []
    for kind, value in path:
        out.append(f"[{value!r}]" if kind in ("key", "index") else f".{value}")
    return "".join(out) or "<root>"


def _host_array(leaf: Any) -> np.ndarray:
    arr = np.asarray(leaf)
    if arr.dtype == object or not (jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == bool):
        raise TypeError(f"cannot store an array of dtype {arr.dtype} (numbers and bools only)")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    # Not np.ascontiguousarray, which turns a 0-d array into a 1-d one.
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _encode(
    kind: str,
    trees: Mapping[str, Any],
    metadata: Mapping[str, Any],
    arrays: Mapping[str, Any] | None,
) -> tuple[bytes, list[np.ndarray]]:
    """The header bytes (with padding) and the arrays of the payload, in order."""
    table: list[dict[str, Any]] = []
    payload: list[np.ndarray] = []
    offset = 0

    def add(name: str, arr: np.ndarray) -> None:
        nonlocal offset
        table.append(
            {
                "name": name,
                "dtype": arr.dtype.name,
                "shape": list(arr.shape),
                "offset": offset,
                "nbytes": arr.nbytes,
            }
        )
        payload.append(arr)
        offset += -(-arr.nbytes // _ALIGN) * _ALIGN

    layouts: dict[str, Any] = {}
    for name, tree in trees.items():
        paths, leaves, treedef = _leaf_paths(tree)
        info = []
        for i, (path, leaf) in enumerate(zip(paths, leaves, strict=True)):
            key_impl = None
            if _is_key(leaf):
                key_impl = str(jax.random.key_impl(leaf))
                leaf = jax.random.key_data(leaf)
            add(f"{name}/{i}", _host_array(leaf))
            info.append({"path": path, "key_impl": key_impl})
        layouts[name] = {"treedef": str(treedef), "leaves": info}
    for name, value in (arrays or {}).items():
        add(f"extra/{name}", _host_array(value))
    header = {
        "format": "ebm_ppl",
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "metadata": _to_json(dict(metadata)),
        "trees": layouts,
        "extra": list(arrays or {}),
        "arrays": table,
        "payload_nbytes": offset,
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head = _MAGIC + struct.pack("<Q", len(text)) + text
    head += b"\0" * (-len(head) % _ALIGN)
    return head, payload


def _write_container(f: Any, head: bytes, payload: list[np.ndarray]) -> None:
    h = hashlib.sha256()
    for chunk in _chunks(head, payload):
        h.update(chunk)
        f.write(chunk)
    f.write(h.digest())
    f.write(_END)


def _chunks(head: bytes, payload: list[np.ndarray]) -> Iterable[Any]:
    yield head
    for arr in payload:
        data = arr.reshape(-1).view(np.uint8).data if arr.nbytes else b""
        yield data
        pad = -arr.nbytes % _ALIGN
        if pad:
            yield b"\0" * pad


def _decode(raw: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Verify and parse a container; raises :class:`_Invalid` with the reason."""
    size = len(raw)
    if size == 0:
        raise _Invalid("the file is empty (zero bytes)")
    if raw[: len(_MAGIC)] != _MAGIC[:size]:
        raise _Invalid("not an ebm_ppl checkpoint or parameter file (unknown leading bytes)")
    if size < len(_MAGIC) + 8 + _DIGEST + len(_END) or raw[-len(_END) :] != _END:
        raise _Invalid(f"truncated or incomplete ({size} bytes, no end marker)")
    body = raw[: -(_DIGEST + len(_END))]
    digest = raw[len(body) : len(body) + _DIGEST]
    if hashlib.sha256(body).digest() != digest:
        raise _Invalid("checksum mismatch: the content was altered, spliced or partly written")
    (length,) = struct.unpack("<Q", body[len(_MAGIC) : len(_MAGIC) + 8])
    start = len(_MAGIC) + 8
    try:
        header = json.loads(body[start : start + length].decode())
        if not isinstance(header, dict) or header.get("format") != "ebm_ppl":
            raise ValueError("not an ebm_ppl header")
        version = int(header["format_version"])
        if version > FORMAT_VERSION:
            raise _Invalid(
                f"written in format version {version}; this ebm_ppl reads up to {FORMAT_VERSION}"
            )
        data_start = start + length + (-(start + length) % _ALIGN)
        if data_start + int(header["payload_nbytes"]) != len(body):
            raise _Invalid("the size disagrees with the header (truncated or padded)")
        arrays = {}
        for entry in header["arrays"]:
            dtype = jnp.dtype(entry["dtype"])
            shape = tuple(int(n) for n in entry["shape"])
            lo = data_start + int(entry["offset"])
            nbytes = int(entry["nbytes"])
            if nbytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize or lo + nbytes > len(
                body
            ):
                raise _Invalid(f"array {entry['name']!r} does not fit its declared shape")
            arrays[entry["name"]] = (
                np.frombuffer(body, dtype=dtype, count=nbytes // dtype.itemsize, offset=lo)
                .reshape(shape)
                .copy()
            )
    except _Invalid:
        raise
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise _Invalid(f"unreadable header ({type(err).__name__}: {err})") from None
    return header, arrays


def _read_file(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise _Invalid(f"cannot be read ({err.strerror or err})") from None
    return _decode(raw)


def _restore_tree(
    where: str,
    name: str,
    layout: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    template: Any,
) -> Any:
    """Rebuild one pytree from its stored leaves, with the structure of ``template``."""
    paths, leaves, treedef = _leaf_paths(template)
    stored = layout["leaves"]
    stored_paths = [info["path"] for info in stored]
    if stored_paths != paths:
        diff = next(
            (i for i, (a, b) in enumerate(zip(stored_paths, paths, strict=False)) if a != b),
            min(len(stored_paths), len(paths)),
        )
        got = _path_str(stored_paths[diff]) if diff < len(stored_paths) else "nothing"
        want = _path_str(paths[diff]) if diff < len(paths) else "nothing"
        raise ValueError(
            f"{where}: the structure of {name!r} differs from this run's ({len(stored_paths)} "
            f"stored leaves, {len(paths)} expected; leaf {diff} is {got}, expected {want})"
        )
    out = []
    for i, (leaf, info) in enumerate(zip(leaves, stored, strict=True)):
        arr = arrays[f"{name}/{i}"]
        label = f"{name}{_path_str(paths[i])}"
        if info.get("key_impl") is not None:
            if not _is_key(leaf):
                raise ValueError(f"{where}: {label} is a PRNG key, expected an array")
            out.append(jax.random.wrap_key_data(jnp.asarray(arr), impl=info["key_impl"]))
            continue
        expected = np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
        if tuple(arr.shape) != tuple(expected.shape):
            raise ValueError(
                f"{where}: {label} has shape {tuple(arr.shape)}, expected {tuple(expected.shape)}"
            )
        if arr.dtype != expected.dtype:
            raise ValueError(f"{where}: {label} has dtype {arr.dtype}, expected {expected.dtype}")
        if _is_key(leaf):
            out.append(jax.random.wrap_key_data(jnp.asarray(arr), impl=jax.random.key_impl(leaf)))
        else:
            out.append(jnp.asarray(arr))
    return jax.tree.unflatten(treedef, out)


# ---------------------------------------------------------------------------------- checkpoints
def checkpoint_name(step: int) -> str:
    """The file name of the checkpoint after ``step`` updates.

    Examples:
        >>> checkpoint_name(1200)
        'ckpt-00001200.ebmckpt'
    """
    return f"ckpt-{int(step):08d}{CHECKPOINT_SUFFIX}"


def _step_of(name: str) -> int | None:
    match = _NAME_RE.match(name)
    return int(match.group(1)) if match else None


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """The checkpoint files in ``directory`` (``*.ebmckpt``), newest step first, unverified.

    Examples:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> for step in (5, 10):
        ...     _ = save_checkpoint(d, {"params": {"w": np.zeros(1)}}, {"step": step})
        >>> [p.name for p in list_checkpoints(d)]
        ['ckpt-00000010.ebmckpt', 'ckpt-00000005.ebmckpt']
    """
    path = Path(directory)
    if not path.is_dir():
        return []
    names = [n for n in os.listdir(path) if n.endswith(CHECKPOINT_SUFFIX)]
    # Unparseable names sort last (they are reported, never trusted).
    names.sort(key=lambda n: (_step_of(n) is not None, _step_of(n) or 0, n), reverse=True)
    return [path / n for n in names]


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint file, read into memory.

    Attributes:
        path: the file.
        step: the number of updates done when it was written.
        metadata: the JSON metadata given to :func:`save_checkpoint`.
        header: the whole parsed header (layouts and array table).
        arrays: stored name -> array (``"params/0"``, ``"extra/history/loss"``, ...).

    Examples:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = save_checkpoint(d, {"params": {"w": np.ones(2)}}, {"step": 4, "lr": 0.1})
        >>> ckpt = latest_checkpoint(d)
        >>> ckpt.step, ckpt.metadata["lr"], ckpt.path.name
        (4, 0.1, 'ckpt-00000004.ebmckpt')
        >>> ckpt.restore({"params": {"w": np.zeros(2)}})["params"]["w"].tolist()
        [1.0, 1.0]
    """

    path: Path
    step: int
    metadata: dict[str, Any]
    header: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def extra_arrays(self) -> dict[str, np.ndarray]:
        """The extra arrays (``arrays=`` of :func:`save_checkpoint`) by their names."""
        return {k[len("extra/") :]: v for k, v in self.arrays.items() if k.startswith("extra/")}

    def tree_arrays(self, name: str) -> list[np.ndarray]:
        """The stored leaves of tree ``name``, in order, as NumPy arrays (no template needed)."""
        count = len(self.header["trees"][name]["leaves"])
        return [self.arrays[f"{name}/{i}"] for i in range(count)]

    def restore(self, templates: Mapping[str, Any]) -> dict[str, Any]:
        """The stored pytrees, each rebuilt with the structure of its template.

        Args:
            templates: name -> pytree with the expected structure, shapes and dtypes (dicts of
                arrays, optax states, equinox modules, PRNG keys, ...).

        Raises:
            ValueError: naming the file when a tree is missing or its leaves' paths, shapes or
                dtypes differ from the template's.
        """
        where = f"checkpoint {str(self.path)!r}"
        trees = {}
        for name, template in templates.items():
            if name not in self.header["trees"]:
                raise ValueError(f"{where} has no {name!r}")
            layout = self.header["trees"][name]
            trees[name] = _restore_tree(where, name, layout, self.arrays, template)
        return trees


def read_checkpoint(
    path: str | os.PathLike[str], *, require_finite: Iterable[str] = ()
) -> Checkpoint:
    """Read and verify one checkpoint file.

    Verification: the size, the end marker and the SHA-256 checksum of the whole content, the
    header, that the step in the file name (``ckpt-<step>.ebmckpt``) is the step inside it, and
    that the trees named in ``require_finite`` hold no NaN or infinite value.

    Args:
        path: the file.
        require_finite: names of trees that must be finite (``fit`` passes ``("params",)``).

    Returns:
        the :class:`Checkpoint`.

    Raises:
        ValueError: naming the file and what is wrong with it.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> p = save_checkpoint(tempfile.mkdtemp(), {"params": {"w": np.ones(2)}}, {"step": 1})
        >>> _ = p.write_bytes(p.read_bytes()[:-10])  # truncate it
        >>> read_checkpoint(p)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: checkpoint '.../ckpt-00000001.ebmckpt' failed verification: truncated ...
    """
    path = Path(path)
    where = f"checkpoint {str(path)!r}"
    try:
        header, arrays = _read_file(path)
        if header.get("kind") != "checkpoint":
            raise _Invalid(f"it holds {header.get('kind')!r}, not a checkpoint")
        step = int(header["metadata"].get("step", -1))
        named = _step_of(path.name)
        if named is None:
            raise _Invalid("its name does not follow ckpt-<step>.ebmckpt")
        if named != step:
            raise _Invalid(
                f"it records step {step} but is named for step {named} (a rewound or renamed copy)"
            )
        for name in require_finite:
            if name not in header["trees"]:
                raise _Invalid(f"it has no {name!r}")
            count = len(header["trees"][name]["leaves"])
            for i in range(count):
                arr = arrays[f"{name}/{i}"]
                if not _finite(arr):
                    path_i = _path_str(header["trees"][name]["leaves"][i]["path"])
                    raise _Invalid(f"{name}{path_i} holds NaN or infinite values")
    except _Invalid as err:
        raise ValueError(f"{where} failed verification: {err}") from None
    return Checkpoint(path, step, dict(header["metadata"]), header, arrays)


def latest_checkpoint(
    directory: str | os.PathLike[str] | None, *, require_finite: Iterable[str] = ()
) -> Checkpoint | None:
    """The newest checkpoint in ``directory`` that verifies, or ``None`` if there is none.

    Files that fail verification are named, with the reason, in one :class:`CheckpointWarning`
    and left in place; the next newest is tried.

    Args:
        directory: the checkpoint folder (``None`` or a missing folder: no checkpoint).
        require_finite: names of trees that must be finite (see :func:`read_checkpoint`).

    Returns:
        the :class:`Checkpoint`, or ``None`` when the folder holds no checkpoint file.

    Raises:
        ValueError: naming the folder and the files when it holds checkpoint files of which
            none verifies (or only files of an older format), rather than starting afresh and
            overwriting them.

    Examples:
        >>> import tempfile, warnings
        >>> d = tempfile.mkdtemp()
        >>> for step in (10, 20):
        ...     _ = save_checkpoint(d, {"params": {"w": np.full(2, step)}}, {"step": step})
        >>> newest = list_checkpoints(d)[0]
        >>> _ = newest.write_bytes(b"")  # a zero-length file, as a crash might leave
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     ckpt = latest_checkpoint(d)
        >>> ckpt.step, "ckpt-00000020.ebmckpt" in str(caught[0].message)
        (10, True)
    """
    if directory is None:
        return None
    path = Path(directory)
    files = list_checkpoints(path)
    failures: list[str] = []
    found = None
    for file in files:
        try:
            found = read_checkpoint(file, require_finite=require_finite)
            break
        except ValueError as err:
            failures.append(f"{file.name}: {str(err).split('failed verification: ', 1)[-1]}")
    where = f"checkpoint_dir {str(path)!r}"
    if found is None:
        legacy = [n for n in _LEGACY if (path / n).exists()]
        if legacy and not files:
            raise ValueError(
                f"{where} holds {', '.join(legacy)}, a checkpoint of an older ebm_ppl that this "
                "version does not read; move it away or use another checkpoint_dir"
            )
        if files:
            raise ValueError(
                f"{where} holds checkpoint files but none verifies ({'; '.join(failures)}); "
                "they are left untouched: move them away or use another checkpoint_dir to "
                "start afresh"
            )
        return None
    if failures:
        warnings.warn(
            f"{where}: skipped checkpoint files that failed verification (left in place): "
            f"{'; '.join(failures)}; resuming from {found.path.name} (update {found.step})",
            CheckpointWarning,
            stacklevel=2,
        )
    return found


def _move_aside(path: Path) -> Path:
    for i in range(1000):
        target = path.with_name(f"{path.name}.corrupt" + (f".{i}" if i else ""))
        if not target.exists():
            os.replace(path, target)
            return target
    raise ValueError(f"cannot move the corrupt checkpoint {str(path)!r} aside")  # pragma: no cover


def save_checkpoint(
    directory: str | os.PathLike[str],
    trees: Mapping[str, Any],
    metadata: Mapping[str, Any],
    arrays: Mapping[str, Any] | None = None,
    *,
    keep: int | None = 3,
    trusted: Iterable[str] = (),
) -> Path:
    """Write a checkpoint file ``ckpt-<step>.ebmckpt`` atomically and durably; keep the newest.

    The file is written to a temporary name in ``directory``, flushed, ``fsync``-ed and renamed
    into place, then the folder is ``fsync``-ed. Afterwards only the newest ``keep`` checkpoints
    that verify are kept (older ones are deleted); a file that fails verification is never
    deleted (a warning names it), and one found at the new file's name is renamed to
    ``<name>.corrupt`` first.

    Args:
        directory: folder, created if needed.
        trees: name -> pytree of arrays (PRNG key leaves are stored as their key data).
        metadata: JSON-serializable dict with an int ``"step"`` (numpy scalars and small arrays
            are converted).
        arrays: extra name -> array entries stored as they are (e.g. history).
        keep: how many checkpoints to keep (``None``: all).
        trusted: names of files known to be good (written or verified by the caller), deleted
            without re-reading them when they fall out of the ``keep`` window; a ``set`` given
            here is updated with the new file and the files verified while pruning.

    Returns:
        the path of the new file.

    Examples:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> for step in range(1, 6):
        ...     _ = save_checkpoint(d, {"params": {"w": np.arange(3.0) * step}}, {"step": step})
        >>> [p.name for p in list_checkpoints(d)]
        ['ckpt-00000005.ebmckpt', 'ckpt-00000004.ebmckpt', 'ckpt-00000003.ebmckpt']
        >>> trees, meta = load_checkpoint(d, {"params": {"w": np.zeros(3)}})
        >>> trees["params"]["w"].tolist(), meta["step"]
        ([0.0, 5.0, 10.0], 5)
    """
    if keep is not None and (isinstance(keep, bool) or int(keep) < 1):
        raise ValueError(f"keep must be >= 1 or None, got {keep!r}")
    if "step" not in metadata:
        raise ValueError("metadata must hold the checkpoint's 'step'")
    step = int(metadata["step"])
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    target = path / checkpoint_name(step)
    known = trusted if isinstance(trusted, set) else set(trusted)
    head, payload = _encode("checkpoint", trees, {**metadata, "step": step}, arrays)
    if target.exists() and target.name not in known:
        try:
            read_checkpoint(target)
        except ValueError as err:
            moved = _move_aside(target)
            warnings.warn(
                f"{err}; moved it aside to {moved.name} before writing update {step}",
                CheckpointWarning,
                stacklevel=2,
            )
    _write_durably(target, lambda f: _write_container(f, head, payload))
    known.add(target.name)
    if keep is not None:
        _prune(path, step, int(keep), known)
    return target


def _prune(directory: Path, step: int, keep: int, trusted: set[str]) -> None:
    """Delete checkpoints older than the newest ``keep`` good ones up to ``step``."""
    kept = 0
    for file in list_checkpoints(directory):
        file_step = _step_of(file.name)
        if file_step is None or file_step > step:
            continue  # not ours to judge: newer files are left as they are
        if file.name not in trusted:
            try:
                read_checkpoint(file)
            except ValueError as err:
                warnings.warn(f"{err}; left in place", CheckpointWarning, stacklevel=3)
                continue
            trusted.add(file.name)
        kept += 1
        if kept > keep:
            file.unlink(missing_ok=True)
            trusted.discard(file.name)


def has_checkpoint(directory: str | os.PathLike[str] | None) -> bool:
    """Whether ``directory`` holds checkpoint files (verified or not) or an older-format one.

    Examples:
        >>> has_checkpoint("/nonexistent/dir")
        False
    """
    if directory is None:
        return False
    path = Path(directory)
    return bool(list_checkpoints(path)) or any((path / n).exists() for n in _LEGACY)


def load_checkpoint(
    directory: str | os.PathLike[str], templates: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the newest checkpoint in ``directory`` that verifies into the structure of templates.

    Args:
        directory: folder written by :func:`save_checkpoint`.
        templates: name -> pytree with the expected structure, shapes and dtypes.

    Returns:
        ``(trees, metadata)``; ``metadata["extra_arrays"]`` holds the extra arrays and
        ``metadata["path"]`` the file read.

    Raises:
        ValueError: naming the folder or file when there is no checkpoint, none verifies, or the
            stored structure, shapes or dtypes differ from the templates.

    Examples:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = save_checkpoint(d, {"p": (np.ones(2),)}, {"step": 0})
        >>> load_checkpoint(d, {"p": (np.ones(3),)})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: checkpoint '.../ckpt-00000000.ebmckpt': p[0] has shape (2,), expected (3,)
    """
    ckpt = latest_checkpoint(directory)
    if ckpt is None:
        raise ValueError(f"checkpoint_dir {str(directory)!r} holds no checkpoint")
    trees = ckpt.restore(templates)
    meta = dict(ckpt.metadata)
    meta["extra_arrays"] = ckpt.extra_arrays
    meta["path"] = str(ckpt.path)
    return trees, meta


def read_metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of the newest checkpoint in ``directory`` that verifies.

    Raises:
        ValueError: if ``directory`` holds no checkpoint that verifies.

    Examples:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = save_checkpoint(d, {"params": {"w": np.ones(2)}}, {"step": 3})
        >>> read_metadata(d)["step"]
        3
    """
    ckpt = latest_checkpoint(directory)
    if ckpt is None:
        raise ValueError(f"checkpoint_dir {str(directory)!r} holds no checkpoint")
    return dict(ckpt.metadata)


# ---------------------------------------------------------------------------------- params files
def save_params(
    path: str | os.PathLike[str], params: Any, *, fingerprint: str | None = None
) -> Path:
    """Write parameters to a standalone file (same format as checkpoints), atomically.

    Args:
        path: the file (conventionally ``*.ebmparams``); its folder must exist.
        params: a dict site -> array, or any pytree of arrays (e.g. with equinox modules).
        fingerprint: optional string stored with them (e.g. of the model), checked by
            :func:`load_params`.

    Returns:
        the path written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> p = save_params(Path(tempfile.mkdtemp()) / "params.ebmparams", {"w": np.eye(2)})
        >>> load_params(p)["w"].tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    path = Path(path)
    head, payload = _encode("params", {"params": params}, {"fingerprint": fingerprint}, None)
    _write_durably(path, lambda f: _write_container(f, head, payload))
    return path


def _untemplated(where: str, layout: Mapping[str, Any], arrays: Mapping[str, Any]) -> Any:
    """Nested dicts from stored leaves whose paths are all dict keys."""
    out: dict[Any, Any] = {}
    for i, info in enumerate(layout["leaves"]):
        path = info["path"]
        if not path or any(kind != "key" for kind, _ in path):
            raise ValueError(
                f"{where} holds parameters that are not a dict of arrays (leaf "
                f"{_path_str(path)}, e.g. an equinox module); pass template= (such as "
                "EnergyModel.init_params(key)) to rebuild them"
            )
        node = out
        for _, key in path[:-1]:
            node = node.setdefault(key, {})
        arr = arrays[f"params/{i}"]
        if info.get("key_impl") is not None:
            node[path[-1][1]] = jax.random.wrap_key_data(jnp.asarray(arr), impl=info["key_impl"])
        else:
            node[path[-1][1]] = jnp.asarray(arr)
    return out


def load_params(
    path: str | os.PathLike[str], template: Any = None, *, fingerprint: str | None = None
) -> Any:
    """Read a parameter file written by :func:`save_params` (or a plain NumPy ``.npz``).

    Nothing is unpickled: the container is JSON plus raw bytes, and ``.npz`` files are read with
    ``allow_pickle=False``.

    Args:
        path: the file.
        template: a pytree with the expected structure, shapes and dtypes; required for module
            parameters (equinox/flax), optional for dicts of arrays.
        fingerprint: if given and the file records one, they must be equal.

    Returns:
        the parameters: nested dicts of arrays without a template, else the template's
        structure.

    Raises:
        ValueError: naming the file when it is missing, fails verification, is not a parameter
            file, has another fingerprint, or does not match the template.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> p = save_params(Path(tempfile.mkdtemp()) / "p.ebmparams", {"w": np.ones(2)})
        >>> load_params(p, {"w": np.zeros(3)})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: params file '.../p.ebmparams': params['w'] has shape (2,), expected (3,)
    """
    path = Path(path)
    where = f"params file {str(path)!r}"
    if not path.is_file():
        raise ValueError(f"{where} {'is not a file' if path.exists() else 'does not exist'}")
    try:
        with open(path, "rb") as f:
            lead = f.read(4)
    except OSError as err:
        raise ValueError(f"{where} cannot be read ({err.strerror or err})") from None
    if lead == b"PK\x03\x04":
        return _load_npz(where, path, template)
    try:
        header, arrays = _read_file(path)
    except _Invalid as err:
        raise ValueError(f"{where} failed verification: {err}") from None
    if header.get("kind") != "params":
        raise ValueError(
            f"{where} holds a {header.get('kind')}, not parameters (write them with save_params)"
        )
    stored = header["metadata"].get("fingerprint")
    if fingerprint is not None and stored is not None and stored != fingerprint:
        raise ValueError(
            f"{where} was written for another model (fingerprint {stored}, expected {fingerprint})"
        )
    layout = header["trees"]["params"]
    if template is None:
        return _untemplated(where, layout, arrays)
    return _restore_tree(where, "params", layout, arrays, template)


def _load_npz(where: str, path: Path, template: Any) -> Any:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as npz:
            params = {k: jnp.asarray(npz[k]) for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{where} cannot be read as .npz: {err}") from None
    if template is None:
        return params
    if not isinstance(template, Mapping) or any(
        not isinstance(v, (np.ndarray, np.generic, jax.Array, float, int))
        for v in template.values()
    ):
        raise ValueError(
            f"{where} is a .npz, which holds a dict of arrays only; for module parameters write "
            "the file with save_params"
        )
    missing = sorted(set(template) - set(params))
    extra = sorted(set(params) - set(template))
    if missing or extra:
        raise ValueError(f"{where} has keys {sorted(params)}; expected {sorted(template)}")
    for name, value in template.items():
        expected = np.asarray(value)
        if params[name].shape != expected.shape:
            raise ValueError(
                f"{where}: params[{name!r}] has shape {params[name].shape}, "
                f"expected {expected.shape}"
            )
    return {name: params[name] for name in template}
