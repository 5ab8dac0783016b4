"""Conditional EBM for structured prediction: the bottom half of a digit given its top half.

``p(y | x) ∝ exp(yᵀ(Ux + a) + ½ yᵀJy)`` (:mod:`ebm_ppl.models.conditional`), ``x`` the 32 top
pixels, ``y`` the 32 bottom pixels, trained by :func:`ebm_ppl.fit` with contrastive divergence
(Gibbs chains on ``y`` clamped to each example's ``x``). The same model without the coupling
``J`` (independent logistic outputs) is trained beside it. Per-pixel test accuracy of the
Gibbs posterior marginals and of the energy minimum found by iterated conditional modes, for
both, and the fraction of test digits whose bottom half is predicted exactly. With
``--out DIR`` it writes ``DIR/conditional_digits.png``.

Examples:
    python examples/conditional_digits.py
    python examples/conditional_digits.py --steps 20 --sweeps 5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ebm_ppl.models import conditional

import ebm_ppl as ebm
from ebm_ppl.data import binarized_digits
from ebm_ppl.objectives import ContrastiveDivergence


def fit(args, x, y, couplings: bool, seed: int):
    result = ebm.fit(
        conditional.model,
        {"x": x, "y": y},
        model_args=(jnp.zeros(x.shape[1]), y.shape[1]),
        model_kwargs={"couplings": couplings},
        objective=ContrastiveDivergence("gibbs", num_mcmc_steps=args.cd_steps),
        optimizer=optax.adam(optax.cosine_decay_schedule(args.lr, args.steps, alpha=0.05)),
        num_steps=args.steps,
        batch_size=args.batch_size,
        rng_key=jax.random.PRNGKey(seed),
        log_every=max(1, min(500, args.steps)),
        progress=False,
    )
    return result.params


def plot(path: Path, x, y, pred) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = 10
    fig, axes = plt.subplots(2, n, figsize=(1.0 * n, 2.4), squeeze=False)
    for c in range(n):
        for r, bottom in enumerate((y, pred)):
            axes[r, c].imshow(
                np.concatenate([x[c], bottom[c]]).reshape(8, 8), cmap="gray", vmin=0, vmax=1
            )
            axes[r, c].axis("off")
    axes[0, 0].set_title("truth", fontsize=8, loc="left")
    axes[1, 0].set_title("P(y | x), Gibbs", fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--cd-steps", type=int, default=5)
    parser.add_argument("--sweeps", type=int, default=200, help="Gibbs sweeps for the marginals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    train, test = binarized_digits()
    xtr, ytr, xte, yte = train[:, :32], train[:, 32:], test[:, :32], test[:, 32:]
    out = {}
    print("model                  | marginals (Gibbs) | ICM minimum | exact halves (ICM)")
    for couplings in (True, False):
        t0 = time.perf_counter()
        params = fit(args, xtr, ytr, couplings, args.seed + int(couplings))
        key = jax.random.PRNGKey(args.seed + 10)
        marg = np.asarray(conditional.predict(key, params, xte, num_sweeps=args.sweeps))
        icm = np.asarray(conditional.predict(key, params, xte, method="icm", num_sweeps=20))
        acc_m = float(np.mean((marg > 0.5) == (yte > 0.5)))
        acc_i = float(np.mean(icm == yte))
        exact = float(np.mean(np.all(icm == yte, axis=1)))
        name = "coupled outputs (CRF)" if couplings else "independent outputs"
        print(
            f"{name:22s} | {acc_m:17.4f} | {acc_i:11.4f} | {exact:.3f}   ({time.perf_counter() - t0:.1f} s)"
        )
        out[f"{'crf' if couplings else 'independent'}_marginal_accuracy"] = acc_m
        if couplings and args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            plot(args.out / "conditional_digits.png", xte, yte, marg)
    return out


if __name__ == "__main__":
    main()
