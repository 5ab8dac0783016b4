"""The ``ebm-ppl logz`` sub-command: ``log Z`` of a model by a :func:`ebm_ppl.log_partition` method.

``ebm-ppl logz MODEL_SPEC --params params.ebmparams --method ais --num-chains 256
--num-temperatures 1000`` prints the estimate, its stderr and the method's diagnostics.
``MODEL_SPEC`` is ``package.module:function`` or ``path/to/file.py:function`` (**the module is
imported, i.e. its code runs**); ``--params`` reads the ``params.ebmparams`` of ``ebm-ppl fit``
(arrays only, never unpickled), checked against the model's parameters. Flags map one to one
onto ``log_partition`` arguments; method-specific flags are passed only when given.
"""

from __future__ import annotations

import argparse
from typing import Any

from ebm_ppl.cli.common import (
    check_model_kwargs,
    load_model,
    model_arguments,
    nonnegative_int,
    parse_kwargs,
    positive_float,
    positive_int,
    read_params,
    require_file,
)

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
    model_arguments(p)
    p.add_argument(
        "--method", default="exact", help="method: exact, quadrature, ais, elbo, importance"
    )
    p.add_argument("--num-chains", type=positive_int, default=None, help="num_chains (ais)")
    p.add_argument(
        "--num-temperatures", type=positive_int, default=None, help="num_temperatures (ais)"
    )
    p.add_argument("--kernel", default=None, help="kernel (ais): mala or gibbs")
    p.add_argument("--step-size", type=positive_float, default=None, help="step_size (ais, MALA)")
    p.add_argument("--chain-method", default=None, help="chain_method (ais)")
    p.add_argument(
        "--num-steps", type=positive_int, default=None, help="num_steps (elbo, importance)"
    )
    p.add_argument(
        "--num-samples", type=positive_int, default=None, help="num_samples (elbo, importance)"
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="rng_key = PRNGKey(seed)")


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
    import ebm_ppl as ebm

    model_kwargs = parse_kwargs(args.model_kwargs)
    if args.params is not None:
        require_file(args.params, flag="--params")
    model = load_model(args.model)
    check_model_kwargs(model, model_kwargs, spec=args.model)
    params = None
    if args.params is not None:
        params = read_params(args.params, model, model_kwargs, flag="--params")

    import jax
    import numpy as np

    options: dict[str, Any] = {
        k: getattr(args, k) for k in _OPTIONS if getattr(args, k, None) is not None
    }
    est = ebm.log_partition(
        model,
        params,
        method=args.method,
        rng_key=jax.random.PRNGKey(args.seed),
        model_kwargs=model_kwargs,
        **options,
    )
    print(f"log Z = {est.log_z:.6f} +- {est.stderr:.6f} (method {est.method})")
    for key, value in est.info.items():
        if isinstance(value, (bool, int, float, str, np.number)):
            print(f"  {key}: {value}")
    return 0
