"""Categorical states: declaration, conditionals, kernels, errors.

The reference problem is the q-state Potts model on a 3x3 torus,
``E = -beta J sum_<ij> delta(s_i, s_j) - beta sum_i h[s_i]`` (18 bonds, each counted once),
whose energy per site ``<u>`` and neighbour agreement ``P(s_i = s_j)`` are enumerated exactly
(3^9 and 4^9 states) and compared with the chains of categorical block Gibbs, GWG and DMALA
within their Monte Carlo standard errors.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import MCMC, Gibbs

import ebm_ppl as ebm
from ebm_ppl.energy.conditionals import (
    OneHotError,
    categorical_logits,
    categorical_value_and_logits,
    check_categorical_affine,
    exact_categorical_logits,
    exact_logits,
    gradient_categorical_logits,
)
from ebm_ppl.infer.discrete import DMALA, BlockGibbs
from ebm_ppl.infer.langevin import MALA
from ebm_ppl.kernels import dlangevin, gibbs, gwg
from ebm_ppl.kernels.resolve import auto_kernel_name, resolve_kernel
from tests.helpers.stats import assert_within_mcse

L = 3
BETA, J = 0.8, 1.0
FIELDS = {3: np.array([0.0, 0.3, -0.2]), 4: np.array([0.0, 0.3, -0.2, 0.1])}
# statistical assertions of this module (Bonferroni): 3 kernels x 2 q x 2 statistics + mixed 2
NUM_TESTS = 14


# ----------------------------------------------------------------------------- the reference
def _bonds(c: np.ndarray) -> np.ndarray:
    """Agreements of the 18 bonds of each 3x3 torus state, ``c`` of shape (..., 3, 3)."""
    right = c == np.roll(c, -1, axis=-1)
    down = c == np.roll(c, -1, axis=-2)
    return right.sum(axis=(-1, -2)) + down.sum(axis=(-1, -2))


@functools.cache
def exact_potts(q: int) -> dict[str, float]:
    """ln Z, <u> and P(s_i = s_j) (neighbours) by enumeration of all q^9 states, float64."""
    states = np.array(list(itertools.product(range(q), repeat=L * L))).reshape(-1, L, L)
    agree = _bonds(states)
    field = FIELDS[q][states].sum(axis=(-1, -2))
    energy = -BETA * J * agree - BETA * field
    shift = energy.min()
    w = np.exp(-(energy - shift))
    z = w.sum()
    p = w / z
    return {
        "log_z": float(np.log(z) - shift),
        "u": float(p @ energy / (L * L)),
        "agree": float(p @ agree / (2 * L * L)),
    }


def potts_energy(c: jax.Array, q: int) -> jax.Array:
    """The same energy in JAX through ebm.one_hot (affine in each unit's encoding)."""
    o = ebm.one_hot(c, q)
    agree = jnp.sum(o * jnp.roll(o, -1, 0)) + jnp.sum(o * jnp.roll(o, -1, 1))
    return -BETA * J * agree - BETA * jnp.sum(o @ jnp.asarray(FIELDS[q], jnp.float32))


def potts_model(q: int, base: str = "ebm"):
    if base == "ebm":
        c = numpyro.sample(
            "c", ebm.Categorical((L, L), q), infer={"blocks": gibbs.lattice_colouring((L, L))}
        )
    else:
        c = numpyro.sample("c", dist.Categorical(probs=jnp.ones(q) / q).expand([L, L]))
    ebm.energy("E", potts_energy(c, q))


def _stats(c: jax.Array, q: int) -> jax.Array:
    agree = jnp.sum(c == jnp.roll(c, -1, 0)) + jnp.sum(c == jnp.roll(c, -1, 1))
    return jnp.stack([potts_energy(c, q) / (L * L), agree / (2.0 * L * L)])


def test_exact_reference_values():
    # q = 2: the Potts model at beta is the Ising model at beta/2 with a field; without the
    # field Z_potts = exp(beta J N_bonds / 2) Z_ising(beta J / 2)
    ising = np.array(list(itertools.product((-1, 1), repeat=L * L))).reshape(-1, L, L)
    prod = (ising * np.roll(ising, -1, -1)).sum(axis=(-1, -2)) + (
        ising * np.roll(ising, -1, -2)
    ).sum(axis=(-1, -2))
    log_z_ising = np.log(np.exp(BETA * J / 2 * prod).sum())
    potts2 = np.array(list(itertools.product((0, 1), repeat=L * L))).reshape(-1, L, L)
    log_z_potts = np.log(np.exp(BETA * J * _bonds(potts2)).sum())
    assert log_z_potts == pytest.approx(log_z_ising + BETA * J * 18 / 2, abs=1e-9)
    for q in (3, 4):
        ref = exact_potts(q)
        assert 1.0 / q < ref["agree"] < 1.0 and ref["u"] < 0


# ----------------------------------------------------------------------------- declaration
def test_categorical_base_measure():
    base = ebm.Categorical((2, 3), 4)
    assert base.batch_shape == (2, 3) and base.event_shape == ()
    x = base.sample(jax.random.PRNGKey(0), (5,))
    assert x.shape == (5, 2, 3) and x.dtype == jnp.int32
    assert set(np.unique(np.asarray(x)).tolist()) <= {0, 1, 2, 3}
    assert base.enumerate_support().shape == (4, 2, 3)
    assert np.asarray(base.log_prob(jnp.array([0, 3, 4, -1, 1, 2]).reshape(2, 3))).tolist() == [
        [0.0, 0.0, -np.inf],
        [-np.inf, 0.0, 0.0],
    ]
    with pytest.raises(ValueError, match="num_states must be >= 2"):
        ebm.Categorical(3, 1)
    with pytest.raises(TypeError, match="num_states"):
        ebm.Categorical(3, 2.5)


def test_plan_reads_categorical_sites():
    for base in ("ebm", "numpyro"):
        em = ebm.EnergyModel(potts_model, 3, base)
        spec = em.plan["c"]
        assert (spec.kind, spec.num_states, spec.support_values) == (
            "categorical",
            3,
            (0.0, 1.0, 2.0),
        )
        assert em.plan.num_states() == {"c": 3}
        assert em.plan.to_kernel({"c": np.ones((L, L))})["c"].dtype == jnp.int32
        with pytest.raises(ValueError, match=r"values\['c'\] must hold values in \{0, 1, 2\}"):
            em.energy({}, {"c": np.full((L, L), 3)})
    # q = 2 declared categorical stays categorical (integer states)
    em2 = ebm.EnergyModel(lambda: ebm.energy("E", numpyro.sample("c", ebm.Categorical(2, 2)).sum()))
    assert em2.plan["c"].kind == "categorical"


def test_numpyro_categorical_equals_ebm_categorical():
    ebm_em = ebm.EnergyModel(potts_model, 3, "ebm")
    np_em = ebm.EnergyModel(potts_model, 3, "numpyro")
    states = jax.random.randint(jax.random.PRNGKey(1), (6, L, L), 0, 3)
    both = jax.jit(lambda c: (ebm_em.batch_energy({}, {"c": c}), np_em.batch_energy({}, {"c": c})))
    e1, e2 = (np.asarray(e, np.float64) for e in both(states))
    # the uniform Categorical's base density 1/3 per unit: a constant 9 ln 3, so every
    # conditional (an energy difference) is the same
    np.testing.assert_allclose(e2 - e1, 9 * np.log(3.0), atol=1e-4)
    assert ebm_em.plan["c"].num_states == np_em.plan["c"].num_states == 3


# ----------------------------------------------------------------------------- conditionals
def _nonaffine(pos):
    c = pos["c"]
    return jnp.sum((c.astype(jnp.float32) - 1.0) ** 2 * jnp.roll(c, 1)) + 0.5 * jnp.sum(c == 2)


def _nonaffine_np(c):
    return np.sum((c - 1.0) ** 2 * np.roll(c, 1)) + 0.5 * np.sum(c == 2)


def _potts_np(c, q):
    return -BETA * J * _bonds(c) - BETA * FIELDS[q][c].sum()


def _brute_logits(energy_np, c, q):
    """-(E(x_i = k) - E(x)) by a loop over units and states, in NumPy float64."""
    c = np.asarray(c)
    flat = c.ravel()
    out = np.zeros(flat.shape + (q,))
    e0 = float(energy_np(c))
    for i in range(flat.size):
        for k in range(q):
            y = flat.copy()
            y[i] = k
            out[i, k] = -(float(energy_np(y.reshape(c.shape))) - e0)
    return out.reshape(c.shape + (q,))


def test_conditionals_match_exact_differences():
    c = jax.random.randint(jax.random.PRNGKey(2), (L, L), 0, 4)
    affine_fn = lambda pos: potts_energy(pos["c"], 4)  # noqa: E731
    want = _brute_logits(lambda y: _potts_np(y, 4), c, 4)

    @jax.jit
    def all_paths(c):
        pos = {"c": c}
        joint = categorical_value_and_logits(affine_fn, pos, {"c": 4}, affine={"c": True})
        return (
            gradient_categorical_logits(affine_fn, pos, "c", 4),
            exact_categorical_logits(affine_fn, pos, "c", 4),
            joint,
            affine_fn(pos),
        )

    grad, exact, (energy, joint), e0 = all_paths(c)
    np.testing.assert_allclose(grad, want, atol=1e-5)
    np.testing.assert_allclose(exact, want, atol=1e-5)
    np.testing.assert_allclose(joint["c"], want, atol=1e-5)
    assert float(energy) == pytest.approx(float(e0), abs=1e-5)
    assert check_categorical_affine(affine_fn, {"c": c}, {"c": 4}) == {"c": True}
    # not affine in the encoding (and not read through ebm.one_hot): exact differences
    c3 = c % 3
    want = _brute_logits(_nonaffine_np, c3, 3)
    assert check_categorical_affine(_nonaffine, {"c": c3}, {"c": 3}) == {"c": False}
    logits = jax.jit(lambda c: categorical_logits(_nonaffine, {"c": c}, "c", 3))(c3)
    np.testing.assert_allclose(logits, want, atol=1e-4)
    # affine, but read by indexing: no gradient, so exact differences
    indexed = lambda pos: -jnp.sum(jnp.asarray(FIELDS[3], jnp.float32)[pos["c"]])  # noqa: E731
    want = _brute_logits(lambda y: -FIELDS[3][y].sum(), c3, 3)
    logits = jax.jit(lambda c: categorical_logits(indexed, {"c": c}, "c", 3))(c3)
    np.testing.assert_allclose(logits, want, atol=1e-5)


def _ising_like(x):
    """An energy of 0/1 states, written for either declaration."""
    x = x.astype(jnp.float32)
    return -0.7 * jnp.sum(x[1:] * x[:-1]) - 0.4 * jnp.sum(x) + 0.3 * x[0] * x[2]


def test_two_state_categorical_agrees_with_bits():
    def as_bits():
        ebm.energy("E", _ising_like(numpyro.sample("x", ebm.Bits(4))))

    def as_categorical():
        ebm.energy("E", _ising_like(numpyro.sample("x", ebm.Categorical(4, 2))))

    bits, cat = ebm.EnergyModel(as_bits), ebm.EnergyModel(as_categorical)
    assert (bits.plan["x"].kind, cat.plan["x"].kind) == ("binary", "categorical")
    states = ((jnp.arange(16)[:, None] >> jnp.arange(4)) & 1).astype(jnp.int32)

    def compare(s):
        fb = lambda p: bits.energy({}, p)  # noqa: E731
        fc = lambda p: cat.energy({}, p)  # noqa: E731
        lb = exact_logits(fb, {"x": s.astype(jnp.float32)}, "x", (0.0, 1.0))
        lc = categorical_logits(fc, {"x": s}, "x", 2)
        return fb({"x": s.astype(jnp.float32)}), fc({"x": s}), lb, lc[:, 1] - lc[:, 0]

    eb, ec, lb, lc = jax.jit(jax.vmap(compare))(states)
    np.testing.assert_allclose(eb, ec, atol=1e-6)
    np.testing.assert_allclose(lc, lb, atol=1e-5)


# ----------------------------------------------------------------------------- kernels vs exact
NUM_CHAINS = 16


def _logits_fn(energy_fn, position, num_states):
    return categorical_value_and_logits(energy_fn, position, num_states, affine={"c": True})


def _run(kind: str, q: int, num_steps: int, thin: int, step_size: float = 1.0):
    energy_fn = lambda pos: potts_energy(pos["c"], q)  # noqa: E731
    if kind == "gibbs":  # exact differences (the kernels' default) for q = 3, gradient for 4
        step = gibbs.build_kernel(
            colours={"c": gibbs.lattice_colouring((L, L))},
            num_states={"c": q},
            logits_fn=_logits_fn if q == 4 else None,
        )
        init = gibbs.init
    elif kind == "gwg":
        step, init = gwg.build_kernel(num_states={"c": q}, logits_fn=_logits_fn), gwg.init
    else:
        step = dlangevin.build_kernel(
            num_states={"c": q}, logits_fn=_logits_fn, adjusted=kind == "dmala"
        )
        step = functools.partial(_with_step, step, step_size)
        init = dlangevin.init

    def chain(key):
        k0, k1 = jax.random.split(key)
        state = init({"c": jax.random.randint(k0, (L, L), 0, q)}, energy_fn)

        def outer(s, k):
            def inner(s, kk):
                return step(kk, s, energy_fn)[0], None

            s, _ = jax.lax.scan(inner, s, jax.random.split(k, thin))
            return s, _stats(s.position["c"], q)

        return jax.lax.scan(outer, state, jax.random.split(k1, num_steps // thin))[1]

    keys = jax.random.split(jax.random.PRNGKey(q * 10 + len(kind)), NUM_CHAINS)
    return np.asarray(jax.jit(jax.vmap(chain))(keys))


def _with_step(step, step_size, key, state, energy_fn):
    return step(key, state, energy_fn, step_size)


def _check(draws, q, kind):
    ref = exact_potts(q)
    draws = draws[:, draws.shape[1] // 10 :]  # burn-in
    assert_within_mcse(draws[..., 0], ref["u"], num_tests=NUM_TESTS, name=f"{kind} q={q} <u>")
    assert_within_mcse(
        draws[..., 1], ref["agree"], num_tests=NUM_TESTS, name=f"{kind} q={q} P(s_i=s_j)"
    )


@pytest.mark.parametrize("q", [3, 4])
def test_block_gibbs_matches_enumeration(q):
    _check(_run("gibbs", q, 600, 1), q, "gibbs")


@pytest.mark.parametrize("q", [3, pytest.param(4, marks=pytest.mark.slow)])
def test_gwg_matches_enumeration(q):
    _check(_run("gwg", q, 4800, 8), q, "gwg")


@pytest.mark.parametrize("q", [3, pytest.param(4, marks=pytest.mark.slow)])
def test_dmala_matches_enumeration(q):
    _check(_run("dmala", q, 2400 if q == 3 else 6000, 4), q, "dmala")


@pytest.mark.slow
def test_dula_is_biased_at_a_finite_step():
    # DULA never rejects: at alpha = 1 its stationary <u> is far from the truth (the reason
    # DMALA exists); the bias is many Monte Carlo standard errors, and it is an upward one
    # (the chain is too hot: moves the Metropolis step would refuse are taken).
    draws = _run("dula", 3, 1200, 4)[:, 30:, 0]
    ref = exact_potts(3)["u"]
    mcse = draws.std() / np.sqrt(draws.size / 10.0)  # a generous correlation time of 10
    assert draws.mean() - ref > 20 * mcse


# ----------------------------------------------------------------------------- sample / resolve
def test_sample_and_resolve_move_categorical_sites():
    plan = ebm.EnergyModel(potts_model, 3).plan
    assert auto_kernel_name(plan, purpose="sample") == "gibbs"
    for name in ("gibbs", "gwg", "dula", "dmala"):
        assert resolve_kernel(name, plan=plan).name == name
    idata = ebm.sample(
        potts_model,
        kernel="auto",
        model_args=(3,),
        num_chains=2,
        num_warmup=20,
        num_samples=30,
        rng_key=jax.random.PRNGKey(0),
    )
    c = idata.posterior["c"].values
    assert c.shape == (2, 30, L, L) and c.dtype == np.int32 and set(np.unique(c)) <= {0, 1, 2}


def learnable_potts():
    scale = numpyro.param("scale", 1.0)
    ebm.energy("E", scale * potts_energy(numpyro.sample("c", ebm.Categorical((L, L), 3)), 3))


def test_continuous_kernels_refuse_categorical_sites():
    plan = ebm.EnergyModel(potts_model, 3).plan
    for name in ("mala", "ula"):
        with pytest.raises(
            ValueError, match=r"cannot move site 'c' \(categorical\).*'dmala'.*'gibbs'"
        ):
            resolve_kernel(name, plan=plan)
    for name in ("nuts", "mala"):
        with pytest.raises(
            ValueError, match=r"cannot move site 'c'.*'dmala', 'dula', 'gibbs', 'gwg'"
        ):
            ebm.sample(potts_model, kernel=name, model_args=(3,), num_samples=2, num_warmup=0)
    # a continuous-only objective or kernel inside an objective: named, with what can move it
    em = ebm.EnergyModel(potts_model, 3)
    with pytest.raises(ValueError, match=r"'mala' cannot move site 'c' \(categorical\).*'gibbs'"):
        ebm.objectives.PersistentContrastiveDivergence("mala").build(em)
    with pytest.raises(ValueError, match=r"site 'c' is discrete.*contrastive objective"):
        ebm.fit(
            learnable_potts,
            np.zeros((4, L, L), np.int32),
            data_site="c",
            objective=ebm.objectives.ScoreMatching(),
            optimizer=optax.sgd(0.1),
            num_steps=1,
            batch_size=2,
            rng_key=jax.random.PRNGKey(0),
            progress=False,
        )
    with pytest.raises(ValueError, match=r"init_values\['c'\]|values\['c'\]"):
        ebm.sample(
            potts_model,
            kernel="gibbs",
            model_args=(3,),
            init_values={"c": np.full((1, L, L), 5)},
            num_chains=1,
            num_samples=2,
            num_warmup=0,
        )


def test_one_hot_with_the_wrong_number_of_states_is_refused():
    def wrong_jax(q_wrong):
        c = numpyro.sample("c", ebm.Categorical(4, 3))
        o = jax.nn.one_hot(c, q_wrong)
        ebm.energy("E", -jnp.sum(o[1:] * o[:-1]))

    def wrong_ebm():
        c = numpyro.sample("c", ebm.Categorical(4, 3))
        o = ebm.one_hot(c, 4)
        ebm.energy("E", -jnp.sum(o[1:] * o[:-1]))

    for model, args in ((wrong_jax, (2,)), (wrong_jax, (5,)), (wrong_ebm, ())):
        with pytest.raises(OneHotError, match="site 'c' with num_states=.*the site has 3 states"):
            _ = ebm.EnergyModel(model, *args).categorical_affine_sites
        with pytest.raises(OneHotError, match="site 'c'"):
            BlockGibbs(model).init(jax.random.PRNGKey(0), 0, None, args, {})


# ----------------------------------------------------------------------------- numpyro.infer.Gibbs
MU = np.array([-1.0, 0.5, 2.0])
H = np.array([0.2, -0.3, 0.4])


def mixed_model():
    c = numpyro.sample("c", ebm.Categorical(2, 3))
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy(
        "E",
        jnp.sum(0.5 * (x - jnp.asarray(MU, jnp.float32)[c]) ** 2 + jnp.asarray(H, jnp.float32)[c]),
    )


@pytest.mark.slow
def test_categorical_block_inside_numpyro_gibbs():
    # exact: P(c_i = k) ∝ exp(-H_k) (the Gaussian integrates to a constant), E[x_i] = P @ MU
    p = np.exp(-H) / np.exp(-H).sum()
    kernel = Gibbs([(MALA(mixed_model, step_size=0.8), ["x"]), (BlockGibbs(mixed_model), ["c"])])
    mcmc = MCMC(
        kernel,
        num_warmup=200,
        num_samples=1500,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(3))
    s = mcmc.get_samples(group_by_chain=True)
    assert s["c"].dtype == jnp.int32
    c0 = np.asarray(s["c"])[..., 0]
    assert_within_mcse((c0 == 2).astype(float), p[2], num_tests=NUM_TESTS, name="P(c=2)")
    assert_within_mcse(np.asarray(s["x"])[..., 1], p @ MU, num_tests=NUM_TESTS, name="E[x]")


def test_dmala_adapter_adapts_its_step_size():
    kernel = DMALA(potts_model, step_size=5.0)
    mcmc = MCMC(kernel, num_warmup=150, num_samples=50, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), 3, extra_fields=("info.acceptance_rate",))
    acc = float(np.mean(mcmc.get_extra_fields()["info.acceptance_rate"]))
    step = float(mcmc.last_state.adapt_state.step_size)
    assert step < 5.0 and 0.3 < acc < 0.85
