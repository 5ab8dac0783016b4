"""Parallel tempering against TensorFlow Probability and Hamon (a script, not a test).

Continuous targets (``--chains`` chains, ``--temperatures`` replicas each, ``--iterations``
PT iterations after ``--warmup`` adaptation iterations of ours):

* ``two-gaussians``: 2-D mixture of N((-4, 0), I) and N((4, 0), I) with weights 0.25/0.75
  (means 8 sd apart); statistic ``1[x0 > 0]`` (the right mode's weight, exact 0.75);
* ``8-gaussians``: the density the demo learns (``ebm.data`` "8gaussians": 8 Gaussians of sd
  0.354 on a circle of radius 2.83; the exact mixture energy); statistic ``1[x in the sector
  of mode 0]`` (exact 1/8).

Implementations, each with the same number of chains and of local transitions per chain:

  (a) MALA alone (``ebm_ppl.kernels.mala``), ``iterations x temperatures`` steps per chain,
      the step size ours adapted for ``β = 1``;
  (b) ours: ``ebm_ppl.kernels.tempering`` over MALA, DEO swaps and the reversible variant
      (random parity), the schedule and per-temperature step sizes adapted in our warmup
      (not timed with sampling; reported apart);
  (c) TFP's ``ReplicaExchangeMC`` over its ``MetropolisAdjustedLangevinAlgorithm`` (JAX
      substrate), same path (``untempered_log_prob_fn`` = the reference, ``tempered_log_prob_fn``
      = target - reference), our adapted schedule and step sizes (TFP adapts neither), its
      default swap proposal (random adjacent pairs) and its even-odd proposal.

The reference of the path is a Gaussian fitted to the target's mean and variance (per
coordinate). Every implementation keeps the β = 1 draws of every iteration. ESS is ArviZ's
ESS of the mean of the statistic over ``(chain, draw)``; "per grad" divides by the gradient
evaluations: MALA 1 per step; ours and TFP 2 per replica per iteration (the local step, and
each replica's cached gradient rebuilt at its temperature after the swaps: TFP's
``_swap_log_prob_and_maybe_grads`` calls the inner kernel's ``bootstrap_results``).

TFP's estimates are biased here: its MALA proposes with the ``diffusion_drift`` cached in the
kernel results, which ``ReplicaExchangeMC`` does not refresh after a swap (it refreshes the log
density and its gradient only), so a swapped replica proposes with the drift of the state it
replaced (measured on a 2-D Gaussian target with a Gaussian reference: variance 1.24 for an
exact 1; MALA alone 1.00). Times are medians of ``--repeats`` interleaved repeats after compilation
(reported separately).

Ising (``--ising-size`` L, 2-D torus, J = 1, T = ``--ising-t`` < T_c = 2.269): one PT chain of
``--ising-temperatures`` replicas, one checkerboard sweep per replica and one swap round per
iteration, ``--ising-rounds`` iterations; ours (``tempering`` over the block-Gibbs kernel
resolved for ``ebm_ppl.models.ising``) against Hamon's ``nrpt`` (the same schedule: ours
adapted in warmup, in Hamon's inverse temperatures). Statistic ``1[m > 0]`` of the cold
replica (exact 1/2: the two phases).

Usage: ``python benchmarks/tempering.py [--repeats 3] [--skip-ising]``; needs the ``bench``
extra (``tfp-nightly``, ``hamon``).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import statistics
import time
from collections.abc import Callable
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.kernels import mala, tempering
from ebm_ppl.kernels.resolve import resolve_kernel


# ----------------------------------------------------------------------------- targets
def two_gaussians():
    means = jnp.array([[-4.0, 0.0], [4.0, 0.0]])
    log_w = jnp.log(jnp.array([0.25, 0.75]))

    def energy(x):
        return -jax.nn.logsumexp(log_w - 0.5 * jnp.sum((x - means) ** 2, -1))

    mean = np.array([2.0, 0.0])
    var = np.array([1.0 + 16.0 * (1.0 - 0.5**2), 1.0])  # 1 + Var of the mode centre
    return "two-gaussians", energy, lambda x: (x[..., 0] > 0).astype(np.float64), 0.75, mean, var


def eight_gaussians():
    angles = 2.0 * np.pi * np.arange(8) / 8
    radius, sd = 2.0 * np.sqrt(2.0), 0.5 / np.sqrt(2.0)
    means = jnp.asarray(radius * np.stack([np.cos(angles), np.sin(angles)], 1), jnp.float32)

    def energy(x):
        return -jax.nn.logsumexp(-0.5 * jnp.sum((x - means) ** 2, -1) / sd**2)

    def stat(x):
        ang = np.arctan2(x[..., 1], x[..., 0])
        return (np.abs(ang) < np.pi / 8).astype(np.float64)

    var = np.full(2, sd**2 + radius**2 / 2)
    return "8-gaussians", energy, stat, 1.0 / 8, np.zeros(2), var


# ----------------------------------------------------------------------------- helpers
def ess_mean(draws: np.ndarray) -> float:
    """ArviZ's ESS of the mean; 0 for a statistic that never changed (no mixing to measure)."""
    draws = np.asarray(draws, np.float64)
    if np.all(draws == draws.flat[0]):
        return 0.0
    return float(az.ess(draws, method="mean"))


