"""The ``ebm-ppl fit`` sub-command: flags map one to one onto :func:`ebm_ppl.fit` arguments.

``ebm-ppl fit MODEL_SPEC --data DATA --objective pcd --steps N --out DIR`` fits and writes the
checkpoint, ``history.json``, ``params.ebmparams`` and a loss/energy plot to ``DIR``;
``ebm-ppl fit --resume DIR [--steps N]`` continues the run stored there (its command line is
saved in ``DIR/command.json``). On resume, ``--steps``, ``--checkpoint-every``, ``--log-every``
and ``--no-progress`` may change; any other flag given must equal the run's (a different model,
data, objective, kernel, optimizer or model arguments would not continue the same run) and is
refused with the reason otherwise.

``MODEL_SPEC`` is ``package.module:function`` or ``path/to/file.py:function``: **the module is
imported, i.e. its code runs**, as with any Python import; a run folder's ``command.json`` names
such a module, so resume only run folders you trust. ``DATA`` is a ``.npy`` file, a ``.npz``
file (one array, a ``train`` array, or one array per site), or the name of a data set of
:mod:`ebm_ppl.data` (``digits`` and the 2-D toy sets). Checkpoints, params and data files are
data only, never unpickled.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ebm_ppl.cli.common import (
    TRUST_NOTE,
    UsageError,
    check_model_kwargs,
    load_model,
    nonnegative_int,
    parse_kwargs,
    positive_float,
    positive_int,
    prepare_out,
    write_params,
)
from ebm_ppl.train.checkpoint import has_checkpoint, write_atomic

__all__ = [
    "COMMAND_FILE",
    "DEFAULTS",
    "RESUMABLE",
    "fit_arguments",
    "load_data",
    "read_command",
    "run_fit",
]

COMMAND_FILE = "command.json"

#: Defaults of the flags saved in ``command.json`` (the parser's defaults are ``None`` so that
#: ``--resume`` can tell a flag given from one left out).
DEFAULTS: dict[str, Any] = {
    "model": None,
    "data": None,
    "data_site": None,
    "model_kwargs": "",
    "objective": "pcd",
    "kernel": None,
    "mcmc_steps": None,
    "num_chains": None,
    "step_size": None,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "steps": None,
    "batch_size": 100,
    "num_examples": 10000,
    "seed": 0,
    "checkpoint_every": None,
    "log_every": 100,
}

#: Flags a resumed run may change: they do not alter the sequence of updates.
RESUMABLE = ("steps", "checkpoint_every", "log_every")

_OPTIMIZERS = ("adam", "sgd")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _text(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _positive(v: Any) -> bool:
    return _is_int(v) and v >= 1


def _number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and 0 < v < float("inf")


def _or_null(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


#: command.json key -> (check of its value, description for the error message)
_SAVED_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model": (_text, "a model spec"),
    "data": (_text, "a data file or name"),
    "data_site": (_or_null(_text), "a site name or null"),
    "model_kwargs": (lambda v: isinstance(v, str), "a 'k=v,...' string"),
    "objective": (_text, "an objective name"),
    "kernel": (_or_null(_text), "a kernel name or null"),
    "mcmc_steps": (_or_null(_positive), "an integer >= 1 or null"),
    "num_chains": (_or_null(_positive), "an integer >= 1 or null"),
    "step_size": (_or_null(_number), "a number > 0 or null"),
    "optimizer": (lambda v: v in _OPTIMIZERS, f"one of {list(_OPTIMIZERS)}"),
    "learning_rate": (_number, "a number > 0"),
    "steps": (_positive, "an integer >= 1"),
    "batch_size": (_positive, "an integer >= 1"),
    "num_examples": (_positive, "an integer >= 1"),
    "seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "checkpoint_every": (_or_null(_positive), "an integer >= 1 or null"),
    "log_every": (_positive, "an integer >= 1"),
}

# what a changed flag would change, for the refusal message
_WHAT = {
    "model": "the model",
    "model_kwargs": "the model",
    "data": "the training data",
    "data_site": "the training data",
    "num_examples": "the training data",
    "batch_size": "the batches",
    "objective": "the objective",
    "kernel": "the objective's sampler",
    "mcmc_steps": "the objective's sampler",
    "num_chains": "the objective's sampler",
    "step_size": "the objective's sampler",
    "optimizer": "the optimizer",
    "learning_rate": "the optimizer",
    "seed": "the random numbers",
}


def _flag(name: str) -> str:
    return "MODEL_SPEC" if name == "model" else "--" + name.replace("_", "-")


def _data_names() -> list[str]:
    from ebm_ppl import data as datasets

    return ["digits", *getattr(datasets, "TOY_SETS", ())]


def _is_file_spec(spec: str) -> bool:
    return spec.endswith((".npy", ".npz"))


def _check_data_spec(spec: str) -> None:
    """The checks of :func:`load_data` that need no reading, run before the model is imported."""
    if _is_file_spec(spec):
        if not Path(spec).is_file():
            raise UsageError(f"--data {spec!r}: no such file")
    elif spec not in (*_data_names(), "binarized_digits"):
        raise UsageError(
            f"--data must be a .npy/.npz file or one of {_data_names()}, got {spec!r}"
            + ("" if Path(spec).suffix == "" else " (files must end in .npy or .npz)")
        )


def load_data(spec: str, *, seed: int = 0, num_examples: int = 10000) -> Any:
    """Training data from a ``.npy``/``.npz`` file or a data set name of :mod:`ebm_ppl.data`.

    Files are read with ``allow_pickle=False``. A ``.npz`` with one array gives that array,
    one with a ``train`` array gives it, otherwise a dict array name (= site) -> array.
    ``digits`` is the binarized training split; toy sets draw ``num_examples`` points.

    Raises:
        UsageError: naming ``--data`` and the file when it is missing or cannot be read as
            arrays (object arrays, which would need pickle, included), or the name is unknown.

    Examples:
        >>> load_data("digits").shape
        (1500, 64)
        >>> load_data("missing.npy")
        Traceback (most recent call last):
        ...
        ebm_ppl.cli.common.UsageError: --data 'missing.npy': no such file
    """
    import numpy as np

    from ebm_ppl import data as datasets

    _check_data_spec(spec)
    if _is_file_spec(spec):
        kind, magic = (
            ("NumPy .npy", b"\x93NUMPY") if spec.endswith(".npy") else ("NumPy .npz", b"PK")
        )
        with open(spec, "rb") as f:
            if f.read(len(magic)) != magic:
                raise UsageError(f"--data {spec!r} is not a {kind} file")
        try:
            if spec.endswith(".npy"):
                return np.load(spec, allow_pickle=False)
            with np.load(spec, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except ValueError as e:
            if "allow_pickle" in str(e):
                raise UsageError(
                    f"--data {spec!r} holds Python objects (object arrays), which are never "
                    "unpickled; save numeric arrays"
                ) from e
            raise UsageError(f"--data {spec!r} cannot be read: {' '.join(str(e).split())}") from e
        except Exception as e:  # header or zip errors: a damaged file
            reason = " ".join(str(e).split()) or type(e).__name__
            raise UsageError(f"--data {spec!r} cannot be read ({reason})") from e
        if not arrays:
            raise UsageError(f"--data {spec!r} holds no arrays")
        if len(arrays) == 1:
            return next(iter(arrays.values()))
        return arrays.get("train", arrays)
    if spec in ("digits", "binarized_digits"):
        try:
            return datasets.binarized_digits()[0]
        except ImportError as e:
            raise UsageError(
                f"--data {spec}: needs scikit-learn (pip install 'ebm_ppl[data]'): {e}"
            ) from e
    import jax

    return datasets.toy_data(spec, jax.random.PRNGKey(seed), num_examples)


def fit_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``fit`` flags to a parser.

    Flags saved in ``command.json`` default to ``None`` here; :data:`DEFAULTS` holds the values
    a new run uses, so a resumed run can tell which flags were given.

    Examples:
        >>> parser = argparse.ArgumentParser()
        >>> fit_arguments(parser)
        >>> args = parser.parse_args(["m.py:model", "--data", "digits", "--steps", "5"])
        >>> args.objective, args.steps, args.batch_size
        (None, 5, None)
    """
    p.epilog = TRUST_NOTE
    p.add_argument(
        "model",
        nargs="?",
        help="MODEL_SPEC: package.module:function or path/to/file.py:function (imported: its code "
        "runs)",
    )
    p.add_argument("--data", help="FILE.npy, FILE.npz or a data set name (digits, 8gaussians, ...)")
    p.add_argument("--data-site", help="site the data bind to (data_site)")
    p.add_argument("--model-kwargs", help="model keyword arguments: k=v,k2=v2 (Python literals)")
    p.add_argument("--objective", help="cd, pcd, replay, nce, fce, sm, ssm, dsm (default: pcd)")
    p.add_argument(
        "--kernel", help="negative sampler: auto (default, from the model), gibbs, gwg, mala, ula"
    )
    p.add_argument("--mcmc-steps", type=positive_int, help="num_mcmc_steps")
    p.add_argument("--num-chains", type=positive_int, help="num_chains (PCD, replay)")
    p.add_argument("--step-size", type=positive_float, help="Langevin step_size")
    p.add_argument("--optimizer", choices=_OPTIMIZERS, help="optax optimizer (default: adam)")
    p.add_argument("--learning-rate", type=positive_float, help="learning rate (default: 1e-3)")
    p.add_argument("--steps", type=positive_int, help="num_steps (total updates)")
    p.add_argument("--batch-size", type=positive_int, help="batch_size (default: 100)")
    p.add_argument(
        "--num-examples", type=positive_int, help="points drawn from a toy set (default: 10000)"
    )
    p.add_argument("--seed", type=nonnegative_int, help="rng_key = PRNGKey(seed) (default: 0)")
    p.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="output folder (checkpoint_dir)"
    )
    p.add_argument("--checkpoint-every", type=positive_int, help="checkpoint_every")
    p.add_argument(
        "--log-every", type=positive_int, help="log_every (updates per chunk, default: 100)"
    )
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="DIR",
        help="continue the run stored in DIR; imports the model named in DIR/command.json. "
        "--steps, --checkpoint-every, --log-every and --no-progress may change, other flags "
        "must match the run's",
    )
    p.add_argument("--no-progress", action="store_true", help="progress=False")


