"""The ``ebm-ppl fit`` subcommand: flags map one to one onto :func:`ebm_ppl.fit` arguments.

``ebm-ppl fit MODEL_SPEC --data DATA --objective pcd --steps N --out DIR`` fits and writes the
checkpoint, ``history.json``, ``params.npz`` and a loss/energy plot to ``DIR``;
``ebm-ppl fit --resume DIR [--steps N]`` continues the run stored there (the command line is
saved in ``DIR/command.json``). ``MODEL_SPEC`` is ``package.module:function`` or
``path/to/file.py:function``: **the module is imported, i.e. its code runs**, as with any Python
import. ``DATA`` is a ``.npy`` file, a ``.npz`` file (one array, a ``train`` array, or one array
per site), or the name of a data set of :mod:`ebm_ppl.data` (``digits`` and the 2-D toy sets).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["fit_arguments", "load_data", "load_model", "parse_kwargs", "run_fit"]

COMMAND_FILE = "command.json"


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """Parse ``"k=v,k2=v2"``; values are Python literals where possible, else strings.

    Examples:
        >>> parse_kwargs("num_visible=64,num_hidden=16,visible=bernoulli")
        {'num_visible': 64, 'num_hidden': 16, 'visible': 'bernoulli'}
    """
    out: dict[str, Any] = {}
    if not text:
        return out
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"--model-kwargs items must be key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def load_model(spec: str) -> Any:
    """Import ``module:function`` or ``file.py:function`` (this runs the module's code).

    Examples:
        >>> load_model("ebm_ppl.cli:demo_model").__name__
        'demo_model'
    """
    if ":" not in spec:
        raise ValueError(
            f"MODEL_SPEC must be 'module:function' or 'file.py:function', got {spec!r}"
        )
    target, name = spec.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ValueError(f"MODEL_SPEC file {target!r} does not exist")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"cannot import {target!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules.setdefault(path.stem, module)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if not hasattr(module, name):
        raise ValueError(f"MODEL_SPEC {spec!r}: module {target!r} has no attribute {name!r}")
    return getattr(module, name)


def _data_names() -> list[str]:
    from ebm_ppl import data as datasets

    return ["digits", *getattr(datasets, "TOY_SETS", ())]


def load_data(spec: str, *, seed: int = 0, num_examples: int = 10000) -> Any:
    """Training data from a ``.npy``/``.npz`` file or a data set name of :mod:`ebm_ppl.data`.

    Files are read with ``allow_pickle=False``. A ``.npz`` with one array gives that array,
    one with a ``train`` array gives it, otherwise a dict array name (= site) -> array.
    ``digits`` is the binarized training split; toy sets draw ``num_examples`` points.

    Examples:
        >>> load_data("digits").shape
        (1500, 64)
    """
    import numpy as np

    from ebm_ppl import data as datasets

    if spec.endswith(".npy"):
        return np.load(spec, allow_pickle=False)
    if spec.endswith(".npz"):
        with np.load(spec, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if len(arrays) == 1:
            return next(iter(arrays.values()))
        return arrays.get("train", arrays)
    if spec in ("digits", "binarized_digits"):
        return datasets.binarized_digits()[0]
    if spec in getattr(datasets, "TOY_SETS", ()):
        import jax

        return datasets.toy_data(spec, jax.random.PRNGKey(seed), num_examples)
    raise ValueError(f"--data must be a .npy/.npz file or one of {_data_names()}, got {spec!r}")


def fit_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``fit`` flags to a parser.

    Examples:
        >>> parser = argparse.ArgumentParser()
        >>> fit_arguments(parser)
        >>> args = parser.parse_args(["ebm_ppl.models.rbm:model", "--data", "digits", "--steps", "5"])
        >>> args.objective, args.steps, args.batch_size
        ('pcd', 5, 100)
    """
    p.add_argument(
        "model", nargs="?", help="MODEL_SPEC: package.module:function or file.py:function"
    )
    p.add_argument("--data", help="FILE.npy, FILE.npz or a data set name (digits, 8gaussians, ...)")
    p.add_argument("--data-site", default=None, help="site the data bind to (data_site)")
    p.add_argument("--model-kwargs", default="", help="model keyword arguments: k=v,k2=v2")
    p.add_argument("--objective", default="pcd", help="cd, pcd, replay, nce, fce, sm, ssm, dsm")
    p.add_argument("--kernel", default=None, help="negative sampler: gibbs, mala, ula (kernel)")
    p.add_argument("--mcmc-steps", type=int, default=None, help="num_mcmc_steps")
    p.add_argument("--num-chains", type=int, default=None, help="num_chains (PCD, replay)")
    p.add_argument("--step-size", type=float, default=None, help="Langevin step_size")
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd"), help="optax optimizer")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=None, help="num_steps (total updates)")
    p.add_argument("--batch-size", type=int, default=100, help="batch_size")
    p.add_argument("--num-examples", type=int, default=10000, help="points drawn from a toy set")
    p.add_argument("--seed", type=int, default=0, help="rng_key = PRNGKey(seed)")
    p.add_argument("--out", type=Path, default=None, help="output folder (checkpoint_dir)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint_every")
    p.add_argument("--log-every", type=int, default=100, help="log_every (updates per chunk)")
    p.add_argument("--resume", type=Path, default=None, help="continue the run stored in DIR")
    p.add_argument("--no-progress", action="store_true", help="progress=False")


_SAVED = (
    "model",
    "data",
    "data_site",
    "model_kwargs",
    "objective",
    "kernel",
    "mcmc_steps",
    "num_chains",
    "step_size",
    "optimizer",
    "learning_rate",
    "steps",
    "batch_size",
    "num_examples",
    "seed",
    "checkpoint_every",
    "log_every",
)


def _objective(args: argparse.Namespace) -> Any:
    from ebm_ppl.train.fit import OBJECTIVE_NAMES, resolve_objective

    name = args.objective.lower()
    if name not in OBJECTIVE_NAMES:
        raise ValueError(
            f"--objective must be one of {sorted(OBJECTIVE_NAMES)}, got {args.objective!r}"
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
        value = getattr(args, flag)
        if value is not None:
            if field not in fields:
                raise ValueError(f"--{flag.replace('_', '-')} does not apply to objective {name!r}")
            options[field] = value
    return type(spec)(**options) if options else spec


def _plot_history(history: Any, path: Path) -> Path | None:
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


def run_fit(args: argparse.Namespace) -> int:
    """Run ``ebm-ppl fit`` (or ``--resume``) and write the outputs.

    Returns:
        exit status: 0, or 1 if the run stopped on non-finite values.

    Raises:
        SystemExit: without a model, data and number of steps (and no ``--resume``).

    Examples:
        >>> parser = argparse.ArgumentParser()
        >>> fit_arguments(parser)
        >>> run_fit(parser.parse_args(["--data", "digits"]))
        Traceback (most recent call last):
        ...
        SystemExit: ebm-ppl fit: MODEL_SPEC, --data and --steps are required (or --resume DIR)
    """
    import jax
    import numpy as np
    import optax

    from ebm_ppl.train.fit import fit

    if args.resume is not None:
        saved_path = Path(args.resume) / COMMAND_FILE
        if not saved_path.is_file():
            raise SystemExit(f"ebm-ppl fit: --resume {args.resume}: no {COMMAND_FILE} there")
        saved = json.loads(saved_path.read_text())
        steps = args.steps
        for name in _SAVED:
            setattr(args, name, saved[name])
        if steps is not None:
            args.steps = steps
        args.out = Path(args.resume)
    if not args.model or not args.data or args.steps is None:
        raise SystemExit(
            "ebm-ppl fit: MODEL_SPEC, --data and --steps are required (or --resume DIR)"
        )
    out = args.out or Path("ebm-ppl-fit")
    model = load_model(args.model)
    model_kwargs = parse_kwargs(args.model_kwargs)
    data = load_data(args.data, seed=args.seed, num_examples=args.num_examples)
    objective = _objective(args)
    make = {"adam": optax.adam, "sgd": optax.sgd}[args.optimizer]
    out.mkdir(parents=True, exist_ok=True)
    (out / COMMAND_FILE).write_text(json.dumps({k: getattr(args, k) for k in _SAVED}, indent=1))
    result = fit(
        model,
        data,
        objective=objective,
        optimizer=make(args.learning_rate),
        num_steps=args.steps,
        batch_size=args.batch_size,
        rng_key=jax.random.PRNGKey(args.seed),
        data_site=args.data_site,
        model_kwargs=model_kwargs,
        checkpoint_dir=out,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        progress=not args.no_progress,
    )
    result.history.to_json(out / "history.json")
    arrays = {k: np.asarray(v) for k, v in result.params.items()}
    np.savez(out / "params.npz", **arrays)  # type: ignore[arg-type]
    plot = _plot_history(result.history, out / "history.png")
    last = result.history.last()
    summary = ", ".join(
        f"{k} {last[k]:.4g}" for k in ("loss", "pos_energy", "neg_energy") if k in last
    )
    resumed = result.flags["resumed_from"]
    print(
        f"fit: {result.flags['step']} updates"
        + (f" (resumed from {resumed})" if resumed is not None else "")
        + (f"; last: {summary}" if summary else "")
    )
    print(f"outputs: {out} (checkpoint, history.json, params.npz{', history.png' if plot else ''})")
    if result.flags["nonfinite"]:
        print(f"stopped: non-finite values at update {result.flags['nonfinite_step']}")
        return 1
    return 0
