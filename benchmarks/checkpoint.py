"""What a checkpoint costs: write time against training time, RBM on binarized digits.

The README's fit (Bernoulli RBM, 64 visible and 16 hidden units, PCD-1 with block Gibbs on 100
persistent chains, SGD 0.05 with momentum 0.5, batch 20, 2000 updates, ``log_every=100``). Each
checkpoint write is timed inside ``fit``, as ``fit`` calls it (arrays to the host, encoding,
checksum, temporary file, ``fsync``, rename, folder ``fsync``, pruning to the newest three).

Printed (medians over ``--repeats`` runs, compilation excluded):
* training time of a chunk of 100 updates (between the ends of consecutive chunks, in a run
  without checkpoints; the first chunk, which compiles, left out), and of the whole run;
* one write (at ``checkpoint_every=100``, the first of each run left out: it also runs a few
  eager JAX ops for the first time in the process), and the part of it spent in ``os.fsync``;
* the cost at ``checkpoint_every=100`` (write / chunk) and at the default interval
  (``checkpoint_every=None``: a checkpoint at the end of the first chunk ending a minute or more
  after the previous one, and one at the end): write / 60 s, and the writes of the README's run
  against its training time.

Run: ``python benchmarks/checkpoint.py [--repeats 5] [--steps 2000] [--dir DIR]``. ``--dir``
chooses the file system written to (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import tempfile
import time

import jax
import numpy as np
import optax
from ebm_ppl.models import rbm

import ebm_ppl as ebm
from ebm_ppl.objectives import PersistentContrastiveDivergence

# The module, not the function ``ebm_ppl.train.fit`` that shadows its name on the package.
fit_module = importlib.import_module("ebm_ppl.train.fit")
DEFAULT_INTERVAL_S = fit_module._CHECKPOINT_SECONDS


def run(train, params0, num_steps, checkpoint_dir=None, checkpoint_every=None):
    ends: list[float] = []
    ebm.fit(
        rbm.model,
        train,
        model_args=(64, 16),
        data_site="v",
        init_params=params0,
        objective=PersistentContrastiveDivergence("gibbs", num_mcmc_steps=1, num_chains=100),
        optimizer=optax.sgd(0.05, momentum=0.5),
        num_steps=num_steps,
        batch_size=20,
        rng_key=jax.random.PRNGKey(1),
        log_every=100,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        progress=False,
        callbacks=[lambda *args: ends.append(time.perf_counter())],
    )
    return np.diff(ends)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--dir", default=None, help="folder to write checkpoints in")
    args = parser.parse_args()

    train, _ = ebm.data.binarized_digits()
    params0 = rbm.init_params(jax.random.PRNGKey(0), train, num_hidden=16)

    writes: list[float] = []
    fsyncs: list[float] = []
    real_save, real_fsync = fit_module.save_checkpoint, os.fsync

    def timed_fsync(fd):
        t = time.perf_counter()
        try:
            return real_fsync(fd)
        finally:
            if fsyncs:  # inside a checkpoint write (not fit's probe of the folder)
                fsyncs[-1] += time.perf_counter() - t

    def timed_save(*a, **k):
        fsyncs.append(0.0)
        t = time.perf_counter()
        out = real_save(*a, **k)
        writes.append(time.perf_counter() - t)
        return out

    def timed_run(folder, checkpoint_every):
        shutil.rmtree(folder, ignore_errors=True)
        writes.clear()
        fsyncs.clear()
        fit_module.save_checkpoint, os.fsync = timed_save, timed_fsync
        try:
            run(train, params0, args.steps, folder, checkpoint_every)
        finally:
            fit_module.save_checkpoint, os.fsync = real_save, real_fsync
            shutil.rmtree(folder, ignore_errors=True)
        return list(writes), list(fsyncs)

    chunks, first, later, fsync_later, default_writes = [], [], [], [], []
    base = args.dir or tempfile.mkdtemp(prefix="ebm-ppl-ckpt-bench-")
    for i in range(args.repeats):
        chunks.extend(run(train, params0, args.steps)[1:])  # the first chunk compiles
        w, f = timed_run(os.path.join(base, f"every{i}"), 100)
        first.append(w[0])  # also runs a few eager JAX ops for the first time
        later.extend(w[1:])
        fsync_later.extend(f[1:])
        default_writes.append(timed_run(os.path.join(base, f"default{i}"), None)[0])
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)

    chunk = float(np.median(chunks))
    write = float(np.median(later))
    training = chunk * args.steps / 100
    num_default = int(np.median([len(w) for w in default_writes]))
    default_total = float(np.median([sum(w) for w in default_writes]))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; jax {jax.__version__} on {jax.default_backend()}; "
        f"{args.steps} updates, {args.repeats} repeats"
    )
    print(f"training: {1e3 * chunk:.1f} ms per chunk of 100 updates, {training:.2f} s in all")
    print(
        f"one write: {1e3 * write:.2f} ms (of which fsync {1e3 * np.median(fsync_later):.2f} "
        f"ms; first of a process {1e3 * np.median(first):.2f} ms)"
    )
    print(f"checkpoint_every=100: {write / chunk:.2%} of training")
    print(
        f"default interval ({DEFAULT_INTERVAL_S:.0f} s): {write / DEFAULT_INTERVAL_S:.3%} of "
        f"training per interval; this run writes {num_default} checkpoint(s), "
        f"{1e3 * default_total:.2f} ms = {default_total / training:.2%} of its training"
    )


if __name__ == "__main__":
    main()
