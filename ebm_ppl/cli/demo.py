"""The ``ebm-ppl demo`` sub-command: fit an MLP energy to a 2-D toy set, sample it, diagnose.

The learned density has separated modes that MALA alone crosses rarely: its persistent chains
keep whatever share of each mode they started with, so PCD weights the modes unevenly, and
chains on the learned model do not agree (R-hat). Both phases therefore run non-reversible
parallel tempering over MALA (``--temperatures``; 1 turns it off): PCD's persistent chains are
PT chains (``PersistentContrastiveDivergence(tempering=...)``) and the learned model is sampled
with ``ebm.sample(..., tempering=...)``, each with a Gaussian reference fitted to the data.
"""

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
    p.add_argument(
        "--temperatures",
        type=positive_int,
        default=8,
        help="parallel-tempering temperatures of the PCD chains and the sampler (1: MALA alone)",
    )
    p.add_argument(
        "--pcd-chains", type=positive_int, default=256, help="persistent chains of tempered PCD"
    )
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[64, 64], help="MLP widths")
    p.add_argument(
        "--lr", type=positive_float, default=1e-2, help="Adam learning rate (cosine-decayed)"
    )
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument(
        "--num-chains", type=positive_int, default=64, help="chains on the learned model"
    )
    p.add_argument("--num-warmup", type=nonnegative_int, default=1000)
    # with tempering the chains cross between the modes; MALA alone needs far longer chains
    p.add_argument("--num-samples", type=positive_int, default=2000)
    p.add_argument(
        "--grid-points", type=positive_int, default=101, help="quadrature grid for log Z"
    )
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--no-progress", action="store_true")


_DEMO_BOX = 5.0  # the toy sets' mass lies in [-5, 5]^2
#: What the demo calls a good fit: KL(true || model) by quadrature, in nats.
DEMO_MAX_KL = 0.05


def run_demo(args: argparse.Namespace) -> int:
    """Run ``ebm-ppl demo``: fit, sample, diagnose, plot."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro.distributions as dist
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
    tempered = args.temperatures > 1
    # the path's reference for the flat base: a diagonal Gaussian fitted to the data
    reference = dist.Normal(
        jnp.asarray(data.mean(0), jnp.float32), jnp.asarray(data.std(0), jnp.float32)
    ).to_event(1)
    wall = time.perf_counter()

    # 1. fit: persistent contrastive divergence, negatives from (tempered) persistent chains
    if tempered:
        objective = PersistentContrastiveDivergence(
            "mala",
            step_size=0.02,
            num_mcmc_steps=1,
            num_chains=args.pcd_chains,
            # the model sharpens while it trains: step sizes and schedule adapt throughout
            tempering={"num_temperatures": args.temperatures, "num_warmup": args.fit_steps},
        )
        how = (
            f"{args.pcd_chains} persistent parallel-tempering chains of {args.temperatures} "
            "temperatures over MALA, one iteration per update"
        )
    else:
        objective = PersistentContrastiveDivergence("mala", step_size=0.02, num_mcmc_steps=10)
        how = "10 MALA steps per update"
    print(
        f"1. fit an MLP energy {tuple(args.hidden)} to {args.dataset} by PCD "
        f"({args.fit_steps} updates, {how})"
    )
    start = time.perf_counter()
    result = ebm.fit(
        em,
        data,
        objective=objective,
        # decayed to 0: the last updates average the negatives' noise out of the mode weights
        optimizer=optax.adam(optax.cosine_decay_schedule(args.lr, args.fit_steps, alpha=0.0)),
        num_steps=args.fit_steps,
        batch_size=args.batch_size,
        rng_key=k_fit,
        log_every=max(1, min(250, args.fit_steps)),
        progress=not args.no_progress,
    )
    params = jax.block_until_ready(result.params)
    last = result.history.last()
    print(
        f"   {time.perf_counter() - start:.1f} s"
        + ("  NONFINITE" if result.flags["nonfinite"] else "")
        + (
            f"; last update: swap acceptance {last['swap_acceptance']:.2f}, "
            f"barrier {last['barrier']:.2f}"
            if "swap_acceptance" in last
            else ""
        )
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

    # 2. sample the learned model on many chains
    sampler = f"parallel tempering over MALA ({args.temperatures} temperatures)"
    print(
        f"2. sample the learned model with {sampler if tempered else 'MALA'}: "
        f"{args.num_chains} chains"
    )
    idata = ebm.sample(
        em,
        params=params,
        kernel="mala",
        tempering=(
            {"num_temperatures": args.temperatures, "reference": reference} if tempered else None
        ),
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
        print(ebm.diagnostics.mixing_report(idata))  # with the tempering report
    attrs = idata.posterior.attrs
    print(
        f"compile {attrs['compile_time']:.1f} s, warmup {attrs['warmup_time']:.2f} s, "
        f"sampling {attrs['sampling_time']:.2f} s"
    )
    x = idata.posterior["x"].values.reshape(-1, 2)
    print(
        f"E[x0^2]: chains on the model {np.mean(x[:, 0] ** 2):.3f}, "
        f"data {np.mean(data[:, 0] ** 2):.3f}"
    )
    mixed = bool(table["ok"].all())
    if not mixed and not tempered:
        print(
            "   (the learned density has separated modes that MALA crosses rarely: R-hat/ESS flag"
            " it; sample with tempering (--temperatures 8) or run far longer chains)"
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
    good_fit = bool(np.isfinite(kl) and kl <= DEMO_MAX_KL)
    verdict = "OK" if mixed and good_fit else "NOT OK"
    print(
        f"{verdict}: chains {'mix' if mixed else 'do not mix'} (R-hat < 1.01 and ESS >= 400 "
        f"for every coordinate: {mixed}); KL {kl:.4f} nats "
        f"{'<=' if good_fit else '>'} {DEMO_MAX_KL}; {time.perf_counter() - wall:.1f} s"
    )
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
    axes[2].set_title("draws from the learned model", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
