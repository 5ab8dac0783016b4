"""Bad input raises a clear error naming the argument, before anything is compiled.

A table of (callable, exception type, message fragment). Other areas append rows to ``CASES``.
"""

import jax.numpy as jnp
import numpyro
import pytest
from numpyro import handlers

import ebm_ppl as ebm


def _ok_model():
    x = numpyro.sample("x", ebm.Flat((2,)))
    ebm.energy("E", jnp.sum(x**2))


def _nonscalar_energy():
    x = numpyro.sample("x", ebm.Flat((2,)))
    ebm.energy("E", x**2)


def _complex_energy():
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", x * (1 + 1j))


def _no_state():
    ebm.energy("E", jnp.array(1.0))


def _bits_model():
    x = numpyro.sample("x", ebm.Bits((3,)))
    ebm.energy("E", -jnp.sum(x))


def _discrete():
    s = numpyro.sample("s", ebm.Spins((3,)))
    ebm.energy("E", -jnp.sum(s))


def _run(model):
    return lambda: handlers.trace(handlers.substitute(model, data={"x": jnp.ones(2)})).get_trace()


CASES = [
    (
        "energy non-scalar outside plates",
        _run(_nonscalar_energy),
        ValueError,
        "value of energy 'E' must have shape",
    ),
    ("energy complex", lambda: ebm.EnergyModel(_complex_energy), ValueError, "must be real"),
    ("Flat negative shape", lambda: ebm.Flat((2, -1)), ValueError, "shape must have non-negative"),
    ("Flat non-int shape", lambda: ebm.Flat("a"), TypeError, "shape must be an int"),
    ("model without state", lambda: ebm.EnergyModel(_no_state), ValueError, "no state sites"),
    ("model not callable", lambda: ebm.EnergyModel(3), TypeError, "model must be a callable"),
    (
        "sample num_chains < 1",
        lambda: ebm.sample(_ok_model, num_chains=0),
        ValueError,
        "num_chains must be >= 1",
    ),
    (
        "sample num_samples < 1",
        lambda: ebm.sample(_ok_model, num_samples=0),
        ValueError,
        "num_samples must be >= 1",
    ),
    (
        "sample thinning type",
        lambda: ebm.sample(_ok_model, thinning=1.5),
        TypeError,
        "thinning must be an int",
    ),
    (
        "sample unknown kernel",
        lambda: ebm.sample(_ok_model, kernel="metropolis-ish"),
        ValueError,
        "kernel must be one of",
    ),
    (
        "sample unknown chain_method",
        lambda: ebm.sample(_ok_model, chain_method="pmap"),
        ValueError,
        "chain_method must be one of",
    ),
    (
        "sample NUTS on spins",
        lambda: ebm.sample(_discrete, kernel="nuts"),
        ValueError,
        "kernel='nuts' cannot move site 's'",
    ),
    (
        "sample init_values shape",
        lambda: ebm.sample(_ok_model, num_chains=2, init_values={"x": jnp.zeros(2)}),
        ValueError,
        "init_values['x'] must have shape (2, 2)",
    ),
    (
        "sample init_values outside support",
        lambda: ebm.sample(
            _discrete, kernel="gibbs", num_chains=1, init_values={"s": jnp.zeros((1, 3))}
        ),
        ValueError,
        "init_values['s'] must hold values in {-1, 1}",
    ),
    (
        "sample init_values unknown site",
        lambda: ebm.sample(_ok_model, init_values={"y": jnp.zeros((4, 2))}),
        ValueError,
        "unknown site",
    ),
    (
        "sample params missing",
        lambda: ebm.sample(lambda: (numpyro.param("a", 1.0), _ok_model()), params={}),
        ValueError,
        "params is missing ['a']",
    ),
    (
        "energy values missing site",
        lambda: ebm.EnergyModel(_ok_model).energy({}, {}),
        ValueError,
        "values is missing state site",
    ),
    (
        "init_values num_chains",
        lambda: ebm.EnergyModel(_ok_model).init_values(None, 0),
        ValueError,
        "num_chains must be >= 1",
    ),
    (
        "MALA step_size <= 0",
        lambda: ebm.infer.MALA(_ok_model, step_size=0.0),
        ValueError,
        "step_size",
    ),
    (
        "MALA model and potential_fn",
        lambda: ebm.infer.MALA(_ok_model, potential_fn=jnp.sum),
        ValueError,
        "both",
    ),
    ("MALA neither model nor potential_fn", lambda: ebm.infer.MALA(), ValueError, "neither"),
    (
        "MALA mass matrix shape",
        lambda: ebm.infer.MALA(potential_fn=jnp.sum, inverse_mass_matrix=jnp.ones(3)).init(
            jnp.array([0, 1], jnp.uint32), 0, jnp.zeros(2), (), {}
        ),
        ValueError,
        "inverse_mass_matrix must have shape (2,)",
    ),
    (
        "ULA adapt_step_size",
        lambda: ebm.infer.ULA(_ok_model, adapt_step_size=True),
        ValueError,
        "adapt_step_size",
    ),
    (
        "SGLD potential_fn without data_size",
        lambda: ebm.infer.SGLD(potential_fn=lambda z, idx: jnp.sum(z), batch_size=8),
        ValueError,
        "data_size is required",
    ),
    (
        "sample devices beyond the local ones",
        lambda: ebm.sample(_ok_model, kernel="mala", devices=64),
        ValueError,
        "devices=64 but this process has",
    ),
    (
        "diagnose on a file without a posterior group",
        lambda: _diagnose_prior_only(),
        ValueError,
        "has no posterior group",
    ),
    ("fit data with NaN", lambda: _fit(data=jnp.full((8, 2), jnp.nan)), ValueError, "NaN or inf"),
    ("fit data trailing shape", lambda: _fit(data=jnp.zeros((8, 3))), ValueError, "trailing shape"),
    ("fit batch > data", lambda: _fit(batch_size=9), ValueError, "larger than the data"),
    (
        "fit unknown objective",
        lambda: _fit(objective="mle"),
        ValueError,
        "objective must be one of",
    ),
    ("fit ambiguous data site", lambda: _fit(model=_two_sites), ValueError, "pass data_site="),
    (
        "fit unknown kernel",
        lambda: ebm.objectives.PersistentContrastiveDivergence("hmc"),
        ValueError,
        "kernel must be one of",
    ),
    (
        "ais schedule not increasing",
        lambda: ebm.log_partition(_ok_model, method="ais", schedule=[0.0, 0.6, 0.5, 1.0]),
        ValueError,
        "schedule must be strictly increasing",
    ),
    (
        "ais schedule not from 0 to 1",
        lambda: ebm.log_partition(_ok_model, method="ais", schedule=[0.0, 0.5]),
        ValueError,
        "schedule must start at 0 and end at 1",
    ),
    ("ais no usable base", lambda: ebm.log_partition(_mixed, method="ais"), ValueError, "base:"),
    (
        "elbo mixed model without guide",
        lambda: ebm.log_partition(_mixed, method="elbo"),
        ValueError,
        "guide:",
    ),
    (
        "boltzmann fixed W not symmetric",
        lambda: ebm.EnergyModel(
            ebm.models.boltzmann.model, 2, W=jnp.array([[0.0, 1.0], [2.0, 0.0]])
        ),
        ValueError,
        "W must be symmetric with a zero diagonal",
    ),
    (
        "gibbs unknown conditionals",
        lambda: __import__("ebm_ppl.infer.discrete").infer.discrete.BlockGibbs(
            ebm.models.ising.model, conditionals="fast"
        ),
        ValueError,
        "conditionals must be one of",
    ),
    (
        "gibbs non-binary init_params",
        lambda: (
            __import__("ebm_ppl.infer.discrete")
            .infer.discrete.BlockGibbs(ebm.models.ising.model)
            .init(jnp.array([0, 0], jnp.uint32), 0, {"s": jnp.zeros((4, 4))}, ((4, 4),), {})
        ),
        ValueError,
        "init_params['s'] must hold only the values -1 and 1",
    ),
    (
        "exact enumeration too large",
        lambda: ebm.log_partition(ebm.models.ising.model, method="exact", model_args=((5, 5),)),
        ValueError,
        "exceeds max_states",
    ),
    (
        "rbm unknown visible type",
        lambda: ebm.EnergyModel(ebm.models.rbm.model, 2, 2, visible="poisson"),
        ValueError,
        "visible must be one of",
    ),
    # sampling-free objectives
    (
        "DSM sigma <= 0",
        lambda: ebm.objectives.DenoisingScoreMatching(0.0),
        ValueError,
        "sigma must be > 0",
    ),
    (
        "DSM increasing sigmas",
        lambda: ebm.objectives.DenoisingScoreMatching((0.1, 0.5)),
        ValueError,
        "strictly decreasing",
    ),
    (
        "SSM num_projections < 1",
        lambda: ebm.objectives.SlicedScoreMatching(0),
        ValueError,
        "num_projections must be an integer >= 1",
    ),
    (
        "score matching on a discrete site",
        lambda: ebm.objectives.ScoreMatching().build(ebm.EnergyModel(_bits_model)),
        ValueError,
        "is discrete",
    ),
    (
        "NCE noise event shape",
        lambda: ebm.objectives.NCE(numpyro.distributions.Normal(0.0, 1.0)).build(
            ebm.EnergyModel(_ok_model)
        ),
        ValueError,
        "event_shape equal to the state",
    ),
]


