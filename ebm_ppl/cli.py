"""``ebm-ppl`` command line: thin wrappers whose flags map one to one onto library arguments.

Each subcommand is a pair ``(add_arguments, run)`` registered in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ebm_ppl.infer.command import diagnose_arguments, run_diagnose, run_sample, sample_arguments
from ebm_ppl.partition.command import logz_arguments, run_logz
from ebm_ppl.train.command import fit_arguments, run_fit

__all__ = ["main", "demo_model"]


def demo_model(a: float = 1.0):
    """The demo's energy: a double well in ``x[0]`` coupled to a Gaussian in ``x[1]``.

    ``E(x) = a (x0^2 - 1)^2 + (x1 - x0 / 2)^2 / 2`` on ``R^2`` (flat base measure).

    Examples:
        >>> import jax.numpy as jnp, ebm_ppl as ebm
        >>> float(ebm.EnergyModel(demo_model).energy({}, {"x": jnp.array([1.0, 0.5])}))
        0.0
    """
    import numpyro

    import ebm_ppl as ebm

    x = numpyro.sample("x", ebm.Flat((2,)))
    ebm.energy("E", a * (x[0] ** 2 - 1.0) ** 2 + 0.5 * (x[1] - 0.5 * x[0]) ** 2)


# ------------------------------------------------------------------------------------- demo
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default: a new temporary folder)"
    )
    p.add_argument("--num-chains", type=int, default=4)
    p.add_argument("--num-warmup", type=int, default=500)
    p.add_argument("--num-samples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def _demo(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    import ebm_ppl as ebm

    out = args.out or Path(tempfile.mkdtemp(prefix="ebm-ppl-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    print("Energy: E(x) = (x0^2 - 1)^2 + (x1 - x0/2)^2 / 2 on R^2, sampled with NUTS")
    idata = ebm.sample(
        demo_model,
        kernel="nuts",
        num_chains=args.num_chains,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        rng_key=jax.random.PRNGKey(args.seed),
        progress=not args.no_progress,
    )
    table = ebm.diagnostics.summary(idata)
    with _pandas_width():
        print(
            table[["mean", "sd", "ess_bulk", "ess_tail", "r_hat", "r_hat_folded", "ok"]].to_string()
        )
    attrs = idata.posterior.attrs
    print(
        f"compile {attrs['compile_time']:.1f} s, warmup {attrs['warmup_time']:.2f} s, "
        f"sampling {attrs['sampling_time']:.2f} s; divergences: {int(idata.sample_stats['diverging'].sum())}"
    )
    x = idata.posterior["x"].values.reshape(-1, 2)
    print(f"E[x0^2] = {np.mean(x[:, 0] ** 2):.4f} (exact 0.8327 for the double well with a = 1)")
    path = _plot_demo(x, out / "demo.png")
    print(f"plot: {path}" if path else "plot skipped (install the 'plot' extra for matplotlib)")
    return 0


class _pandas_width:
    def __enter__(self):
        import pandas as pd

        self._ctx = pd.option_context("display.width", 120, "display.max_columns", 20)
        self._ctx.__enter__()

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def _plot_demo(x: Any, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import numpy as np

    g0, g1 = np.meshgrid(np.linspace(-2.2, 2.2, 200), np.linspace(-3, 3, 200))
    energy = (g0**2 - 1) ** 2 + 0.5 * (g1 - 0.5 * g0) ** 2
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.contour(g0, g1, np.exp(-energy), levels=8, colors="k", linewidths=0.8)
    ax.scatter(x[::4, 0], x[::4, 1], s=2, alpha=0.3, color="C0")
    ax.set(xlabel="x0", ylabel="x1", title="NUTS draws over exp(-E)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "demo": ("sample a 2-D double-well energy with NUTS and print diagnostics", _demo_args, _demo),
    "fit": ("fit an energy model to data (CD, PCD, replay); resumable", fit_arguments, run_fit),
    "sample": ("sample a model with MCMC over devices; writes DIR/idata.nc", sample_arguments, run_sample),
    "diagnose": ("print the mixing report of an idata.nc and write plots", diagnose_arguments, run_diagnose),
    "logz": ("estimate log Z (exact, quadrature, ais, elbo, importance)", logz_arguments, run_logz),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ebm-ppl`` command.

    Examples:
        >>> import contextlib, io
        >>> buf = io.StringIO()
        >>> with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        ...     main(["--help"])
        >>> "demo" in buf.getvalue()
        True
    """
    parser = argparse.ArgumentParser(prog="ebm-ppl", description="Energy-based models on NumPyro.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
