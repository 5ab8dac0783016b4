"""``ebm.save``/``ebm.load``: parameters, module parameters and fit results, bit for bit."""

from __future__ import annotations

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest
from ebm_ppl.models import rbm
from numpyro.contrib.module import eqx_module

import ebm_ppl as ebm
from ebm_ppl.cli.common import UsageError, read_params, write_params
from ebm_ppl.objectives import PersistentContrastiveDivergence
from ebm_ppl.objectives.contrastive import PCDState
from ebm_ppl.train.checkpoint import load_params, save_checkpoint


def _equal_trees(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()  # bit for bit (NaN payloads and -0.0 included)


def mlp_energy(width=8):
    net = eqx_module("net", eqx.nn.MLP(2, 1, width, 1, key=jax.random.PRNGKey(0)))
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", net(x)[0] + 0.5 * jnp.sum(x**2))


@pytest.fixture(scope="module")
def rbm_fit():
    """A short PCD fit of a small RBM on binarized digits (8x8 pixels, 3 hidden units)."""
    train, _ = ebm.data.binarized_digits()
    data = train[:200]
    init = rbm.init_params(jax.random.PRNGKey(0), data, num_hidden=3)
    objective = PersistentContrastiveDivergence("gibbs", num_chains=16, diagnostics_window=4)
    return ebm.fit(
        rbm.model, data, model_args=(64, 3), data_site="v", init_params=init,
        objective=objective, optimizer=optax.sgd(0.05), num_steps=10, batch_size=20,
        rng_key=jax.random.PRNGKey(1), log_every=5, progress=False,
    )  # fmt: skip


def test_rbm_params_round_trip(tmp_path):
    params = ebm.EnergyModel(rbm.model, 64, 3).init_params(jax.random.PRNGKey(3))
    params = {**params, "W": params["W"].at[0, 0].set(-0.0)}
    path = ebm.save(tmp_path / "rbm.ebmparams", params, model=rbm.model, model_args=(64, 3))
    _equal_trees(ebm.load(path, model=rbm.model, model_args=(64, 3)), params)
    _equal_trees(ebm.load(path), params)  # dicts need no model
    # the same file as the CLI's params files, both ways
    _equal_trees(load_params(path), params)
    em = ebm.EnergyModel(rbm.model, 64, 3)
    _equal_trees(read_params(path, rbm.model, {"num_visible": 64, "num_hidden": 3}, flag="-p"),
                 params)  # fmt: skip
    cli = write_params(tmp_path / "cli.ebmparams", params)
    _equal_trees(ebm.load(cli, model=em), params)


def test_equinox_energy_round_trips(tmp_path):
    params = ebm.EnergyModel(mlp_energy).init_params(jax.random.PRNGKey(5))
    path = ebm.save(tmp_path / "mlp.ebmparams", params, model=mlp_energy)
    loaded = ebm.load(path, model=mlp_energy)
    assert isinstance(loaded["net$params"], eqx.nn.MLP)
    _equal_trees(loaded, params)
    # without the model, a module cannot be rebuilt: the message says what to pass
    with pytest.raises(ValueError, match="MLP.*pass model="):
        ebm.load(path)
    _equal_trees(ebm.load(path, template=params), params)


def test_fit_result_round_trips(tmp_path, rbm_fit):
    path = ebm.save(tmp_path / "fit.ebmfit", rbm_fit)
    loaded = ebm.load(path, model=rbm.model, model_args=(64, 3))
    assert isinstance(loaded, ebm.FitResult)
    _equal_trees(loaded.params, rbm_fit.params)
    assert isinstance(loaded.obj_state, PCDState)
    _equal_trees(loaded.obj_state, rbm_fit.obj_state)
    assert list(loaded.history) == list(rbm_fit.history)
    for name in rbm_fit.history:
        assert loaded.history[name].tobytes() == rbm_fit.history[name].tobytes()
    assert loaded.history.events == rbm_fit.history.events
    assert loaded.flags == json.loads(json.dumps(rbm_fit.flags))
    assert loaded.flags["model_fingerprint"] == ebm.train.saving.model_fingerprint(
        rbm.model, (64, 3)
    )
    # the loaded parameters are usable at once
    ll = ebm.log_likelihood(rbm.model, loaded.params, {"v": ebm.data.binarized_digits()[1][:5]},
                            model_args=(64, 3))  # fmt: skip
    assert np.isfinite(float(ll.mean))


def test_loading_with_another_model_is_refused(tmp_path, rbm_fit):
    path = ebm.save(tmp_path / "fit.ebmfit", rbm_fit)
    with pytest.raises(ValueError, match="saved for another model"):
        ebm.load(path, model=rbm.model, model_args=(64, 4))
    with pytest.raises(ValueError, match="saved for another model"):
        ebm.load(path, model=mlp_energy)
    with pytest.raises(ValueError, match="trained on another model"):
        ebm.save(tmp_path / "x.ebmfit", rbm_fit, model=mlp_energy)
    # a params file saved without a model is still checked against the model's parameters
    plain = ebm.save(tmp_path / "plain.ebmparams", rbm_fit.params)
    with pytest.raises(ValueError, match=r"params\['W'\] has shape \(64, 3\), expected \(64, 4\)"):
        ebm.load(plain, model=rbm.model, model_args=(64, 4))


def test_bad_files_are_refused(tmp_path, rbm_fit):
    good = ebm.save(tmp_path / "p.ebmparams", rbm_fit.params)
    raw = good.read_bytes()
    cases = {
        "missing.ebmparams": None,
        "empty.ebmparams": b"",
        "truncated.ebmparams": raw[:-20],
        "flipped.ebmparams": raw[:200] + bytes([raw[200] ^ 1]) + raw[201:],
        "model.npz": b"PK\x03\x04 not really a zip",
        "params.json": b'{"W": [[1.0]]}',
    }
    messages = {
        "missing.ebmparams": "does not exist",
        "empty.ebmparams": "empty",
        "truncated.ebmparams": "truncated",
        "flipped.ebmparams": "checksum mismatch",
        "model.npz": "not an ebm_ppl",
        "params.json": "not an ebm_ppl",
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=messages[name]) as err:
            ebm.load(tmp_path / name)
        assert name in str(err.value)
    # a checkpoint file is not a saved model
    ckpt = save_checkpoint(tmp_path / "run", {"params": rbm_fit.params}, {"step": 1})
    with pytest.raises(ValueError, match="holds a checkpoint, not parameters"):
        ebm.load(ckpt)
    with pytest.raises(ValueError, match="is not a file"):
        ebm.load(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        ebm.save(tmp_path / "no" / "dir.ebmparams", rbm_fit.params)
    with pytest.raises(UsageError):  # the CLI refuses a damaged file in one line too
        read_params(tmp_path / "flipped.ebmparams", rbm.model, {"num_visible": 64,
                    "num_hidden": 3}, flag="--params")  # fmt: skip
