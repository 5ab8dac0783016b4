"""Joint energy model (JEM) on scikit-learn's digits, beside a plain MLP classifier.

An MLP classifier's logits ``f(x)`` define ``E(x, y) = -f(x)[y]`` and ``E(x) = -logsumexp f(x)``
(:mod:`ebm_ppl.models.jem`); the JEM is trained on ``log p(y | x) + log p(x)``, the second term
by contrastive divergence with Langevin negatives from a replay buffer (5% restarts from uniform
noise, L2 energy regularizer, weight 0.3 on the generative term), the MLP of the same size on
``log p(y | x)`` alone. Digits are scaled to ``[-1, 1]`` and dequantized, 1500 training and 297
test rows (a seeded random split).

Reported: test accuracy and expected calibration error of both; AUROC of the energy ``E(x)``
separating uniform noise from test digits; AUROC separating a digit class held out of training
(a JEM trained without it) from the test digits of the other classes; the semi-supervised JEM
with 10% of the labels against the MLP trained on those labels alone; and class-conditional
samples ``x ~ p(x | y)`` by Langevin from noise, plotted to ``--out``.

Examples:
    python examples/jem_digits.py
    python examples/jem_digits.py --tiny --out /tmp/jem.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from ebm_ppl.models import jem

from ebm_ppl import apps

ROOT = Path(__file__).resolve().parents[1]


def plot(path: Path, samples: np.ndarray, labels: np.ndarray, per_class: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(10, per_class, figsize=(0.8 * per_class, 8.4), squeeze=False)
    for c in range(10):
        rows = samples[labels == c]
        for j in range(per_class):
            axes[c, j].imshow(rows[j].reshape(8, 8), cmap="gray_r", vmin=-1, vmax=1)
            axes[c, j].axis("off")
        axes[c, 0].set_title(f"y = {c}", fontsize=7, loc="left")
    fig.suptitle("JEM: samples of p(x | y), Langevin from uniform noise", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="optimizer updates per fit")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units of the MLP")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--mcmc-steps", type=int, default=20, help="Langevin steps per update")
    parser.add_argument("--step-size", type=float, default=0.01, help="Langevin step size")
    parser.add_argument("--l2", type=float, default=0.003, help="L2 energy regularizer")
    parser.add_argument(
        "--generative-weight", type=float, default=0.3, help="weight of the log p(x) term"
    )
    parser.add_argument("--buffer-size", type=int, default=2000)
    parser.add_argument("--labelled-fraction", type=float, default=0.1)
    parser.add_argument("--held-out", type=int, default=9, help="class left out for OOD")
    parser.add_argument("--sample-steps", type=int, default=300, help="Langevin steps per sample")
    parser.add_argument("--per-class", type=int, default=8, help="conditional samples per class")
    parser.add_argument("--num-train", type=int, default=None, help="use the first N train rows")
    parser.add_argument("--tiny", action="store_true", help="a few updates of a small net")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gallery" / "jem_digits.png")
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.hidden, args.mcmc_steps = 5, 8, 1
        args.buffer_size, args.sample_steps, args.per_class = 100, 2, 1
        args.num_train = args.num_train or 200
    t_all = time.perf_counter()
    xtr, ytr, xte, yte = jem.digits(args.seed)
    if args.num_train:
        xtr, ytr = xtr[: args.num_train], ytr[: args.num_train]
    model_args = (xtr.shape[1], 10, (args.hidden,))
    options = dict(
        num_classes=10,
        hidden=(args.hidden,),
        num_steps=args.steps,
        batch_size=min(args.batch_size, len(xtr)),
        learning_rate=args.lr,
        num_mcmc_steps=args.mcmc_steps,
        step_size=args.step_size,
        l2_reg=args.l2,
        generative_weight=args.generative_weight,
        buffer_size=args.buffer_size,
    )

    def fit(name, key, x, y, **kw):
        t0 = time.perf_counter()
        res = jem.train(key, x, y, **{**options, **kw})
        if res.flags["nonfinite"]:
            raise RuntimeError(f"{name}: training stopped on non-finite values")
        print(f"  fit {name}: {time.perf_counter() - t0:.1f} s")
        return res.params

    def logits(params, x):
        return np.asarray(jem.logits(params, x, model_args=model_args))

    def accuracy(params, x, y):
        return float(np.mean(logits(params, x).argmax(-1) == y))

    noise = np.asarray(
        jax.random.uniform(jax.random.PRNGKey(args.seed + 99), xte.shape, minval=-1.0, maxval=1.0)
    )
    out: dict[str, float] = {}

    # ---- supervised: JEM and the plain MLP on all labels
    print("fully supervised")
    p_jem = fit("JEM", args.seed, xtr, ytr)
    p_mlp = fit("MLP", args.seed, xtr, ytr, generative=False)
    print(
        f"{'model':5s} | {'test accuracy':>13s} | {'ECE':>6s} | AUROC E(x), uniform noise vs test"
    )
    for name, p in (("JEM", p_jem), ("MLP", p_mlp)):
        f_te = logits(p, xte)
        acc = float(np.mean(f_te.argmax(-1) == yte))
        ece = apps.expected_calibration_error(f_te, yte)
        roc = apps.auroc(apps.classifier_energy(f_te), apps.classifier_energy(logits(p, noise)))
        print(f"{name:5s} | {acc:13.4f} | {ece:6.4f} | {roc:.4f}")
        out.update({f"{name.lower()}_accuracy": acc, f"{name.lower()}_ece": ece})
        out[f"{name.lower()}_auroc_noise"] = roc

    # ---- a class held out of training: its test digits against those of the other classes
    k = args.held_out
    xtr_k, ytr_k, _, _ = jem.digits(args.seed, exclude=k)
    if args.num_train:
        xtr_k, ytr_k = xtr_k[: args.num_train], ytr_k[: args.num_train]
    p_k = fit(f"JEM without class {k}", args.seed + 1, xtr_k, ytr_k)
    s_k = np.asarray(apps.classifier_energy(logits(p_k, xte)))
    roc_k = apps.auroc(s_k[yte != k], s_k[yte == k])
    out["auroc_held_out"] = roc_k
    print(f"held-out class {k}: AUROC of E(x), class {k} vs other test digits = {roc_k:.4f}")

    # ---- semi-supervised: 10% of the labels
    rng = np.random.default_rng(args.seed)
    num_l = max(10, int(round(args.labelled_fraction * len(ytr))))
    mask = np.zeros(len(ytr), bool)
    mask[rng.choice(len(ytr), num_l, replace=False)] = True
    p_semi = fit("semi-supervised JEM", args.seed + 2, xtr, ytr, labelled=mask)
    # the cross-entropy reads the labelled rows alone; with the generative term off, the other
    # rows only keep the shapes (and so the compiled program) of the fits above
    p_few = fit(
        "MLP on the labelled rows", args.seed + 2, xtr, ytr, labelled=mask, generative=False
    )
    acc_semi, acc_few = accuracy(p_semi, xte, yte), accuracy(p_few, xte, yte)
    out.update({"semi_jem_accuracy": acc_semi, "semi_mlp_accuracy": acc_few})
    print(
        f"{num_l} labels ({args.labelled_fraction:.0%}): semi-supervised JEM accuracy "
        f"{acc_semi:.4f}, MLP on those labels alone {acc_few:.4f}"
    )

    # ---- class-conditional samples of the fully supervised JEM
    labels = jnp.repeat(jnp.arange(10), args.per_class)
    samples = np.asarray(
        jem.sample_conditional(
            jax.random.PRNGKey(args.seed + 7),
            p_jem,
            labels,
            num_steps=args.sample_steps,
            step_size=args.step_size,
            model_args=model_args,
        )
    )
    agree = float(np.mean(logits(p_jem, samples).argmax(-1) == np.asarray(labels)))
    out["samples_classified_as_their_label"] = agree
    print(f"conditional samples classified as their label: {agree:.3f}")
    if args.out is not None:
        plot(args.out, samples, np.asarray(labels), args.per_class)
    out["seconds"] = time.perf_counter() - t_all
    print(f"total {out['seconds']:.0f} s")
    return out


if __name__ == "__main__":
    main()
