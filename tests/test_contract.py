"""Contract suite: every kernel of ``tests/kernel_registry.py`` meets the same invariants."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC

from tests.kernel_registry import KERNELS, KernelEntry

NUM_STEPS = 3
NUM_CHAINS = 3


def _ids(entries):
    return [e.name for e in entries]


def _run_loop(entry: KernelEntry, key):
    """``NUM_STEPS`` steps in a Python loop (run under ``jax.disable_jit`` for the eager path)."""
    init_fn, step_fn = entry.build(entry.energy_fn)
    state = init_fn()
    infos = []
    for k in jax.random.split(key, NUM_STEPS):
        state, info = step_fn(k, state)
        infos.append(info)
    return state, infos


def _run_scan(entry: KernelEntry, key):
    init_fn, step_fn = entry.build(entry.energy_fn)
    return jax.lax.scan(lambda s, k: step_fn(k, s), init_fn(), jax.random.split(key, NUM_STEPS))


_JITTED: dict[str, object] = {}


def _jitted_run(entry: KernelEntry):
    """One compiled run per entry, shared by the tests of this module."""
    if entry.name not in _JITTED:
        _JITTED[entry.name] = jax.jit(lambda k: _run_scan(entry, k))
    return _JITTED[entry.name]


def _assert_close(a, b, exact: bool):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype
        if exact or x.dtype == bool or np.issubdtype(x.dtype, np.integer):
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module", params=KERNELS, ids=_ids(KERNELS))
def entry(request) -> KernelEntry:
    return request.param


def test_same_key_same_output(entry):
    run = _jitted_run(entry)
    a, b = run(jax.random.PRNGKey(3)), run(jax.random.PRNGKey(3))
    _assert_close(a, b, exact=True)
    c = run(jax.random.PRNGKey(4))
    moved = jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.any(x != y)), a[0], c[0]))
    assert any(moved), "a different key must give a different chain"


def test_jit_matches_eager(entry):
    key = jax.random.PRNGKey(5)
    with jax.disable_jit():
        state, infos = _run_loop(entry, key)
    eager = (state, jax.tree.map(lambda *xs: jnp.stack(xs), *infos))
    _assert_close(eager, _jitted_run(entry)(key), entry.exact)


def test_vmap_matches_loop(entry):
    keys = jax.random.split(jax.random.PRNGKey(6), NUM_CHAINS)
    run = _jitted_run(entry)
    batched = jax.jit(jax.vmap(run))(keys)
    looped = jax.tree.map(lambda *xs: jnp.stack(xs), *[run(k) for k in keys])
    _assert_close(batched, looped, entry.exact)


def test_stable_state_and_scan(entry):
    init_fn, step_fn = entry.build(entry.energy_fn)
    state0 = init_fn()
    state1, info1 = step_fn(jax.random.PRNGKey(0), state0)
    shape = lambda t: jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), t)
    assert jax.tree.structure(state0) == jax.tree.structure(state1)
    assert shape(state0) == shape(state1), "state shapes/dtypes must not change across a step"
    for field in ("acceptance_rate", "is_accepted", "is_divergent"):
        assert jnp.shape(getattr(info1, field)) == ()
    assert jnp.result_type(info1.is_accepted) == jnp.bool_
    assert jnp.result_type(info1.is_divergent) == jnp.bool_


def test_energy_traced_at_most_twice(entry):
    count = {"n": 0}

    def counting(*args):
        count["n"] += 1
        return entry.energy_fn(*args)

    def run(key):
        init_fn, step_fn = entry.build(counting)
        state = init_fn()

        def body(s, k):
            s, info = step_fn(k, s)
            return s, info.acceptance_rate

        return jax.lax.scan(body, state, jax.random.split(key, 20))

    jax.jit(run).lower(jax.random.PRNGKey(0))
    assert count["n"] <= 2, f"energy traced {count['n']} times"


DIVERGENT = [e for e in KERNELS if e.divergent_energy_fn is not None]
WITH_ADAPTER = [e for e in KERNELS if e.make_mcmc_kernel is not None]


# Checks that apply to a subset of the registry are parametrized over that subset, so nothing
# is skipped: an entry without a divergent problem or an adapter is simply not in the list.
@pytest.mark.parametrize("entry", DIVERGENT, ids=_ids(DIVERGENT))
def test_nonfinite_energy_is_divergence(entry):

    def run(key):
        init_fn, step_fn = entry.build(entry.divergent_energy_fn)

        def body(s, k):
            s, info = step_fn(k, s)
            return s, (info.is_divergent, info.is_accepted)

        return jax.lax.scan(body, init_fn(), jax.random.split(key, 200))

    state, (divergent, accepted) = jax.jit(run)(jax.random.PRNGKey(1))
    assert bool(jnp.any(divergent)), "the wall must produce divergent proposals"
    assert not bool(jnp.any(divergent & accepted)), "a divergent proposal must be rejected"
    for leaf in jax.tree.leaves(state):
        assert bool(jnp.all(jnp.isfinite(leaf))), "the state must stay finite"


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized"])
@pytest.mark.parametrize("entry", WITH_ADAPTER, ids=_ids(WITH_ADAPTER))
def test_runs_under_mcmc(entry, chain_method):
    kernel, model_args = entry.make_mcmc_kernel()
    mcmc = MCMC(
        kernel,
        num_warmup=30,
        num_samples=20,
        num_chains=2,
        chain_method=chain_method,
        progress_bar=False,
    )
    # NumPyro's state fields: MCMC collects them like HMC's (tests/test_mcmc_contract.py
    # checks their values)
    mcmc.run(jax.random.PRNGKey(0), *model_args, extra_fields=("diverging", "potential_energy"))
    samples = mcmc.get_samples(group_by_chain=True)
    assert samples, "no sites collected"
    for value in jax.tree.leaves(samples):
        assert value.shape[:2] == (2, 20)
        assert bool(jnp.all(jnp.isfinite(value)))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    assert extra["diverging"].shape == (2, 20) and extra["diverging"].dtype == jnp.bool_
    assert extra["potential_energy"].shape == (2, 20)
    assert bool(jnp.all(jnp.isfinite(extra["potential_energy"])))
    # the two chains are different chains
    first = jax.tree.leaves(samples)[0]
    assert not bool(jnp.all(first[0] == first[1]))