def rhat(draws: np.ndarray) -> float:
    return float(az.rhat(np.asarray(draws, np.float64))) if draws.shape[0] > 1 else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t0, out


def gaussian_reference(mean, var):
    mean, var = jnp.asarray(mean, jnp.float32), jnp.asarray(var, jnp.float32)
    return lambda x: 0.5 * jnp.sum((x - mean) ** 2 / var)


# ----------------------------------------------------------------------------- ours
def ours_warmup(energy, ref, sampler, num_chains, num_temps, num_warmup, x0):
    kernel = tempering.build_kernel(sampler, num_warmup=num_warmup)

    @jax.jit
    def run(key):
        def one(k, x):
            pos = jnp.broadcast_to(x, (num_temps, *x.shape))
            st = tempering.init(
                pos, energy, ref, sampler=sampler, betas=tempering.default_schedule(num_temps)
            )
            st, _ = jax.lax.scan(
                lambda s, kk: kernel(kk, s, energy, ref), st, jax.random.split(k, num_warmup)
            )
            return st

        return jax.vmap(one)(jax.random.split(key, num_chains), x0)

    return run


def ours_sampler(energy, ref, sampler, num_iterations, swap, stat_fn):
    kernel = tempering.build_kernel(sampler, num_warmup=0, swap=swap)

    @jax.jit
    def run(key, states):
        def one(k, st):
            def body(s, kk):
                s, info = kernel(kk, s, energy, ref)
                return s, stat_fn(s.position)

            return jax.lax.scan(body, st, jax.random.split(k, num_iterations))

        states, draws = jax.vmap(one)(jax.random.split(key, states.betas.shape[0]), states)
        return draws, states.round_trips

    return run


def mala_alone(energy, step_size, num_steps, stat_fn):
    kernel = mala.build_kernel()

    @jax.jit
    def run(key, x0):
        def one(k, x):
            def body(s, kk):
                s, _ = kernel(kk, s, energy, step_size)
                return s, stat_fn(s.position)

            return jax.lax.scan(body, mala.init(x, energy), jax.random.split(k, num_steps))[1]

        return jax.vmap(one)(jax.random.split(key, x0.shape[0]), x0)

    return run


def _batched(fn):
    """``fn`` of one point mapped over every leading axis (TFP stacks replicas and chains)."""
    return lambda x: jax.vmap(fn)(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1])


