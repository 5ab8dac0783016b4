"""The ``ebm-ppl logz`` subcommand: ``log Z`` of a model by any :func:`ebm_ppl.log_partition` method.

``ebm-ppl logz MODEL_SPEC --params params.npz --method ais --num-chains 256
--num-temperatures 1000`` prints the estimate, its stderr and the method's diagnostics.
``MODEL_SPEC`` is ``package.module:function`` or ``path/to/file.py:function`` (**the module is
imported, i.e. its code runs**); ``--params`` reads a ``.npz`` (e.g. the ``params.npz`` of
``ebm-ppl fit``). Flags map one to one onto ``log_partition`` arguments; method-specific flags
are passed only when given.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["logz_arguments", "run_logz"]

# flag dest -> log_partition option, passed only when the flag is given
_OPTIONS = (
    "num_chains",
    "num_temperatures",
    "num_steps",
    "num_samples",
    "kernel",
    "step_size",
    "chain_method",
)


def logz_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``logz`` flags to a parser.

    Examples:
        >>> p = argparse.ArgumentParser()
        >>> logz_arguments(p)
        >>> p.parse_args(["m:f", "--method", "ais", "--num-chains", "8"]).num_chains
        8
    """
    from pathlib import Path

    p.add_argument("model", help="MODEL_SPEC: package.module:function or file.py:function")
    p.add_argument("--model-kwargs", default="", help="model keyword arguments: k=v,k2=v2")
    p.add_argument(
        "--params", type=Path, default=None, help="params: .npz with one array per param site"
    )
    p.add_argument(
        "--method", default="exact", help="method: exact, quadrature, ais, elbo, importance"
    )
    p.add_argument("--num-chains", type=int, default=None, help="num_chains (ais)")
    p.add_argument("--num-temperatures", type=int, default=None, help="num_temperatures (ais)")
    p.add_argument("--kernel", default=None, help="kernel (ais): mala or gibbs")
    p.add_argument("--step-size", type=float, default=None, help="step_size (ais, MALA)")
    p.add_argument("--chain-method", default=None, help="chain_method (ais)")
    p.add_argument("--num-steps", type=int, default=None, help="num_steps (elbo, importance)")
    p.add_argument("--num-samples", type=int, default=None, help="num_samples (elbo, importance)")
    p.add_argument("--seed", type=int, default=0, help="rng_key = PRNGKey(seed)")


def run_logz(args: argparse.Namespace) -> int:
    """Run ``ebm-ppl logz``: estimate and print ``log Z``.

    Examples:
        >>> import contextlib, io
        >>> p = argparse.ArgumentParser()
        >>> logz_arguments(p)
        >>> args = p.parse_args(["ebm_ppl.cli:demo_model", "--method", "quadrature"])
        >>> buf = io.StringIO()
        >>> with contextlib.redirect_stdout(buf):
        ...     rc = run_logz(args)
        >>> rc, buf.getvalue().split()[:2]
        (0, ['log', 'Z'])
    """
    import jax
    import numpy as np

    import ebm_ppl as ebm
    from ebm_ppl.infer.command import _load_params
    from ebm_ppl.train.command import load_model, parse_kwargs

    model = load_model(args.model)
    options: dict[str, Any] = {
        k: getattr(args, k) for k in _OPTIONS if getattr(args, k, None) is not None
    }
    est = ebm.log_partition(
        model,
        _load_params(args.params),
        method=args.method,
        rng_key=jax.random.PRNGKey(args.seed),
        model_kwargs=parse_kwargs(args.model_kwargs),
        **options,
    )
    print(f"log Z = {est.log_z:.6f} +- {est.stderr:.6f} (method {est.method})")
    for key, value in est.info.items():
        if isinstance(value, (bool, int, float, str, np.number)):
            print(f"  {key}: {value}")
    return 0
