"""Categorical checkerboard Gibbs on the Potts model: throughput and DMALA's efficiency.

A script, not a test. Two parts.

**Throughput.** For each lattice side ``L`` and number of states ``q`` (periodic, at ``T_c``),
one chain runs ``--sweeps`` checkerboard heat-bath sweeps in each implementation:

  (a) ``ebm_ppl.kernels.gibbs`` (categorical units, inverse CDF, one uniform per unit per
      sweep) on the plain JAX energy ``potts.energy`` (conditional logits from one gradient
      with respect to the ``one_hot`` encoding), inside one jitted ``lax.scan``;
  (b) the same kernel on the NumPyro model's energy (``EnergyModel.energy``: what
      ``ebm_ppl.sample(kernel="gibbs")`` runs, without the driver's collection of draws);
  (b') the kernel with the closed-form Potts conditionals (``potts.lattice_logits_fn``:
      neighbour counts instead of the gradient; the energy is evaluated once per colour);
  (b'') ``ebm_ppl.kernels.lattice.build_potts_kernel``: the compact checkerboard layout (one
      ``(L, L/2)`` int array per colour, the ``q`` logits of the updated colour only, from
      neighbour counts), 24-bit uniforms (same random bits as (a)) and 16-bit ones;
  (c) a vectorized NumPy checkerboard heat bath (float32; neighbour counts of each state by
      ``np.roll`` of the one-hot lattice, softmax, inverse CDF with one uniform per site), the
      reference;
  (d) the fused random-number ceiling: ``L^2`` uniforms per sweep drawn exactly as the kernel
      draws them (``ebm_ppl.kernels.gibbs._uniforms``), in the same kind of scan.

Times are the median of ``--repeats`` interleaved repeats after one compile/warm-up run;
reported: spin updates per second (``L^2 x sweeps / s``), ratio to NumPy, fraction of the
ceiling. NumPyro's ``DiscreteGibbs`` (one coordinate per step, every update re-evaluating the
whole energy ``q`` times) is timed apart at ``--numpyro-size`` (it does not finish at 256):
updates per second from the difference of two ``MCMC.run`` lengths (compilation cancels).

**Efficiency at T_c.** On the ``--ess-size`` torus at ``T_c`` (q = 3), ``ebm_ppl.sample`` runs
categorical Gibbs and DMALA (step size adapted in warmup) on ``--ess-chains`` chains from
random starts; the bulk ESS of the energy per second of sampling (compiled chunks reused: a
second call, timed) and per energy-and-gradient evaluation (Gibbs: one per colour, two per
sweep; DMALA: two per step, at ``x`` and at the proposal). The compact kernel
(``lattice.build_potts_kernel``) runs 20 times as many sweeps on the same chains (its
autocorrelation time at ``T_c``, ~2000 sweeps at L = 64, needs them for R-hat < 1.05); its
"evaluations" are its lattice passes, two per sweep. A row with R-hat >= 1.05 is flagged
unreliable: its ESS is an overestimate.

Usage: ``python benchmarks/potts.py [--sizes 256 1024] [--states 3 10] [--sweeps 100]``
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from ebm_ppl.models import potts
from numpyro.infer import MCMC, DiscreteGibbs

import ebm_ppl as ebm
from ebm_ppl.energy.conditionals import categorical_value_and_logits
from ebm_ppl.kernels import gibbs, lattice


def jax_runner(L: int, q: int, sweeps: int, energy_fn, logits_fn=None):
    kernel = gibbs.build_kernel(
        colours={"s": potts.blocks((L, L))},
        num_states={"s": q},
        logits_fn=logits_fn or functools.partial(categorical_value_and_logits, affine={"s": True}),
    )

    @jax.jit
    def run(key, s0):
        state = gibbs.init({"s": s0}, energy_fn)

        def body(st, k):
            st, _ = kernel(k, st, energy_fn)
            return st, None

        state, _ = jax.lax.scan(body, state, jax.random.split(key, sweeps))
        return state.position["s"]

    return run


def compact_runner(L: int, q: int, beta: float, sweeps: int, uniform_bits: int = 32):
    step = lattice.build_potts_kernel(q, uniform_bits=uniform_bits)

    @jax.jit
    def run(key, s0):
        state = lattice.potts_init(s0, q, beta=beta)

        def body(st, k):
            st, _ = step(k, st, beta)
            return st, None

        state, _ = jax.lax.scan(body, state, jax.random.split(key, sweeps))
        return lattice.from_compact(state.black, state.white)

    return run


def rng_runner(L: int, sweeps: int):
    @jax.jit
    def run(key, s0):
        def body(acc, k):
            return acc + gibbs._uniforms(k, (L, L), jnp.float32, 32), None

        acc, _ = jax.lax.scan(body, jnp.zeros((L, L)), jax.random.split(key, sweeps))
        return acc

    return run


def numpy_runner(L: int, q: int, beta: float, sweeps: int):
    masks = [potts.blocks((L, L)) == c for c in (0, 1)]
    states = np.arange(q, dtype=np.int32)
    beta = np.float32(beta)

    def run(seed, s0):
        rng = np.random.default_rng(seed)
        s = np.array(s0, dtype=np.int32)
        for _ in range(sweeps):
            u = rng.random((L, L), dtype=np.float32)
            for mask in masks:
                x = (s[..., None] == states).astype(np.float32)
                nb = np.roll(x, 1, 0) + np.roll(x, -1, 0) + np.roll(x, 1, 1) + np.roll(x, -1, 1)
                w = np.exp(beta * (nb - nb.max(axis=-1, keepdims=True)))
                cdf = np.cumsum(w, axis=-1)
                new = (u[..., None] * cdf[..., -1:] >= cdf).sum(axis=-1).astype(np.int32)
                s = np.where(mask, np.minimum(new, q - 1), s)
        return s

    return run


def time_it(fn, *args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def throughput(sizes, qs, sweeps: int, repeats: int) -> list[dict]:
    rows = []
    for L in sizes:
        for q in qs:
            beta = 1.0 / potts.critical_temperature(q)
            em = ebm.EnergyModel(potts.model, (L, L), q, beta=beta)
            impls = {
                "ebm_ppl gibbs (JAX energy)": jax_runner(
                    L, q, sweeps, lambda p, q=q, b=beta: potts.energy(p["s"], q, beta=b)
                ),
                "ebm_ppl gibbs (NumPyro model)": jax_runner(
                    L, q, sweeps, lambda p, em=em: em.energy({}, p)
                ),
                "ebm_ppl gibbs (closed-form logits)": jax_runner(
                    L,
                    q,
                    sweeps,
                    lambda p, q=q, b=beta: potts.energy(p["s"], q, beta=b),
                    potts.lattice_logits_fn(q, beta=beta),
                ),
                "compact Potts kernel": compact_runner(L, q, beta, sweeps),
                "compact Potts kernel (16-bit)": compact_runner(L, q, beta, sweeps, 16),
                "fused Threefry ceiling": rng_runner(L, sweeps),
                "NumPy heat bath": numpy_runner(L, q, beta, sweeps),
            }
            s0 = jax.random.randint(jax.random.PRNGKey(0), (L, L), 0, q)
            for name, fn in impls.items():  # compile / warm up
                if name.startswith("NumPy"):
                    fn(0, np.asarray(s0))
                else:
                    jax.block_until_ready(fn(jax.random.PRNGKey(0), s0))
            times: dict[str, list[float]] = {name: [] for name in impls}
            for r in range(repeats):
                for name, fn in impls.items():
                    if name.startswith("NumPy"):
                        times[name].append(time_it(fn, r, np.asarray(s0)))
                    else:
                        times[name].append(time_it(fn, jax.random.PRNGKey(r), s0))
            rate = {n: L * L * sweeps / statistics.median(t) for n, t in times.items()}
            for name, r in rate.items():
                rows.append(
                    {
                        "L": L,
                        "q": q,
                        "impl": name,
                        "updates_per_s": r,
                        "vs_numpy": r / rate["NumPy heat bath"],
                        "of_ceiling": r / rate["fused Threefry ceiling"],
                    }
                )
    return rows


def numpyro_rate(L: int, q: int, steps: int) -> tuple[float, float]:
    """(NumPyro DiscreteGibbs updates/s, ebm_ppl gibbs updates/s) at side ``L``, same run."""
    beta = 1.0 / potts.critical_temperature(q)
    model_args = ((L, L), q)

    def run(n):
        mcmc = MCMC(DiscreteGibbs(potts.model), num_warmup=0, num_samples=n, progress_bar=False)
        t0 = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(n), *model_args, beta=beta)
        jax.block_until_ready(mcmc.get_samples())
        return time.perf_counter() - t0

    run(10)
    t_short, t_long = run(steps // 10), run(steps)
    ours = jax_runner(L, q, steps // (L * L) + 1, lambda p: potts.energy(p["s"], q, beta=beta))
    s0 = jnp.zeros((L, L), jnp.int32)
    jax.block_until_ready(ours(jax.random.PRNGKey(0), s0))
    t_ours = statistics.median(time_it(ours, jax.random.PRNGKey(r), s0) for r in range(3))
    return (steps - steps // 10) / (t_long - t_short), L * L * (steps // (L * L) + 1) / t_ours


def efficiency(L: int, q: int, chains: int, warmup: int, samples: int) -> list[dict]:
    beta = 1.0 / potts.critical_temperature(q)
    rows = []
    for kernel, evals_per_step in (("gibbs", 2), ("dmala", 2)):
        kwargs = dict(
            kernel=kernel,
            num_chains=chains,
            num_warmup=warmup,
            num_samples=samples,
            model_args=((L, L), q),
            model_kwargs={"beta": beta},
            progress=False,
        )
        t0 = time.perf_counter()
        ebm.sample(potts.model, rng_key=0, **kwargs)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        idata = ebm.sample(potts.model, rng_key=1, **kwargs)
        seconds = time.perf_counter() - t0
        energy = np.asarray(idata.sample_stats["potential_energy"], np.float64)
        ess = float(az.ess(energy, method="bulk"))
        rhat = float(az.rhat(energy, method="rank"))
        evals = chains * (warmup + samples) * evals_per_step
        acc = idata.sample_stats.get("acceptance_rate")
        rows.append(
            {
                "kernel": kernel,
                "ess": ess,
                "rhat": rhat,
                "seconds": seconds,
                "compile_and_first": first,
                "ess_per_s": ess / seconds,
                "ess_per_eval": ess / evals,
                "acceptance": float(np.mean(acc)) if acc is not None else float("nan"),
                "u_mean": float(energy.mean()) / (beta * L * L),
            }
        )
    rows.append(compact_efficiency(L, q, chains, 20 * (warmup + samples), 20 * warmup))
    return rows


def compact_efficiency(L: int, q: int, chains: int, sweeps: int, burn: int) -> dict:
    """The compact kernel's chains (vmapped, random starts), long enough to mix at ``T_c``."""
    beta = 1.0 / potts.critical_temperature(q)
    step = lattice.build_potts_kernel(q)

    @jax.jit
    def run(key):
        def chain(k):
            k0, k1 = jax.random.split(k)
            st = lattice.potts_init(jax.random.randint(k0, (L, L), 0, q), q, beta=beta)

            def body(st, kk):
                st, _ = step(kk, st, beta)
                return st, st.energy

            return jax.lax.scan(body, st, jax.random.split(k1, sweeps))[1]

        return jax.vmap(chain)(jax.random.split(key, chains))

    t0 = time.perf_counter()
    jax.block_until_ready(run(jax.random.PRNGKey(0)))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    energy = np.asarray(jax.block_until_ready(run(jax.random.PRNGKey(1))), np.float64)[:, burn:]
    seconds = time.perf_counter() - t0
    ess = float(az.ess(energy, method="bulk"))
    return {
        "kernel": "gibbs (compact)",
        "ess": ess,
        "rhat": float(az.rhat(energy, method="rank")),
        "seconds": seconds,
        "compile_and_first": first,
        "ess_per_s": ess / seconds,
        # one pass over the lattice per colour, in place of an energy evaluation
        "ess_per_eval": ess / (chains * sweeps * 2),
        "acceptance": 1.0,
        "u_mean": float(energy.mean()) / (beta * L * L),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--states", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--sweeps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--numpyro-size", type=int, default=16)
    parser.add_argument("--numpyro-steps", type=int, default=20_000)
    parser.add_argument("--ess-size", type=int, default=64)
    parser.add_argument("--ess-chains", type=int, default=8)
    parser.add_argument("--ess-warmup", type=int, default=500)
    parser.add_argument("--ess-samples", type=int, default=2000)
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["throughput", "numpyro", "efficiency"],
        choices=["throughput", "numpyro", "efficiency"],
    )
    args = parser.parse_args(argv)
    print(
        f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), Potts at T_c, "
        f"{args.sweeps} sweeps, median of {args.repeats} interleaved repeats"
    )
    rows: list[dict] = []
    np_rate = our_rate = float("nan")
    if "throughput" in args.parts:
        rows = throughput(args.sizes, args.states, args.sweeps, args.repeats)
    header = (
        f"{'L':>6} {'q':>3} {'implementation':<32} {'spin updates/s':>15} {'x NumPy':>8} "
        f"{'of RNG ceiling':>15}"
    )
    if rows:
        print(header)
        print("-" * len(header))
    for r in rows:
        print(
            f"{r['L']:>6} {r['q']:>3} {r['impl']:<32} {r['updates_per_s']:>15.3e} "
            f"{r['vs_numpy']:>8.2f} {r['of_ceiling']:>15.3f}"
        )
    L, q = args.numpyro_size, args.states[0]
    if "numpyro" in args.parts:
        np_rate, our_rate = numpyro_rate(L, q, args.numpyro_steps)
        print(
            f"\nL = {L}, q = {q}: NumPyro DiscreteGibbs {np_rate:.3e} updates/s, ebm_ppl gibbs "
            f"{our_rate:.3e} updates/s ({our_rate / np_rate:.0f}x)"
        )
    if "efficiency" not in args.parts:
        return {"throughput": rows, "numpyro": (np_rate, our_rate), "efficiency": []}
    eff = efficiency(args.ess_size, 3, args.ess_chains, args.ess_warmup, args.ess_samples)
    print(
        f"\nL = {args.ess_size}, q = 3 at T_c, {args.ess_chains} chains x ({args.ess_warmup} "
        f"warmup + {args.ess_samples}) steps, bulk ESS of the energy:"
    )
    for r in eff:
        print(
            f"  {r['kernel']:<6} ESS {r['ess']:8.1f} (R-hat {r['rhat']:.3f})  {r['ess_per_s']:8.2f}"
            f" ESS/s  {r['ess_per_eval']:.2e} ESS/eval  sampling {r['seconds']:.1f} s "
            f"(first call {r['compile_and_first']:.1f} s)  acceptance {r['acceptance']:.2f}  "
            f"u = {r['u_mean']:.4f}"
            + ("" if r["rhat"] < 1.05 else "  UNRELIABLE: R-hat >= 1.05, chains not mixed")
        )
    g, d, c = eff
    print(
        f"  DMALA / Gibbs: {d['ess_per_s'] / g['ess_per_s']:.2f}x ESS/s, "
        f"{d['ess_per_eval'] / g['ess_per_eval']:.2f}x ESS/eval; DMALA / compact Gibbs: "
        f"{d['ess_per_s'] / c['ess_per_s']:.3f}x ESS/s"
    )
    return {"throughput": rows, "numpyro": (np_rate, our_rate), "efficiency": eff}


if __name__ == "__main__":
    main()
