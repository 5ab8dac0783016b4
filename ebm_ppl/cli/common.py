"""What the ``ebm-ppl`` sub-commands share: user errors, model specs, keyword arguments, params
files and output folders.

**Trust boundary.** A model spec (``package.module:function`` or ``path/to/file.py:function``)
is Python code: loading it imports the module, which runs its code, exactly as ``import`` does.
``fit --resume DIR`` imports the model named in ``DIR/command.json``, so a run folder is as
trusted as the code it names. Checkpoints, params files and data files are data only: they are
read with ``numpy.load(allow_pickle=False)`` and JSON, never unpickled, so reading one runs no
code.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "TRUST_NOTE",
    "model_arguments",
    "UsageError",
    "check_model_kwargs",
    "load_model",
    "nonnegative_int",
    "parse_kwargs",
    "positive_float",
    "positive_int",
    "prepare_out",
    "read_params",
    "require_file",
    "write_params",
]

#: The trust boundary, as the ``--help`` texts state it.
TRUST_NOTE = (
    "Trust: a MODEL_SPEC is Python code; loading it imports its module, which runs that code "
    "(and `fit --resume DIR` imports the model named in DIR/command.json, so only resume run "
    "folders you trust). Checkpoints, params and data files are data only: arrays and JSON, "
    "never unpickled."
)


class UsageError(Exception):
    """A mistake in the command line or in an input file.

    ``ebm-ppl`` prints it as one line, ``ebm-ppl: error: <message>``, and exits with status 2.
    The message names the flag, file or site at fault.

    Examples:
        >>> str(UsageError("--steps must be positive"))
        '--steps must be positive'
    """


# --------------------------------------------------------------------------- flag value types
def model_arguments(p: argparse.ArgumentParser) -> None:
    """Add the flags every command that reads a model shares: the spec, its kwargs, ``--params``.

    Examples:
        >>> p = argparse.ArgumentParser()
        >>> model_arguments(p)
        >>> p.parse_args(["m:f", "--model-kwargs", "n=3"]).model_kwargs
        'n=3'
    """
    p.epilog = TRUST_NOTE
    p.add_argument(
        "model",
        help="MODEL_SPEC: package.module:function or path/to/file.py:function (imported: its "
        "code runs)",
    )
    p.add_argument("--model-kwargs", default="", help="model keyword arguments: k=v,k2=v2")
    p.add_argument(
        "--params",
        type=Path,
        default=None,
        help="params: the params.ebmparams of `ebm-ppl fit` (data only, checked against the model)",
    )


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer ``>= 1``.

    Examples:
        >>> positive_int("3")
        3
        >>> positive_int("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be an integer >= 1, got '0'
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An ``argparse`` type: an integer ``>= 0``.

    Examples:
        >>> nonnegative_int("0")
        0
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An ``argparse`` type: a finite number ``> 0``.

    Examples:
        >>> positive_float("1e-3")
        0.001
        >>> positive_float("nan")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be a finite number > 0, got 'nan'
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


# --------------------------------------------------------------------------- model specs
def parse_kwargs(text: str | None, *, flag: str = "--model-kwargs") -> dict[str, Any]:
    """Parse ``"k=v,k2=v2"``; values are Python literals where possible, else strings.

    Values are parsed with :func:`ast.literal_eval` (literals only, no code runs); a tuple or
    list value is written in brackets, e.g. ``hidden=[64,64]``.

    Raises:
        UsageError: naming ``flag`` for an item without ``=``, an empty or invalid key, or a
            key given twice.

    Examples:
        >>> parse_kwargs("num_visible=64,num_hidden=16,visible=bernoulli")
        {'num_visible': 64, 'num_hidden': 16, 'visible': 'bernoulli'}
        >>> parse_kwargs("hidden=[64,64],a=0.5")
        {'hidden': [64, 64], 'a': 0.5}
    """
    out: dict[str, Any] = {}
    if not text:
        return out
    for item in _split_top_level(text):
        if not item.strip():
            continue
        if "=" not in item:
            raise UsageError(f"{flag} items must be key=value, got {item.strip()!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        if not key.isidentifier():
            raise UsageError(f"{flag}: {key!r} is not a valid argument name (in {item.strip()!r})")
        if key in out:
            raise UsageError(f"{flag}: {key!r} is given twice")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            out[key] = value
    return out


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets, so ``hidden=[64,64]`` stays one item."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return items


def _resolved(entry: str) -> Path | None:
    try:
        return Path(entry or ".").resolve()
    except (OSError, RuntimeError):
        return None


def _installed_origin(name: str, exclude: set[Path]) -> str | None:
    """Where ``import name`` finds a module when the folders in ``exclude`` are not searched.

    Asks every finder of :data:`sys.meta_path` (standard library, site-packages, editable
    installs) without importing anything.
    """
    if name in sys.builtin_module_names:
        return "built-in"
    saved = sys.path[:]
    try:
        sys.path[:] = [p for p in saved if _resolved(p) not in exclude]
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            try:
                spec = find(name, None)
            except (ImportError, ValueError, OSError):
                continue
            if spec is not None:
                if spec.origin not in (None, "namespace"):
                    return str(spec.origin)
                locations = list(spec.submodule_search_locations or [])
                return locations[0] if locations else name
    finally:
        sys.path[:] = saved
    return None


def _refuse_shadowing(spec: str, name: str, local: Path) -> None:
    """Refuse a model module whose name is that of an installed or standard-library module."""
    top = name.split(".")[0]
    origin = _installed_origin(top, {local.parent.resolve()})
    if origin is None:
        return
    try:
        same = Path(origin).resolve() in (local.resolve(), (local / "__init__.py").resolve())
    except (OSError, RuntimeError):
        same = False
    if not same:
        raise UsageError(
            f"model spec {spec!r}: the model file {str(local)!r} has the module name {top!r} of "
            f"an installed module ({origin}) and would shadow it; rename the file "
            f"(e.g. {top}_model.py)"
        )


def _local_module(name: str, folder: Path) -> Path | None:
    top = name.split(".")[0]
    for candidate in (folder / f"{top}.py", folder / top):
        if candidate.is_file() or (candidate / "__init__.py").is_file():
            return candidate
    return None


def load_model(spec: str) -> Any:
    """Import ``module:function`` or ``path/to/file.py:function``; **this runs the module's code**.

    ``module`` is looked up among the installed packages and in the current folder (which the
    ``ebm-ppl`` console script does not search by itself); ``file.py`` is a path from the
    current folder. A model file whose module name is that of an installed or standard-library
    module (``numpy.py``, ``matplotlib.py``, ``json.py``) is refused, whichever form names it:
    importing it would shadow that module.

    Raises:
        UsageError: naming the spec and the file for a malformed spec, a missing file or
            module, a module that fails to import (its exception is given), a shadowing module
            name, a missing attribute or one that is not callable.

    Examples:
        >>> load_model("ebm_ppl.cli:demo_model").__name__
        'demo_model'
        >>> load_model("ebm_ppl.cli:nothing")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ebm_ppl.cli.common.UsageError: model spec ...: module 'ebm_ppl.cli' has no attribute 'nothing'
    """
    if not isinstance(spec, str) or spec.count(":") < 1 or not spec.rsplit(":", 1)[1]:
        raise UsageError(
            f"model spec must be 'package.module:function' or 'path/to/file.py:function', "
            f"got {spec!r}"
        )
    target, name = spec.rsplit(":", 1)
    if not name.isidentifier():
        raise UsageError(f"model spec {spec!r}: {name!r} is not a Python name")
    cwd = Path.cwd()
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise UsageError(f"model spec {spec!r}: no such file {target!r} (from {str(cwd)!r})")
        module_name = path.stem
        _refuse_shadowing(spec, module_name, path)
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise UsageError(f"model spec {spec!r}: cannot import {target!r}")
        module = importlib.util.module_from_spec(module_spec)
        previous = sys.modules.get(module_name)
        sys.modules[module_name] = module  # as `import` does, so the module can refer to itself
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            if previous is None:
                sys.modules.pop(module_name, None)
            else:
                sys.modules[module_name] = previous
            raise UsageError(
                f"model spec {spec!r}: importing {target!r} failed: {_describe(e)}"
            ) from e
    else:
        if not all(part.isidentifier() for part in target.split(".")):
            raise UsageError(
                f"model spec {spec!r}: {target!r} is neither a module name nor a .py file"
            )
        local = _local_module(target, cwd)
        if local is not None:
            _refuse_shadowing(spec, target, local)
        added = str(cwd) not in sys.path and "" not in sys.path
        if added:
            # The console script does not search the current folder (`python -m` does). Last,
            # so that the model's own imports still find the installed packages first.
            sys.path.append(str(cwd))
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            if e.name is not None and (target == e.name or target.startswith(e.name + ".")):
                raise UsageError(
                    f"model spec {spec!r}: no module named {e.name!r} in the current folder "
                    f"({str(cwd)!r}) or the installed packages"
                ) from e
            raise UsageError(
                f"model spec {spec!r}: importing {target!r} failed: {_describe(e)}"
            ) from e
        except Exception as e:
            raise UsageError(
                f"model spec {spec!r}: importing {target!r} failed: {_describe(e)}"
            ) from e
        finally:
            if added:
                sys.path.remove(str(cwd))
    if not hasattr(module, name):
        raise UsageError(f"model spec {spec!r}: module {target!r} has no attribute {name!r}")
    model = getattr(module, name)
    if not callable(model):
        raise UsageError(
            f"model spec {spec!r}: {name!r} is not callable (got {type(model).__name__}); it "
            "must name a model function"
        )
    return model


def _describe(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def check_model_kwargs(
    model: Any, kwargs: Mapping[str, Any], *, spec: str, flag: str = "--model-kwargs"
) -> None:
    """Check that ``model`` accepts the keyword arguments ``kwargs`` (before tracing it).

    Raises:
        UsageError: naming ``flag`` and the argument the model does not take.

    Examples:
        >>> def m(dim=2): ...
        >>> check_model_kwargs(m, {"dim": 3}, spec="x:m")
        >>> check_model_kwargs(m, {"size": 3}, spec="x:m")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ebm_ppl.cli.common.UsageError: --model-kwargs: ... takes no argument 'size' (its arguments: dim)
    """
    try:
        signature = inspect.signature(model)
    except (TypeError, ValueError):  # builtins and some callables have none: let the call check
        return
    try:
        signature.bind_partial(**kwargs)
    except TypeError:
        params = signature.parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        names = [
            n
            for n, p in params.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        ]
        bad = [k for k in kwargs if k not in names]
        if bad and not takes_any:
            raise UsageError(
                f"{flag}: the model {spec!r} takes no argument {bad[0]!r} "
                f"(its arguments: {', '.join(names) or 'none'})"
            ) from None
        raise UsageError(f"{flag}: the model {spec!r} cannot take {sorted(kwargs)}") from None


# --------------------------------------------------------------------------- files
def prepare_out(path: Path, *, flag: str = "--out") -> Path:
    """Create the output folder ``path`` and check that it is writable, before any work.

    Raises:
        UsageError: naming ``flag`` and the path when it is a file, lies under a file, or
            cannot be created or written.

    Examples:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()) / "run"
        >>> prepare_out(d).is_dir()
        True
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".ebm-ppl-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UsageError(f"{flag} {str(path)!r} cannot be written: {reason}") from e
    return path


