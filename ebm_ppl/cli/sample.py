"""The ``ebm-ppl sample`` and ``ebm-ppl diagnose`` subcommands (flags map onto library arguments).

``ebm-ppl sample MODEL_SPEC --kernel mala --num-chains 256 --chain-method sharded --out DIR``
runs :func:`ebm_ppl.sample` and writes ``DIR/idata.nc`` (ArviZ netCDF). ``MODEL_SPEC`` is
``package.module:function`` or ``path/to/file.py:function`` (**the module is imported, i.e. its
code runs**); ``--params`` reads parameters from a ``.npz`` (for instance the ``params.npz`` that
``ebm-ppl fit`` writes). ``ebm-ppl diagnose DIR/idata.nc`` prints
:func:`ebm_ppl.diagnostics.mixing_report` and writes trace, rank, energy and sample plots.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["diagnose_arguments", "run_diagnose", "run_sample", "sample_arguments"]


def sample_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``sample`` flags to a parser.

    Examples:
        >>> p = argparse.ArgumentParser()
        >>> sample_arguments(p)
        >>> p.parse_args(["m:f", "--chains", "8", "--out", "d"]).num_chains
        8
    """
    from ebm_ppl.infer.chains import CHAIN_METHODS

    p.add_argument("model", help="MODEL_SPEC: package.module:function or file.py:function")
    p.add_argument("--model-kwargs", default="", help="model keyword arguments: k=v,k2=v2")
    p.add_argument(
        "--params", type=Path, default=None, help="params: .npz with one array per param site"
    )
    p.add_argument("--kernel", default="nuts", help="kernel name: nuts, hmc, mala, ula, gibbs, ...")
    p.add_argument(
        "--num-chains", "--chains", type=int, default=4, dest="num_chains", help="num_chains"
    )
    p.add_argument("--num-warmup", type=int, default=500, help="num_warmup")
    p.add_argument("--num-samples", type=int, default=1000, help="num_samples")
    p.add_argument("--thinning", type=int, default=1, help="thinning")
    p.add_argument("--chain-method", default="auto", choices=CHAIN_METHODS, help="chain_method")
    p.add_argument(
        "--devices", type=int, default=None, help="devices: use the first N local devices"
    )
    p.add_argument("--seed", type=int, default=0, help="rng_key = PRNGKey(seed)")
    p.add_argument("--out", type=Path, required=True, help="output folder (writes idata.nc)")
    p.add_argument("--no-progress", action="store_true", help="progress=False")


def _load_params(path: Path | None) -> dict[str, Any] | None:
    import numpy as np

    if path is None:
        return None
    if not path.is_file():
        raise ValueError(f"--params {str(path)!r} does not exist")
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def run_sample(args: argparse.Namespace) -> int:
    """Run ``ebm-ppl sample``: sample, write ``idata.nc``, print the summary."""
    import jax

    import ebm_ppl as ebm
    from ebm_ppl.diagnostics import summary
    from ebm_ppl.train.command import load_model, parse_kwargs

    model = load_model(args.model)
    idata = ebm.sample(
        model,
        params=_load_params(args.params),
        kernel=args.kernel,
        num_chains=args.num_chains,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        thinning=args.thinning,
        chain_method=args.chain_method,
        devices=args.devices,
        rng_key=jax.random.PRNGKey(args.seed),
        model_kwargs=parse_kwargs(args.model_kwargs),
        progress=not args.no_progress,
    )
    if jax.process_index() != 0:  # every process holds all chains; process 0 writes
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
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


def diagnose_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``diagnose`` flags to a parser.

    Examples:
        >>> p = argparse.ArgumentParser()
        >>> diagnose_arguments(p)
        >>> p.parse_args(["run/idata.nc"]).group_by
        'device'
    """
    p.add_argument("idata", type=Path, help="an idata.nc written by `ebm-ppl sample`")
    p.add_argument(
        "--out", type=Path, default=None, help="folder for the plots (default: next to idata)"
    )
    p.add_argument(
        "--group-by", default="device", help="group_by: per-chain coordinate (device, chain)"
    )
    p.add_argument("--var-names", default=None, help="var_names: comma-separated variables")
    p.add_argument("--no-plots", action="store_true", help="only print the report")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when mixing is not OK")


def _plot_all(idata: Any, out: Path, var_names: list[str] | None, group_by: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ebm_ppl import diagnostics as dg

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fn in (("trace", dg.plot_trace), ("rank", dg.plot_rank)):
        fig = fn(idata, var_names, path=out / f"{name}.png")
        plt.close(fig)
        written.append(out / f"{name}.png")
    if "sample_stats" in idata.groups() and "potential_energy" in idata.sample_stats:
        plt.close(dg.plot_energy(idata, group_by=group_by, path=out / "energy.png"))
        written.append(out / "energy.png")
    first = (var_names or list(idata.posterior.data_vars))[0]
    event = idata.posterior[first].shape[2:]
    size = int(np.prod(event)) if event else 1
    if (
        event == (2,)
        or len(event) == 2
        or (len(event) == 1 and size >= 16 and int(size**0.5) ** 2 == size)
    ):
        plt.close(dg.plot_samples(idata, first, path=out / "samples.png"))
        written.append(out / "samples.png")
    return written


def run_diagnose(args: argparse.Namespace) -> int:
    """Run ``ebm-ppl diagnose``: print the mixing report and write the plots."""
    from ebm_ppl.diagnostics import load, mixing_report

    idata = load(args.idata)
    var_names = [v.strip() for v in args.var_names.split(",")] if args.var_names else None
    report = mixing_report(idata, group_by=args.group_by, var_names=var_names)
    print(report)
    if not args.no_plots:
        out = args.out or args.idata.parent
        paths = _plot_all(idata, out, var_names, args.group_by)
        print("plots: " + ", ".join(str(p) for p in paths))
    return 1 if (args.strict and not report.ok) else 0
