"""Imports run down the layers of ebm_ppl, never sideways in the middle layer, never in a circle.

The layers, lowest first; a module may import modules of its own layer and of lower layers:

====  ============  ==================================================================
rank  layer         modules
====  ============  ==================================================================
0     data          ``ebm_ppl/data.py`` (toy sets, digits; NumPy only)
1     energy        ``ebm_ppl/energy/``: declaration, ``EnergyModel``, site plan, views
                    of a model (state vectors, bound data, mean-field pieces)
2     kernels       ``ebm_ppl/kernels/``: pure JAX samplers, chain mapping, fused random
                    numbers; *pure*: they import nothing of ebm_ppl outside ``kernels/``
3     diagnostics   ``ebm_ppl/diagnostics.py``: the ArviZ adapter, read by ``sample``
4     infer,        ``ebm_ppl/infer/``, ``ebm_ppl/objectives/``, ``ebm_ppl/partition/``:
      objectives,   one layer of three packages that do not import each other (a helper
      partition     two of them need lives in a lower layer)
5     train         ``ebm_ppl/train/``: ``fit``, checkpoints, history
6     models,       ``models/`` (installed as ``ebm_ppl.models``): the zoo, on top of the
      apps          library; the library never imports it. ``ebm_ppl/apps.py``: applications
                    of any trained model (scores, inpainting, denoising); apps and the zoo
                    do not import each other
7     cli           ``ebm_ppl/cli`` (module or package), any ``command.py``, and the package
                    facade ``ebm_ppl/__init__.py`` (which loads the rest lazily by name)
====  ============  ==================================================================

Every ``import`` statement counts, module-level or inside a function. A function-local import
of an ebm_ppl module is refused outside the cli layer (where it keeps ``ebm-ppl --help``
fast): function-local imports are for optional third-party dependencies (matplotlib, equinox,
flax, scikit-learn, flowjax, blackjax), never a way around the layers. Imports by name at run
time (``importlib.import_module``, the method and kernel registries) are not statically visible
and not checked here.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: layer -> (rank, group). Layers of one rank with different groups must not import each other.
LAYERS: dict[str, tuple[int, str]] = {
    "data": (0, "data"),
    "energy": (1, "energy"),
    "kernels": (2, "kernels"),
    "diagnostics": (3, "diagnostics"),
    "infer": (4, "infer"),
    "objectives": (4, "objectives"),
    "partition": (4, "partition"),
    "train": (5, "train"),
    "models": (6, "models"),
    "apps": (6, "apps"),
    "cli": (7, "cli"),
    "sklearn": (7, "sklearn"),  # ebm_ppl/sklearn.py: estimators over the library and the zoo
}

#: layers whose modules import nothing of ebm_ppl outside their own layer
PURE_LAYERS = {"kernels"}

#: layers allowed function-local imports of ebm_ppl modules
LAZY_IMPORT_LAYERS = {"cli"}

#: (importing file, imported module) pairs of function-local imports still to be hoisted; the
#: module imported has no import back, so hoisting is safe.
PENDING_LOCAL_IMPORTS: set[tuple[str, str]] = set()


class Import(NamedTuple):
    source: str  # importing module, e.g. "ebm_ppl.partition.ais"
    path: str  # its file, relative to the root
    line: int
    target: str  # imported module, e.g. "ebm_ppl.kernels.chains"
    local: bool  # inside a function
    implicit: bool = False  # a parent package the import runs first (cycle check only)

    def where(self) -> str:
        kind = "function-local import" if self.local else "import"
        return f"{self.path}:{self.line}: {kind} of {self.target}"


def module_files(root: Path) -> dict[str, Path]:
    """Module name -> file for every module of ``ebm_ppl/`` and ``models/`` under ``root``."""
    out = {}
    for top, prefix in (("ebm_ppl", ("ebm_ppl",)), ("models", ("ebm_ppl", "models"))):
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root / top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((*prefix, *parts))] = path
    return out


def layer_of(module: str, path: Path, root: Path) -> str | None:
    rel = path.relative_to(root).as_posix()
    parts = module.split(".")
    if rel.startswith("models/"):
        return "models"
    if path.name == "command.py" or (len(parts) > 1 and parts[1] == "cli"):
        return "cli"
    if module == "ebm_ppl":
        return "cli"  # the facade: lazy attributes over every layer
    return parts[1] if parts[1] in LAYERS else None


def _canonical(name: str) -> str:
    # the zoo is importable as ``models.x`` from a checkout and as ``ebm_ppl.models.x`` installed
    return "ebm_ppl." + name if name == "models" or name.startswith("models.") else name


def scan(root: Path) -> tuple[list[Import], dict[str, Path], list[str]]:
    """Every import of an ebm_ppl module, the modules, and the imports that resolve to nothing."""
    modules = module_files(root)
    imports: list[Import] = []
    unresolved: list[str] = []
    for module, path in modules.items():
        rel = path.relative_to(root).as_posix()
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)

        def add(target: str, node: ast.stmt, local: bool, module=module, rel=rel) -> None:
            target = _canonical(target)
            if target.split(".")[0] != "ebm_ppl":
                return
            if target not in modules:
                unresolved.append(f"{rel}:{node.lineno}: {target} is not a module of ebm_ppl")
                return
            imports.append(Import(module, rel, node.lineno, target, local))
            # Importing a.b.c runs a and a.b first: edges to the parents the importer is not in.
            parts = target.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if not (module == parent or module.startswith(parent + ".")):
                    imports.append(Import(module, rel, node.lineno, parent, local, True))

        def visit(node: ast.AST, local: bool, module=module, is_package=is_package) -> None:
            for child in ast.iter_child_nodes(node):
                inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                if isinstance(child, ast.Import):
                    for alias in child.names:
                        add(alias.name, child, local)
                elif isinstance(child, ast.ImportFrom):
                    if child.level:
                        base = module.split(".")
                        base = base if is_package else base[:-1]
                        base = base[: len(base) - (child.level - 1)]
                        name = ".".join(base + ([child.module] if child.module else []))
                    else:
                        name = child.module or ""
                    for alias in child.names:
                        sub = _canonical(f"{name}.{alias.name}")
                        # ``from pkg import submodule`` imports the submodule
                        add(sub if sub in modules else name, child, local)
                visit(child, inner)

        visit(tree, False)
    return imports, modules, unresolved


def layer_violations(root: Path) -> list[str]:
    imports, modules, unresolved = scan(root)
    problems = list(unresolved)
    for module, path in modules.items():
        if layer_of(module, path, root) is None:
            problems.append(f"{path.relative_to(root).as_posix()}: module has no layer (LAYERS)")
    for imp in imports:
        if imp.implicit:
            continue
        src = layer_of(imp.source, modules[imp.source], root)
        dst = layer_of(imp.target, modules[imp.target], root)
        if src is None or dst is None:
            continue
        (src_rank, src_group), (dst_rank, dst_group) = LAYERS[src], LAYERS[dst]
        if src in PURE_LAYERS and dst != src:
            problems.append(
                f"{imp.where()}: {src} is pure and imports nothing of ebm_ppl outside {src}/"
            )
        elif dst_rank > src_rank:
            problems.append(
                f"{imp.where()}: upward, layer {src} (rank {src_rank}) imports "
                f"layer {dst} (rank {dst_rank})"
            )
        elif dst_rank == src_rank and dst_group != src_group:
            problems.append(
                f"{imp.where()}: sideways, {src} and {dst} share rank {src_rank} and must not "
                "import each other; move the shared code to a lower layer"
            )
    return problems


def local_import_violations(root: Path) -> list[str]:
    imports, modules, _ = scan(root)
    problems = []
    for imp in imports:
        if not imp.local or imp.implicit:
            continue
        if layer_of(imp.source, modules[imp.source], root) in LAZY_IMPORT_LAYERS:
            continue
        if (imp.path, imp.target) in PENDING_LOCAL_IMPORTS:
            continue
        problems.append(
            f"{imp.where()}: import it at module level (function-local imports are for optional "
            "dependencies only)"
        )
    return problems


def import_cycles(root: Path) -> list[str]:
    """One message per cycle of modules (Tarjan's strongly connected components)."""
    imports, modules, _ = scan(root)
    edges: dict[str, dict[str, Import]] = {m: {} for m in modules}
    for imp in imports:
        edges[imp.source].setdefault(imp.target, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                components.append(sorted(component))

    for v in sorted(modules):
        if v not in index:
            connect(v)
    messages = []
    for component in components:
        members = set(component)
        links = [
            imp.where() + (" (runs its package first)" if imp.implicit else "")
            for m in component
            for t, imp in sorted(edges[m].items())
            if t in members
        ]
        messages.append(f"import cycle among {component}:\n    " + "\n    ".join(links))
    return messages


# ----------------------------------------------------------------------------- the real tree
def test_every_import_runs_down_the_layers():
    problems = layer_violations(ROOT)
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_no_import_cycles():
    cycles = import_cycles(ROOT)
    assert not cycles, "\n".join(cycles)


def test_function_local_imports_are_for_optional_dependencies_only():
    problems = local_import_violations(ROOT)
    assert not problems, "\n".join(problems)


def test_the_scan_sees_the_library():
    imports, modules, _ = scan(ROOT)
    assert {"ebm_ppl.energy.model", "ebm_ppl.kernels.gibbs", "ebm_ppl.models.rbm"} <= set(modules)
    # a known module-level import and a known lower-layer dependency are found
    found = {(i.source, i.target) for i in imports if not i.implicit}
    assert ("ebm_ppl.partition.ais", "ebm_ppl.kernels.chains") in found
    assert ("ebm_ppl.infer.driver", "ebm_ppl.diagnostics") in found


# ----------------------------------------------------------------------------- the checker
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for pkg in ("ebm_ppl", "models"):
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    return tmp_path


BASE = {
    "ebm_ppl/energy/__init__.py": "",
    "ebm_ppl/energy/model.py": "import jax\n",
    "ebm_ppl/kernels/__init__.py": "",
    "ebm_ppl/kernels/mala.py": "import jax\n",
    "ebm_ppl/objectives/__init__.py": "",
    "ebm_ppl/partition/__init__.py": "",
    "ebm_ppl/train/__init__.py": "",
}


def test_checker_accepts_a_clean_tree(tmp_path):
    root = _tree(
        tmp_path,
        {
            **BASE,
            "ebm_ppl/partition/ais.py": "from ebm_ppl.kernels import mala\n",
            "ebm_ppl/train/fit.py": "from ebm_ppl.partition import ais\n",
            "models/rbm.py": "from ebm_ppl.train import fit\n",
            "ebm_ppl/cli/__init__.py": "def main():\n    from ebm_ppl.models import rbm\n",
        },
    )
    assert layer_violations(root) == []
    assert import_cycles(root) == []
    assert local_import_violations(root) == []


def test_checker_reports_upward_sideways_impure_and_local_imports(tmp_path):
    root = _tree(
        tmp_path,
        {
            **BASE,
            "ebm_ppl/energy/model.py": "from ebm_ppl.train import fit\n",
            "ebm_ppl/train/fit.py": "import jax\n",
            "ebm_ppl/kernels/mala.py": "def f():\n    from ebm_ppl.energy import model\n",
            "ebm_ppl/objectives/var.py": "from ebm_ppl.partition.mf import q\n",
            "ebm_ppl/partition/mf.py": "q = 1\n",
            "ebm_ppl/partition/exact.py": "from ebm_ppl.models import rbm\n",
            "models/rbm.py": "",
        },
    )
    problems = "\n".join(layer_violations(root))
    assert "ebm_ppl/energy/model.py:1: import of ebm_ppl.train.fit: upward" in problems
    assert "ebm_ppl/partition/exact.py:1: import of ebm_ppl.models.rbm: upward" in problems
    assert "ebm_ppl/objectives/var.py:1: import of ebm_ppl.partition.mf: sideways" in problems
    assert "ebm_ppl/kernels/mala.py:2: function-local import of ebm_ppl.energy.model" in problems
    assert "kernels is pure" in problems
    local = "\n".join(local_import_violations(root))
    assert "ebm_ppl/kernels/mala.py:2: function-local import" in local


def test_checker_reports_cycles_unknown_modules_and_unplaced_modules(tmp_path):
    root = _tree(
        tmp_path,
        {
            **BASE,
            "ebm_ppl/partition/base.py": "def f():\n    import ebm_ppl.partition\n",
            "ebm_ppl/partition/__init__.py": "from ebm_ppl.partition.base import f\n",
            "ebm_ppl/partition/ais.py": "from . import exact\n",
            "ebm_ppl/partition/exact.py": "from .ais import x\nfrom ebm_ppl.nowhere import y\n",
            "ebm_ppl/extras.py": "",
        },
    )
    cycles = import_cycles(root)
    assert len(cycles) == 2
    text = "\n".join(cycles)
    assert "ebm_ppl/partition/base.py:2: function-local import of ebm_ppl.partition" in text
    assert "ebm_ppl/partition/ais.py:1: import of ebm_ppl.partition.exact" in text
    assert "ebm_ppl/partition/exact.py:1: import of ebm_ppl.partition.ais" in text
    problems = "\n".join(layer_violations(root))
    assert "ebm_ppl/partition/exact.py:2: ebm_ppl.nowhere is not a module of ebm_ppl" in problems
    assert "ebm_ppl/extras.py: module has no layer" in problems


@pytest.mark.parametrize(
    "rel, layer",
    [
        ("ebm_ppl/cli.py", "cli"),
        ("ebm_ppl/cli/fit.py", "cli"),
        ("ebm_ppl/train/command.py", "cli"),
        ("ebm_ppl/infer/command.py", "cli"),
        ("ebm_ppl/__init__.py", "cli"),
        ("ebm_ppl/data.py", "data"),
        ("ebm_ppl/diagnostics.py", "diagnostics"),
        ("models/neural.py", "models"),
        ("ebm_ppl/energy/view.py", "energy"),
    ],
)
def test_layer_of_each_kind_of_module(tmp_path, rel, layer):
    root = _tree(tmp_path, {rel: ""})
    modules = {str(p.relative_to(root).as_posix()): m for m, p in module_files(root).items()}
    assert layer_of(modules[rel], root / rel, root) == layer