def _objective(config: dict[str, Any]) -> Any:
    from ebm_ppl.train.fit import OBJECTIVE_NAMES, resolve_objective

    name = config["objective"].lower()
    if name not in OBJECTIVE_NAMES:
        raise UsageError(
            f"--objective must be one of {sorted(OBJECTIVE_NAMES)}, got {config['objective']!r}"
        )
    spec = resolve_objective(name)
    options: dict[str, Any] = {}
    fields = getattr(type(spec), "__dataclass_fields__", {})
    for flag, field in (
        ("kernel", "kernel"),
        ("mcmc_steps", "num_mcmc_steps"),
        ("num_chains", "num_chains"),
        ("step_size", "step_size"),
    ):
        value = config[flag]
        if value is not None:
            if field not in fields:
                raise UsageError(f"{_flag(flag)} does not apply to objective {name!r}")
            options[field] = value
    return type(spec)(**options) if options else spec


def _plot_history(history: Any, path: Path) -> Path | None:
    if len(history) == 0 or "step" not in history:  # e.g. non-finite at the first update
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    steps = history["step"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].plot(steps, history["loss"], lw=0.6)
    axes[0].set(xlabel="update", ylabel="loss", title="loss (surrogate)")
    for name in ("pos_energy", "neg_energy"):
        if name in history:
            axes[1].plot(steps, history[name], lw=0.6, label=name)
    axes[1].set(xlabel="update", ylabel="energy", title="positive / negative energy")
    if "pos_energy" in history:
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- command.json
def _normalize(name: str, value: Any) -> Any:
    """A saved or given value in the form compared and saved (file paths made absolute)."""
    if value is None:
        return None
    if name == "model" and isinstance(value, str) and ":" in value:
        target, attr = value.rsplit(":", 1)
        if target.endswith(".py"):
            return f"{Path(target).resolve()}:{attr}"
    if name == "data" and isinstance(value, str) and _is_file_spec(value):
        return str(Path(value).resolve())
    if name == "model_kwargs":
        return parse_kwargs(value)
    return value


