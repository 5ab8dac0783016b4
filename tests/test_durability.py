"""Durability of training runs: ``kill -9`` of ``ebm-ppl fit`` at distinct phases, then resume.

One run folder is killed (SIGKILL, no chance to clean up) again and again, cycling through three
phases: at a random time during startup (imports, compilation, reading the checkpoint), shortly
after a checkpoint lands (training, host sync, the next write), and while a checkpoint is being
written (right after its temporary file appears). Each phase is hit on a fresh start and on a
resumed one. After every kill the folder must verify (no broken checkpoint, the newest step
never goes back), every ``ebm-ppl fit --resume DIR --steps N`` must start without a warning, and
the run finished after the last kill must equal an uninterrupted run bit for bit.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from ebm_ppl.train.checkpoint import latest_checkpoint, list_checkpoints, load_params
from tests import _fit_resume

ROOT = Path(__file__).resolve().parents[1]

NUM_KILLS = 6  # every phase twice: once in the first start, once in a resumed one
NUM_STEPS = 400
ATTEMPT_TIMEOUT = 180.0

FIT_FLAGS = [
    *("--objective", "pcd", "--kernel", "mala", "--step-size", "0.2", "--num-chains", "16"),
    *("--optimizer", "adam", "--learning-rate", "0.05", "--batch-size", "16", "--seed", "3"),
    *("--log-every", "10", "--checkpoint-every", "10", "--no-progress"),
]


def _env(tmp_path):
    # One persistent compilation cache for every start (each start pays imports and tracing).
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(tmp_path / "jax-cache")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": cache,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
        "MPLBACKEND": "Agg",
        "TQDM_DISABLE": "1",
    }


def _cli(*args):
    return [sys.executable, "-m", "ebm_ppl.cli", *args]


def _newest_step(run):
    files = list_checkpoints(run)
    return int(files[0].name[5:13]) if files else -1


def _temporaries(run):
    return sorted(n for n in os.listdir(run) if ".tmp." in n) if run.is_dir() else []


def _verify_quietly(run):
    """The newest checkpoint, requiring that no file in the folder fails verification."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a skipped (broken) checkpoint would be a warning
        return latest_checkpoint(run, require_finite=("params",))


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.timeout(1800)
def test_kill_9_at_random_points_then_resume_is_bit_identical(tmp_path):
    data = tmp_path / "data.npy"
    np.save(data, _fit_resume.data())
    env = _env(tmp_path)
    fresh = ["fit", "tests._fit_resume:gauss", "--data", str(data), *FIT_FLAGS]
    fresh += ["--steps", str(NUM_STEPS)]
    run, straight = tmp_path / "killed", tmp_path / "straight"
    logs = tmp_path / "logs"
    logs.mkdir()

    # The uninterrupted reference runs alongside the killed one.
    with open(logs / "straight.out", "w") as out, open(logs / "straight.err", "w") as err:
        reference = subprocess.Popen(
            _cli(*fresh, "--out", str(straight)), cwd=ROOT, env=env, stdout=out, stderr=err
        )

    rng = random.Random(13)
    modes = ["startup", "training", "during_write"]
    kills: list[dict] = []
    startup = []  # seconds from a start to its first new checkpoint, to scale startup kills
    attempt = 0
    try:
        while len(kills) < NUM_KILLS:
            resume = (run / "command.json").is_file()
            argv = ["fit", "--resume", str(run), "--steps", str(NUM_STEPS)] if resume else fresh
            if not resume:
                argv = [*argv, "--out", str(run)]
            mode = modes[attempt % len(modes)]
            before = _newest_step(run)
            # startup: a uniform time within imports, tracing, compilation (cache lookups) and
            # reading the checkpoint, at the latest when this start's first checkpoint lands;
            # training: a few milliseconds after its 1st to 4th new checkpoint (the next chunk,
            # host sync or write); during_write: once its own temporary file appears. Each start
            # gets at most five checkpoints further, so the run outlasts the kills.
            typical = float(np.median(startup)) if startup else 6.0
            deadline = rng.uniform(0.1, typical)
            wait_for, delay = rng.randint(1, 4), rng.uniform(0.0, 0.005)
            out_path, err_path = logs / f"{attempt:02d}.out", logs / f"{attempt:02d}.err"
            with open(out_path, "w") as out, open(err_path, "w") as err:
                start = time.monotonic()
                proc = subprocess.Popen(_cli(*argv), cwd=ROOT, env=env, stdout=out, stderr=err)
                own_tmp = f".ebmckpt.tmp.{proc.pid}"  # a killed start's may still lie there
                first_new = None
                while proc.poll() is None:
                    now = time.monotonic()
                    assert now - start < ATTEMPT_TIMEOUT, f"attempt {attempt} hangs"
                    names = os.listdir(run) if run.is_dir() else []
                    new = sorted({int(n[5:13]) for n in names if n.endswith(".ebmckpt")})
                    new = [step for step in new if step > before]
                    if new and first_new is None:
                        first_new = now
                        startup.append(now - start)
                    if mode == "startup" and (now - start >= deadline or new):
                        break
                    # (the newest three are kept: count by steps, not files)
                    if mode == "training" and new and new[-1] - max(before, 0) >= 10 * wait_for:
                        time.sleep(delay)
                        break
                    if mode == "during_write" and any(n.endswith(own_tmp) for n in names):
                        break
                    # Poll without pause once this start writes checkpoints (a write's window
                    # is short), gently before it (not to slow its startup).
                    time.sleep(0.001 if first_new is None else 0.0)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                elapsed = time.monotonic() - start
                proc.wait(timeout=60)
            err_text = err_path.read_text()
            assert "CheckpointWarning" not in err_text and "Traceback" not in err_text, err_text
            if proc.returncode != -signal.SIGKILL:
                # It finished (or failed) before the kill landed.
                assert proc.returncode == 0, err_text[-3000:]
                assert _newest_step(run) == NUM_STEPS
                break
            after = _newest_step(run)
            kills.append(
                {
                    "attempt": attempt,
                    "mode": mode,
                    "resumed": resume,
                    "seconds": round(elapsed, 3),
                    "newest_before": before,
                    "newest_after": after,
                    # the killed process's temporary file: the kill interrupted a write
                    "interrupted_write": [n for n in _temporaries(run) if n.endswith(own_tmp)],
                }
            )
            # Whatever the kill interrupted, the folder verifies and nothing was lost.
            assert after >= before, kills[-1]
            if after >= 0:
                assert _verify_quietly(run).step == after
            attempt += 1

        assert len(kills) == NUM_KILLS, (
            f"the run finished after {len(kills)} kills: raise NUM_STEPS"
        )

        # The last start runs to the end.
        with open(logs / "final.out", "w") as out, open(logs / "final.err", "w") as err:
            final = subprocess.run(
                _cli("fit", "--resume", str(run), "--steps", str(NUM_STEPS)),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=err,
                timeout=600,
            )
        assert final.returncode == 0, (logs / "final.err").read_text()[-3000:]
        assert "CheckpointWarning" not in (logs / "final.err").read_text()
        text = (logs / "final.out").read_text()
        resumed_from = kills[-1]["newest_after"]
        if resumed_from > 0:
            assert f"{NUM_STEPS} updates (resumed from {resumed_from})" in text, text
        assert reference.wait(timeout=600) == 0, (logs / "straight.err").read_text()[-3000:]
    finally:
        for proc in (reference,):
            if proc.poll() is None:
                proc.kill()
        (tmp_path / "kill_points.json").write_text(json.dumps(kills, indent=1))
        print(f"\n{len(kills)} kills of `ebm-ppl fit` (step = newest checkpoint):")
        for k in kills:
            print(
                f"  #{k['attempt']:02d} {k['mode']:<16} at {k['seconds']:6.2f} s, step "
                f"{k['newest_before']:>4} -> {k['newest_after']:>4}"
                + (f", interrupted {k['interrupted_write'][0]}" if k["interrupted_write"] else "")
            )

    modes_used = {k["mode"] for k in kills}
    assert modes_used == set(modes)
    assert {k["mode"] for k in kills if k["resumed"]} == set(modes)
    # Kills landed at different points of the run, not all before the first checkpoint: every
    # training kill came after new checkpoints of its start.
    assert all(k["newest_after"] > k["newest_before"] for k in kills if k["mode"] == "training")
    assert len({k["newest_after"] for k in kills}) >= 3
    assert sum(bool(k["interrupted_write"]) for k in kills) >= 1  # a write cut in the middle
    assert not _temporaries(run)  # a resumed run removes what interrupted writes left

    # Bit for bit: every stored array (parameters, optimizer and PCD chains, the whole
    # history) and the metadata of the final checkpoints, and the parameter files.
    got, want = _verify_quietly(run), _verify_quietly(straight)
    assert got.step == want.step == NUM_STEPS
    assert sorted(got.arrays) == sorted(want.arrays)
    for name, value in want.arrays.items():
        np.testing.assert_array_equal(got.arrays[name], value, err_msg=name)
        assert got.arrays[name].dtype == value.dtype
    assert got.metadata == want.metadata
    assert len(list_checkpoints(run)) == 3  # the newest three are kept
    got_params = load_params(run / "params.ebmparams")
    want_params = load_params(straight / "params.ebmparams")
    assert sorted(got_params) == sorted(want_params) == ["log_prec", "mu"]
    for name in want_params:
        np.testing.assert_array_equal(got_params[name], want_params[name])
