"""GPU check: sharded chains equal vectorized chains, and timings (a script, not a test).

Run on a machine with one or more GPUs (it also runs on CPU, for a dry run):

    python benchmarks/gpu_check.py            # a few minutes at most on one H100
    python benchmarks/gpu_check.py --quick    # smaller sizes

What it does, printing everything it measures:

1. **Equality.** ``ebm_ppl.sample`` with MALA on a 64-d MLP energy, ``--num-chains`` chains with
   warmup adaptation: ``chain_method="sharded"`` over all local devices (on one GPU: a
   one-device mesh, i.e. still the ``jit(shard_map(vmap))`` code path) against
   ``chain_method="vectorized"`` on the first device, same key. Reports whether the draws and
   step sizes are bit-identical, and the largest difference if not, and a ``mixing_report`` (no
   device should be flagged). With several devices also a padded chain count
   (``num_chains + 3``), reported but not required to match: XLA may vectorize blocks of
   different sizes differently (see docs/scaling.md).
2. **Timings.** Sampling time (compilation excluded; the driver times it separately) of the
   sharded and vectorized runs, and draws/s and ESS/s of vectorized MALA on the first device for
   chain counts ``--chain-grid``; the median of ``--repeats`` interleaved repeats. With several
   devices also the sharded runs, so the table shows the speed-up per device count.

Exit status 0 when every equality holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro

# Run from a source checkout without installing: the repository root goes first on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ebm_ppl as ebm  # noqa: E402
from ebm_ppl.diagnostics import ess, mixing_report  # noqa: E402

DIM, HIDDEN = 64, 128
_rng = np.random.default_rng(0)
W1 = jnp.asarray(_rng.normal(size=(DIM, HIDDEN)) / np.sqrt(DIM), jnp.float32)
W2 = jnp.asarray(_rng.normal(size=(HIDDEN,)) / np.sqrt(HIDDEN), jnp.float32)


def mlp_energy():
    """64-d state: quadratic confinement plus a 1-hidden-layer MLP bump (nonconvex, smooth)."""
    x = numpyro.sample("x", ebm.Flat((DIM,)))
    ebm.energy("E", 0.5 * jnp.sum(x**2) + jnp.dot(jax.nn.softplus(x @ W1), W2))


def run(num_chains, chain_method, devices=None, *, num_warmup, num_samples, seed=0):
    return ebm.sample(
        mlp_energy,
        kernel="mala",
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        chain_method=chain_method,
        devices=devices,
        rng_key=jax.random.PRNGKey(seed),
        progress=False,
    )


def compare(a, b, label):
    xa, xb = a.posterior["x"].values, b.posterior["x"].values
    same = bool(np.array_equal(xa, xb))
    same_step = bool(
        np.array_equal(a.sample_stats["step_size"].values, b.sample_stats["step_size"].values)
    )
    diff = float(np.max(np.abs(xa - xb)))
    print(
        f"  {label}: draws identical={same} step sizes identical={same_step} max|diff|={diff:.3g}"
    )
    return same and same_step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-chains", type=int, default=1024)
    p.add_argument("--num-warmup", type=int, default=200)
    p.add_argument("--num-samples", type=int, default=300)
    p.add_argument("--chain-grid", default="256,1024,4096")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="256 chains, 100+200 steps, grid 256,1024")
    args = p.parse_args(argv)
    if args.quick:
        args.num_chains, args.num_warmup, args.num_samples = 256, 100, 200
        args.chain_grid = "256,1024"
    devices = jax.local_devices()
    print(
        f"jax {jax.__version__}, backend {jax.default_backend()}, {len(devices)} local device(s): "
        f"{[str(d) for d in devices]}"
    )
    kw = dict(num_warmup=args.num_warmup, num_samples=args.num_samples)
    ok = True

    print(
        f"\n1. equality, {args.num_chains} MALA chains, {args.num_warmup} warmup + {args.num_samples} draws"
    )
    t0 = time.perf_counter()
    sharded = run(args.num_chains, "sharded", **kw)
    vector = run(args.num_chains, "vectorized", devices=1, **kw)
    print(f"  (first runs incl. compilation: {time.perf_counter() - t0:.1f} s)")
    ok &= compare(sharded, vector, f"sharded over {len(devices)} vs vectorized on 1")
    rep = mixing_report(sharded)
    print(
        f"  mixing_report: devices {list(rep.groups.index)}, flagged {rep.bad_groups}, "
        f"min bulk ESS {rep.summary['ess_bulk'].min():.0f}, max R-hat {rep.summary['r_hat'].max():.4f}"
    )
    ok &= rep.bad_groups == []
    if len(devices) > 1:
        n_pad = args.num_chains + 3
        # informational: blocks of another size may be vectorized differently by XLA (on CPU,
        # 130-chain blocks vs a 259-chain batch differ from the first rounding on)
        compare(
            run(n_pad, "sharded", **kw),
            run(n_pad, "vectorized", devices=1, **kw),
            f"padded (informational): {n_pad} chains sharded vs vectorized",
        )

    print(f"\n2. timings: median of {args.repeats} interleaved repeats, compile excluded")
    grid = [int(c) for c in args.chain_grid.split(",")]
    configs = [(n, "vectorized", 1) for n in grid]
    if len(devices) > 1:
        configs += [(n, "sharded", None) for n in grid]
    times: dict = {c: [] for c in configs}
    ess_min: dict = {}
    for c in configs:  # compile once
        run(c[0], c[1], c[2], **kw)
    for _ in range(args.repeats):
        for c in configs:
            idata = run(c[0], c[1], c[2], **kw)
            times[c].append(idata.posterior.attrs["sampling_time"])
            if c not in ess_min:
                x = idata.posterior["x"].values[..., :8]  # ESS over 8 coordinates (cost)
                ess_min[c] = float(np.min(ess(x)))
    base = statistics.median(times[configs[0]]) / (configs[0][0])  # s per chain, smallest grid
    print(
        f"  {'chains':>7} {'method':>10} {'devices':>7} {'sample s':>9} {'draws/s':>11} "
        f"{'ESS/s':>10} {'rel. cost/chain':>15}"
    )
    for c in configs:
        t = statistics.median(times[c])
        n = c[0]
        ndev = 1 if c[2] == 1 else len(devices)
        print(
            f"  {n:>7} {c[1]:>10} {ndev:>7} {t:>9.3f} {n * args.num_samples / t:>11.3g} "
            f"{ess_min[c] / t:>10.3g} {t / n / base:>15.3f}"
        )
    print("\nALL EQUAL" if ok else "\nMISMATCH (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
