"""Draws/s and ESS/s of sharded MALA chains versus chains per device and device count.

A script, not a test. For each device count in ``--device-counts`` it starts a fresh Python
process (the device count of a CPU must be fixed before JAX starts:
``XLA_FLAGS=--xla_force_host_platform_device_count=D``; on a GPU machine the real devices are
used, ``devices=D``), and in it runs ``ebm_ppl.sample(kernel="mala", chain_method="sharded")``
on a 64-d MLP energy for every ``chains per device`` in ``--chains-per-device``. Sampling time
excludes compilation (the driver times it separately); each cell is the median of
``--repeats`` interleaved repeats. The reference is 1 device with the smallest chain count:
the last column is throughput relative to it.

Simulated CPU devices share the machine's cores, so on a CPU the table shows the overhead of
sharding, not a speed-up; on several GPUs it shows the scaling.

Usage: ``python benchmarks/devices.py [--device-counts 1,2,4] [--chains-per-device 16,64,256]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

DIM, HIDDEN = 64, 128


def _worker(
    num_devices: int, chains_per_device: list[int], num_warmup: int, num_samples: int, repeats: int
) -> None:
    import statistics

    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro

    import ebm_ppl as ebm
    from ebm_ppl.diagnostics import ess

    rng = np.random.default_rng(0)
    w1 = jnp.asarray(rng.normal(size=(DIM, HIDDEN)) / np.sqrt(DIM), jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(HIDDEN,)) / np.sqrt(HIDDEN), jnp.float32)

    def mlp_energy():
        x = numpyro.sample("x", ebm.Flat((DIM,)))
        ebm.energy("E", 0.5 * jnp.sum(x**2) + jnp.dot(jax.nn.softplus(x @ w1), w2))

    def run(per_device):
        return ebm.sample(
            mlp_energy,
            kernel="mala",
            num_chains=per_device * num_devices,
            num_warmup=num_warmup,
            num_samples=num_samples,
            chain_method="sharded",
            devices=num_devices,
            rng_key=jax.random.PRNGKey(0),
            progress=False,
        )

    times: dict[int, list[float]] = {c: [] for c in chains_per_device}
    ess_min: dict[int, float] = {}
    for c in chains_per_device:  # compile
        idata = run(c)
        ess_min[c] = float(np.min(ess(idata.posterior["x"].values[..., :8])))
    for _ in range(repeats):
        for c in chains_per_device:
            times[c].append(run(c).posterior.attrs["sampling_time"])
    out = {c: {"time": statistics.median(times[c]), "ess": ess_min[c]} for c in chains_per_device}
    print(json.dumps({"backend": jax.default_backend(), "results": out}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device-counts", default="1,2,4")
    p.add_argument("--chains-per-device", default="16,64,256")
    p.add_argument("--num-warmup", type=int, default=100)
    p.add_argument("--num-samples", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cpd = [int(c) for c in args.chains_per_device.split(",")]
    if args.worker is not None:
        _worker(args.worker, cpd, args.num_warmup, args.num_samples, args.repeats)
        return 0
    rows = []
    backend = "?"
    for d in (int(x) for x in args.device_counts.split(",")):
        env = dict(os.environ)
        if not any(k in env.get("JAX_PLATFORMS", "") for k in ("cuda", "gpu", "tpu")):
            env["XLA_FLAGS"] = (
                env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={d}"
            ).strip()
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            str(d),
            "--chains-per-device",
            args.chains_per_device,
            "--num-warmup",
            str(args.num_warmup),
            "--num-samples",
            str(args.num_samples),
            "--repeats",
            str(args.repeats),
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"devices={d} failed:\n{proc.stderr[-2000:]}")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        backend = res["backend"]
        for c, v in res["results"].items():
            rows.append((d, int(c), v["time"], v["ess"]))
    if not rows:
        return 1
    ref = rows[0][1] * rows[0][0] * args.num_samples / rows[0][2]
    print(
        f"backend {backend}; MALA, 64-d MLP energy, {args.num_warmup} warmup + {args.num_samples} draws; "
        f"median of {args.repeats}"
    )
    print(
        f"{'devices':>7} {'chains/dev':>10} {'chains':>7} {'sample s':>9} {'draws/s':>10} "
        f"{'ESS/s':>9} {'draws/s rel.':>12}"
    )
    for d, c, t, e in rows:
        draws = d * c * args.num_samples / t
        print(
            f"{d:>7} {c:>10} {d * c:>7} {t:>9.3f} {draws:>10.3g} {e / t:>9.3g} {draws / ref:>12.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
