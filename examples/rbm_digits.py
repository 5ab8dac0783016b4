"""Bernoulli RBM on binarized scikit-learn digits, trained by persistent contrastive divergence.

The negative phase is block Gibbs (``v | h`` then ``h | v``) on persistent chains; the
parameters start from :func:`ebm_ppl.models.rbm.init_params` (visible biases at the data
log-odds). With a small hidden layer (``--hidden`` up to ~20) ``log Z`` is exact by enumerating
the hidden states, so the script prints the exact test log-likelihood per image (nats), next to
the log-likelihood of the independent-pixel model (the RBM with ``W = 0``) as a baseline.
With ``--out DIR`` it writes ``DIR/rbm_samples.png`` (visible states of the persistent chains
after extra Gibbs sweeps) and ``DIR/rbm_filters.png`` (the columns of ``W`` as 8x8 images).

Examples:
    python examples/rbm_digits.py                       # 16 hidden units, 40 epochs
    python examples/rbm_digits.py --hidden 4 --epochs 2 --out /tmp/rbm
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ebm_ppl.models import rbm

import ebm_ppl as ebm
from ebm_ppl.data import binarized_digits
from ebm_ppl.objectives import PersistentContrastiveDivergence


def train(args: argparse.Namespace, data: np.ndarray):
    """PCD fit; returns the :class:`ebm_ppl.FitResult` and the wall time in seconds."""
    num_steps = max(1, args.epochs * (len(data) // args.batch_size))
    # Hinton's practical guide: SGD with momentum, learning rate decayed linearly to ~0.
    schedule = optax.linear_schedule(args.lr, args.lr / 50, num_steps)
    start = time.perf_counter()
    result = ebm.fit(
        rbm.model,
        data,
        model_args=(data.shape[1], args.hidden),
        data_site="v",
        init_params=rbm.init_params(jax.random.PRNGKey(args.seed), data, args.hidden),
        objective=PersistentContrastiveDivergence(
            "gibbs", num_mcmc_steps=args.gibbs_steps, num_chains=args.num_chains
        ),
        optimizer=optax.sgd(schedule, momentum=0.5),
        num_steps=num_steps,
        batch_size=args.batch_size,
        rng_key=jax.random.PRNGKey(args.seed + 1),
        log_every=max(1, min(500, num_steps)),
        progress=args.progress,
    )
    jax.block_until_ready(result.params)
    return result, time.perf_counter() - start


def gibbs_samples(rng_key, params, v0, num_sweeps: int) -> np.ndarray:
    """Run ``num_sweeps`` block-Gibbs sweeps from ``v0`` (``(n, D)``); returns ``(n, D)`` means
    ``P(v = 1 | h)`` of the last sweep (smoother to look at than the binary draw)."""

    def sweep(v, key):
        kh, kv = jax.random.split(key)
        h = rbm.sample_hidden(kh, params, v)
        v = rbm.sample_visible(kv, params, h)
        return v, None

    v, _ = jax.lax.scan(sweep, jnp.asarray(v0), jax.random.split(rng_key, num_sweeps))
    h = rbm.sample_hidden(jax.random.fold_in(rng_key, 1), params, v)
    return np.asarray(jax.nn.sigmoid(h @ params["W"].T + params["b"]))


def plot(path: Path, images: np.ndarray, title: str, cmap: str = "gray") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    cols = min(n, 8)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img in zip(axes.ravel(), images, strict=False):
        ax.imshow(img.reshape(8, 8), cmap=cmap, interpolation="nearest")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=16, help="hidden units (exact LL: <= ~20)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05, help="initial SGD learning rate")
    parser.add_argument("--num-chains", type=int, default=100, help="persistent chains")
    parser.add_argument("--gibbs-steps", type=int, default=1, help="Gibbs sweeps per update")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write sample/filter PNGs here")
    parser.add_argument("--progress", action="store_true", help="show the progress bar")
    args = parser.parse_args(argv)
    if args.hidden > 24:
        parser.error(f"--hidden must be <= 24 for the exact log-likelihood, got {args.hidden}")

    train_v, test_v = binarized_digits()
    print(
        f"digits: {len(train_v)} train, {len(test_v)} test images of {train_v.shape[1]} pixels; "
        f"RBM with {args.hidden} hidden units, PCD-{args.gibbs_steps}, {args.num_chains} chains"
    )
    result, wall = train(args, train_v)
    num_steps = max(1, args.epochs * (len(train_v) // args.batch_size))
    params = result.params
    model_args = (train_v.shape[1], args.hidden)
    ll_test = ebm.log_likelihood(rbm.model, params, {"v": test_v}, model_args=model_args)
    # same log Z for the training set: only the free energies are new
    ll_train = float(
        np.mean(-np.asarray(rbm.free_energy(params, jnp.asarray(train_v)))) - ll_test.log_z.log_z
    )
    # baseline: independent pixels at the training frequencies (the RBM with W = 0)
    p = np.clip(train_v.mean(0), 1e-3, 1 - 1e-3)
    ll_indep = float(np.mean(test_v @ np.log(p) + (1 - test_v) @ np.log1p(-p)))
    print(
        f"fit: {num_steps} updates in {wall:.1f} s (with compilation)"
        + ("  NONFINITE" if result.flags.get("nonfinite") else "")
    )
    print(f"exact log Z = {ll_test.log_z.log_z:.3f} (method {ll_test.log_z.method})")
    print(
        f"log-likelihood per image (nats): test {ll_test.mean:.3f}, train {ll_train:.3f}; "
        f"independent pixels test {ll_indep:.3f}"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        chains = np.asarray(result.obj_state.chains["v"])[:32]
        samples = gibbs_samples(jax.random.PRNGKey(args.seed + 2), params, chains, 100)
        plot(
            args.out / "rbm_samples.png", samples, "P(v=1|h) after 100 Gibbs sweeps from PCD chains"
        )
        w = np.asarray(params["W"]).T[:32]
        plot(args.out / "rbm_filters.png", w, "filters: columns of W", cmap="RdBu_r")
    return {"test_ll": ll_test.mean, "train_ll": ll_train, "wall_s": wall}


if __name__ == "__main__":
    main()