def _mixed():
    x = numpyro.sample("x", ebm.Flat((2,)))
    s = numpyro.sample("s", ebm.Bits((2,)))
    ebm.energy("E", jnp.sum(x**2) - jnp.sum(s * x))


def _two_sites():
    x = numpyro.sample("x", ebm.Flat((2,)))
    y = numpyro.sample("y", ebm.Flat((2,)))
    ebm.energy("E", jnp.sum((x - y) ** 2))


def _fit(model=_ok_model, data=None, **kwargs):
    import optax

    options = dict(objective="pcd", optimizer=optax.sgd(0.1), num_steps=1, batch_size=4, rng_key=0)
    options.update(kwargs)
    return ebm.fit(model, jnp.zeros((8, 2)) if data is None else data, **options)


def _diagnose_prior_only():
    import tempfile
    from pathlib import Path

    import numpy as np

    path = Path(tempfile.mkdtemp()) / "prior.nc"
    ebm.diagnostics._az().from_dict(prior={"x": np.zeros((1, 10))}).to_netcdf(str(path))
    return ebm.diagnostics.load(path)  # the CLI's rows are in test_cli_errors.py


def _normal(*shape):
    import numpyro.distributions as dist

    d = dist.Normal(0.0, 1.0)
    return d.expand(shape).to_event(len(shape)) if shape else d


