"""Checkerboard Ising throughput: spin updates per second against NumPy and the RNG ceiling.

A script, not a test. For each lattice side ``L`` (periodic, ``beta = 0.44``), one chain runs
``--sweeps`` checkerboard sweeps in each implementation:

  (a) ``ebm_ppl.kernels.gibbs`` with the plain JAX energy ``ising.energy`` (gradient logits,
      one 24-bit uniform per spin per sweep), inside one jitted ``lax.scan``;
  (b) the same kernel on the NumPyro model's energy (``EnergyModel.energy``: what
      ``ebm_ppl.sample(kernel="gibbs")`` runs, without the driver's collection of draws);
  (a') (a) with ``uniform_bits=16``: two 16-bit uniforms per 32-bit random word (update
      probabilities resolved to 2^-16; validated against Onsager in the test suite);
  (e) ``ebm_ppl.kernels.lattice``: the compact layout (an ``(L, L/2)`` array per colour, the
      logits of the updated colour only; the same random bits as (a), so the same chain), with
      24-bit and 16-bit uniforms;
  (f) ``ebm_ppl.sample(ising.model, kernel="gibbs")`` end to end on the NumPyro model (the
      driver, its chunks and the collection of one draw per 100 sweeps), compiled chunks reused;
  (g) THRML's block Gibbs (``pip install thrml``; skipped when it is not installed): an
      ``IsingEBM`` on the same torus, a two-block checkerboard ``IsingSamplingProgram``, the
      same beta and all-up start; its Python model-building time is reported apart;
  (c) a vectorized NumPy checkerboard (float32, neighbour sums by ``np.roll``, one uniform per
      spin per sweep), the reference;
  (d) two random-number ceilings, ``L^2`` float32 uniforms per sweep in the same kind of scan:
      ``jax.random.uniform`` (JAX lowers Threefry on CPU as a rolled loop and xors its two
      outputs into one word) and the fused Threefry-2x32 the kernels draw from
      (``ebm_ppl.kernels._random.paired_bits``: unrolled, both outputs used). A kernel drawing
      one 32-bit word per spin cannot beat the second.

Times are the median of ``--repeats`` interleaved repeats (in a rotated order) after two
compile/warm-up rounds. Reported: spin updates per second (``L^2 x sweeps / s``) with the range
over repeats, ratio to NumPy, fraction of the fused RNG ceiling, and the same two ratios in
process CPU time (all threads), which on a shared machine do not depend on the other processes'
load as wall-clock ratios do. The compact lattice kernel runs with int8 spins (its default) and,
as the previous layout, with float32 spins. ``--device gpu`` runs sides ``4096 8192`` on the
default JAX backend and also prints flips per nanosecond (NumPy is skipped there).

Usage: ``python benchmarks/ising.py [--sizes 256 1024] [--sweeps 200] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from ebm_ppl.models import ising

import ebm_ppl as ebm
from ebm_ppl.kernels import gibbs, lattice

BETA = 0.44


def lattice_runner(L: int, sweeps: int, uniform_bits: int = 32, dtype=jnp.int8):
    kernel = lattice.build_kernel(uniform_bits=uniform_bits)

    @jax.jit
    def run(key, s0):
        state = lattice.init(s0, beta=BETA, dtype=dtype)

        def body(st, k):
            st, _ = kernel(k, st, BETA)
            return st, None

        state, _ = jax.lax.scan(body, state, jax.random.split(key, sweeps))
        return state.black, state.white

    return run


def sample_runner(L: int, sweeps: int):
    """``ebm.sample`` on the NumPyro model: one chain, ``sweeps`` sweeps, a draw every 100."""
    thin = min(100, sweeps)

    def run(key, s0):
        del s0  # the driver draws its start
        return (
            ebm.sample(
                ising.model,
                model_args=((L, L),),
                model_kwargs={"beta": BETA},
                kernel="gibbs",
                num_chains=1,
                num_warmup=0,
                num_samples=max(1, sweeps // thin),
                thinning=thin,
                rng_key=key,
                progress=False,
            )
            .posterior["s"]
            .values
        )

    return run


def thrml_runner(L: int, sweeps: int):
    """THRML's two-block checkerboard program on the same torus; ``None`` without thrml."""
    try:
        import thrml
        from thrml.models.ising import IsingEBM, IsingSamplingProgram
    except ImportError:
        return None, float("nan")
    t0 = time.perf_counter()
    nodes = [thrml.SpinNode() for _ in range(L * L)]
    idx = np.arange(L * L).reshape(L, L)
    pairs = [(idx, np.roll(idx, -1, axis=1)), (idx, np.roll(idx, -1, axis=0))]
    edges = [
        (nodes[a], nodes[b]) for x, y in pairs for a, b in zip(x.ravel(), y.ravel(), strict=True)
    ]
    model = IsingEBM(
        nodes, edges, jnp.zeros(L * L), jnp.ones(len(edges)), jnp.asarray(BETA, jnp.float32)
    )
    colour = ising.blocks((L, L)).ravel()
    blocks = [thrml.Block([nodes[i] for i in np.flatnonzero(colour == c)]) for c in (0, 1)]
    program = IsingSamplingProgram(model, blocks, [])
    schedule = thrml.SamplingSchedule(n_warmup=sweeps - 1, n_samples=1, steps_per_sample=1)
    init = [jnp.ones((len(b.nodes),), jnp.bool_) for b in blocks]
    build = time.perf_counter() - t0

    @jax.jit
    def run(key, s0):
        del s0
        return thrml.sample_states(key, program, schedule, init, [], blocks)

    return run, build