def read_command(path: Path) -> dict[str, Any]:
    """Read and check a run's ``command.json``.

    Raises:
        UsageError: naming the file when it is missing, not JSON, not an object, lacks a key
            or holds a value of the wrong type.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "command.json"
        >>> _ = path.write_text('{"model": "m:f"}')
        >>> read_command(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ebm_ppl.cli.common.UsageError: .../command.json' is incomplete: it lacks 'data', ...
    """
    where = f"{str(path)!r}"
    if not path.is_file():
        raise UsageError(
            f"--resume {str(path.parent)!r}: no {COMMAND_FILE} there (not a run folder written "
            "by `ebm-ppl fit`)"
        )
    try:
        saved = json.loads(path.read_text())
    except UnicodeDecodeError as e:
        raise UsageError(f"{where} is not a text file ({e.reason})") from e
    except json.JSONDecodeError as e:
        raise UsageError(f"{where} is not valid JSON: {e.msg} (line {e.lineno})") from e
    except OSError as e:
        raise UsageError(f"{where} cannot be read: {e.strerror or type(e).__name__}") from e
    if not isinstance(saved, dict):
        raise UsageError(f"{where} must hold a JSON object, got {type(saved).__name__}")
    missing = [k for k in DEFAULTS if k not in saved]
    if missing:
        raise UsageError(
            f"{where} is incomplete: it lacks {', '.join(repr(k) for k in missing)} "
            "(the run cannot be resumed; start a new one with another --out)"
        )
    for key, (ok, description) in _SAVED_TYPES.items():
        if not ok(saved[key]):
            raise UsageError(f"{where}: {key!r} must be {description}, got {saved[key]!r}")
    parse_kwargs(saved["model_kwargs"], flag=f"{where}: 'model_kwargs'")
    return {k: saved[k] for k in DEFAULTS}