CASES += [
    (
        "sample tempering Flat without reference",
        lambda: ebm.sample(_ok_model, tempering=4),
        ValueError,
        "reference: site 'x' has an improper base measure",
    ),
    (
        "sample tempering one temperature",
        lambda: ebm.sample(_bits_model, tempering=1),
        ValueError,
        "num_temperatures must be >= 2",
    ),
    (
        "sample tempering betas not increasing",
        lambda: ebm.sample(_bits_model, tempering={"betas": [0.0, 0.7, 0.5, 1.0]}),
        ValueError,
        "betas must be strictly increasing",
    ),
    (
        "sample tempering betas not from 0 to 1",
        lambda: ebm.sample(_bits_model, tempering={"betas": [0.0, 0.5]}),
        ValueError,
        "betas must start at 0 and end at 1",
    ),
    (
        "sample tempering reference event shape",
        lambda: ebm.sample(_ok_model, tempering={"reference": _normal(3)}),
        ValueError,
        "reference['x'] must have batch_shape + event_shape = (2,)",
    ),
    (
        "log_partition pt Flat without reference",
        lambda: ebm.log_partition(_ok_model, method="pt"),
        ValueError,
        "has an improper base measure",
    ),
]


@pytest.mark.parametrize("label,fn,exc,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(label, fn, exc, fragment):
    with pytest.raises(exc) as info:
        fn()
    assert fragment in str(info.value), f"{label}: message {str(info.value)!r} lacks {fragment!r}"
