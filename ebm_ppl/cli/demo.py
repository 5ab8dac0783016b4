"""The ``ebm-ppl demo`` sub-command: fit an MLP energy to a 2-D toy set, sample it, diagnose."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from ebm_ppl.cli.common import (
    UsageError,
    nonnegative_int,
    positive_float,
    positive_int,
    prepare_out,
)

__all__ = ["demo_arguments", "demo_model", "run_demo"]


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
def demo_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``demo`` flags to a parser.

    Examples:
        >>> p = argparse.ArgumentParser()
        >>> demo_arguments(p)
        >>> p.parse_args(["--fit-steps", "50", "--hidden", "16", "16"]).hidden
        [16, 16]
    """
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default: a new temporary folder)"
    )
    p.add_argument("--dataset", default="8gaussians", help="2-D toy set of ebm_ppl.data")
    p.add_argument("--fit-steps", type=positive_int, default=4000, help="PCD updates")
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[64, 64], help="MLP widths")
    p.add_argument(
        "--lr", type=positive_float, default=1e-2, help="Adam learning rate (cosine-decayed)"
    )
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument(
        "--num-chains", type=positive_int, default=64, help="MALA chains on the learned model"
    )
    p.add_argument("--num-warmup", type=nonnegative_int, default=1000)
    # MALA crosses between the modes rarely: long chains (cheap here) for a settled R-hat
    p.add_argument("--num-samples", type=positive_int, default=40000)
    p.add_argument(
        "--grid-points", type=positive_int, default=101, help="quadrature grid for log Z"
    )
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--no-progress", action="store_true")


_DEMO_BOX = 5.0  # the toy sets' mass lies in [-5, 5]^2


def run_demo(args: argparse.Namespace) -> int:
    """Run ``ebm-ppl demo``: fit, sample, diagnose, plot."""
    import time

    import jax
    import numpy as np
    import optax

    import ebm_ppl as ebm
    from ebm_ppl.data import TOY_SETS, toy_data, toy_log_density
    from ebm_ppl.models.neural import mlp_energy
    from ebm_ppl.objectives import PersistentContrastiveDivergence
    from ebm_ppl.partition.quadrature import compare_on_grid

    if args.dataset not in TOY_SETS:
        raise UsageError(f"--dataset must be one of {TOY_SETS}, got {args.dataset!r}")
    out = prepare_out(args.out or Path(tempfile.mkdtemp(prefix="ebm-ppl-demo-")))
    k_data, k_fit, k_sample = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    data = toy_data(args.dataset, k_data, 20_000)
    em = ebm.EnergyModel(mlp_energy, 2, tuple(args.hidden))

    # 1. fit: persistent contrastive divergence, MALA negatives on persistent chains
    print(
        f"1. fit an MLP energy {tuple(args.hidden)} to {args.dataset} by PCD "
        f"({args.fit_steps} updates, 10 MALA steps per update)"
    )
    start = time.perf_counter()
    result = ebm.fit(
        em,
        data,
        objective=PersistentContrastiveDivergence("mala", step_size=0.02, num_mcmc_steps=10),
        optimizer=optax.adam(optax.cosine_decay_schedule(args.lr, args.fit_steps, alpha=0.05)),
        num_steps=args.fit_steps,
        batch_size=args.batch_size,
        rng_key=k_fit,
        log_every=max(1, min(250, args.fit_steps)),
        progress=not args.no_progress,
    )
    params = jax.block_until_ready(result.params)
    print(
        f"   {time.perf_counter() - start:.1f} s"
        + ("  NONFINITE" if result.flags["nonfinite"] else "")
    )

    # exact log Z by quadrature (2-D), hence KL(true || model)
    ev = compare_on_grid(
        em,
        params,
        lambda x: toy_log_density(args.dataset, x),
        box=_DEMO_BOX,
        num_points=args.grid_points,
    )
    est_log_z, kl = ev["log_z"], ev["kl"]
    print(
        f"   log Z (quadrature) = {est_log_z:.3f}; KL(true || model) = {kl:.4f} nats"
        + ("" if ev["box_converged"] else " (box not settled)")
    )

    # 2. sample the learned model with MALA on many chains
    print(f"2. sample the learned model with MALA: {args.num_chains} chains")
    idata = ebm.sample(
        em,
        params=params,
        kernel="mala",
        num_chains=args.num_chains,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        rng_key=k_sample,
        progress=not args.no_progress,
    )
    # 3. mixing diagnostics
    print("3. mixing diagnostics")
    table = ebm.diagnostics.summary(idata)
    with _pandas_width():
        print(
            table[["mean", "sd", "ess_bulk", "ess_tail", "r_hat", "r_hat_folded", "ok"]].to_string()
        )
        print(ebm.diagnostics.mixing_report(idata))
    attrs = idata.posterior.attrs
    print(
        f"compile {attrs['compile_time']:.1f} s, warmup {attrs['warmup_time']:.2f} s, "
        f"sampling {attrs['sampling_time']:.2f} s"
    )
    x = idata.posterior["x"].values.reshape(-1, 2)
    print(
        f"E[x0^2]: MALA on the model {np.mean(x[:, 0] ** 2):.3f}, "
        f"data {np.mean(data[:, 0] ** 2):.3f}"
    )
    if not bool(table["ok"].all()):
        print(
            "   (the learned density has separated modes that MALA crosses rarely: R-hat/ESS flag"
            " it; run longer chains, e.g. --num-samples 200000, or use more chains)"
        )
    path = _plot_demo(
        x,
        out / "demo.png",
        data=data,
        grid=np.linspace(-_DEMO_BOX, _DEMO_BOX, args.grid_points),
        true=np.exp(ev["log_p"]),
        model=np.exp(ev["log_q"]),
        kl=kl,
        name=args.dataset,
    )
    print(f"plot: {path}" if path else "plot skipped (install the 'plot' extra for matplotlib)")
    return 0


class _pandas_width:
    def __enter__(self):
        import pandas as pd

        self._ctx = pd.option_context("display.width", 120, "display.max_columns", 20)
        self._ctx.__enter__()

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def _plot_demo(
    x: Any, path: Path, *, data: Any, grid: Any, true: Any, model: Any, kl: float, name: str
) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    n = len(grid)
    ext = (grid[0], grid[-1], grid[0], grid[-1])
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.5))
    axes[0].imshow(true.reshape(n, n).T, origin="lower", extent=ext, cmap="viridis")
    axes[0].set_title(f"{name}: true density", fontsize=9)
    axes[1].imshow(model.reshape(n, n).T, origin="lower", extent=ext, cmap="viridis")
    axes[1].set_title(f"learned exp(-E)/Z (PCD), KL={kl:.3f}", fontsize=9)
    step = max(1, len(x) // 5000)
    axes[2].scatter(x[::step, 0], x[::step, 1], s=1, alpha=0.3, color="C1")
    axes[2].set(xlim=ext[:2], ylim=ext[2:], aspect="equal")
    axes[2].set_title("MALA draws from the learned model", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
