"""Grid-quadrature log Z against closed forms (tests/references.py), and the 2-D toy sets' densities."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

import ebm_ppl as ebm
from ebm_ppl.data import TOY_SETS, toy_data, toy_log_density
from ebm_ppl.partition.quadrature import grid_log_density
from tests import references as refs


def test_ring_closed_form():
    r, s = 2.0, 0.3

    def ring():
        x = numpyro.sample("x", ebm.Flat(2))
        ebm.energy("E", (jnp.linalg.norm(x) - r) ** 2 / (2 * s**2))

    est = ebm.log_partition(ring, method="quadrature", bounds=(-4, 4), num_points=161)
    assert est.method == "quadrature" and est.info["converged"]
    assert abs(est.log_z - refs.ring_log_z(r, s)) < 1e-4
    assert est.info["face_mass"] < 1e-12


@pytest.mark.parametrize("a, z", [(1.0, refs.DOUBLE_WELL_Z_A1), (2.0, refs.DOUBLE_WELL_Z_A2)])
def test_double_well_closed_form(a, z):
    def well():
        x = numpyro.sample("x", ebm.Flat(()))
        ebm.energy("E", a * (x**2 - 1.0) ** 2)

    est = ebm.log_partition(well, method="quadrature")
    assert abs(est.log_z - math.log(z)) < 1e-5


def test_gaussian_3d_and_params():
    prec = jnp.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.8]])

    def gauss():
        p = numpyro.param("prec", jnp.eye(3))
        x = numpyro.sample("x", ebm.Flat(3))
        ebm.energy("E", 0.5 * x @ p @ x)

    est = ebm.log_partition(gauss, {"prec": prec}, method="quadrature", num_points=41)
    exact = 1.5 * math.log(2 * math.pi) - 0.5 * math.log(float(jnp.linalg.det(prec)))
    assert abs(est.log_z - exact) < 1e-4


def test_constrained_site_integrates_on_unconstrained_space():
    def expo():
        x = numpyro.sample("x", ebm.Flat((), support=numpyro.distributions.constraints.positive))
        ebm.energy("E", 2.0 * x)

    est = ebm.log_partition(expo, method="quadrature", bounds=(-12, 4), num_points=1601)
    assert abs(est.log_z - math.log(0.5)) < 1e-4


def test_improper_density_warns():
    def flat():
        x = numpyro.sample("x", ebm.Flat(1))
        ebm.energy("E", 0.0 * jnp.sum(x))

    with pytest.warns(RuntimeWarning, match="did not settle"):
        est = ebm.log_partition(flat, method="quadrature", num_points=11, max_enlargements=2)
    assert not est.info["converged"]


def test_bad_inputs():
    def four():
        x = numpyro.sample("x", ebm.Flat(4))
        ebm.energy("E", jnp.sum(x**2))

    def bits():
        x = numpyro.sample("x", ebm.Bits(2))
        ebm.energy("E", jnp.sum(x))

    with pytest.raises(ValueError, match="1 to 3 state dimensions"):
        ebm.log_partition(four, method="quadrature")
    with pytest.raises(ValueError, match="discrete"):
        ebm.log_partition(bits, method="quadrature")
    with pytest.raises(ValueError, match="bounds must be finite"):
        ebm.log_partition(_ring1, method="quadrature", bounds=(1, -1))
    with pytest.raises(ValueError, match="num_points"):
        ebm.log_partition(_ring1, method="quadrature", num_points=2)


def _ring1():
    x = numpyro.sample("x", ebm.Flat(1))
    ebm.energy("E", jnp.sum(x**2))


def test_grid_log_density_normalized():
    est = ebm.log_partition(_ring1, method="quadrature")
    g = np.linspace(-8, 8, 2001)[:, None]
    lp = np.asarray(grid_log_density(_ring1, {}, g, log_z=est.log_z))
    assert abs(np.exp(lp).sum() * (g[1, 0] - g[0, 0]) - 1.0) < 1e-5


@pytest.fixture(scope="module")
def grid():
    # cell midpoints of a grid whose lines include the integers: the checkerboard's edges fall
    # between points, so its mass is exact too
    g = np.linspace(-5, 5, 161)[:-1] + 1 / 32
    return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2), (g[1] - g[0]) ** 2


# the curve sets integrate over the curve at every point: slower
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in ("swissroll", "2spirals") else n
        for n in TOY_SETS
    ],
)
def test_toy_density_matches_sampler(name, grid):
    pts, area = grid
    lp = toy_log_density(name, pts)
    p = np.exp(lp)
    assert abs(p.sum() * area - 1.0) < 1e-3
    # the sampler draws from that density: the mean log density of draws is minus the entropy,
    # within 4 standard errors
    x = toy_data(name, jax.random.PRNGKey(0), 4000)
    lx = toy_log_density(name, x)
    assert np.all(np.isfinite(lx))
    entropy = -np.sum(p[p > 0] * lp[p > 0]) * area
    se = lx.std() / np.sqrt(len(lx))
    tol = 4 * se + 5e-3
    assert abs(-lx.mean() - entropy) < tol


def test_toy_bad_name():
    with pytest.raises(ValueError, match="name must be one of"):
        toy_data("moons", jax.random.PRNGKey(0), 10)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        toy_data("8gaussians", jax.random.PRNGKey(0), 0)