def tfp_remc(energy, ref, betas, step_sizes, num_iterations, even_odd, stat_fn):
    from tensorflow_probability.substrates import jax as tfp

    tfm = tfp.mcmc
    inv_t = jnp.asarray(np.asarray(betas)[::-1].copy())  # TFP: first replica is the target
    eps = jnp.asarray(np.asarray(step_sizes)[::-1].copy()).reshape(-1, 1, 1)

    def make_kernel_fn(target_log_prob_fn):
        return tfm.MetropolisAdjustedLangevinAlgorithm(target_log_prob_fn, step_size=eps)

    swap_fn = tfm.even_odd_swap_proposal_fn(1.0) if even_odd else tfm.default_swap_proposal_fn(1.0)
    remc = tfm.ReplicaExchangeMC(
        target_log_prob_fn=None,
        inverse_temperatures=inv_t,
        make_kernel_fn=make_kernel_fn,
        swap_proposal_fn=swap_fn,
        untempered_log_prob_fn=lambda x: -_batched(ref)(x),
        tempered_log_prob_fn=lambda x: _batched(ref)(x) - _batched(energy)(x),
    )

    @jax.jit
    def run(key, x0):
        draws = tfm.sample_chain(
            num_iterations,
            x0,
            kernel=remc,
            num_burnin_steps=0,
            trace_fn=None,
            seed=key,
        )
        return jnp.swapaxes(stat_fn(draws), 0, 1)  # (chain, draw)

    return run


# ----------------------------------------------------------------------------- continuous
def bench_continuous(target, args) -> None:
    name, energy, _, truth, mean, var = target
    ref = gaussian_reference(mean, var)
    C, T, S, W = args.chains, args.temperatures, args.iterations, args.warmup
    sampler = resolve_kernel("mala", step_size=0.1)
    key = jax.random.PRNGKey(0)
    x0 = jnp.asarray(mean, jnp.float32) + jax.random.normal(key, (C, 2)) * jnp.sqrt(
        jnp.asarray(var, jnp.float32)
    )
    warm = ours_warmup(energy, ref, sampler, C, T, W, x0)
    t_warm_compile, states = timed(lambda: warm(jax.random.PRNGKey(1)))
    t_warm, states = timed(lambda: warm(jax.random.PRNGKey(1)))
    betas = np.asarray(states.betas).mean(0)
    eps = np.exp(np.log(np.asarray(states.step_sizes)).mean(0))
    print(f"\n## {name}: {C} chains x {T} temperatures x {S} iterations (warmup {W})")
    print(f"adapted schedule {np.round(betas, 3).tolist()}")
    print(f"adapted step sizes {np.round(eps, 3).tolist()}")
    print(f"our warmup: {t_warm:.2f} s (+ compile {max(t_warm_compile - t_warm, 0):.1f} s)")

    jstat = lambda x: _jstat(name, x)
    impls: dict[str, tuple[Callable[[int], Any], float]] = {}
    m_run = mala_alone(energy, float(eps[-1]), S * T, jstat)
    impls["(a) MALA alone"] = (lambda s: m_run(jax.random.PRNGKey(s), x0), 1.0 * C * S * T)
    for swap in ("deo", "reversible"):
        o_run = ours_sampler(energy, ref, sampler, S, swap, jstat)
        impls[f"(b) ours PT/MALA {swap}"] = (
            lambda s, o_run=o_run: o_run(jax.random.PRNGKey(s), states)[0],
            2.0 * C * S * T,
        )
    x_tfp = states.states.position[:, -1]  # TFP starts where ours sample from
    for even_odd, label in ((False, "default swaps"), (True, "even-odd swaps")):
        t_run = tfp_remc(energy, ref, betas, eps, S, even_odd, lambda x: _jstat(name, x))
        impls[f"(c) TFP REMC/MALA {label}"] = (
            lambda s, t_run=t_run: t_run(jax.random.PRNGKey(s), x_tfp),
            2.0 * C * S * T,
        )
    compile_s: dict[str, float] = {}
    times: dict[str, list[float]] = {k: [] for k in impls}
    draws: dict[str, np.ndarray] = {}
    for k, (fn, _) in impls.items():
        t0, _ = timed(lambda fn=fn: fn(100))
        t1, _ = timed(lambda fn=fn: fn(101))
        compile_s[k] = max(t0 - t1, 0.0)
    for r in range(args.repeats):
        for k, (fn, _) in impls.items():
            t, out = timed(lambda fn=fn, r=r: fn(r))
            times[k].append(t)
            if r == 0:
                draws[k] = np.asarray(out, np.float64)
    ref_key = "(c) TFP REMC/MALA default swaps"
    rows = []
    for k, (_, grads) in impls.items():
        d = draws[k]
        e = ess_mean(d)
        t = statistics.median(times[k])
        rows.append((k, d.mean(), e, rhat(d), t, e / t, e / grads, compile_s[k]))
    base = {r[0]: r for r in rows}[ref_key][5]
    print(
        f"{'implementation':34s} {'mean':>7s} {'ESS':>8s} {'R-hat':>6s} {'time s':>7s} "
        f"{'ESS/s':>9s} {'ESS/grad':>9s} {'vs (c)':>7s} {'compile':>7s}"
    )
    for k, mu, e, rh, t, eps_, epg, cs in rows:
        print(
            f"{k:34s} {mu:7.4f} {e:8.0f} {rh:6.3g} {t:7.3f} {eps_:9.0f} {epg:9.2e} "
            f"{eps_ / base:6.2f}x {cs:6.1f}s"
        )
    print(f"exact value {truth}")


