"""Every public name has a docstring with a runnable example; importing is cheap and silent."""

import importlib
import inspect
import subprocess
import sys

import pytest

import ebm_ppl

PUBLIC_MODULES = [
    "ebm_ppl",
    "ebm_ppl.energy",
    "ebm_ppl.kernels",
    "ebm_ppl.infer",
    "ebm_ppl.infer.chains",
    "ebm_ppl.objectives",
    "ebm_ppl.partition",
    "ebm_ppl.diagnostics",
    "ebm_ppl.models",
    "ebm_ppl.data",
    "ebm_ppl.train",
]


def _public(module_name):
    module = importlib.import_module(module_name)
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue
        yield f"{module_name}.{name}", obj


def _all_public():
    seen = {}
    for module_name in PUBLIC_MODULES:
        try:
            items = list(_public(module_name))
        except ImportError as e:  # optional extras missing are a failure too: dev installs all
            raise AssertionError(f"{module_name} failed to import: {e}") from e
        for label, obj in items:
            seen.setdefault(id(obj), (label, obj))
    return sorted(seen.values(), key=lambda t: t[0])


@pytest.mark.parametrize("label,obj", _all_public(), ids=lambda x: x if isinstance(x, str) else "")
def test_public_name_has_docstring_with_example(label, obj):
    if not (callable(obj) or inspect.isclass(obj)):
        return  # constants are documented where defined
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{label} has no docstring"
    assert ">>>" in doc, f"{label}: docstring has no example"


def test_subpackages_are_lazy_attributes():
    code = (
        "import sys, ebm_ppl\n"
        "lazy = ['kernels', 'infer', 'objectives', 'partition', 'diagnostics', 'models']\n"
        "assert not any(f'ebm_ppl.{n}' in sys.modules for n in lazy), sys.modules.keys()\n"
        "assert 'arviz' not in sys.modules\n"
        "for n in lazy: getattr(ebm_ppl, n)\n"
        "from jax._src import xla_bridge\n"
        "assert not xla_bridge._backends, 'a JAX backend was initialised (arrays created)'\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_energy_name_is_the_declaration_function():
    assert callable(ebm_ppl.energy) and ebm_ppl.energy.__module__ == "ebm_ppl.energy.declare"
