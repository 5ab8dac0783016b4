"""Product of two trained 2-D EBMs: samples land in the intersection of their supports.

Two MLP energies are trained separately (replay-buffer Langevin, as in ``toy2d_pcd.py``): one
on ``8gaussians`` (8 modes on a circle of radius 2.83), one on ``25gaussians`` (a 5x5 grid on
{-2, ..., 2}²). The two supports share four modes, (±2, ±2). The product of experts
(:func:`ebm_ppl.models.poe.product`, the sum of the two energies) is sampled with NUTS on many
chains; the script prints the fraction of draws within ``--radius`` of the four shared modes
(and the same fraction for each expert alone), the split R-hat and ESS of the distance to the
nearest shared mode (the four modes are symmetric, so this statistic mixes even though single
chains do not hop between modes), and the summary of ``x`` itself. With ``--out DIR`` it writes
``DIR/poe_toy2d.png``.

Examples:
    python examples/poe_toy2d.py
    python examples/poe_toy2d.py --steps 30 --hidden 16 --num-samples 50 --num-chains 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ebm_ppl.models import poe
from ebm_ppl.models.neural import mlp_energy

import ebm_ppl as ebm
from ebm_ppl.data import toy_data
from ebm_ppl.objectives import ReplayBuffer

BOX = 5.0
SHARED = np.array([[2.0, 2.0], [-2.0, 2.0], [2.0, -2.0], [-2.0, -2.0]])


def uniform_noise(rng_key, n):
    return {"x": jax.random.uniform(rng_key, (n, 2), minval=-BOX + 0.5, maxval=BOX - 0.5)}


def train_expert(args, dataset: str, seed: int):
    k_data, k_fit = jax.random.split(jax.random.PRNGKey(seed))
    data = toy_data(dataset, k_data, args.num_train)
    result = ebm.fit(
        mlp_energy,
        data,
        model_args=(2, tuple(args.hidden)),
        model_kwargs={"quadratic": 0.01},
        objective=ReplayBuffer(
            "ula",
            num_mcmc_steps=20,
            step_size=0.01,
            buffer_size=10_000,
            reinit_prob=0.05,
            l2_reg=0.01,
            clip_grad_norm=10.0,
            noise_fn=uniform_noise,
        ),
        optimizer=optax.adam(optax.cosine_decay_schedule(1e-2, args.steps, alpha=0.05)),
        num_steps=args.steps,
        batch_size=args.batch_size,
        rng_key=k_fit,
        log_every=max(1, min(500, args.steps)),
        progress=False,
    )
    return result.params


def distance_to_shared(x: np.ndarray) -> np.ndarray:
    return np.min(np.linalg.norm(x[..., None, :] - SHARED, axis=-1), axis=-1)


def plot(path: Path, experts, params, draws: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = np.linspace(-BOX + 1, BOX - 1, 161, dtype=np.float32)
    grid = np.stack(np.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, (name, e), p in zip(axes[:2], experts, params, strict=True):
        em = ebm.EnergyModel(e.model, *e.args, **dict(e.kwargs))
        energy = np.asarray(em.batch_energy(p, {"x": jnp.asarray(grid)}))
        ax.imshow(
            np.exp(-(energy - energy.min())).reshape(161, 161),
            origin="lower",
            extent=(g[0], g[-1], g[0], g[-1]),
            cmap="viridis",
        )
        ax.set_title(f"expert: {name}", fontsize=9)
    axes[2].scatter(draws[:, 0], draws[:, 1], s=1, alpha=0.3)
    axes[2].set_xlim(g[0], g[-1])
    axes[2].set_ylim(g[0], g[-1])
    axes[2].set_aspect("equal")
    axes[2].set_title("product: NUTS draws", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--num-train", type=int, default=20_000)
    parser.add_argument("--num-chains", type=int, default=16)
    parser.add_argument("--num-warmup", type=int, default=500)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--radius", type=float, default=0.5)
    parser.add_argument("--kernel", default="nuts", help="sampler of ebm.sample (nuts, mala)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    names = ("8gaussians", "25gaussians")
    params = [train_expert(args, n, args.seed + i) for i, n in enumerate(names)]
    print(f"two experts trained ({args.steps} updates each) in {time.perf_counter() - start:.1f} s")
    experts = [poe.Expert(mlp_energy, (2, tuple(args.hidden)), {"quadratic": 0.01}) for _ in names]
    t0 = time.perf_counter()
    draws = {}
    for label, model, p, kwargs in [
        ("product", poe.product, poe.expert_params(*params), {"model_args": (experts,)}),
        *[
            (
                n,
                mlp_energy,
                pi,
                {"model_args": (2, tuple(args.hidden)), "model_kwargs": {"quadratic": 0.01}},
            )
            for n, pi in zip(names, params, strict=True)
        ],
    ]:
        idata = ebm.sample(
            model,
            params=p,
            kernel=args.kernel,
            num_chains=args.num_chains,
            num_warmup=args.num_warmup,
            num_samples=args.num_samples,
            rng_key=jax.random.PRNGKey(args.seed + 7),
            progress=False,
            **kwargs,
        )
        draws[label] = (np.asarray(idata.posterior["x"]), idata)
    print(
        f"{args.kernel} on {args.num_chains} chains x {args.num_samples} draws: {time.perf_counter() - t0:.1f} s"
    )
    x, idata = draws["product"]
    dist = distance_to_shared(x)
    inside = float(np.mean(dist < args.radius))
    print(f"fraction of draws within {args.radius} of the four shared modes:")
    print(f"  product of experts {inside:.3f}")
    for n in names:
        print(
            f"  {n} expert alone {float(np.mean(distance_to_shared(draws[n][0]) < args.radius)):.3f}"
        )
    stat = ebm.diagnostics.to_inference_data({"distance": dist})
    s = ebm.diagnostics.summary(stat)
    print(
        f"distance to the nearest shared mode: mean {float(s['mean'].iloc[0]):.3f}, split R-hat "
        f"{float(s['r_hat'].iloc[0]):.3f}, bulk ESS {float(s['ess_bulk'].iloc[0]):.0f}"
    )
    print("summary of x (single chains stay in one mode, so R-hat of x itself is not near 1):")
    print(ebm.diagnostics.summary(idata)[["mean", "sd", "ess_bulk", "r_hat"]].to_string())
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        plot(
            args.out / "poe_toy2d.png",
            list(zip(names, experts, strict=True)),
            params,
            x.reshape(-1, 2),
        )
    return {"inside": inside, "rhat_distance": float(s["r_hat"].iloc[0])}


if __name__ == "__main__":
    main()
