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
    "ebm_ppl.kernels.chains",
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


def test_infer_exports_every_adapter():
    import pkgutil

    from numpyro.infer.mcmc import MCMCKernel

    import ebm_ppl.infer as infer

    adapters = {}
    for info in pkgutil.iter_modules(infer.__path__):
        module = importlib.import_module(f"ebm_ppl.infer.{info.name}")
        for name, obj in vars(module).items():
            public = (
                not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__
            )
            if public and inspect.isclass(obj) and issubclass(obj, MCMCKernel):
                adapters[name] = obj
    assert {"BlockGibbs", "GibbsWithGradients", "MALA", "ULA", "SGLD"} <= set(adapters)
    missing = set(adapters) - set(infer.__all__)
    assert not missing, f"ebm_ppl.infer does not export the adapter(s) {sorted(missing)}"
    for name, cls in adapters.items():
        assert getattr(infer, name) is cls


def test_models_lists_every_model_module():
    from pathlib import Path

    import ebm_ppl.models as models

    on_disk = {p.stem for p in Path(models.__file__).parent.glob("*.py") if p.stem != "__init__"}
    assert "neural" in on_disk
    assert set(models.__all__) == on_disk
    for name in on_disk:
        assert name in (models.__doc__ or ""), f"ebm_ppl.models docstring does not mention {name}"
        assert inspect.ismodule(getattr(models, name))


def test_new_homes_and_old_paths_are_the_same_objects():
    from ebm_ppl.energy.binding import bind_data
    from ebm_ppl.energy.mean_field import BernoulliMeanField, BinaryBernoulli, energy_terms
    from ebm_ppl.infer import chains as old_chains
    from ebm_ppl.kernels import chains
    from ebm_ppl.partition import variational
    from ebm_ppl.partition.base import LogLikelihood
    from ebm_ppl.partition.likelihood import LogLikelihood as OldLogLikelihood

    fit_module = importlib.import_module("ebm_ppl.train.fit")  # ebm_ppl.train.fit is the function
    assert old_chains.map_chains is chains.map_chains
    assert set(old_chains.__all__) == set(chains.__all__)
    assert fit_module.bind_data is bind_data and ebm_ppl.train.bind_data is bind_data
    assert variational.BernoulliMeanField is BernoulliMeanField
    assert variational.BinaryBernoulli is BinaryBernoulli
    assert variational.energy_terms is energy_terms
    assert OldLogLikelihood is LogLikelihood and ebm_ppl.partition.LogLikelihood is LogLikelihood


def test_deprecated_names_warn_and_still_work():
    import jax
    import jax.numpy as jnp
    from ebm_ppl.models import rbm

    import ebm_ppl.partition.ais as ais

    with pytest.warns(DeprecationWarning, match="ebm_ppl.models.rbm.exact_samples"):
        old = ais.rbm_exact_samples
    assert old is rbm.exact_samples
    p = {"W": jnp.zeros((3, 2)), "b": jnp.zeros(3), "c": jnp.zeros(2)}
    assert old(jax.random.PRNGKey(0), p, 2)["v"].shape == (2, 3)
    with pytest.raises(AttributeError, match="no_such_name"):
        ais.no_such_name


# ----------------------------------------------------------------------------- rng_key, init_values
def _gauss():
    import jax.numpy as jnp
    import numpyro

    mu = numpyro.param("mu", 0.0)
    x = numpyro.sample("x", ebm_ppl.Flat(2))
    ebm_ppl.energy("E", 0.5 * jnp.sum((x - mu) ** 2))


def _entry_points():
    """Each public entry point with an ``rng_key``, as ``seed -> comparable result``."""
    import numpy as np
    import optax

    data = np.linspace(-1.0, 1.0, 16).reshape(8, 2)
    ais = dict(method="ais", num_chains=8, num_temperatures=4, adapt_step_size=False)
    return {
        "sample": lambda key: (
            ebm_ppl.sample(
                _gauss,
                kernel="mala",
                num_chains=1,
                num_warmup=2,
                num_samples=3,
                rng_key=key,
                progress=False,
            )
            .posterior["x"]
            .values
        ),
        "fit": lambda key: ebm_ppl.fit(
            _gauss,
            data,
            objective="sm",
            optimizer=optax.sgd(0.1),
            num_steps=2,
            batch_size=4,
            rng_key=key,
            progress=False,
        ).params["mu"],
        "log_partition": lambda key: ebm_ppl.log_partition(
            _gauss, {"mu": 0.0}, rng_key=key, **ais
        ).info["log_weights"],
        "log_likelihood": lambda key: (
            ebm_ppl.log_likelihood(_gauss, {"mu": 0.0}, data, rng_key=key, **ais).per_example
        ),
        "objective init": lambda key: (
            ebm_ppl.objectives.PersistentContrastiveDivergence("mala", num_chains=4)
            .build(ebm_ppl.EnergyModel(_gauss))
            .init(key, {"mu": 0.0}, {"x": data[:4]})
            .chains["x"]
        ),
    }


@pytest.mark.parametrize("name", list(_entry_points()))
def test_rng_key_accepts_an_int_or_a_key(name):
    import jax
    import numpy as np

    run = _entry_points()[name]
    np.testing.assert_array_equal(np.asarray(run(3)), np.asarray(run(jax.random.PRNGKey(3))))
    assert not np.array_equal(np.asarray(run(3)), np.asarray(run(4)))
    with pytest.raises(TypeError, match="PRNG key"):
        run(1.5)


def test_sample_init_params_is_a_deprecated_alias_of_init_values():
    import jax.numpy as jnp
    import numpy as np

    kwargs = dict(kernel="mala", num_chains=2, num_warmup=0, num_samples=2, progress=False)
    start = {"x": jnp.array([[5.0, 5.0], [-5.0, -5.0]])}
    new = ebm_ppl.sample(_gauss, init_values=start, **kwargs).posterior["x"].values
    with pytest.warns(DeprecationWarning, match="init_values"):
        old = ebm_ppl.sample(_gauss, init_params=start, **kwargs).posterior["x"].values
    np.testing.assert_array_equal(old, new)
    assert (new[0] > 2.0).all() and (new[1] < -2.0).all()  # the chains start where asked
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="not both"):
        ebm_ppl.sample(_gauss, init_values=start, init_params=start, **kwargs)
