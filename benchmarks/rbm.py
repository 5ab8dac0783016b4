"""Bernoulli RBM on binarized digits by PCD-1: ``ebm_ppl.fit`` against scikit-learn's BernoulliRBM.

Same settings on both sides, in the same run: 20 epochs, persistent chains = batch size (as
scikit-learn), one block-Gibbs sweep per update, SGD with scikit-learn's learning rate (0.1 by
default) on the batch-mean gradient, W ~ 0.01 N(0, 1) and zero biases, free energy in both
phases (scikit-learn uses the hidden probabilities of the data and of the negatives: the same
gradient).

Printed per configuration (median of interleaved repeats):
* ``sklearn s``: scikit-learn's whole ``fit``;
* ``steady s``: ebm_ppl's 20 epochs without compilation (the times of the chunks of 4 epochs
  after the first, which compiles, scaled to 20 epochs; host syncs between chunks included);
* ``e2e s``: ebm_ppl's whole ``fit`` call, compilation included;
* ``jax s``: a hand-written JAX PCD-1 of the same algorithm (five matrix products per update, the
  epochs of a chunk as one ``lax.scan``), timed the same way (chunks of 4 epochs after the
  first, scaled to 20 epochs);
* ``speedup``: sklearn / steady; ``vs jax``: jax / steady; test pseudo-log-likelihood (the exact sum over all units of
  ``log σ(F(v with unit i flipped) − F(v))``, for both models) and, at 16 hidden units, the exact
  test log-likelihood (log Z by enumeration).

``--fresh``: time to first result. Each run is a fresh Python process (``fit`` at 64 hidden units,
batch 20 and 100, 20 epochs), against a fresh process running scikit-learn's ``fit``: the import
time, the script's own JAX work before the call (initial parameters drawn with ``jax.random``,
compiled in every process: the cache is off until the first ``fit``), the ``fit`` call alone and
the whole process (interpreter start included) are printed for each;
ebm_ppl runs first with an empty persistent compilation cache (cold) and then with the cache the
cold run wrote (warm). scikit-learn's process reads the digits with ``load_digits`` and imports
nothing of ebm_ppl (nor JAX). ``--baseline DIR`` adds rows ``before cold``/``before warm``: the
ebm_ppl source tree in ``DIR`` (e.g. ``git archive REV ebm_ppl | tar -x -C DIR``), measured in the
same run. Repeats are interleaved; medians.

Run: ``python benchmarks/rbm.py [--repeats 3] [--quick] [--fresh [--baseline DIR]]
[--configs 64x20,64x100]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ebm_ppl.models import rbm
from sklearn.neural_network import BernoulliRBM

import ebm_ppl as ebm
from ebm_ppl.data import binarized_digits
from ebm_ppl.objectives import PersistentContrastiveDivergence

EPOCHS = 20
CHUNK_EPOCHS = 4  # epochs per compiled chunk: the host syncs 5 times in 20 epochs


def pseudo_log_likelihood(params, v):
    """Mean over examples of ``Σ_i log σ(F(ṽ_i) − F(v))`` (all units flipped in turn)."""
    v = jnp.asarray(v)
    f = rbm.free_energy(params, v)
    flips = jnp.abs(v[:, None, :] - jnp.eye(v.shape[1])[None])  # (n, D, D)
    f_flip = rbm.free_energy(params, flips)
    return float(jnp.mean(jnp.sum(jax.nn.log_sigmoid(f_flip - f[:, None]), axis=1)))


def exact_log_likelihood(params, v):
    return float(jnp.mean(-rbm.free_energy(params, jnp.asarray(v)) - rbm.log_partition(params)))


def sklearn_params(model):
    return {
        "W": jnp.asarray(model.components_.T, jnp.float32),
        "b": jnp.asarray(model.intercept_visible_, jnp.float32),
        "c": jnp.asarray(model.intercept_hidden_, jnp.float32),
    }


def run_sklearn(train, num_hidden, batch_size, lr, seed):
    model = BernoulliRBM(
        n_components=num_hidden,
        learning_rate=lr,
        batch_size=batch_size,
        n_iter=EPOCHS,
        random_state=seed,
    )
    start = time.perf_counter()
    model.fit(train)
    return time.perf_counter() - start, sklearn_params(model)


def run_ebm(train, num_hidden, batch_size, lr, seed):
    steps_per_epoch = len(train) // batch_size
    key = jax.random.PRNGKey(seed)
    init = {
        "W": 0.01 * jax.random.normal(key, (train.shape[1], num_hidden)),
        "b": jnp.zeros(train.shape[1]),
        "c": jnp.zeros(num_hidden),
    }
    chunk_ends = []
    objective = PersistentContrastiveDivergence(
        "gibbs",
        num_mcmc_steps=1,
        num_chains=batch_size,
        free_energy_fn=lambda p, values: rbm.free_energy(p, values["v"]),
        diagnostics_window=0,
    )
    start = time.perf_counter()
    result = ebm.fit(
        rbm.model,
        train,
        objective=objective,
        optimizer=optax.sgd(lr),
        num_steps=EPOCHS * steps_per_epoch,
        batch_size=batch_size,
        rng_key=jax.random.fold_in(key, 1),
        init_params=init,
        data_site="v",
        model_args=(train.shape[1], num_hidden),
        log_every=CHUNK_EPOCHS * steps_per_epoch,
        progress=False,
        callbacks=[lambda *a: chunk_ends.append(time.perf_counter())],
    )
    end_to_end = time.perf_counter() - start
    steady = float(np.sum(np.diff(chunk_ends))) * EPOCHS / (EPOCHS - CHUNK_EPOCHS)
    return end_to_end, steady, result.params


def run_jax(train, num_hidden, batch_size, lr, seed):
    """The hand-written reference: PCD-1 with persistent (v, h) chains, as ``run_ebm`` trains."""
    n, d = train.shape
    steps = n // batch_size
    data = jnp.asarray(train)
    key = jax.random.PRNGKey(seed)

    def update(carry, xs):
        params, v_chain, h_chain = carry
        batch, step_key = xs
        kv, kh = jax.random.split(step_key)
        w, b, c = params["W"], params["b"], params["c"]
        p_v = jax.nn.sigmoid(h_chain @ w.T + b)
        v = (jax.random.uniform(kv, p_v.shape) < p_v).astype(jnp.float32)
        p_neg = jax.nn.sigmoid(v @ w + c)
        h = (jax.random.uniform(kh, p_neg.shape) < p_neg).astype(jnp.float32)
        p_pos = jax.nn.sigmoid(batch @ w + c)
        scale = lr / batch_size
        params = {
            "W": w + scale * (batch.T @ p_pos - v.T @ p_neg),
            "b": b + scale * jnp.sum(batch - v, axis=0),
            "c": c + scale * jnp.sum(p_pos - p_neg, axis=0),
        }
        return (params, v, h), None

    @jax.jit
    def chunk(carry, first_epoch):
        def epoch(carry, e):
            ekey = jax.random.fold_in(key, e)
            perm = jax.random.permutation(ekey, n)[: steps * batch_size]
            batches = data[perm].reshape(steps, batch_size, d)
            keys = jax.random.split(jax.random.fold_in(ekey, 1), steps)
            return jax.lax.scan(update, carry, (batches, keys))[0], None

        return jax.lax.scan(epoch, carry, first_epoch + jnp.arange(CHUNK_EPOCHS))[0]

    params = {
        "W": 0.01 * jax.random.normal(key, (d, num_hidden)),
        "b": jnp.zeros(d),
        "c": jnp.zeros(num_hidden),
    }
    carry = (params, data[:batch_size], jnp.zeros((batch_size, num_hidden)))
    carry = jax.block_until_ready(chunk(carry, 0))  # compiles
    start = time.perf_counter()
    for e in range(CHUNK_EPOCHS, EPOCHS, CHUNK_EPOCHS):
        carry = jax.block_until_ready(chunk(carry, e))
    return (time.perf_counter() - start) * EPOCHS / (EPOCHS - CHUNK_EPOCHS)


_WORKER = """
import json, sys, time
t0 = time.perf_counter()
which, hidden, batch, lr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
if which == "sklearn":
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.neural_network import BernoulliRBM
    t1 = time.perf_counter()
    train = (load_digits().data[:1500] >= 8).astype(np.float32)  # ebm_ppl.data's training set
    t2 = td = time.perf_counter()
    BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=batch, n_iter=20,
                 random_state=0).fit(train)
