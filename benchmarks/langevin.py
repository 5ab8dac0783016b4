"""MALA throughput and efficiency against BlackJAX and NumPyro (a script, not a test).

Two targets: a 100-d correlated Gaussian and a 2-layer MLP energy (32-d state, 128 hidden units,
plus a quadratic confinement). For each, ``--num-chains`` chains x ``--num-steps`` steps, same
step size and same starting points (near stationarity) for every MALA implementation:

  (a) ``ebm_ppl.kernels.mala`` vmapped over chains inside one jitted ``lax.scan``;
  (b) BlackJAX's ``mala`` on the same potential (log density = -energy), same structure;
  (c) our ``MALA`` adapter through ``ebm_ppl.sample`` (sampling phase only, as the driver times
      it; compilation and InferenceData conversion reported separately; also end to end, and
      with the driver's previous 100-step chunks for a before/after comparison), and through
      ``numpyro.infer.MCMC`` (vectorized, no progress bar; NumPyro 0.22 recompiles in every
      ``run``, so its time includes compilation);
  (d) NumPyro NUTS (vectorized, 300 warmup steps not timed separately: its column is the
      sampling run with ``MCMC.run`` of the post-warmup state, compilation included).

Every implementation collects all draws. Timings are the median of ``--repeats`` interleaved
repeats (compiled once beforehand, except where stated); on a shared machine the ratios of
median process CPU time are printed too (they include, for (c) via ``sample``, its
initialization and InferenceData conversion); the two slow reference columns
(``MCMC.run`` and NUTS) run in the first ``--slow-repeats`` of them only. ESS is the minimum over coordinates
of ArviZ's bulk ESS; "per grad" divides by the number of gradient evaluations (one per MALA
step; NUTS counts its leapfrog steps).

Usage: ``python benchmarks/langevin.py [--repeats 7] [--num-chains 64] [--num-steps 2000]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import arviz as az
import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.infer import MCMC, NUTS

import ebm_ppl as ebm
from ebm_ppl.infer import driver
from ebm_ppl.infer.langevin import MALA
from ebm_ppl.kernels import mala


# ----------------------------------------------------------------------------- targets
def make_gaussian(dim: int = 100):
    rng = np.random.default_rng(0)
    idx = np.arange(dim)
    scales = np.exp(rng.uniform(-0.5, 0.5, dim))
    cov = scales[:, None] * scales[None, :] * 0.5 ** np.abs(idx[:, None] - idx[None, :])
    prec = jnp.asarray(np.linalg.inv(cov), jnp.float32)

    def energy(x):
        return 0.5 * x @ prec @ x

    chol = np.linalg.cholesky(cov)

    def exact_init(key, num_chains):
        z = np.asarray(jax.random.normal(key, (num_chains, dim)))
        return jnp.asarray(z @ chol.T, jnp.float32)

    return "gaussian-100d", dim, energy, exact_init


def make_mlp(dim: int = 32, hidden: int = 128):
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    w1 = jax.random.normal(keys[0], (dim, hidden)) / np.sqrt(dim)
    w2 = jax.random.normal(keys[1], (hidden, hidden)) / np.sqrt(hidden)
    w3 = jax.random.normal(keys[2], (hidden,)) / np.sqrt(hidden)

    def energy(x):
        h = jnp.tanh(x @ w1)
        h = jnp.tanh(h @ w2)
        return h @ w3 + 0.5 * jnp.sum(x**2)

    return "mlp-2layer-32d", dim, energy, None


# ----------------------------------------------------------------------------- helpers
def min_ess(draws: np.ndarray) -> float:
    """Minimum over coordinates of the bulk ESS of ``(chain, draw, dim)`` draws."""
    dataset = az.convert_to_dataset({"x": np.asarray(draws, np.float64)})
    return float(az.ess(dataset, method="bulk")["x"].min())


CPU: dict[str, list[float]] = {}  # process CPU seconds per implementation (all threads)


def timed(fn: Callable[[], Any], cpu_key: str | None = None) -> tuple[float, Any]:
    """Wall seconds of ``fn()`` until its result is ready; also records process CPU seconds."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = jax.block_until_ready(fn())
    wall = time.perf_counter() - t0
    if cpu_key is not None:
        CPU.setdefault(cpu_key, []).append(time.process_time() - c0)
    return wall, out


def build_ours(energy, step_size, num_steps):
    kernel = mala.build_kernel()

    @jax.jit
    def run(key, x0):
        keys = jax.random.split(key, x0.shape[0])
        states = jax.vmap(mala.init, in_axes=(0, None))(x0, energy)

        def body(carry, _):
            states, keys = carry
            split = jax.vmap(jax.random.split)(keys)
            step = jax.vmap(lambda k, s: kernel(k, s, energy, step_size))
            states, info = step(split[:, 0], states)
            return (states, split[:, 1]), states.position

        _, draws = jax.lax.scan(body, (states, keys), None, length=num_steps)
        return jnp.swapaxes(draws, 0, 1)

    return run


