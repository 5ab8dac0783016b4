"""Applications of an RBM on binarized digits: inpainting, denoising and anomaly detection.

1. Inpainting: an RBM trained by PCD on the 1500 training digits fills the masked half (the
   bottom four rows, or the right half with ``--mask right``) of each test digit by block Gibbs
   with the observed half clamped (:func:`ebm_ppl.apps.inpaint`). Per-pixel accuracy of the
   posterior-marginal prediction (``P(pixel = 1 | observed) > 0.5``) on the masked pixels is
   printed beside the per-pixel marginal baseline (each pixel predicted by its training
   frequency, ignoring the observed half).
2. Denoising: test digits with ``--flip`` of their pixels flipped, cleaned by sampling the
   RBM posterior (:func:`ebm_ppl.apps.denoise`); pixel error before and after.
3. Anomaly detection: for each digit class (``--classes``), an RBM trained without that class
   scores the held-out images (all 180 or so of that class) against the test images of the
   other classes by free energy (:func:`ebm_ppl.apps.anomaly_scores`); one AUROC per class.

With ``--out DIR`` it writes ``DIR/rbm_inpainting.png`` (test digits, their observed half, and
the posterior mean of the missing half).

Examples:
    python examples/rbm_apps.py                         # 64 hidden units, all classes held out
    python examples/rbm_apps.py --hidden 8 --epochs 1 --classes 0 --out /tmp/apps
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
import optax
from ebm_ppl.models import rbm

import ebm_ppl as ebm
from ebm_ppl import apps
from ebm_ppl.data import DIGITS_NUM_TRAIN, binarized_digits
from ebm_ppl.objectives import PersistentContrastiveDivergence


def digit_labels() -> tuple[np.ndarray, np.ndarray]:
    """Labels of :func:`ebm_ppl.data.binarized_digits`' rows (``(train, test)``)."""
    from sklearn.datasets import load_digits

    y = np.asarray(load_digits().target)
    return y[:DIGITS_NUM_TRAIN], y[DIGITS_NUM_TRAIN:]


