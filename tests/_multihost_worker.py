"""One process of a 2-process run on JAX's distributed runtime (CPU, gloo collectives, loopback).

Usage: ``python -m tests._multihost_worker PROCESS_ID NUM_PROCESSES PORT OUT.npz``. Every process
calls ``ebm_ppl.sample`` exactly as a single process would; process 0 writes the gathered draws.
"""

import sys

import jax


def main(process_id: int, num_processes: int, port: int, out: str) -> int:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=120,
    )
    import numpy as np

    import ebm_ppl as ebm
    from ebm_ppl.diagnostics import mixing_report
    from tests._multihost_common import CONFIG, quartic

    idata = ebm.sample(quartic, rng_key=jax.random.PRNGKey(3), **CONFIG)
    report = mixing_report(idata)
    # uneven blocks (4 + 3 chains): the gather pads the last block and drops the padding
    from ebm_ppl.infer import chains

    placement = chains.place_chains(7, "vectorized")
    block = np.arange(placement.start, placement.start + placement.num_local, dtype=np.float32)
    uneven = chains.gather_chains({"c": block, "b": block > 2}, placement)
    if jax.process_index() == 0:
        np.savez(
            out,
            x=idata.posterior["x"].values,
            step_size=idata.sample_stats["step_size"].values,
            device=np.asarray(idata.posterior["device"].values, dtype=str),
            num_processes=idata.posterior.attrs["num_processes"],
            num_groups=len(report.groups),
            uneven=uneven["c"],
            uneven_bool=uneven["b"],
            uneven_local=np.array([placement.start, placement.num_local]),
        )
    jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
