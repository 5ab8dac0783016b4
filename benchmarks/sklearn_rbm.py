"""scikit-learn pipelines: ``ebm_ppl.sklearn.BernoulliRBM`` beside scikit-learn's own RBM.

On the binarized digits (``ebm_ppl.data.binarized_digits``: 1500 training images of 8×8
pixels, 297 test images; labels from ``sklearn.datasets.load_digits``), the pipeline
``Pipeline(BernoulliRBM, LogisticRegression)`` is tuned by ``GridSearchCV`` over the number of
hidden units, once with each RBM. Printed per RBM: the best cross-validated accuracy, the test
accuracy of the refitted best pipeline, the wall time of the search (end to end, medians of
interleaved repeats), and what ``score_samples`` reports on the test images: scikit-learn's
pseudo-likelihood, and ours, the true log-likelihood ``log p(v)`` (exact, enumerating the hidden
layer, for up to 20 hidden units; AIS beyond).

The two RBMs train identically (the same updates and random numbers), so the accuracies agree;
the difference is the likelihood reported and its cost (``log Z`` after each exact fit).

Run: ``python benchmarks/sklearn_rbm.py [--n-iter 10] [--repeats 1] [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import BernoulliRBM as SkBernoulliRBM
from sklearn.pipeline import Pipeline

import ebm_ppl as ebm
from ebm_ppl.sklearn import BernoulliRBM


def search(rbm_class, train, labels, args):
    pipe = Pipeline(
        [
            ("rbm", rbm_class(n_iter=args.n_iter, learning_rate=0.06, random_state=0)),
            ("clf", LogisticRegression(max_iter=1000, C=100.0)),
        ]
    )
    grid = {"rbm__n_components": args.components}
    return GridSearchCV(pipe, grid, cv=3).fit(train, labels)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="600 images, 2 iterations")
    args = parser.parse_args(argv)
    train, test = ebm.data.binarized_digits()
    target = load_digits().target
    labels, test_labels = target[: len(train)], target[len(train) :]
    args.components = [16, 20]
    if args.quick:
        train, labels, args.n_iter = train[:600], labels[:600], 2
    times = {"ebm_ppl": [], "sklearn": []}
    found = {}
    for _ in range(args.repeats):
        for name, cls in (("ebm_ppl", BernoulliRBM), ("sklearn", SkBernoulliRBM)):
            start = time.perf_counter()
            found[name] = search(cls, train, labels, args)
            times[name].append(time.perf_counter() - start)
    print(f"digits: {len(train)} train / {len(test)} test images, n_iter={args.n_iter}, "
          f"grid n_components={args.components}, 3-fold CV")  # fmt: skip
    print(f"{'RBM':10s} {'best H':>6s} {'CV acc':>7s} {'test acc':>8s} {'search s':>9s} "
          f"{'score_samples on test (mean)':>30s}")  # fmt: skip
    for name in ("ebm_ppl", "sklearn"):
        s = found[name]
        rbm = s.best_estimator_.named_steps["rbm"]
        value = float(np.mean(rbm.score_samples(test)))
        what = f"log p(v) {value:.3f} ({rbm.log_z_method_})" if name == "ebm_ppl" else (
            f"pseudo-LL {value:.3f}")  # fmt: skip
        print(f"{name:10s} {s.best_params_['rbm__n_components']:6d} {s.best_score_:7.3f} "
              f"{s.score(test, test_labels):8.3f} {np.median(times[name]):9.1f} {what:>30s}")  # fmt: skip
    ours = found["ebm_ppl"].best_estimator_.named_steps["rbm"]
    pseudo = SkBernoulliRBM.score_samples(ours, test)
    true = ours.score_samples(test)
    print(f"same weights, per image: |pseudo-LL - log p(v)| median "
          f"{np.median(np.abs(pseudo - true)):.2f} nats, max {np.max(np.abs(pseudo - true)):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
