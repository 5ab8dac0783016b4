"""The documentation site: it builds in strict mode, documents every public name, and the
Python code of every page runs."""

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# Pages whose Python code the suite runs, every block in order, one namespace per page.
RUN_PAGES = (
    "index.md",
    "concepts.md",
    "models.md",
    "sampling.md",
    "fitting.md",
    "logz.md",
    "diagnostics.md",
    "scaling.md",
    "zoo.md",
    "cli.md",
    "saving.md",
    "monitoring.md",
    "sklearn.md",
    "tempering.md",
    "potts.md",
    "categorical.md",
    "performance.md",  # last: it turns the persistent compilation cache off for the process
)
# Pages whose code this file does not run, and why; a new page must be added to one of the two.
OTHER_PAGES = {
    "gallery.md": "figures of examples/, which run in tests/test_examples.py with tiny flags",
}
# Code blocks the suite does not run (one needs a cluster, the others compile for tens of
# seconds what a named test already runs): each says why in its first line ("# not run...").
NOT_RUN = {
    "scaling.md": 1,
    "saving.md": 1,
    "monitoring.md": 1,
    "sklearn.md": 1,
    "tempering.md": 2,
    "potts.md": 1,
    "categorical.md": 1,
    "zoo.md": 1,
}

_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def _pages():
    return sorted(p for p in DOCS.glob("*.md"))


def _blocks(page):
    return _FENCE.findall(page.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        # no -q: it drops warnings before --strict counts them
        [sys.executable, "-m", "mkdocs", "build", "--strict"]
        + ["-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-5000:]}"
    return out


def _inventory(site):
    """The object paths of mkdocstrings' Sphinx inventory (``objects.inv``)."""
    raw = (site / "objects.inv").read_bytes()
    start = 0
    for _ in range(4):  # four header lines, then a zlib stream
        start = raw.index(b"\n", start) + 1
    lines = zlib.decompress(raw[start:]).decode().splitlines()
    return {line.split(" ", 1)[0] for line in lines if " py:" in line}


def _resolve(path):
    """The object an inventory path names (``models.x`` is the zoo, ``ebm_ppl.models.x``)."""
    if path.startswith("models."):
        path = "ebm_ppl." + path
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _public_names():
    """``(module.name, object)`` for every name in the ``__all__`` of ebm_ppl and of every
    public module below it (subpackages and the modules they export), recursively."""
    found, todo, seen = [], ["ebm_ppl", "ebm_ppl.kernels.chains", "ebm_ppl.infer.chains"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if inspect.ismodule(obj):
                if obj.__name__.startswith("ebm_ppl."):
                    todo.append(obj.__name__)
            else:
                found.append((f"{name}.{attr}", obj))
    return sorted(found, key=lambda t: t[0])


def test_site_builds_strict(site):
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "ebm_ppl" in html and "Two commands" in html
    # the API pages hold rendered docstrings, not unresolved ::: directives
    api = (site / "api" / "ebm_ppl" / "index.html").read_text(encoding="utf-8")
    assert "ebm_ppl.infer.driver.sample" in api and ":::" not in api
    # nothing at build time or in the pages fetches fonts from the network
    assert "fonts.googleapis.com" not in html


def test_every_public_name_has_an_api_entry(site):
    inventory = _inventory(site)
    by_name = {}
    for path in inventory:
        by_name.setdefault(path.rsplit(".", 1)[-1], []).append(path)
    public = _public_names()
    assert len(public) > 100
    missing = []
    for label, obj in public:
        name = label.rsplit(".", 1)[-1]
        if label in inventory:
            continue
        if not any(_resolve(path) is obj for path in by_name.get(name, [])):
            missing.append(label)
    assert not missing, f"public names without an API entry in docs/api: {missing}"


def test_every_page_is_run_or_listed():
    pages = {page.name for page in _pages()}
    unlisted = pages - set(RUN_PAGES) - set(OTHER_PAGES)
    assert not unlisted, f"add {sorted(unlisted)} to RUN_PAGES (or OTHER_PAGES, with a reason)"
    assert set(RUN_PAGES) <= pages


def test_not_run_blocks_are_the_listed_ones():
    counts = {}
    for page in _pages():
        skipped = [b for b in _blocks(page) if b.startswith("# not run")]
        if skipped:
            counts[page.name] = len(skipped)
    assert counts == NOT_RUN


_RUNNER = textwrap.dedent(
    """
    import json, sys, time, traceback
    import matplotlib
    matplotlib.use("Agg")
    pages = json.loads(sys.stdin.read())
    times = {}
    for name, blocks in pages:
        namespace = {"__name__": "__main__"}
        start = time.perf_counter()
        for i, code in enumerate(blocks):
            try:
                exec(compile(code, f"docs/{name} block {i + 1}", "exec"), namespace)
            except BaseException:
                print(f"FAILED docs/{name}, python block {i + 1}:", file=sys.stderr)
                print(code, file=sys.stderr)
                traceback.print_exc()
                sys.exit(1)
        times[name] = round(time.perf_counter() - start, 1)
    print("TIMES", json.dumps(times))
    """
)


@pytest.mark.slow
@pytest.mark.subprocess
def test_every_page_code_runs(tmp_path):
    pages = [
        (name, [b for b in _blocks(DOCS / name) if not b.startswith("# not run")])
        for name in RUN_PAGES
    ]
    pages = [(name, blocks) for name, blocks in pages if blocks]
    assert len(pages) >= 8
    env = {**os.environ, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=json.dumps(pages),
        capture_output=True,
        text=True,
        cwd=tmp_path,  # pages that write files write them here
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "TIMES" in proc.stdout