def require_file(path: Path, *, flag: str) -> Path:
    """Check that ``path`` is an existing file, naming ``flag`` and the path otherwise.

    Examples:
        >>> require_file(Path("no/such.npz"), flag="--params")
        Traceback (most recent call last):
        ...
        ebm_ppl.cli.common.UsageError: --params 'no/such.npz': no such file
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is a folder, not a file")
    if not path.is_file():
        raise UsageError(f"{flag} {str(path)!r}: no such file")
    return path


def read_params(path: Path, model: Any, model_kwargs: Mapping[str, Any], *, flag: str) -> Any:
    """Read a params file written by ``ebm-ppl fit`` and check it against the model.

    The template (parameter names, module structure, shapes, dtypes) is the model's own
    ``EnergyModel(model, **model_kwargs).init_params(key)``, so module (equinox/flax) parameters
    are rebuilt from it; the file holds arrays and JSON only and is read without pickle
    (:func:`ebm_ppl.train.checkpoint.load_params`; a plain ``.npz`` of arrays works too). The
    values are then checked by :meth:`ebm_ppl.EnergyModel.validate_params` (finite, within
    their constraints).

    Raises:
        UsageError: naming ``flag`` and the file when it is missing or unreadable, or its
            keys, shapes or values do not fit the model.

    Examples:
        >>> import tempfile, jax.numpy as jnp, numpy as np, numpyro, ebm_ppl as ebm
        >>> def m():
        ...     a = numpyro.param("a", jnp.ones(2))
        ...     ebm.energy("E", jnp.sum(a * numpyro.sample("x", ebm.Flat(2)) ** 2))
        >>> path = Path(tempfile.mkdtemp()) / "params.ebmparams"
        >>> _ = write_params(path, {"a": np.full(2, 3.0, np.float32)})
        >>> read_params(path, m, {}, flag="--params")["a"].tolist()
        [3.0, 3.0]
        >>> _ = write_params(path, {"b": np.ones(2, np.float32)})
        >>> read_params(path, m, {}, flag="--params")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ebm_ppl.cli.common.UsageError: --params '...': params has unknown key(s) ['b']; ...
    """
    import jax
    import numpy as np

    from ebm_ppl.energy.model import EnergyModel
    from ebm_ppl.train.checkpoint import load_params

    where = f"{flag} {str(path)!r}"
    require_file(path, flag=flag)
    em = EnergyModel(model, **model_kwargs)
    template = em.init_params(jax.random.PRNGKey(0))
    # A dict of arrays is read as stored, so that unknown or missing keys are reported by name
    # below; module parameters need the template's structure to be rebuilt.
    plain = all(isinstance(v, (jax.Array, np.ndarray, np.generic)) for v in template.values())
    try:
        params = load_params(path, None if plain else template)
    except (ValueError, TypeError, KeyError) as e:
        message = _one_line(str(e)).replace(f"params file {str(path)!r}", where)
        raise UsageError(message if where in message else f"{where}: {message}") from e
    except Exception as e:  # a damaged file: zip, header or JSON errors of any kind
        raise UsageError(f"{where} is not a params file ({_describe(e)})") from e
    try:
        return em.validate_params(params, argument="params")
    except (ValueError, TypeError) as e:
        raise UsageError(f"{where}: {_one_line(str(e))}") from e


def _one_line(text: str) -> str:
    return " ".join(text.split())


def write_params(path: Path, params: Any) -> Path:
    """Write trained parameters to ``path`` for ``--params`` (arrays and JSON, no pickle).

    Module (equinox/flax) parameters are written leaf by leaf and rebuilt by
    :func:`read_params` from the model's own initial parameters.

    Examples:
        >>> import tempfile, numpy as np
        >>> from ebm_ppl.train.checkpoint import load_params
        >>> p = write_params(Path(tempfile.mkdtemp()) / "params.ebmparams", {"a": np.ones(2)})
        >>> load_params(p)["a"].tolist()
        [1.0, 1.0]
    """
    from ebm_ppl.train.checkpoint import save_params

    return save_params(path, params)