def build_blackjax(energy, step_size, num_steps):
    algo = blackjax.mala(lambda x: -energy(x), step_size)

    @jax.jit
    def run(key, x0):
        keys = jax.random.split(key, x0.shape[0])
        states = jax.vmap(algo.init)(x0)

        def body(carry, _):
            states, keys = carry
            split = jax.vmap(jax.random.split)(keys)
            states, info = jax.vmap(algo.step)(split[:, 0], states)
            return (states, split[:, 1]), states.position

        _, draws = jax.lax.scan(body, (states, keys), None, length=num_steps)
        return jnp.swapaxes(draws, 0, 1)

    return run


def tune_step_size(energy, x0) -> tuple[float, Any]:
    """Dual-averaged MALA step size (median over chains) shared by every implementation."""
    kernel = MALA(potential_fn=energy, step_size=0.1)
    state = kernel.init(jax.random.split(jax.random.PRNGKey(9), x0.shape[0]), 1000, x0, (), {})
    run = jax.jit(lambda s: jax.lax.fori_loop(0, 1000, lambda _, t: kernel.sample(t, (), {}), s))
    state = run(state)
    return float(jnp.median(state.adapt_state.step_size)), state.z


# ----------------------------------------------------------------------------- benchmark
def bench(
    target, num_chains: int, num_steps: int, repeats: int, slow_repeats: int, nuts: bool
) -> list[dict]:
    name, dim, energy, exact_init = target
    CPU.clear()
    key = jax.random.PRNGKey(0)
    if exact_init is not None:
        x0 = exact_init(key, num_chains)
    else:
        x0 = jax.random.normal(key, (num_chains, dim))
    step_size, warmed = tune_step_size(energy, x0)
    if exact_init is None:
        x0 = warmed  # start near stationarity
    print(f"\n## {name}: {num_chains} chains x {num_steps} steps, step size {step_size:.4g}")

    def model():
        x = numpyro.sample("x", ebm.Flat((dim,)))
        ebm.energy("E", energy(x))

    ours = build_ours(energy, step_size, num_steps)
    bjx = build_blackjax(energy, step_size, num_steps)
    adapter = MALA(model, step_size=step_size, adapt_step_size=False)
    init = {"x": x0}

    def via_sample(seed, chunk=None):
        # chunk=100: every run in 100-step chunks, as the driver did before long chunks
        saved = driver._LONG_CHUNK
        driver._LONG_CHUNK = chunk or saved
        try:
            return via_sample_(seed)
        finally:
            driver._LONG_CHUNK = saved

    def via_sample_(seed):
        idata = ebm.sample(
            model,
            kernel=adapter,
            num_chains=num_chains,
            num_warmup=0,
            num_samples=num_steps,
            init_values=init,
            chain_method="vectorized",
            progress=False,
            rng_key=jax.random.PRNGKey(seed),
        )
        return idata

    def via_mcmc(seed):
        mcmc = MCMC(
            MALA(model, step_size=step_size, adapt_step_size=False),
            num_warmup=0,
            num_samples=num_steps,
            num_chains=num_chains,
            chain_method="vectorized",
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(seed), init_params=init)
        return mcmc.get_samples(group_by_chain=True)["x"]

    nuts_mcmc = None
    if nuts:
        nuts_mcmc = MCMC(
            NUTS(model),
            num_warmup=300,
            num_samples=num_steps,
            num_chains=num_chains,
            chain_method="vectorized",
            progress_bar=False,
        )
        t0 = time.perf_counter()
        nuts_mcmc.run(jax.random.PRNGKey(1), init_params=init, extra_fields=("num_steps",))
        jax.block_until_ready(nuts_mcmc.get_samples())  # MCMC.run returns before the device is done
        print(
            f"  NUTS warmup+first run {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True
        )
        nuts_state = nuts_mcmc.last_state

    # compile everything once (reported), then interleave timed repeats
    compile_times = {}
    compile_times["a"], _ = timed(lambda: ours(jax.random.PRNGKey(0), x0))
    compile_times["b"], _ = timed(lambda: bjx(jax.random.PRNGKey(0), x0))
    t0 = time.perf_counter()
    idata = via_sample(0)
    first_total = time.perf_counter() - t0
    via_sample(0, chunk=100)
    attrs = dict(idata.posterior.attrs)
    compile_times["c-sample"] = attrs["compile_time"]

    rows: dict[str, list[float]] = {
        k: [] for k in ("a", "b", "c-sample", "c-total", "c-100", "c-mcmc", "d")
    }
    convert: list[float] = []
    draws: dict[str, Any] = {}
    grads: dict[str, float] = {}
    for r in range(repeats):
        seed = r + 1
        t, d = timed(lambda seed=seed: ours(jax.random.PRNGKey(seed), x0), "a")
        rows["a"].append(t)
        draws["a"] = d
        t, d = timed(lambda seed=seed: bjx(jax.random.PRNGKey(seed), x0), "b")
        rows["b"].append(t)
        draws["b"] = d
        total, idata = timed(lambda seed=seed: via_sample(seed), "c-sample")
        a = idata.posterior.attrs
        rows["c-sample"].append(a["sampling_time"])
        convert.append(
            total - a["sampling_time"] - a["init_time"] - a["warmup_time"] - a["compile_time"]
        )
        draws["c-sample"] = draws["c-total"] = idata.posterior["x"].values
        rows["c-total"].append(total)
        CPU.setdefault("c-total", []).append(CPU["c-sample"][-1])
        _, idata = timed(lambda seed=seed: via_sample(seed, chunk=100), "c-100")
        rows["c-100"].append(idata.posterior.attrs["sampling_time"])
        draws["c-100"] = idata.posterior["x"].values
        print(f"  repeat {r + 1}/{repeats}", file=sys.stderr, flush=True)
        if r >= slow_repeats:
            continue
        t, d = timed(lambda seed=seed: via_mcmc(seed), "c-mcmc")
        rows["c-mcmc"].append(t)
        draws["c-mcmc"] = d
        if nuts_mcmc is not None:
            nuts_mcmc.post_warmup_state = nuts_state

            def run_nuts(seed=seed):
                nuts_mcmc.run(jax.random.PRNGKey(seed), extra_fields=("num_steps",))
                return nuts_mcmc.get_samples()

            t, _ = timed(run_nuts, "d")
            rows["d"].append(t)
            draws["d"] = nuts_mcmc.get_samples(group_by_chain=True)["x"]
            grads["d"] = float(np.sum(nuts_mcmc.get_extra_fields()["num_steps"]))
    grads.update(
        {
            k: float(num_chains * num_steps)
            for k in ("a", "b", "c-sample", "c-total", "c-100", "c-mcmc")
        }
    )

    labels = {
        "a": "(a) ebm_ppl.kernels.mala, jitted scan",
        "b": "(b) blackjax.mala, jitted scan",
        "c-sample": "(c) MALA via ebm_ppl.sample",
        "c-total": "(c) same, end to end (init, conversion)",
        "c-100": "(c) same, 100-step chunks (before)",
        "c-mcmc": "(c) MALA via numpyro MCMC (incl. compile)",
        "d": "(d) NumPyro NUTS (incl. compile)",
    }
    out = []
    cpu_a, cpu_b = statistics.median(CPU["a"]), statistics.median(CPU["b"])
    t_b = statistics.median(rows["b"])
    t_a = statistics.median(rows["a"])
    print(
        f"{'implementation':44s} {'ms/step':>9s} {'minESS':>8s} {'ESS/s':>9s} {'ESS/grad':>9s} "
        f"{'speed vs BlackJAX':>18s} {'vs (a)':>7s}   CPU-time ratios vs BlackJAX / vs (a)"
    )
    for k, label in labels.items():
        if not rows[k]:
            continue
        t = statistics.median(rows[k])
        ess = min_ess(draws[k])
        row = {
            "target": name,
            "impl": k,
            "time": t,
            "ms_per_step": 1e3 * t / num_steps,
            "ess": ess,
            "ess_per_s": ess / t,
            "ess_per_grad": ess / grads[k],
            "vs_blackjax": t_b / t,
            "vs_a": t_a / t,
            "cpu_vs_blackjax": cpu_b / statistics.median(CPU[k]),
            "cpu_vs_a": cpu_a / statistics.median(CPU[k]),
        }
        out.append(row)
        print(
            f"{label:44s} {row['ms_per_step']:9.4f} {ess:8.0f} {row['ess_per_s']:9.0f} "
            f"{row['ess_per_grad']:9.2e} {row['vs_blackjax']:17.2f}x {row['vs_a']:6.2f}x   "
            f"{row['cpu_vs_blackjax']:.2f}x / {row['cpu_vs_a']:.2f}x"
        )
    print(
        f"compile: (a) {compile_times['a']:.2f}s incl. one run, (b) {compile_times['b']:.2f}s "
        f"incl. one run, (c) sample {compile_times['c-sample']:.2f}s (first call total "
        f"{first_total:.2f}s); InferenceData conversion + host copies (median) "
        f"{statistics.median(convert):.3f}s"
    )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--num-chains", type=int, default=64)
    parser.add_argument("--num-steps", type=int, default=2000)
    parser.add_argument(
        "--slow-repeats", type=int, default=3, help="repeats of the MCMC.run and NUTS columns"
    )
    parser.add_argument("--no-nuts", action="store_true")
    args = parser.parse_args(argv)
    print(
        f"jax {jax.__version__}, numpyro {numpyro.__version__}, blackjax {blackjax.__version__}, "
        f"devices {jax.devices()}"
    )
    for target in (make_gaussian(), make_mlp()):
        bench(
            target,
            args.num_chains,
            args.num_steps,
            args.repeats,
            min(args.slow_repeats, args.repeats),
            not args.no_nuts,
        )


if __name__ == "__main__":
    main()