def _differences(given: dict[str, Any], saved: dict[str, Any]) -> list[str]:
    return [
        k
        for k in DEFAULTS
        if k not in RESUMABLE
        and given.get(k) is not None
        and _normalize(k, given[k]) != _normalize(k, saved[k])
    ]


def _write_command(path: Path, config: dict[str, Any]) -> None:
    saved = dict(config)
    saved["model"] = _normalize("model", config["model"])
    saved["data"] = _normalize("data", config["data"])
    write_atomic(path, json.dumps(saved, indent=1))


def _config(args: argparse.Namespace) -> tuple[dict[str, Any], Path, bool]:
    """The run's settings from the flags and, with ``--resume``, the run's ``command.json``."""
    given = {k: getattr(args, k) for k in DEFAULTS}
    if args.resume is not None:
        run = Path(args.resume)
        if not run.is_dir():
            raise UsageError(f"--resume {str(run)!r}: no such folder")
        if args.out is not None and Path(args.out).resolve() != run.resolve():
            raise UsageError(
                f"--out does not apply with --resume: the run's folder is {str(run)!r}"
            )
        command = run / COMMAND_FILE
        saved = read_command(command)
        changed = _differences(given, saved)
        if changed:
            k = changed[0]
            raise UsageError(
                f"--resume {str(run)!r}: {_flag(k)} {given[k]!r} differs from the run's "
                f"{saved[k]!r} ({COMMAND_FILE}); changing {_WHAT[k]} would not continue the same "
                f"run (only {', '.join(_flag(r) for r in RESUMABLE)} may change on resume); "
                "start a new run with another --out"
            )
        config = {**saved, **{k: given[k] for k in RESUMABLE if given[k] is not None}}
        return config, run, True
    config = {k: DEFAULTS[k] if given[k] is None else given[k] for k in DEFAULTS}
    if not config["model"] or not config["data"] or config["steps"] is None:
        missing = [
            name
            for name, key in (("MODEL_SPEC", "model"), ("--data", "data"), ("--steps", "steps"))
            if config[key] in (None, "")
        ]
        raise UsageError(
            f"MODEL_SPEC, --data and --steps are required (or --resume DIR); missing "
            f"{', '.join(missing)}"
        )
    out = Path(args.out) if args.out is not None else Path("ebm-ppl-fit")
    command = out / COMMAND_FILE
    if not command.exists() and has_checkpoint(out):
        raise UsageError(
            f"--out {str(out)!r} holds checkpoints but no {COMMAND_FILE} (not written by "
            "`ebm-ppl fit`); continue it with ebm.fit(..., checkpoint_dir=...) or choose "
            "another --out"
        )
    if command.exists() and has_checkpoint(out):
        # The folder holds a run with progress: the same command continues it, a different one
        # is refused before command.json is overwritten. (Without a checkpoint there is nothing
        # to lose, e.g. after a run refused by fit's own argument checks.)
        saved = read_command(command)
        changed = _differences(config, saved)
        if changed:
            raise UsageError(
                f"--out {str(out)!r} already holds a different run ({_flag(changed[0])} "
                f"{config[changed[0]]!r} vs {saved[changed[0]]!r} in {COMMAND_FILE}); continue "
                f"it with `ebm-ppl fit --resume {out}` or choose another --out"
            )
    return config, out, False


