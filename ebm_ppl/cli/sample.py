"""The ``ebm-ppl sample`` sub-command (flags map one to one onto :func:`ebm_ppl.sample`).

``ebm-ppl sample MODEL_SPEC --kernel mala --num-chains 256 --chain-method sharded --out DIR``
runs :func:`ebm_ppl.sample` and writes ``DIR/idata.nc`` (ArviZ netCDF). ``MODEL_SPEC`` is
``package.module:function`` or ``path/to/file.py:function`` (**the module is imported, i.e. its
code runs**); ``--params`` reads the ``params.ebmparams`` that ``ebm-ppl fit`` writes (arrays
and JSON only, never unpickled), checked against the model's parameters before sampling.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ebm_ppl.cli.common import (
    check_model_kwargs,
    load_model,
    model_arguments,
    nonnegative_int,
    parse_kwargs,
    positive_int,
    prepare_out,
    read_params,
    require_file,
)

__all__ = ["run_sample", "sample_arguments"]


def sample_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``sample`` flags to a parser.

    Examples:
        >>> p = argparse.ArgumentParser()
        >>> sample_arguments(p)
        >>> p.parse_args(["m:f", "--chains", "8", "--out", "d"]).num_chains
        8
    """
    from ebm_ppl.infer.chains import CHAIN_METHODS

    model_arguments(p)
    p.add_argument(
        "--kernel",
        default="auto",
        help="kernel name: auto (default: NUTS, block Gibbs or a composite, from the model), nuts, "
        "hmc, mala, ula, gibbs, gwg, composite, swendsen_wang (a model that declares its lattice)",
    )
    p.add_argument(
        "--num-chains",
        "--chains",
        type=positive_int,
        default=4,
        dest="num_chains",
        help="num_chains",
    )
    p.add_argument("--num-warmup", type=nonnegative_int, default=500, help="num_warmup")
    p.add_argument("--num-samples", type=positive_int, default=1000, help="num_samples")
    p.add_argument("--thinning", type=positive_int, default=1, help="thinning")
    p.add_argument("--chain-method", default="auto", choices=CHAIN_METHODS, help="chain_method")
    p.add_argument(
        "--devices", type=positive_int, default=None, help="devices: use the first N local devices"
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="rng_key = PRNGKey(seed)")
    p.add_argument("--out", type=Path, required=True, help="output folder (writes idata.nc)")
    p.add_argument("--no-progress", action="store_true", help="progress=False")


def run_sample(args: argparse.Namespace) -> int:
    """Run ``ebm-ppl sample``: sample, write ``idata.nc``, print the summary.

    The output folder, the model spec, ``--model-kwargs`` and ``--params`` are checked before
    sampling.
    """
    model_kwargs = parse_kwargs(args.model_kwargs)
    if args.params is not None:
        require_file(args.params, flag="--params")
    import jax

    if jax.process_index() == 0:
        prepare_out(args.out)
    model = load_model(args.model)
    check_model_kwargs(model, model_kwargs, spec=args.model)
    params = None
    if args.params is not None:
        params = read_params(args.params, model, model_kwargs, flag="--params")

    import ebm_ppl as ebm
    from ebm_ppl.diagnostics import summary

    idata = ebm.sample(
        model,
        params=params,
        kernel=args.kernel,
        num_chains=args.num_chains,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        thinning=args.thinning,
        chain_method=args.chain_method,
        devices=args.devices,
        rng_key=jax.random.PRNGKey(args.seed),
        model_kwargs=model_kwargs,
        progress=not args.no_progress,
    )
    if jax.process_index() != 0:  # every process holds all chains; process 0 writes
        return 0
    path = args.out / "idata.nc"
    idata.to_netcdf(str(path))
    attrs = idata.posterior.attrs
    table = summary(idata)
    cols = ["mean", "sd", "ess_bulk", "ess_tail", "r_hat", "ok"]
    print(table[cols].to_string(max_rows=20))
    print(
        f"{args.num_chains} chains ({attrs['chain_method']} on {attrs['num_devices']} device(s)), "
        f"compile {attrs['compile_time']:.1f} s, sampling {attrs['sampling_time']:.2f} s"
    )
    print(f"wrote {path}")
    return 0
