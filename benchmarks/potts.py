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

**Efficiency at T_c.** On the ``--ess-size`` torus at ``T_c`` (q = 3), every chain starts
from an equilibrium configuration drawn by Swendsen–Wang (``--ess-burn`` SW sweeps from a random
start), so the ESS is not inflated by a burn-in. ``ebm_ppl.sample`` runs categorical Gibbs and
DMALA (on ``generic_model``: the Potts model without its lattice declaration, so Gibbs is
the generic kernel on the model's energy; DMALA's step size adapted in warmup) on
``--ess-chains`` chains; the compact heat bath
(``lattice.build_potts_kernel``) runs ``--ess-compact-factor`` times as many sweeps (its energy
autocorrelation time at ``T_c`` is ~900 sweeps at L = 64) and SW (``kernels.cluster``)
``--ess-sw-sweeps``. Reported: bulk ESS of the energy and its split R-hat (a row with R-hat >=
1.05 is flagged unreliable), ESS per second of sampling (a second, timed call: compiled code
reused; the first call, with compilation, reported apart), per sweep and per energy
evaluation. Evaluations: generic Gibbs one energy-and-gradient per colour (2 per sweep); DMALA
one at ``x`` and one at the proposal (2 per step); the compact kernel its two colour passes (2
per sweep, each cheaper than a gradient); SW one per sweep (the bond pass reads each bond once;
its labelling passes, ~6 at L = 64, reported apart).

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
import numpyro
from ebm_ppl.models import potts
from numpyro.infer import MCMC, DiscreteGibbs

import ebm_ppl as ebm
from ebm_ppl.energy.conditionals import categorical_value_and_logits
from ebm_ppl.kernels import cluster, gibbs, lattice


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


def sw_runner(L: int, q: int, beta: float, chains: int, sweeps: int):
    """Swendsen–Wang chains (vmapped): final states, energies ``(chain, sweep)``, loop passes."""
    step = cluster.build_kernel(q)

    @jax.jit
    def run(key, starts):
        def chain(k, s):
            def body(st, kk):
                st, info = step(kk, st, beta)
                return st, (st.energy, info.num_iterations)

            st, (e, it) = jax.lax.scan(
                body, cluster.init(s, q, beta=beta), jax.random.split(k, sweeps)
            )
            return st.s, e, it

        return jax.vmap(chain)(jax.random.split(key, chains), starts)

    return run


def equilibrium_starts(L: int, q: int, chains: int, sweeps: int, seed: int = 0):
    """``(chains, L, L)`` equilibrium configurations at ``T_c``: SW from random starts."""
    beta = 1.0 / potts.critical_temperature(q)
    key = jax.random.PRNGKey(seed)
    starts = jax.random.randint(key, (chains, L, L), 0, q)
    s, _, _ = sw_runner(L, q, beta, chains, sweeps)(jax.random.fold_in(key, 1), starts)
    return jax.block_until_ready(s)


def generic_model(shape, num_states, beta=1.0):
    """``potts.model`` without its lattice declaration: ``sample(kernel="gibbs")`` then runs the
    generic categorical block-Gibbs kernel on the model's energy (colour blocks declared)."""
    s = numpyro.sample(
        "s", potts.base_measure(shape, num_states), infer={"blocks": potts.blocks(shape, True)}
    )
    ebm.energy("E", potts.energy(s, num_states, beta=beta))


def _row(kernel, energy, seconds, first, evals, acceptance, beta, L, sweeps=None, **extra):
    """One table row; ``sweeps``: chain-sweeps run (default one per kept draw)."""
    energy = np.asarray(energy, np.float64)
    ess = float(az.ess(energy, method="bulk"))
    return {
        "kernel": kernel,
        "ess": ess,
        "rhat": float(az.rhat(energy, method="rank")),
        "seconds": seconds,
        "compile_and_first": first,
        "ess_per_s": ess / seconds,
        "ess_per_eval": ess / evals,
        "ess_per_sweep": ess / (energy.size if sweeps is None else sweeps),
        "acceptance": acceptance,
        "u_mean": float(energy.mean()) / (beta * L * L),
        **extra,
    }


def efficiency(
    L: int,
    q: int,
    chains: int,
    warmup: int,
    samples: int,
    compact_factor: int = 20,
    sw_sweeps: int = 2000,
    burn: int = 1000,
    thinning: int = 1,
    kernels: tuple[str, ...] = ("gibbs", "dmala", "compact", "sw"),
) -> list[dict]:
    """DMALA, categorical Gibbs (generic and compact) and SW from SW-equilibrated starts.

    Every chain starts from an equilibrium configuration (``burn`` SW sweeps from a random
    start), so no burn-in is needed and the ESS is honest. Evaluations counted: generic Gibbs
    one energy-and-gradient per colour (2 per sweep); DMALA one at ``x`` and one at the
    proposal (2 per step); the compact heat bath its two colour passes (2 per sweep, each
    cheaper than a gradient); SW one (the bond pass reads every bond once, as one energy
    evaluation does; its labelling passes are reported apart). Gibbs and DMALA keep every
    ``thinning``-th step (``samples`` kept draws of ``samples * thinning`` steps), so long runs
    fit in memory; the ESS is that of the kept draws.
    """
    beta = 1.0 / potts.critical_temperature(q)
    starts = equilibrium_starts(L, q, chains, burn)
    rows = []
    for kernel in [k for k in ("gibbs", "dmala") if k in kernels]:
        kwargs = dict(
            kernel=kernel,
            num_chains=chains,
            num_warmup=warmup,
            num_samples=samples,
            thinning=thinning,
            model_args=((L, L), q),
            model_kwargs={"beta": beta},
            init_values={"s": starts},
            progress=False,
        )
        t0 = time.perf_counter()
        # compiles the chunks the long call reuses (a long thinning: a few draws suffice)
        first_n = min(samples, 1100 if thinning < 100 else 10)
        ebm.sample(generic_model, rng_key=0, **{**kwargs, "num_samples": first_n})
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        idata = ebm.sample(generic_model, rng_key=1, **kwargs)
        seconds = time.perf_counter() - t0
        energy = np.asarray(idata.sample_stats["potential_energy"], np.float64)
        acc = idata.sample_stats.get("acceptance_rate")
        rows.append(
            _row(
                kernel,
                energy,
                seconds,
                first,
                chains * (warmup + samples * thinning) * 2,
                float(np.mean(acc)) if acc is not None else float("nan"),
                beta,
                L,
                sweeps=chains * samples * thinning,
            )
        )
    if "compact" in kernels:
        rows.append(
            compact_efficiency(L, q, starts, compact_factor * (warmup + samples * thinning))
        )
    if "sw" in kernels:
        rows.append(sw_efficiency(L, q, starts, sw_sweeps))
    return rows