def _jstat(name: str, x: jax.Array) -> jax.Array:
    if name == "two-gaussians":
        return (x[..., 0] > 0).astype(jnp.float32)
    ang = jnp.arctan2(x[..., 1], x[..., 0])
    return (jnp.abs(ang) < jnp.pi / 8).astype(jnp.float32)


# ----------------------------------------------------------------------------- Ising
def bench_ising(args) -> None:
    import hamon
    from ebm_ppl.models import ising
    from hamon.block_sampling import Block
    from hamon.models.ising import IsingEBM, IsingSamplingProgram
    from hamon.observers import NRPTStateObserver
    from hamon.pgm import SpinNode

    import ebm_ppl as ebm

    L, T, R, W = args.ising_size, args.ising_temperatures, args.ising_rounds, args.ising_warmup
    beta_t = 1.0 / args.ising_t
    em = ebm.EnergyModel(ising.model, (L, L), beta=beta_t)
    sampler = resolve_kernel("gibbs", plan=em.plan, affine=em.affine_sites)
    pot = em.potential_fn({})
    energy = lambda p: pot(p)
    ref, _ = tempering.reference_energy(em.plan)

    def mag(p):  # (1[m > 0], bond energy per spin) of the cold replica
        s = p["s"]
        bonds = jnp.sum(s * jnp.roll(s, 1, 0) + s * jnp.roll(s, 1, 1))
        return jnp.stack([(jnp.sum(s) > 0).astype(jnp.float32), -bonds / s.size])

    start = {"s": jnp.ones((T, L, L), jnp.float32)}
    warm_kernel = tempering.build_kernel(sampler, num_warmup=W)

    @jax.jit
    def warm(key):
        st = tempering.init(
            start, energy, ref, sampler=sampler, betas=tempering.default_schedule(T)
        )
        body = lambda s, k: (warm_kernel(k, s, energy, ref)[0], None)
        return jax.lax.scan(body, st, jax.random.split(key, W))[0]

    t_c, st = timed(lambda: warm(jax.random.PRNGKey(0)))
    betas = np.asarray(st.betas)
    print(f"\n## Ising {L}x{L} torus at T = {args.ising_t} (T_c = 2.269): {T} replicas, {R} rounds")
    print(f"our adapted schedule (fractions of 1/T) {np.round(betas, 3).tolist()}")
    print(f"our warmup ({W} iterations) incl. compile: {t_c:.1f} s")
    kernel = tempering.build_kernel(sampler, num_warmup=0)

    @jax.jit
    def ours(key, st):
        def body(s, k):
            s, _ = kernel(k, s, energy, ref)
            return s, mag(s.position)

        st, m = jax.lax.scan(body, st, jax.random.split(key, R))
        return m, st.round_trips

    # Hamon: the same lattice, checkerboard blocks, the same inverse temperatures
    n = L * L
    idx = np.arange(n).reshape(L, L)
    edges = np.concatenate(
        [
            np.stack([idx.ravel(), np.roll(idx, -1, 0).ravel()], 1),
            np.stack([idx.ravel(), np.roll(idx, -1, 1).ravel()], 1),
        ]
    )
    nodes = [SpinNode() for _ in range(n)]
    hebm = IsingEBM(
        nodes,
        [(nodes[a], nodes[b]) for a, b in edges],
        jnp.zeros(n),
        jnp.ones(len(edges)),
        jnp.array(beta_t),
    )
    parity = ((idx // L + idx % L) % 2).ravel()
    blocks = [Block([nodes[i] for i in np.flatnonzero(parity == c)]) for c in (0, 1)]
    program = IsingSamplingProgram(hebm, blocks, [])
    h_betas = jnp.asarray(betas * beta_t, jnp.float32)
    h_init = [jnp.ones((T, len(b.nodes)), bool) for b in blocks]

    def hamon_run(seed):
        states, stats = hamon.nrpt(
            jax.random.PRNGKey(seed),
            hebm,
            program,
            h_init,
            [],
            R,
            1,
            betas=h_betas,
            observer=NRPTStateObserver((-1,)),
            device="cpu",
        )
        return states, stats

    def hamon_stats(stats):  # outside the timing: host-side reassembly of the lattice
        obs = [np.asarray(o[:, 0], np.float32) * 2.0 - 1.0 for o in stats["observations"]]
        s = np.zeros((R, n), np.float32)
        for c, o in enumerate(obs):
            s[:, parity == c] = o  # blocks hold the nodes of each colour in index order
        s = s.reshape(R, L, L)
        bonds = np.sum(s * np.roll(s, 1, 1) + s * np.roll(s, 1, 2), axis=(1, 2))
        return np.stack([(s.sum((1, 2)) > 0).astype(np.float32), -bonds / n], 1)

    timed(lambda: ours(jax.random.PRNGKey(100), st))
    timed(lambda: hamon_run(100))
    res: dict[str, list[Any]] = {"ours (DEO over block Gibbs)": [], "hamon nrpt": []}
    for r in range(args.repeats):
        t, (m, trips) = timed(lambda r=r: ours(jax.random.PRNGKey(r), st))
        res["ours (DEO over block Gibbs)"].append((t, np.asarray(m), int(trips)))
        t, (_, stats) = timed(lambda r=r: hamon_run(r))
        m = hamon_stats(stats)
        trips = np.asarray(stats["round_trip_diagnostics"]["round_trips_per_chain"]).sum()
        res["hamon nrpt"].append((t, np.asarray(m), int(trips)))
    base = None
    sweeps = T * R
    for k, v in res.items():
        t = statistics.median(x[0] for x in v)
        d = np.asarray(v[0][1]).reshape(R, 2).T[:, None, :]  # (statistic, chain, draw)
        e_m, e_u = ess_mean(d[0]), ess_mean(d[1])
        base = (t, e_m, e_u) if base is None else base
        print(
            f"{k:28s} time {t:6.2f} s ({base[0] / t:.2f}x ours)  spin updates/s "
            f"{n * sweeps / t:.2e}  round trips {v[0][2]}\n"
            f"{'':28s} P(m>0) {d[0].mean():.3f} ESS {e_m:6.1f} ESS/s {e_m / t:7.2f}; "
            f"energy/spin {d[1].mean():.4f} ESS {e_u:6.1f} ESS/s {e_u / t:7.2f} "
            f"ESS/sweep {e_u / sweeps:.2e}"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--temperatures", type=int, default=8)
    p.add_argument("--iterations", type=int, default=4000)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ising-size", type=int, default=64)
    p.add_argument("--ising-t", type=float, default=2.0)
    p.add_argument("--ising-temperatures", type=int, default=32)
    p.add_argument("--ising-rounds", type=int, default=2000)
    p.add_argument("--ising-warmup", type=int, default=1000)
    p.add_argument("--skip-ising", action="store_true")
    p.add_argument("--skip-continuous", action="store_true")
    args = p.parse_args(argv)
    versions = {m: md.version(m) for m in ("jax", "tfp-nightly", "hamon", "numpyro")}
    print(f"versions: {versions}; devices: {jax.devices()}")
    if not args.skip_continuous:
        for target in (two_gaussians(), eight_gaussians()):
            bench_continuous(target, args)
    if not args.skip_ising:
        bench_ising(args)


if __name__ == "__main__":
    main()
