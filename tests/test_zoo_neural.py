"""models.neural: spectral normalization and the convolutional energy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ebm_ppl.models import neural

import ebm_ppl as ebm


def test_spectral_normalize_gives_unit_spectral_norm():
    w = jax.random.normal(jax.random.PRNGKey(0), (5, 7)) * 3.0
    assert float(jnp.linalg.norm(neural.spectral_normalize(w), 2)) == pytest.approx(1.0, 1e-5)
    k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 2, 4))
    m = neural.spectral_normalize(k).reshape(-1, 4)
    assert float(jnp.linalg.norm(m, 2)) == pytest.approx(1.0, 1e-5)


def test_spectral_norm_makes_the_mlp_energy_1_lipschitz():
    em_sn = ebm.EnergyModel(neural.mlp_energy, 3, (16, 16), activation="tanh", spectral_norm=True)
    em = ebm.EnergyModel(neural.mlp_energy, 3, (16, 16), activation="tanh")
    # large weights: without normalization the energy is steep
    params = jax.tree.map(lambda a: 5.0 * a, em.init_params(jax.random.PRNGKey(0)))
    params = {k: v + 0.3 if k.startswith("b") else v for k, v in params.items()}
    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(kx, (200, 3))
    y = x + 0.1 * jax.random.normal(ky, (200, 3))
    dist = np.linalg.norm(np.asarray(x - y), axis=1)

    def ratio(model):
        ex = model.batch_energy(params, {"x": x})
        ey = model.batch_energy(params, {"x": y})
        return np.abs(np.asarray(ex - ey)) / dist

    assert ratio(em_sn).max() <= 1.0 + 1e-5
    assert ratio(em).max() > 1.0


def test_conv_energy_with_1x1_kernels_by_hand():
    em = ebm.EnergyModel(neural.conv_energy, (4, 4), (1,), kernel_size=1, activation="tanh")
    p = {
        "K0": jnp.full((1, 1, 1, 1), 2.0),
        "c0": jnp.array([0.5]),
        "w": jnp.array([[1.5]]),
        "b": jnp.array([-1.0]),
    }
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 4))
    want = 1.5 * jnp.sum(jnp.tanh(2.0 * x[::2, ::2] + 0.5)) - 1.0
    assert float(em.energy(p, {"x": x})) == pytest.approx(float(want), rel=1e-5)
    g = em.score(p, {"x": x})["x"]
    assert g.shape == (4, 4) and bool(jnp.all(g[1::2, :] == 0.0))  # odd rows are skipped


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"shape": (8,)}, "shape must be"),
        ({"channels": ()}, "channels must be"),
        ({"kernel_size": 0}, "kernel_size must be"),
        ({"activation": "relu6"}, "activation must be"),
    ],
)
def test_conv_energy_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ebm.EnergyModel(neural.conv_energy, **kwargs)


def test_eqx_mlp_energy_is_the_module():
    import equinox as eqx

    em = ebm.EnergyModel(neural.eqx_mlp_energy, 3, 8, 2, activation="tanh", quadratic=0.5)
    p = em.init_params(jax.random.PRNGKey(0))
    net = eqx.nn.MLP(3, "scalar", 8, 2, activation=jnp.tanh, key=jax.random.PRNGKey(0))
    x = jnp.array([0.3, -1.0, 2.0])
    want = eqx.combine(p["net$params"], eqx.partition(net, eqx.is_inexact_array)[1])(x)
    assert float(em.energy(p, {"x": x})) == pytest.approx(float(want) + 0.5 * 5.09, rel=1e-5)
    with pytest.raises(ValueError, match="depth must be"):
        ebm.EnergyModel(neural.eqx_mlp_energy, 3, 8, -1)