else:
    import jax, jax.numpy as jnp, optax
    import ebm_ppl as ebm
    from ebm_ppl.data import binarized_digits
    from ebm_ppl.models import rbm
    from ebm_ppl.objectives import PersistentContrastiveDivergence
    t1 = time.perf_counter()
    train, _ = binarized_digits()
    td = time.perf_counter()
    key = jax.random.PRNGKey(0)
    init = {"W": 0.01 * jax.random.normal(key, (64, hidden)), "b": jnp.zeros(64),
            "c": jnp.zeros(hidden)}
    objective = PersistentContrastiveDivergence(
        "gibbs", num_mcmc_steps=1, num_chains=batch,
        free_energy_fn=lambda p, values: rbm.free_energy(p, values["v"]), diagnostics_window=0)
    steps = 20 * (len(train) // batch)
    rng_key = jax.block_until_ready(jax.random.fold_in(key, 1))
    t2 = time.perf_counter()  # the script's own JAX work above (initial parameters) not counted
    result = ebm.fit(rbm.model, train, objective=objective, optimizer=optax.sgd(lr),
                     num_steps=steps, batch_size=batch, rng_key=rng_key, init_params=init,
                     data_site="v", model_args=(64, hidden), log_every=steps // 5,
                     progress=False)
    jax.block_until_ready(result.params)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "script": t2 - td, "fit": t3 - t2}))