def jax_runner(L: int, sweeps: int, energy_fn, uniform_bits: int = 32):
    kernel = gibbs.build_kernel(
        colours={"s": ising.blocks((L, L))}, levels={"s": (-1.0, 1.0)}, uniform_bits=uniform_bits
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


def rng_runner(L: int, sweeps: int, fused: bool = False):
    def draw(k):
        if not fused:
            return jax.random.uniform(k, (L, L))
        return gibbs._uniforms(k, (L, L), jnp.float32, 32)  # exactly the kernel's draw

    @jax.jit
    def run(key, s0):
        def body(acc, k):
            return acc + draw(k), None

        acc, _ = jax.lax.scan(body, jnp.zeros((L, L)), jax.random.split(key, sweeps))
        return acc

    return run


def numpy_runner(L: int, sweeps: int):
    masks = [ising.blocks((L, L)) == c for c in (0, 1)]
    two_beta = np.float32(2.0 * BETA)

    def run(seed, s0):
        rng = np.random.default_rng(seed)
        s = np.array(s0, dtype=np.float32)
        for _ in range(sweeps):
            u = rng.random((L, L), dtype=np.float32)
            for mask in masks:
                nb = np.roll(s, 1, 0) + np.roll(s, -1, 0) + np.roll(s, 1, 1) + np.roll(s, -1, 1)
                p_up = 1.0 / (1.0 + np.exp(-two_beta * nb))
                s = np.where(mask, np.where(u < p_up, np.float32(1), np.float32(-1)), s)
        return s

    return run


def time_it(fn, *args) -> tuple[float, float]:
    """Wall and process CPU seconds (all threads) of ``fn(*args)`` until its result is ready."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--sweeps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--no-thrml", action="store_true", help="skip THRML")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([4096, 8192] if args.device == "gpu" else [256, 1024])
    print(
        f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), beta = {BETA}, "
        f"{args.sweeps} sweeps, median of {args.repeats} interleaved repeats"
    )
    rows = []
    for L in sizes:
        em = ebm.EnergyModel(ising.model, (L, L), beta=BETA)
        impls = {
            "ebm_ppl gibbs (JAX energy)": jax_runner(
                L, args.sweeps, lambda p: ising.energy(p["s"], beta=BETA)
            ),
            "ebm_ppl gibbs (NumPyro model)": jax_runner(
                L, args.sweeps, lambda p, em=em: em.energy({}, p)
            ),
            "ebm_ppl gibbs, 16-bit uniforms": jax_runner(
                L, args.sweeps, lambda p: ising.energy(p["s"], beta=BETA), uniform_bits=16
            ),
            "ebm_ppl lattice (compact)": lattice_runner(L, args.sweeps),
            "ebm_ppl lattice, 16-bit uniforms": lattice_runner(L, args.sweeps, uniform_bits=16),
            "ebm_ppl lattice, float32 spins": lattice_runner(L, args.sweeps, dtype=jnp.float32),
            "ebm.sample(kernel='gibbs')": sample_runner(L, args.sweeps),
            "jax.random.uniform ceiling": rng_runner(L, args.sweeps),
            "fused Threefry ceiling": rng_runner(L, args.sweeps, fused=True),
        }
        if args.device == "cpu":
            impls["NumPy checkerboard"] = numpy_runner(L, args.sweeps)
        if not args.no_thrml:
            run_thrml, build = thrml_runner(L, args.sweeps)
            if run_thrml is not None:
                impls["THRML block Gibbs"] = run_thrml
                print(f"L = {L}: THRML model building (Python, apart) {build:.2f} s")
        s0 = jnp.ones((L, L), jnp.float32)
        key = jax.random.PRNGKey(0)
        # Two warm-up rounds (compilation, then first-touch allocations and caches): a single
        # one left the first timed repeat slow and the medians of short runs disagreeing.
        for _ in range(2):
            for name, fn in impls.items():
                fn(0, np.asarray(s0)) if name.startswith("NumPy") else jax.block_until_ready(
                    fn(key, s0)
                )
        times: dict[str, list[float]] = {name: [] for name in impls}
        cpu: dict[str, list[float]] = {name: [] for name in impls}
        for r in range(args.repeats):
            # interleaved, in a rotated order, so a burst of load from other processes does
            # not always fall on the same implementation
            names = list(impls)
            names = names[r % len(names) :] + names[: r % len(names)]
            for name in names:
                fn = impls[name]
                if name.startswith("NumPy"):
                    wall, c = time_it(fn, r, np.asarray(s0))
                else:
                    wall, c = time_it(fn, jax.random.PRNGKey(r), s0)
                times[name].append(wall)
                cpu[name].append(c)
        work = L * L * args.sweeps
        rate = {n: work / statistics.median(t) for n, t in times.items()}
        cpu_rate = {n: work / statistics.median(t) for n, t in cpu.items()}
        ref = rate.get("NumPy checkerboard")
        cpu_ref = cpu_rate.get("NumPy checkerboard")
        ceiling = rate["fused Threefry ceiling"]
        for name, r in rate.items():
            row = {
                "L": L,
                "impl": name,
                "updates_per_s": r,
                "spread": (work / max(times[name]), work / min(times[name])),
                "vs_numpy": (r / ref) if ref else float("nan"),
                "cpu_vs_numpy": (cpu_rate[name] / cpu_ref) if cpu_ref else float("nan"),
                "of_rng_ceiling": r / ceiling,
                "cpu_of_rng_ceiling": cpu_rate[name] / cpu_rate["fused Threefry ceiling"],
                "vs_jax_uniform": r / rate["jax.random.uniform ceiling"],
                "vs_thrml": r / rate.get("THRML block Gibbs", float("nan")),
            }
            rows.append(row)
    header = (
        f"{'L':>6} {'implementation':<32} {'spin updates/s':>15} {'(min-max)':>19} "
        f"{'x NumPy':>8} {'of fused RNG ceiling':>21} {'x THRML':>8} {'CPU: x NumPy':>13} "
        f"{'of ceiling':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        extra = f"  ({row['updates_per_s'] * 1e-9:.3f} flips/ns)" if args.device == "gpu" else ""
        lo, hi = row["spread"]
        print(
            f"{row['L']:>6} {row['impl']:<32} {row['updates_per_s']:>15.3e} "
            f"{f'({lo:.2e}-{hi:.2e})':>19} "
            f"{row['vs_numpy']:>8.2f} {row['of_rng_ceiling']:>21.2f} {row['vs_thrml']:>8.2f} "
            f"{row['cpu_vs_numpy']:>13.2f} {row['cpu_of_rng_ceiling']:>11.2f}{extra}"
        )
    print(
        "CPU columns: ratios of median process CPU seconds (all threads); they do not depend on "
        "how much of the machine other processes take, the wall-clock columns do"
    )
    return rows


if __name__ == "__main__":
    main()