def train_rbm(args: argparse.Namespace, data: np.ndarray, seed: int):
    """PCD fit of a Bernoulli RBM (SGD with momentum, linearly decayed learning rate)."""
    num_steps = max(1, args.epochs * (len(data) // args.batch_size))
    schedule = optax.linear_schedule(args.lr, args.lr / 50, num_steps)
    result = ebm.fit(
        rbm.model,
        data,
        model_args=(data.shape[1], args.hidden),
        data_site="v",
        init_params=rbm.init_params(jax.random.PRNGKey(seed), data, args.hidden),
        objective=PersistentContrastiveDivergence("gibbs", num_mcmc_steps=1, num_chains=100),
        optimizer=optax.sgd(schedule, momentum=0.5),
        num_steps=num_steps,
        batch_size=args.batch_size,
        rng_key=jax.random.PRNGKey(seed + 1),
        log_every=max(1, min(500, num_steps)),
        progress=False,
    )
    return result.params


def half_mask(kind: str, num: int) -> np.ndarray:
    """``(num, 64)`` boolean mask, ``True`` where a pixel is observed."""
    grid = np.zeros((8, 8), bool)
    if kind == "bottom":
        grid[:4] = True  # the top half is observed
    else:
        grid[:, :4] = True  # the left half is observed
    return np.broadcast_to(grid.ravel(), (num, 64)).copy()


def plot(path: Path, test: np.ndarray, mask: np.ndarray, mean: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(8, len(test))
    fig, axes = plt.subplots(3, n, figsize=(1.1 * n, 3.8), squeeze=False)
    rows = (test, np.where(mask, test, 0.5), np.where(mask, test, mean))
    for r, (images, title) in enumerate(zip(rows, ("test", "observed", "inpainted"), strict=True)):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c].reshape(8, 8), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.axis("off")
        axes[r, 0].set_title(title, fontsize=8, loc="left")
    fig.suptitle("RBM inpainting: posterior mean of the missing half", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--mask", choices=("bottom", "right"), default="bottom")
    parser.add_argument("--num-samples", type=int, default=200, help="Gibbs sweeps kept")
    parser.add_argument("--num-warmup", type=int, default=50, help="Gibbs sweeps discarded")
    parser.add_argument("--flip", type=float, default=0.1, help="flip probability (denoising)")
    parser.add_argument(
        "--classes", type=int, nargs="*", default=list(range(10)), help="classes held out"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if any(not 0 <= c <= 9 for c in args.classes):
        parser.error(f"--classes must be digits 0-9, got {args.classes}")

    train_v, test_v = binarized_digits()
    train_y, test_y = digit_labels()
    out: dict[str, float] = {}
    start = time.perf_counter()
    params = train_rbm(args, train_v, args.seed)
    print(f"RBM with {args.hidden} hidden units: fit in {time.perf_counter() - start:.1f} s")

    # --- inpainting
    mask = half_mask(args.mask, len(test_v))
    t0 = time.perf_counter()
    imp = apps.inpaint(
        jax.random.PRNGKey(args.seed + 2),
        rbm.model,
        params,
        test_v,
        mask,
        site="v",
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        model_args=(64, args.hidden),
    )
    mean = np.asarray(imp.mean)
    missing = ~mask
    acc_rbm = float(np.mean(((mean > 0.5) == (test_v > 0.5))[missing]))
    marginal = train_v.mean(0) > 0.5
    acc_base = float(np.mean((np.broadcast_to(marginal, test_v.shape) == (test_v > 0.5))[missing]))
    print(
        f"inpainting ({args.mask} half masked, {time.perf_counter() - t0:.1f} s): per-pixel "
        f"accuracy RBM {acc_rbm:.4f}, per-pixel marginal baseline {acc_base:.4f}"
    )
    out.update(inpaint_accuracy=acc_rbm, baseline_accuracy=acc_base)

    # --- denoising
    flips = np.asarray(
        jax.random.bernoulli(jax.random.PRNGKey(args.seed + 3), args.flip, test_v.shape)
    )
    noisy = np.where(flips, 1.0 - test_v, test_v).astype(np.float32)
    den = apps.denoise(
        jax.random.PRNGKey(args.seed + 4),
        rbm.model,
        params,
        noisy,
        noise="flip",
        noise_scale=args.flip,
        site="v",
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        model_args=(64, args.hidden),
    )
    err_noisy = float(np.mean(noisy != test_v))
    err_clean = float(np.mean((np.asarray(den.mean) > 0.5) != (test_v > 0.5)))
    print(
        f"denoising ({args.flip:.0%} flips): pixel error noisy {err_noisy:.4f}, denoised {err_clean:.4f}"
    )
    out.update(denoise_error=err_clean, noisy_error=err_noisy)

    # --- anomaly detection, one RBM per held-out class
    all_v = np.concatenate([train_v, test_v])
    all_y = np.concatenate([train_y, test_y])
    if args.classes:
        print("held-out class | outliers | inliers | AUROC (free energy)")
    for k in args.classes:
        t0 = time.perf_counter()
        p_k = train_rbm(args, train_v[train_y != k], args.seed + 10 * (k + 1))
        inliers, outliers = test_v[test_y != k], all_v[all_y == k]
        s_in = apps.anomaly_scores(rbm.model, p_k, inliers, site="v", model_args=(64, args.hidden))
        s_out = apps.anomaly_scores(
            rbm.model, p_k, outliers, site="v", model_args=(64, args.hidden)
        )
        a = apps.auroc(s_in, s_out)
        print(
            f"{k:14d} | {len(outliers):8d} | {len(inliers):7d} | {a:.3f}   ({time.perf_counter() - t0:.1f} s)"
        )
        out[f"auroc_{k}"] = a
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        plot(args.out / "rbm_inpainting.png", test_v, mask, mean)
    print(f"total {time.perf_counter() - start:.1f} s")
    return out


if __name__ == "__main__":
    main()