"""


def run_fresh(which, hidden, batch, lr, env):
    """One fresh process; ``{"import", "fit", "process"}`` seconds."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _WORKER, which, str(hidden), str(batch), str(lr)],
        env=env,
        cwd=tempfile.gettempdir(),  # not a source tree: PYTHONPATH decides which ebm_ppl runs
        capture_output=True,
        text=True,
        check=True,
    )
    whole = time.perf_counter() - start
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["process"] = whole
    return row


def main_fresh(args):
    configs = [(64, 20)] if args.quick else [(64, 20), (64, 100)]
    base = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR",)}
    base.pop("EBM_PPL_NO_CACHE", None)
    print(f"fresh processes; {EPOCHS} epochs PCD-1; median of {args.repeats} interleaved repeats")
    print(
        f"{'hidden':>6} {'batch':>5} {'run':<16} {'import s':>8} {'script s':>8} {'fit s':>7} "
        f"{'process s':>9} "
        f"{'fit / sklearn fit':>17} {'process / sklearn':>17}"
    )
    variants = {"ebm_ppl": base}
    if args.baseline:
        # another ebm_ppl source tree (e.g. ``git archive REV ebm_ppl | tar -x -C DIR``) first on
        # the path: its rows are measured in the same run, interleaved with this checkout's
        path = os.pathsep.join([args.baseline, base.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        variants = {"before": dict(base, PYTHONPATH=path), **variants}
    for hidden, batch in configs:
        rows: dict[str, list[dict]] = {"sklearn": []}
        for _ in range(args.repeats):
            rows["sklearn"].append(run_fresh("sklearn", hidden, batch, args.learning_rate, base))
            for name, venv in variants.items():
                with tempfile.TemporaryDirectory() as tmp:
                    env = dict(venv, EBM_PPL_CACHE_DIR=tmp)
                    for state in ("cold", "warm"):
                        row = run_fresh("ebm", hidden, batch, args.learning_rate, env)
                        rows.setdefault(f"{name} {state}", []).append(row)
        med = {
            name: {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
            for name, rs in rows.items()
        }
        sk = med["sklearn"]
        for name, m in med.items():
            print(
                f"{hidden:>6} {batch:>5} {name:<16} {m['import']:>8.2f} {m['script']:>8.2f} "
                f"{m['fit']:>7.2f} "
                f"{m['process']:>9.2f} {m['fit'] / sk['fit']:>17.2f} "
                f"{m['process'] / sk['process']:>17.2f}"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--quick", action="store_true", help="64 hidden units, batch 20 only")
    parser.add_argument("--fresh", action="store_true", help="end to end in fresh processes")
    parser.add_argument("--configs", default=None, help="e.g. 64x20,64x100 (hidden x batch)")
    parser.add_argument(
        "--baseline",
        default=None,
        help="with --fresh: an older ebm_ppl source tree to measure in the same run (rows 'before')",
    )
    args = parser.parse_args()
    if args.fresh:
        return main_fresh(args)
    train, test = binarized_digits()
    configs = [(64, 20), (64, 100), (256, 20), (256, 100), (16, 20)]
    if args.quick:
        configs = [(64, 20)]
    if args.configs:
        configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    print(
        f"jax {jax.__version__}, devices {jax.devices()}; {EPOCHS} epochs, PCD-1, lr {args.learning_rate}"
    )
    header = (
        f"{'hidden':>6} {'batch':>5} {'sklearn s':>9} {'steady s':>8} {'jax s':>7} {'e2e s':>7} "
        f"{'speedup':>7} {'vs jax':>6} "
        f"{'PLL sk':>8} {'PLL ours':>8} {'LL sk':>8} {'LL ours':>8}"
    )
    print(header)
    for num_hidden, batch_size in configs:
        sk_times, e2e_times, steady_times, jax_times = [], [], [], []
        for r in range(args.repeats):  # interleaved repeats
            t_sk, p_sk = run_sklearn(train, num_hidden, batch_size, args.learning_rate, r)
            t_e2e, t_steady, p_ours = run_ebm(train, num_hidden, batch_size, args.learning_rate, r)
            jax_times.append(run_jax(train, num_hidden, batch_size, args.learning_rate, r))
            sk_times.append(t_sk)
            e2e_times.append(t_e2e)
            steady_times.append(t_steady)
        sk, e2e, steady, t_jax = (
            float(np.median(t)) for t in (sk_times, e2e_times, steady_times, jax_times)
        )
        pll_sk, pll_ours = pseudo_log_likelihood(p_sk, test), pseudo_log_likelihood(p_ours, test)
        ll_sk = ll_ours = float("nan")
        if num_hidden <= 20:
            ll_sk, ll_ours = exact_log_likelihood(p_sk, test), exact_log_likelihood(p_ours, test)
        print(
            f"{num_hidden:>6} {batch_size:>5} {sk:>9.3f} {steady:>8.3f} {t_jax:>7.3f} {e2e:>7.2f} "
            f"{sk / steady:>6.2f}x {t_jax / steady:>5.2f}x {pll_sk:>8.2f} {pll_ours:>8.2f} "
            f"{ll_sk:>8.2f} {ll_ours:>8.2f}"
        )


if __name__ == "__main__":
    main()