def compact_efficiency(L: int, q: int, starts, sweeps: int) -> dict:
    """The compact heat bath's chains (vmapped) from the given equilibrium starts."""
    beta = 1.0 / potts.critical_temperature(q)
    step = lattice.build_potts_kernel(q)

    @jax.jit
    def run(key, starts):
        def chain(k, s):
            st = lattice.potts_init(s, q, beta=beta)

            def body(st, kk):
                st, _ = step(kk, st, beta)
                return st, st.energy

            return jax.lax.scan(body, st, jax.random.split(k, sweeps))[1]

        return jax.vmap(chain)(jax.random.split(key, starts.shape[0]), starts)

    t0 = time.perf_counter()
    jax.block_until_ready(run(jax.random.PRNGKey(0), starts))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    energy = jax.block_until_ready(run(jax.random.PRNGKey(1), starts))
    seconds = time.perf_counter() - t0
    # one pass over the lattice per colour, in place of an energy evaluation
    return _row(
        "gibbs (compact)", energy, seconds, first, starts.shape[0] * sweeps * 2, 1.0, beta, L
    )


def sw_efficiency(L: int, q: int, starts, sweeps: int) -> dict:
    """Swendsen–Wang chains (vmapped) from the given equilibrium starts."""
    beta = 1.0 / potts.critical_temperature(q)
    run = sw_runner(L, q, beta, starts.shape[0], sweeps)
    t0 = time.perf_counter()
    jax.block_until_ready(run(jax.random.PRNGKey(0), starts))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, energy, passes = jax.block_until_ready(run(jax.random.PRNGKey(1), starts))
    seconds = time.perf_counter() - t0
    return _row(
        "swendsen-wang",
        energy,
        seconds,
        first,
        starts.shape[0] * sweeps,
        1.0,
        beta,
        L,
        labelling_passes=float(np.mean(passes)),
    )


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
    parser.add_argument("--ess-compact-factor", type=int, default=20)
    parser.add_argument("--ess-sw-sweeps", type=int, default=2000)
    parser.add_argument("--ess-burn", type=int, default=1000)
    parser.add_argument("--ess-thinning", type=int, default=1)
    parser.add_argument(
        "--ess-kernels",
        nargs="+",
        default=["gibbs", "dmala", "compact", "sw"],
        choices=["gibbs", "dmala", "compact", "sw"],
    )
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
    eff = efficiency(
        args.ess_size,
        3,
        args.ess_chains,
        args.ess_warmup,
        args.ess_samples,
        args.ess_compact_factor,
        args.ess_sw_sweeps,
        args.ess_burn,
        args.ess_thinning,
        tuple(args.ess_kernels),
    )
    print(
        f"\nL = {args.ess_size}, q = 3 at T_c, {args.ess_chains} chains from SW-equilibrated starts "
        f"({args.ess_burn} SW sweeps); gibbs/dmala {args.ess_warmup} warmup + {args.ess_samples}"
        f" x thinning {args.ess_thinning}, "
        f"compact x{args.ess_compact_factor}, SW {args.ess_sw_sweeps} sweeps; bulk ESS of the energy:"
    )
    for r in eff:
        print(
            f"  {r['kernel']:<15} ESS {r['ess']:8.1f} (R-hat {r['rhat']:.3f})  {r['ess_per_s']:9.3f}"
            f" ESS/s  {r['ess_per_eval']:.2e} ESS/eval  {r['ess_per_sweep']:.2e} ESS/sweep  "
            f"sampling {r['seconds']:.1f} s (first call {r['compile_and_first']:.1f} s)  "
            f"acceptance {r['acceptance']:.2f}  u = {r['u_mean']:.4f}"
            + (f"  labelling passes {r['labelling_passes']:.1f}" if "labelling_passes" in r else "")
            + ("" if r["rhat"] < 1.05 else "  UNRELIABLE: R-hat >= 1.05, chains not mixed")
        )
    if len(eff) < 4:
        return {"throughput": rows, "numpyro": (np_rate, our_rate), "efficiency": eff}
    g, d, c, sw = eff
    print(
        f"  DMALA / Gibbs: {d['ess_per_s'] / g['ess_per_s']:.2f}x ESS/s, "
        f"{d['ess_per_eval'] / g['ess_per_eval']:.2f}x ESS/eval; DMALA / compact Gibbs: "
        f"{d['ess_per_s'] / c['ess_per_s']:.3f}x ESS/s; SW / compact Gibbs: "
        f"{sw['ess_per_s'] / c['ess_per_s']:.1f}x ESS/s"
    )
    return {"throughput": rows, "numpyro": (np_rate, our_rate), "efficiency": eff}


if __name__ == "__main__":
    main()
