"""JAX's persistent compilation cache, on by default for ``sample``, ``fit``, ``log_partition``.

A new process otherwise compiles every chunk function again (seconds per configuration, most of
the wall time of a small job). :func:`enable_compilation_cache` points JAX's persistent cache
at the user's cache directory, so the second process loads the compiled programs from disk.

Precedence (first match wins):

1. opted out: the environment variable ``EBM_PPL_NO_CACHE`` set to anything but ``""``/``"0"``,
   or an earlier ``enable_compilation_cache(False)``: nothing is changed;
2. a directory the user already gave JAX (``JAX_COMPILATION_CACHE_DIR`` or
   ``jax.config.update("jax_compilation_cache_dir", ...)``): kept, with the user's own
   thresholds;
3. ``cache_dir`` if given, else ``$EBM_PPL_CACHE_DIR``, else ``$XDG_CACHE_HOME/ebm_ppl/jax``
   (``~/.cache/ebm_ppl/jax``), with a compile-time threshold of
   :data:`MIN_COMPILE_TIME_SECS` (``0``: every program is written, eager operations included;
   JAX's default of 1 s would skip most chunk functions).

Several processes may share the directory. JAX names an entry by a hash of the program, the
compile options, the backend and the JAX/jaxlib versions, so processes never read another
program's entry. JAX 0.10 writes an entry with a plain ``write_bytes`` (not an atomic rename):
without a lock, a process reading an entry while another is writing it can read a truncated
file; JAX then warns ("Error reading persistent compilation cache entry") and compiles again,
it never runs a wrong program (entries are zstd frames that fail to decompress when cut).
When the ``filelock`` package is installed, the cache set here gets a size bound
(:data:`MAX_SIZE_BYTES`), which makes JAX take a file lock around every read and write and
evict the least recently used entries: then readers and writers never overlap.

Compiled programs, stored whole
-------------------------------
JAX's cache saves XLA's work only: a new process still traces and lowers every program before it
can look its entry up (most of a warm ``fit`` of a small model). :func:`save_executable` and
:func:`load_executable` keep whole compiled executables instead, in the ``ebm_ppl-executables``
folder of the cache directory, under a key the caller computes from everything the program
depends on; :func:`environment_fingerprint` adds what the process runs on (library versions and
sources, JAX's settings, the devices). A stored executable is loaded without tracing or
lowering. Only executables this process compiled are stored: one JAX's cache loaded does not
serialize again into a runnable file on the CPU (XLA leaves out its kernels:
"Function wrapped_iota not found" when run), so :func:`compile_lowered` says which is which,
and :func:`store_name` names the programs so that JAX's cache does not hold them unless the
store does.
Files are written atomically (a temporary file renamed into place), carry a checksum
and their full key, and a file that fails either is a miss, never a wrong program. At most
:data:`MAX_EXECUTABLES` files are kept, the least recently used removed first.
:func:`save_record` and :func:`load_record` keep small JSON records the same way. The opt-outs
above turn this off too.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import sys
import threading
from pathlib import Path
from typing import Any

import jax
from jax.experimental.compilation_cache import compilation_cache

__all__ = [
    "MAX_EXECUTABLES",
    "MAX_SIZE_BYTES",
    "MIN_COMPILE_TIME_SECS",
    "cache_enabled",
    "compile_lowered",
    "default_cache_dir",
    "discard_executable",
    "enable_compilation_cache",
    "environment_fingerprint",
    "executable_dir",
    "load_executable",
    "load_record",
    "save_executable",
    "save_record",
    "store_name",
]

#: Compilations faster than this are not written. ``0``: a warm process compiles nothing. The
#: few dozen small programs of a ``fit`` (eager operations, 5-50 ms each to compile) load faster
#: than they compile: at 0.2 s they were compiled again in every process (about 0.5-1 s of a
#: 3-5 s warm ``fit`` on 2 CPU cores), and which of them were written depended on the machine's
#: load. Writing them all costs about 150 KB of cache per configuration (68 entries, 0.64 MB, for
#: ``benchmarks/rbm.py --fresh``'s RBM fit, against 32 entries, 0.49 MB, at 0.2 s).
MIN_COMPILE_TIME_SECS = 0.0
#: Size bound of a cache this module configures when ``filelock`` is available.
MAX_SIZE_BYTES = 2 * 1024**3

#: Most stored executables kept (least recently used removed first).
MAX_EXECUTABLES = 256

_ENV_OPT_OUT = "EBM_PPL_NO_CACHE"
_ENV_DIR = "EBM_PPL_CACHE_DIR"
_state: dict[str, object] = {"opted_out": False, "dir": None}


def default_cache_dir() -> Path:
    """``$EBM_PPL_CACHE_DIR``, else ``$XDG_CACHE_HOME/ebm_ppl/jax`` (``~/.cache/ebm_ppl/jax``).

    Examples:
        >>> default_cache_dir().name
        'jax'
    """
    own = os.environ.get(_ENV_DIR)
    if own:
        return Path(own).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ebm_ppl" / "jax"


def _config(name: str) -> object:
    return getattr(jax.config, name)  # JAX's Config declares its options dynamically


def _env_opt_out() -> bool:
    return os.environ.get(_ENV_OPT_OUT, "").strip().lower() not in ("", "0", "false", "no")


def cache_enabled() -> bool:
    """Whether JAX's persistent compilation cache has a directory (ours or the user's).

    Examples:
        >>> isinstance(cache_enabled(), bool)
        True
    """
    return bool(_config("jax_compilation_cache_dir")) and bool(
        _config("jax_enable_compilation_cache")
    )


def enable_compilation_cache(
    enable: bool = True, *, cache_dir: str | os.PathLike[str] | None = None
) -> str | None:
    """Turn on JAX's persistent compilation cache (idempotent; called by ``sample``, ``fit``,
    ``log_partition`` and the CLI).

    Args:
        enable: ``False`` opts out for the rest of the process (later automatic calls change
            nothing); a cache directory JAX already uses stays in use by JAX.
        cache_dir: directory to use instead of :func:`default_cache_dir` (ignored when the user
            configured JAX's own ``jax_compilation_cache_dir``).

    Returns:
        The cache directory in use, or ``None`` when the cache is off (opted out).

    Examples:
        >>> path = enable_compilation_cache()   # what ``sample`` and ``fit`` do first
        >>> path is None or isinstance(path, str)
        True
    """
    if not enable:
        _state["opted_out"] = True
        return None
    if _env_opt_out() or (_state["opted_out"] and cache_dir is None):
        return None
    current = _config("jax_compilation_cache_dir")
    if current and (current != _state["dir"] or cache_dir is None):
        return str(current)  # the user's own directory and thresholds, or ours already
    path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable cache directory must not stop a computation
    if str(path) == current:
        return str(path)
    _state["opted_out"] = False
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_SECS)
    try:
        import filelock  # noqa: F401  # optional: locked reads/writes and LRU eviction
    except ImportError:
        pass
    else:
        jax.config.update("jax_compilation_cache_max_size", MAX_SIZE_BYTES)
    if current:
        # another directory of ours: JAX initializes its cache once, on first use
        compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", str(path))
    _state["dir"] = str(path)
    return str(path)


# ---------------------------------------------------------------------------------- executables
_EXE_DIR = "ebm_ppl-executables"
_EXE_MAGIC = b"ebm_ppl-executable-1\n"
_EXE_SUFFIX = ".exe"
_REC_SUFFIX = ".json"
#: Packages whose versions every stored executable's key holds (their code is in the programs).
_VERSIONED = ("jax", "jaxlib", "numpy", "numpyro", "optax", "equinox", "flax", "scipy")
_env_cache: dict[str, str] = {}


def executable_dir() -> Path | None:
    """Folder of stored executables, or ``None`` when the cache is off or not a local folder.

    Examples:
        >>> d = executable_dir()
        >>> d is None or d.name == "ebm_ppl-executables"
        True
    """
    if _env_opt_out() or _state["opted_out"] or not cache_enabled():
        return None
    root = str(_config("jax_compilation_cache_dir"))
    if "://" in root:  # a remote cache (gs://...): JAX's own cache only
        return None
    return Path(root).expanduser() / _EXE_DIR


def _source_digest() -> str:
    """Hash of the library's Python sources (an edited install must not reuse old programs)."""
    from importlib.util import find_spec

    h = hashlib.sha256()
    roots = {Path(__file__).resolve().parents[1]}  # the ebm_ppl package
    try:  # the model zoo may be installed from another folder
        spec = find_spec("ebm_ppl.models")
    except ImportError:
        spec = None
    if spec is not None:
        roots |= {Path(p).resolve() for p in spec.submodule_search_locations or ()}
    for root in sorted(roots):
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _cpu_flags() -> str:
    """The CPU's feature flags (executables are compiled for the host's instruction set)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor()


def environment_fingerprint() -> str:
    """What a compiled executable depends on besides its program: a 32-character hash.

    Versions of JAX, jaxlib, NumPy, NumPyro, optax, Equinox, Flax and SciPy; this library's
    sources; JAX's settings (its cache settings aside) and the ``XLA_FLAGS``; the backend, its
    version and devices; Python's version, the machine and its CPU features.

    Examples:
        >>> len(environment_fingerprint())
        32
    """
    if "static" not in _env_cache:
        from importlib import metadata

        versions: list[tuple[str, str | None]] = []
        for name in _VERSIONED:
            try:
                versions.append((name, metadata.version(name)))
            except metadata.PackageNotFoundError:
                versions.append((name, None))
        _env_cache["static"] = repr(
            (versions, _source_digest(), sys.version, platform.machine(), _cpu_flags())
        )
    settings = sorted(
        (k, repr(v))
        for k, v in jax.config.values.items()
        if "cache" not in k and "log" not in k and "traceback" not in k
    )
    devices = jax.devices()
    backend = (
        jax.default_backend(),
        devices[0].client.platform_version,
        [(d.id, d.device_kind) for d in devices],
        jax.process_index(),
        jax.process_count(),
    )
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(("XLA_", "LIBTPU")))
    text = repr((_env_cache["static"], settings, backend, env))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_hits = threading.local()  # JAX's cache hits seen by this thread
_listening: list[bool] = []


def _count_hits(event: str, **kwargs: str | int) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _hits.count = getattr(_hits, "count", 0) + 1


def compile_lowered(lowered: Any) -> tuple[Any, bool]:
    """Compile ``lowered`` for the store: the executable, and whether it may be stored.

    Only an executable XLA compiled in this process may be given to :func:`save_executable`
    (``True``); one that JAX's cache loaded (``False``) is used as it is but not stored.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> exe, storable = compile_lowered(jax.jit(jnp.cos).lower(jnp.zeros(2)))
        >>> exe(jnp.zeros(2)).tolist(), isinstance(storable, bool)
        ([1.0, 1.0], True)
    """
    if not _listening:
        jax.monitoring.register_event_listener(_count_hits)
        _listening.append(True)
    before = getattr(_hits, "count", 0)
    compiled = lowered.compile()
    return compiled, getattr(_hits, "count", 0) == before


def store_name(name: str) -> str:
    """``name`` with this environment's fingerprint: the name to trace a stored program under.

    JAX's cache keys a program by its text, which holds the function's name: with this name,
    JAX's cache holds a program for the store only if this environment compiled it (then the
    store has it too), never one of an earlier install or of a plain ``jit`` of the same
    function, which would be loaded instead of compiled and could not be stored.

    Examples:
        >>> store_name("setup").startswith("setup_")
        True
    """
    return f"{name}_{environment_fingerprint()[:12]}"


def _located(key: str, suffix: str = _EXE_SUFFIX) -> tuple[Path, str] | None:
    """The file for ``key`` in this environment and the full key it holds (``None``: no store)."""
    folder = executable_dir()
    if folder is None:
        return None
    full = f"{environment_fingerprint()}:{key}"
    return folder / (hashlib.sha256(full.encode()).hexdigest()[:40] + suffix), full


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one; then the folder is kept to its bound."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    _evict(path.parent)


def load_executable(key: str) -> Any | None:
    """The executable :func:`save_executable` stored under ``key`` in this environment, or ``None``.

    Args:
        key: the caller's description of the program and its argument types (a string that
            changes whenever the program would).

    Returns:
        a callable ``jax.stages.Compiled``, or ``None`` (nothing stored, a damaged file, another
        environment, or the cache turned off).

    Examples:
        >>> load_executable("nothing was stored under this key") is None
        True
    """
    located = _located(key)
    if located is None:
        return None
    path, full = located
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    head = len(_EXE_MAGIC)
    body = blob[head + 32 :]
    if blob[:head] != _EXE_MAGIC or hashlib.sha256(body).digest() != blob[head : head + 32]:
        return None
    try:
        stored_key, payload, in_tree, out_tree = pickle.loads(body)
        if stored_key != full:
            return None
        from jax.experimental import serialize_executable

        compiled = serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # noqa: BLE001  (an unreadable entry is a miss: compile afresh)
        return None
    try:
        os.utime(path)  # recently used: evicted last
    except OSError:
        pass
    return compiled


def save_executable(key: str, compiled: Any) -> bool:
    """Store a compiled executable under ``key`` (see :func:`load_executable`); atomic.

    Args:
        key: as for :func:`load_executable`.
        compiled: a ``jax.stages.Compiled`` that XLA compiled in this process (see
            :func:`compile_lowered`).

    Returns:
        whether it was stored (``False``: the cache is off, the folder is not writable or the
        executable cannot be serialized; nothing is raised).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> exe, storable = compile_lowered(jax.jit(jnp.sin).lower(jnp.zeros(3)))
        >>> stored = save_executable("sin f32[3]", exe) if storable else False
        >>> load_executable("sin f32[3]") is not None or not stored
        True
    """
    located = _located(key)
    if located is None:
        return False
    path, full = located
    try:
        from jax.experimental import serialize_executable

        payload, in_tree, out_tree = serialize_executable.serialize(compiled)
        body = pickle.dumps((full, payload, in_tree, out_tree), protocol=pickle.HIGHEST_PROTOCOL)
        _write_atomically(path, _EXE_MAGIC + hashlib.sha256(body).digest() + body)
    except Exception:  # noqa: BLE001  (a cache that cannot be written must not stop a computation)
        return False
    return True


def discard_executable(key: str) -> None:
    """Remove what :func:`save_executable` stored under ``key`` (nothing if there is none).

    Examples:
        >>> discard_executable("nothing was stored under this key")
    """
    located = _located(key)
    if located is not None:
        located[0].unlink(missing_ok=True)


def save_record(key: str, record: Any) -> bool:
    """Store a small JSON-serializable ``record`` under ``key`` beside the executables; atomic.

    For what a caller checked once and may trust again in this environment (e.g. that given
    inputs passed validation). Returns whether it was stored; nothing is raised.

    Examples:
        >>> save_record("example", {"a": 1}) in (True, False)
        True
    """
    located = _located(key, _REC_SUFFIX)
    if located is None:
        return False
    path, full = located
    try:
        _write_atomically(path, json.dumps({"key": full, "record": record}).encode())
    except Exception:  # noqa: BLE001  (a cache that cannot be written must not stop a computation)
        return False
    return True


def load_record(key: str) -> Any | None:
    """The record :func:`save_record` stored under ``key`` in this environment, or ``None``.

    Examples:
        >>> load_record("nothing was recorded under this key") is None
        True
    """
    located = _located(key, _REC_SUFFIX)
    if located is None:
        return None
    path, full = located
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != full:
        return None
    return stored.get("record")


def _evict(folder: Path) -> None:
    files = list(folder.glob(f"*{_EXE_SUFFIX}")) + list(folder.glob(f"*{_REC_SUFFIX}"))
    if len(files) <= MAX_EXECUTABLES:
        return

    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    for path in sorted(files, key=mtime)[: len(files) - MAX_EXECUTABLES]:
        path.unlink(missing_ok=True)
