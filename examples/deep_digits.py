"""RBM, DBN and DBM on binarized digits, compared by test log-likelihood; DBM inpainting.

1. Greedy layer-wise training of two RBMs (``64–H1`` then ``H1–H2``) by PCD
   (:func:`ebm_ppl.models.dbn.fit_greedy`). The first is the RBM of the comparison (exact
   test log-likelihood, ``log Z`` by enumerating its hidden layer); the stack is the DBN
   (variational and importance-weighted lower bounds, :func:`ebm_ppl.models.dbn.lower_bound`).
2. The DBM starts from the stack (:func:`ebm_ppl.models.dbm.from_stack`) and is trained by
   :func:`ebm_ppl.fit` with :class:`ebm_ppl.objectives.MeanFieldPCD` (mean-field positive
   phase, persistent layer-wise block-Gibbs chains). Its ``log Z`` by AIS forward (from the
   uniform distribution) and reverse (from exact samples), each with its standard error, beside
   the exact value (``H1 <= 20``: enumerate ``h1``); the test log-likelihood's mean-field
   lower bound, and the exact test log-likelihood.
3. One table of test log-likelihoods (nats per image); the independent-pixel model as baseline.
4. DBM inpainting of the bottom half of the test digits by block Gibbs on ``(v_missing, h1,
   h2)`` (:func:`ebm_ppl.apps.inpaint`), per-pixel accuracy beside the per-pixel marginal.

With ``--out DIR`` it writes ``DIR/deep_digits.png`` (DBN and DBM samples).

Examples:
    python examples/deep_digits.py
    python examples/deep_digits.py --hidden 8 6 --steps 50 --dbm-steps 20 --ais-temperatures 50
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
import optax
from ebm_ppl.models import dbm, dbn, rbm

import ebm_ppl as ebm
from ebm_ppl import apps
from ebm_ppl.data import binarized_digits
from ebm_ppl.objectives import MeanFieldPCD


def dbm_samples(rng_key, params, num: int, num_sweeps: int) -> np.ndarray:
    """``P(v = 1 | h1)`` after ``num_sweeps`` layer-wise Gibbs sweeps from exact-free starts."""
    k0, k = jax.random.split(rng_key)
    h1 = jax.random.bernoulli(k0, 0.5, (num, params["W1"].shape[1])).astype(np.float32)

    def sweep(h1, key):
        kv, k2, k1 = jax.random.split(key, 3)
        v = jax.random.bernoulli(kv, jax.nn.sigmoid(params["b"] + h1 @ params["W1"].T))
        h2 = jax.random.bernoulli(k2, jax.nn.sigmoid(params["c2"] + h1 @ params["W2"]))
        logits = params["c1"] + v @ params["W1"] + h2 @ params["W2"].T
        return jax.random.bernoulli(k1, jax.nn.sigmoid(logits)).astype(np.float32), None

    h1, _ = jax.lax.scan(sweep, h1, jax.random.split(k, num_sweeps))
    return np.asarray(jax.nn.sigmoid(params["b"] + h1 @ params["W1"].T))


def plot(path: Path, rows: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(10, *(len(x) for x in rows.values()))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.0 * n, 1.2 * len(rows) + 0.3), squeeze=False)
    for r, (title, images) in enumerate(rows.items()):
        for c in range(n):
            axes[r, c].imshow(images[c].reshape(8, 8), cmap="gray", vmin=0, vmax=1)
            axes[r, c].axis("off")
        axes[r, 0].set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs=2, default=(16, 16), metavar=("H1", "H2"))
    parser.add_argument("--steps", type=int, default=3000, help="PCD updates per RBM")
    parser.add_argument("--dbm-steps", type=int, default=3000, help="DBM updates")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--dbm-lr", type=float, default=0.01)
    parser.add_argument(
        "--dbm-pretrain",
        choices=("stack", "doubled"),
        default="stack",
        help="DBM start: the DBN's stack, or Salakhutdinov & Hinton's doubled-layer RBMs "
        "(two more RBM fits, dbm.pretrain)",
    )
    parser.add_argument("--ais-chains", type=int, default=500)
    parser.add_argument("--ais-temperatures", type=int, default=3000)
    parser.add_argument("--bound-samples", type=int, default=200, help="DBN recognition draws")
    parser.add_argument("--inpaint-samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    h1, h2 = args.hidden
    if not 1 <= h1 <= dbm.MAX_ENUMERATED_UNITS or h2 < 1:
        parser.error(f"--hidden H1 must be in 1..{dbm.MAX_ENUMERATED_UNITS} (exact log Z)")

    train, test = binarized_digits()
    se = lambda x: float(np.std(x) / np.sqrt(len(x)))  # noqa: E731  (over test digits)
    key = jax.random.PRNGKey(args.seed)
    k_stack, k_dbm, k_bound, k_fwd, k_rev, k_inp, k_gen = jax.random.split(key, 7)
    t0 = time.perf_counter()
    layers = dbn.fit_greedy(
        k_stack,
        train,
        (h1, h2),
        num_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
    )
    t_stack = time.perf_counter() - t0
    print(f"greedy stack 64-{h1}-{h2}: {2 * args.steps} updates in {t_stack:.1f} s")

    # RBM: the first layer of the stack, exact
    ll_rbm = ebm.log_likelihood(rbm.model, layers[0], {"v": test}, model_args=(64, h1))
    # DBN
    bound = dbn.lower_bound(k_bound, layers, test, num_samples=args.bound_samples)
    # DBM
    t0 = time.perf_counter()
    result = ebm.fit(
        dbm.model,
        train,
        model_args=(64, h1, h2),
        data_site="v",
        init_params=dbm.from_stack(layers)
        if args.dbm_pretrain == "stack"
        else dbm.pretrain(
            jax.random.fold_in(k_dbm, 1),
            train,
            h1,
            h2,
            method="doubled",
            num_steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=args.lr,
        ),
        objective=MeanFieldPCD(
            kernel="gibbs", num_chains=100, damping=0.5, num_mean_field_steps=10
        ),
        optimizer=optax.sgd(
            optax.linear_schedule(args.dbm_lr, args.dbm_lr / 50, args.dbm_steps), momentum=0.5
        ),
        num_steps=args.dbm_steps,
        batch_size=args.batch_size,
        rng_key=k_dbm,
        log_every=max(1, min(500, args.dbm_steps)),
        progress=False,
    )
    params = result.params
    t_dbm = time.perf_counter() - t0
    print(f"DBM 64-{h1}-{h2}: {args.dbm_steps} mean-field PCD updates in {t_dbm:.1f} s")
    exact = float(dbm.log_partition(params))
    ais = dict(num_chains=args.ais_chains, num_temperatures=args.ais_temperatures)
    t0 = time.perf_counter()
    fwd = ebm.log_partition(
        dbm.model, params, method="ais", rng_key=k_fwd, model_args=(64, h1, h2), **ais
    )
    rev = ebm.log_partition(
        dbm.model, params, method="ais", rng_key=k_rev, reverse=True, model_args=(64, h1, h2), **ais
    )
    t_ais = time.perf_counter() - t0
    print(
        f"DBM log Z: AIS forward {fwd.log_z:.3f} ± {fwd.stderr:.3f}, reverse {rev.log_z:.3f} ± "
        f"{rev.stderr:.3f} ({args.ais_chains} chains, {args.ais_temperatures} temperatures, "
        f"{t_ais:.1f} s); exact {exact:.3f}"
    )
    lb = np.asarray(dbm.lower_bound(params, test, fwd))
    ll_dbm_n = -np.asarray(dbm.free_energy(params, test)) - exact
    ll_dbm = float(np.mean(ll_dbm_n))
    p = np.clip(train.mean(0), 1e-3, 1 - 1e-3)
    ll_indep = float(np.mean(test @ np.log(p) + (1 - test) @ np.log1p(-p)))

    print("\ntest log-likelihood per image (nats), 297 test digits")
    print("model                  | units        | estimate")
    print(f"independent pixels     | 64           | {ll_indep:.3f}")
    print(
        f"RBM (exact)            | 64-{h1:<9d} | {ll_rbm.mean:.3f} ± {se(ll_rbm.per_example):.3f}"
    )
    print(f"DBN variational bound  | 64-{h1}-{h2:<6d} | {bound.mean:.3f} ± {bound.stderr:.3f}")
    print(f"DBN importance-weighted| 64-{h1}-{h2:<6d} | {bound.iw_mean:.3f}")
    print(f"DBM mean-field bound   | 64-{h1}-{h2:<6d} | {lb.mean():.3f} ± {se(lb):.3f} (AIS log Z)")
    print(
        f"DBM mean-field bound   | 64-{h1}-{h2:<6d} | {lb.mean() + fwd.log_z - exact:.3f} (exact log Z)"
    )
    print(f"DBM (exact)            | 64-{h1}-{h2:<6d} | {ll_dbm:.3f} ± {se(ll_dbm_n):.3f}")

    mask = np.zeros((8, 8), bool)
    mask[:4] = True
    mask = np.broadcast_to(mask.ravel(), test.shape)
    t0 = time.perf_counter()
    imp = apps.inpaint(
        k_inp,
        dbm.model,
        params,
        test,
        mask,
        site="v",
        num_warmup=50,
        num_samples=args.inpaint_samples,
        model_args=(64, h1, h2),
    )
    acc = float(np.mean(((np.asarray(imp.mean) > 0.5) == (test > 0.5))[~mask]))
    base = float(np.mean((np.broadcast_to(train.mean(0) > 0.5, test.shape) == (test > 0.5))[~mask]))
    print(
        f"\nDBM inpainting (bottom half, {time.perf_counter() - t0:.1f} s): per-pixel accuracy "
        f"{acc:.4f}, per-pixel marginal baseline {base:.4f}"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        k1, k2 = jax.random.split(k_gen)
        plot(
            args.out / "deep_digits.png",
            {
                "DBN samples": np.asarray(dbn.generate(k1, layers, 10, num_gibbs=500)),
                "DBM samples": dbm_samples(k2, params, 10, 500),
                "DBM inpainted": np.where(mask, test, np.asarray(imp.mean))[:10],
            },
        )
    return {
        "rbm": float(ll_rbm.mean),
        "dbn_bound": bound.mean,
        "dbm_bound": float(lb.mean()),
        "dbm_exact": ll_dbm,
        "ais_forward": fwd.log_z,
        "ais_reverse": rev.log_z,
        "log_z": exact,
        "inpaint": acc,
        "baseline": base,
    }


if __name__ == "__main__":
    main()
