"""MEG against PCD on 2-D toy sets: the same MLP energy, two ways of finding negatives.

For each data set the script fits one MLP energy by maximum-entropy generators (a flow
generator trained to minimize ``E(G(z)) − H[G]`` supplies the negatives; ``ebm_ppl.models.meg``)
and another by persistent contrastive divergence with MALA chains, then reports
KL(true ‖ model) by grid quadrature for both, the test negative log-likelihood, the training
wall time, the generator's entropy and the acceptance of latent-space MALA. With
``--plot`` it draws, per data set: the true density, both learned densities, and samples of
the generator and of latent-space MALA.

Examples:
    python examples/meg_toy2d.py --dataset 8gaussians 2spirals --plot docs/gallery/meg_toy2d.png
    python examples/meg_toy2d.py --dataset 8gaussians --steps 20 --hidden 16 --grid-points 41
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax
from ebm_ppl.models import meg
from ebm_ppl.models.neural import mlp_energy

import ebm_ppl as ebm
from ebm_ppl.data import TOY_SETS, toy_data, toy_log_density
from ebm_ppl.objectives import PersistentContrastiveDivergence
from ebm_ppl.partition.quadrature import compare_on_grid

BOX = 5.0  # the toy sets' mass lies in [-5, 5]²


def fit_one(method: str, em, train, args, key):
    """Fit ``em`` by ``method`` ("meg" or "pcd"); returns the fit result and its wall time."""
    if method == "meg":
        objective = meg.MEG(
            2,
            hidden=args.generator_hidden,
            num_layers=args.generator_layers,
            scale=2.0,
            generator_optimizer=optax.adam(args.generator_lr),
            generator_steps=args.generator_steps,
            gradient_penalty=args.gradient_penalty,
        )
        lr = args.meg_lr
    else:
        objective = PersistentContrastiveDivergence("mala", step_size=0.02, num_mcmc_steps=10)
        lr = args.pcd_lr
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, args.steps, alpha=0.05))
    start = time.perf_counter()
    result = ebm.fit(
        em,
        train,
        objective=objective,
        optimizer=optimizer,
        num_steps=args.steps,
        batch_size=args.batch_size,
        rng_key=key,
        log_every=max(1, min(500, args.steps)),
        progress=False,
    )
    jax.block_until_ready(result.params)
    return result, time.perf_counter() - start


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    for dataset in args.dataset:
        key = jax.random.PRNGKey(args.seed)
        k_train, k_test, k_fit, k_sample = jax.random.split(key, 4)
        train = toy_data(dataset, k_train, args.num_train)
        test = toy_data(dataset, k_test, args.num_test)
        for method in ("meg", "pcd"):
            em = ebm.EnergyModel(mlp_energy, 2, tuple(args.hidden))
            result, wall = fit_one(method, em, train, args, k_fit)
            ev = compare_on_grid(
                em,
                result.params,
                lambda x, d=dataset: toy_log_density(d, x),
                box=BOX,
                num_points=args.grid_points,
                test=test,
            )
            row = {
                "dataset": dataset,
                "method": method,
                "kl": ev["kl"],
                "test_nll": ev["test_nll"],
                "wall_s": wall,
                "box_converged": ev["box_converged"],
                "nonfinite": bool(result.flags["nonfinite"]),
                "log_q": ev["log_q"],
            }
            if method == "meg":
                gen = result.obj_state.generator
                energy_fn = lambda x, p=result.params, m=em: m.energy(p, {"x": x})  # noqa: E731
                x_mala, acc = meg.sample_latent(
                    k_sample,
                    energy_fn,
                    gen,
                    num_chains=args.num_samples,
                    num_steps=args.mala_steps,
                    step_size=args.mala_step_size,
                )
                row["generator_samples"] = np.asarray(meg.generate(k_sample, gen, args.num_samples))
                row["mala_samples"] = np.asarray(x_mala)
                row["mala_acceptance"] = float(acc)
                row["generator_entropy"] = float(meg.entropy(k_sample, gen, 4096))
            rows.append(row)
            extra = (
                f"  H[G] {row['generator_entropy']:6.3f}  latent MALA acc "
                f"{row['mala_acceptance']:.2f}"
                if method == "meg"
                else ""
            )
            print(
                f"{dataset:12s} {method:4s} KL(true ‖ model) {row['kl']:7.4f}  "
                f"NLL {row['test_nll']:7.3f}  {wall:6.1f} s{extra}"
                + ("  NONFINITE" if row["nonfinite"] else "")
                + ("" if row["box_converged"] else "  (box not settled: mass beyond the grid)"),
                flush=True,
            )
    return rows


def plot(rows: list[dict], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(len(datasets), 5, figsize=(11, 2.3 * len(datasets)), squeeze=False)
    g = np.linspace(-BOX, BOX, args.grid_points)
    pts = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    ext = (-BOX, BOX, -BOX, BOX)
    for i, dataset in enumerate(datasets):
        by = {r["method"]: r for r in rows if r["dataset"] == dataset}
        true = np.exp(toy_log_density(dataset, pts)).reshape(len(g), len(g))
        panels = [
            (dataset, true),
            (f"MEG energy, KL={by['meg']['kl']:.3f}", np.exp(by["meg"]["log_q"])),
            (f"PCD energy, KL={by['pcd']['kl']:.3f}", np.exp(by["pcd"]["log_q"])),
        ]
        for j, (title, dens) in enumerate(panels):
            axes[i, j].imshow(dens.T, origin="lower", extent=ext, cmap="viridis")
            axes[i, j].set_title(title, fontsize=8)
        for j, (title, xs) in enumerate(
            [
                ("generator samples", by["meg"]["generator_samples"]),
                (
                    f"latent MALA (acc {by['meg']['mala_acceptance']:.2f})",
                    by["meg"]["mala_samples"],
                ),
            ],
            start=3,
        ):
            axes[i, j].scatter(xs[:, 0], xs[:, 1], s=1, alpha=0.5)
            axes[i, j].set_xlim(-BOX, BOX)
            axes[i, j].set_ylim(-BOX, BOX)
            axes[i, j].set_aspect("equal")
            axes[i, j].set_title(title, fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    print(f"wrote {args.plot}")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", nargs="+", default=["8gaussians", "2spirals"], choices=TOY_SETS
    )
    parser.add_argument("--steps", type=int, default=2000, help="energy updates per method")
    parser.add_argument("--batch-size", type=int, default=256)
    # Peak Adam steps of the energy, each method's own: PCD's as in toy2d_objectives.py; MEG
    # needs a slower energy than its generator (at 1e-2 the generator collapsed to a point).
    parser.add_argument("--meg-lr", type=float, default=1e-3)
    parser.add_argument("--pcd-lr", type=float, default=1e-2)
    parser.add_argument("--generator-lr", type=float, default=3e-3)
    parser.add_argument("--generator-steps", type=int, default=3)
    parser.add_argument("--generator-hidden", type=int, default=64)
    parser.add_argument("--generator-layers", type=int, default=6)
    parser.add_argument("--gradient-penalty", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--num-train", type=int, default=50_000)
    parser.add_argument("--num-test", type=int, default=5_000)
    parser.add_argument("--num-samples", type=int, default=1000, help="samples plotted")
    parser.add_argument("--mala-steps", type=int, default=200)
    parser.add_argument("--mala-step-size", type=float, default=0.05)
    parser.add_argument("--grid-points", type=int, default=201)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="write the figure to this PNG file")
    args = parser.parse_args(argv)
    rows = run(args)
    if args.plot:
        plot(rows, args)
    return rows


if __name__ == "__main__":
    main()
