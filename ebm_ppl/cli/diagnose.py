"""The ``ebm-ppl diagnose`` sub-command: the mixing report of an ``idata.nc`` and its plots.

``ebm-ppl diagnose DIR/idata.nc`` prints :func:`ebm_ppl.diagnostics.mixing_report` and writes
trace, rank, energy and sample plots next to the file (or to ``--out``). The file is read as
netCDF (data only).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ebm_ppl.cli.common import UsageError, prepare_out, require_file

__all__ = ["diagnose_arguments", "run_diagnose"]


def diagnose_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``diagnose`` flags to a parser.

    Examples:
        >>> p = argparse.ArgumentParser()
        >>> diagnose_arguments(p)
        >>> p.parse_args(["run/idata.nc"]).group_by
        'device'
    """
    p.add_argument(
        "idata", type=Path, metavar="IDATA", help="an idata.nc written by `ebm-ppl sample`"
    )
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


def _read_idata(path: Path) -> Any:
    """Read ``path`` as ArviZ netCDF, naming the file in every error."""
    from ebm_ppl.diagnostics import load

    require_file(path, flag="IDATA")
    try:
        return load(path)
    except ValueError as e:  # readable, but without a posterior group
        raise UsageError(" ".join(str(e).split())) from e
    except Exception as e:  # h5py/netCDF/xarray errors of any kind: not a netCDF file
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UsageError(
            f"IDATA {str(path)!r} is not a netCDF file written by `ebm-ppl sample` "
            f"({type(e).__name__}: {reason})"
        ) from e


def run_diagnose(args: argparse.Namespace) -> int:
    """Run ``ebm-ppl diagnose``: print the mixing report and write the plots.

    Returns:
        exit status: 0, or 1 with ``--strict`` when the chains do not mix.

    Raises:
        UsageError: naming the file when it is missing, not netCDF or has no posterior.

    Examples:
        >>> import contextlib, io, os, tempfile, numpy as np
        >>> from ebm_ppl.diagnostics import to_inference_data
        >>> path = os.path.join(tempfile.mkdtemp(), "idata.nc")
        >>> draws = np.random.default_rng(0).normal(size=(4, 500))
        >>> _ = to_inference_data({"x": draws}).to_netcdf(path)
        >>> p = argparse.ArgumentParser()
        >>> diagnose_arguments(p)
        >>> with contextlib.redirect_stdout(io.StringIO()):
        ...     status = run_diagnose(p.parse_args([path, "--no-plots", "--strict"]))
        >>> status
        0
    """
    from ebm_ppl.diagnostics import mixing_report

    idata = _read_idata(args.idata)
    var_names = [v.strip() for v in args.var_names.split(",")] if args.var_names else None
    out = args.out or args.idata.parent
    if not args.no_plots:
        prepare_out(out)
    report = mixing_report(idata, group_by=args.group_by, var_names=var_names)
    print(report)
    if not args.no_plots:
        paths = _plot_all(idata, out, var_names, args.group_by)
        print("plots: " + ", ".join(str(p) for p in paths))
    return 1 if (args.strict and not report.ok) else 0
