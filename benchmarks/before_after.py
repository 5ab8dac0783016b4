"""Run one benchmark script against two installs of ebm_ppl, interleaved (a script, not a test).

Before/after comparisons of a change, in one run so that the machine's load falls on both:
install the older revision into a folder, then name the benchmark and its arguments after
``--``::

    git archive REV | tar -x -C /tmp/old
    pip install --no-deps --target /tmp/old-site /tmp/old
    python benchmarks/before_after.py --before-site /tmp/old-site --before-tree /tmp/old \\
        --repeats 2 -- rbm.py --fresh --repeats 1

Each repeat runs the benchmark twice, alternating which goes first: "before" is
``--before-tree``'s ``benchmarks/<script>`` with ``--before-site`` first on ``PYTHONPATH`` (its
own ebm_ppl and models), "after" is this checkout's script with the installed ebm_ppl. Printed:
every run's output (the benchmark's own tables, whose ratios against their references are the
numbers to compare) and the wall time of each process, with the medians.

To measure "after" on a frozen copy while the checkout keeps changing, install it the same way
and name it with ``--after-site`` (put first on ``PYTHONPATH``) and ``--after-tree`` (whose
``benchmarks/<script>`` is run)::

    git archive HEAD | tar -x -C /tmp/new
    pip install --no-deps --target /tmp/new-site /tmp/new
    python /tmp/new/benchmarks/before_after.py --before-site /tmp/old-site \
        --before-tree /tmp/old --after-site /tmp/new-site --after-tree /tmp/new -- ais.py

An option only the newer script has (such as ``ising.py --no-thrml``) is given to "after" alone
with ``--after-extra=--no-thrml`` (repeatable); say so when comparing the outputs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: Path, args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds and combined output of one benchmark process."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    text = out.stdout + (
        f"\n[exit {out.returncode}]\n{out.stderr[-2000:]}" if out.returncode else ""
    )
    return wall, text


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before-site", required=True, help="folder holding the older ebm_ppl")
    parser.add_argument("--before-tree", required=True, help="the older revision's source tree")
    parser.add_argument(
        "--after-site", default=None, help="folder holding the newer ebm_ppl (default: installed)"
    )
    parser.add_argument(
        "--after-tree",
        default=str(HERE.parent),
        help="the newer revision's source tree (default: this checkout)",
    )
    parser.add_argument(
        "--after-extra",
        action="append",
        default=[],
        help="an argument for the after script only (repeatable; --after-extra=--flag)",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("benchmark", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS...]")
    args = parser.parse_args(argv)
    bench = [a for a in args.benchmark if a != "--"] if args.benchmark else []
    if not bench:
        parser.error("name a benchmark script after --, e.g. -- rbm.py --fresh")
    script, rest = bench[0], bench[1:]
    before_script = Path(args.before_tree) / "benchmarks" / script
    after_script = Path(args.after_tree) / "benchmarks" / script
    for path in (before_script, after_script):
        if not path.exists():
            parser.error(f"no benchmark {path}")
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env_before = dict(base, PYTHONPATH=str(Path(args.before_site).resolve()))
    env_after = (
        dict(base, PYTHONPATH=str(Path(args.after_site).resolve())) if args.after_site else base
    )
    walls: dict[str, list[float]] = {"before": [], "after": []}
    for r in range(args.repeats):
        order = [
            ("before", before_script, env_before, rest),
            ("after", after_script, env_after, rest + args.after_extra),
        ]
        for name, path, env, script_args in order if r % 2 == 0 else order[::-1]:
            wall, text = run(path, script_args, env)
            walls[name].append(wall)
            print(f"===== {name} (repeat {r + 1}/{args.repeats}, {wall:.1f} s) =====")
            print(text, flush=True)
    for name, ws in walls.items():
        print(f"{name}: median process wall {statistics.median(ws):.1f} s over {len(ws)} runs")
    return walls


if __name__ == "__main__":
    main()
