"""Run an example script's ``main`` in the test process.

A subprocess per example pays Python's and JAX's start-up again and compiles from scratch;
in-process, the examples of one test file share the interpreter and JAX's in-memory caches.
``main(argv)`` parses the same arguments as the command line, so the test runs the script's
own code path (only ``if __name__ == "__main__"`` is left out).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_example(script: str):
    """The module ``examples/<script>``, loaded afresh (its own name, not cached in sys.modules)."""
    path = ROOT / "examples" / script
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(script: str, *args: str, capsys, monkeypatch, cwd: Path):
    """``main(args)`` of ``examples/<script>`` run in ``cwd``; returns ``(stdout, result)``."""
    monkeypatch.chdir(cwd)
    capsys.readouterr()  # drop anything printed before the example starts
    result = load_example(script).main([str(a) for a in args])
    return capsys.readouterr().out, result
