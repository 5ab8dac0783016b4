"""Loss + gradient throughput (samples/s) of training objectives on an MLP energy.

Setting of TorchEBM's published benchmark files: an MLP energy with 128 hidden units
(two hidden layers here), batch 1024, dimension 128; contrastive divergence with k = 10 Langevin
steps, denoising score matching and sliced score matching (one projection). Each measurement
is one jitted ``value_and_grad`` of the objective's loss in the model's parameters, timed after
compilation with ``block_until_ready``; repeats are interleaved across objectives and the median
is reported. Ratios are against CD in the same run, and against TorchEBM's A100 figures (which
come from other hardware: context, not a like-for-like comparison).

Usage:
    python benchmarks/objectives.py [--repeats 7] [--batch-size 1024] [--dim 128]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from ebm_ppl.models.neural import mlp_energy

import ebm_ppl as ebm
from ebm_ppl.objectives import (
    NCE,
    ContrastiveDivergence,
    DenoisingScoreMatching,
    SlicedScoreMatching,
)

#: TorchEBM, A100, MLP energy (128 hidden), batch 1024, dim 128: samples/s (TorchEBM's published benchmark files).
TORCHEBM_A100 = {"cd-10": 97.5e3, "dsm": 194e3, "ssm": 122e3}


def build_all(dim: int, hidden: int, batch_size: int):
    em = ebm.EnergyModel(mlp_energy, dim, (hidden, hidden))
    params = em.init_params(jax.random.PRNGKey(0))
    batch = {"x": jax.random.normal(jax.random.PRNGKey(1), (batch_size, dim))}
    specs = {
        "cd-10": ContrastiveDivergence("ula", num_mcmc_steps=10, step_size=0.01),
        "dsm": DenoisingScoreMatching(0.1),
        "ssm": SlicedScoreMatching(1),
        "nce": NCE("gaussian"),
    }
    fns = {}
    for name, spec in specs.items():
        obj = spec.build(em, data=batch, num_steps=1000, batch_size=batch_size)
        state = obj.init(jax.random.PRNGKey(2), params, batch)
        step = jax.jit(jax.value_and_grad(obj.loss, has_aux=True))
        fns[name] = (step, state)
    return params, batch, fns


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5, help="calls per timed repeat")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    args = parser.parse_args(argv)

    params, batch, fns = build_all(args.dim, args.hidden, args.batch_size)
    key = jax.random.PRNGKey(3)
    for step, state in fns.values():  # compile
        jax.block_until_ready(step(params, state, batch, key))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(args.repeats):
        for name, (step, state) in fns.items():  # interleaved
            k = jax.random.fold_in(key, r)
            start = time.perf_counter()
            for _ in range(args.calls):
                out = step(params, state, batch, k)
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - start) / args.calls)
    rate = {name: args.batch_size / float(np.median(t)) for name, t in times.items()}
    device = jax.devices()[0]
    print(f"device: {device.platform} ({device.device_kind}), jax {jax.__version__}")
    print(
        f"MLP energy {args.dim}-{args.hidden}-{args.hidden}-1, batch {args.batch_size}, "
        f"median of {args.repeats} interleaved repeats x {args.calls} calls"
    )
    print(
        f"{'objective':10s} {'samples/s':>12s} {'vs cd-10':>9s} {'TorchEBM A100':>14s} {'ratio':>7s}"
    )
    for name, r in rate.items():
        ref = TORCHEBM_A100.get(name)
        print(
            f"{name:10s} {r:12.0f} {r / rate['cd-10']:9.2f} "
            + (f"{ref:14.0f} {r / ref:7.3f}" if ref else f"{'-':>14s} {'-':>7s}")
        )
    return rate


if __name__ == "__main__":
    jnp.zeros(())  # initialize the backend before timing
    main()