def run_fit(args: argparse.Namespace) -> int:
    """Run ``ebm-ppl fit`` (or ``--resume``) and write the outputs.

    Every flag, file and the model spec are checked before any training work; with
    ``--resume`` the model to be imported is printed first.

    Returns:
        exit status: 0, or 1 if the run stopped on non-finite values.

    Raises:
        UsageError: for a user error (missing flags, files, a changed flag on resume, ...).

    Examples:
        >>> parser = argparse.ArgumentParser()
        >>> fit_arguments(parser)
        >>> run_fit(parser.parse_args(["--data", "digits"]))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ebm_ppl.cli.common.UsageError: MODEL_SPEC, --data and ... missing MODEL_SPEC, --steps
    """
    config, out, resumed = _config(args)
    objective = _objective(config)
    _check_data_spec(config["data"])
    model_kwargs = parse_kwargs(config["model_kwargs"])
    prepare_out(out, flag="--resume" if resumed else "--out")
    if resumed:
        print(
            f"resuming {out}: importing the model {config['model']!r} named in "
            f"{out / COMMAND_FILE} (this runs its code)",
            flush=True,
        )
    model = load_model(config["model"])
    check_model_kwargs(model, model_kwargs, spec=config["model"])
    data = load_data(config["data"], seed=config["seed"], num_examples=config["num_examples"])

    import jax
    import optax

    from ebm_ppl.train.fit import fit

    make = {"adam": optax.adam, "sgd": optax.sgd}[config["optimizer"]]
    _write_command(out / COMMAND_FILE, config)
    result = fit(
        model,
        data,
        objective=objective,
        optimizer=make(config["learning_rate"]),
        num_steps=config["steps"],
        batch_size=config["batch_size"],
        rng_key=jax.random.PRNGKey(config["seed"]),
        data_site=config["data_site"],
        model_kwargs=model_kwargs,
        checkpoint_dir=out,
        checkpoint_every=config["checkpoint_every"],
        log_every=config["log_every"],
        progress=not args.no_progress,
    )
    result.history.to_json(out / "history.json")
    write_params(out / "params.ebmparams", result.params)
    plot = _plot_history(result.history, out / "history.png")
    last = result.history.last()
    summary = ", ".join(
        f"{k} {last[k]:.4g}" for k in ("loss", "pos_energy", "neg_energy") if k in last
    )
    resumed_from = result.flags["resumed_from"]
    print(
        f"fit: {result.flags['step']} updates"
        + (f" (resumed from {resumed_from})" if resumed_from is not None else "")
        + (f"; last: {summary}" if summary else "")
    )
    plot_note = ", history.png" if plot else ""
    print(f"outputs: {out} (checkpoint, history.json, params.ebmparams{plot_note})")
    if result.flags["nonfinite"]:
        print(f"stopped: non-finite values at update {result.flags['nonfinite_step']}")
        return 1
    return 0
