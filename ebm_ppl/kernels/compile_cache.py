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
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

__all__ = [
    "MAX_SIZE_BYTES",
    "MIN_COMPILE_TIME_SECS",
    "cache_enabled",
    "default_cache_dir",
    "enable_compilation_cache",
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
