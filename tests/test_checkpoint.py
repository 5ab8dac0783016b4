"""Checkpoint files: format, verification, retention, parameter files, and fit's use of them."""

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest

import ebm_ppl as ebm
from ebm_ppl.objectives import stateless
from ebm_ppl.train import checkpoint as ckpt_module
from ebm_ppl.train.checkpoint import (
    CheckpointWarning,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_params,
    prepare_directory,
    read_checkpoint,
    remove_temporaries,
    save_checkpoint,
    save_params,
)


def _params(step):
    return {"mu": jnp.full(2, float(step)), "log_prec": jnp.arange(3.0) * step}


def _write_run(directory, steps=(10, 20, 30)):
    for step in steps:
        save_checkpoint(directory, {"params": _params(step)}, {"step": step}, keep=None)
    return {step: directory / f"ckpt-{step:08d}.ebmckpt" for step in steps}


TEMPLATE = {"params": _params(0)}


# ---------------------------------------------------------------------------------- format
def test_roundtrip_is_exact_for_every_leaf_kind(tmp_path):
    typed_key = jax.random.key(4)
    tree = {
        "w": jnp.arange(6.0).reshape(2, 3),
        "scalar": jnp.float32(2.5),
        "count": jnp.int32(7),
        "mask": jnp.array([True, False]),
        "half": jnp.ones(3, jnp.bfloat16) / 3,
        "empty": jnp.zeros((0, 4)),
        "typed_key": typed_key,
        "raw_key": jax.random.PRNGKey(5),
        "nested": ({"a": jnp.array([1.5, -np.inf])},),
    }
    history = np.linspace(0, 1, 5, dtype=np.float32)
    path = save_checkpoint(tmp_path, {"t": tree}, {"step": 12, "note": "x"}, {"loss": history})
    assert path.name == "ckpt-00000012.ebmckpt"
    ckpt = read_checkpoint(path)
    assert ckpt.step == 12 and ckpt.metadata == {"step": 12, "note": "x"}
    np.testing.assert_array_equal(ckpt.extra_arrays["loss"], history)
    restored = ckpt.restore({"t": tree})["t"]
    for (p, got), want in zip(
        jax.tree_util.tree_flatten_with_path(restored)[0], jax.tree.leaves(tree), strict=True
    ):
        if jnp.issubdtype(want.dtype, jax.dtypes.prng_key):
            assert jnp.issubdtype(got.dtype, jax.dtypes.prng_key)
            got, want = jax.random.key_data(got), jax.random.key_data(want)
        assert got.dtype == want.dtype and got.shape == want.shape, p
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=str(p))


def test_file_is_one_self_describing_container_with_a_checksum(tmp_path):
    path = save_checkpoint(tmp_path, {"params": _params(3)}, {"step": 3})
    raw = path.read_bytes()
    assert raw[:8] == b"\x89EBMPPL\n" and raw[-8:] == b"\nEBMEND\n"
    (length,) = struct.unpack("<Q", raw[8:16])
    header = json.loads(raw[16 : 16 + length])
    assert header["kind"] == "checkpoint" and header["metadata"]["step"] == 3
    leaves = header["trees"]["params"]["leaves"]
    assert [leaf["path"] for leaf in leaves] == [[["key", "log_prec"]], [["key", "mu"]]]
    assert {a["name"]: (a["dtype"], a["shape"]) for a in header["arrays"]} == {
        "params/0": ("float32", [3]),
        "params/1": ("float32", [2]),
    }
    assert hashlib.sha256(raw[:-40]).digest() == raw[-40:-8]
    assert os.listdir(tmp_path) == [path.name]  # no temporary left behind


def test_the_module_never_unpickles():
    source = Path(ckpt_module.__file__).read_text()
    assert "import pickle" not in source and "allow_pickle=True" not in source


def test_write_protocol_fsyncs_file_renames_then_fsyncs_folder(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"))
        return real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", Path(src).name, Path(dst).name))
        assert Path(src).parent == Path(dst).parent  # a rename within one folder
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_checkpoint(tmp_path, {"params": _params(1)}, {"step": 1})
    assert calls == [
        ("fsync", "file"),
        ("replace", f"ckpt-00000001.ebmckpt.tmp.{os.getpid()}", "ckpt-00000001.ebmckpt"),
        ("fsync", "dir"),
    ]


# ---------------------------------------------------------------------------------- verification
def _truncate(path, older):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _truncate_header(path, older):
    path.write_bytes(path.read_bytes()[:20])


def _flip_payload(path, older):
    raw = bytearray(path.read_bytes())
    raw[-60] ^= 0x01  # one bit of the last array
    path.write_bytes(bytes(raw))


def _flip_header(path, older):
    raw = bytearray(path.read_bytes())
    i = raw.index(b'"step":30')
    raw[i + 7 : i + 9] = b"40"  # an edited step, same size
    path.write_bytes(bytes(raw))


def _zero_length(path, older):
    path.write_bytes(b"")


def _rewound(path, older):
    shutil.copyfile(older, path)  # an older checkpoint put back under the newer name


def _spliced(path, older):
    # The newer header with the older arrays: sizes agree, only the checksum can tell.
    new, old = path.read_bytes(), older.read_bytes()
    (length,) = struct.unpack("<Q", new[8:16])
    start = 16 + length + (-(16 + length) % 64)
    path.write_bytes(new[:start] + old[start:-40] + new[-40:])


def _appended(path, older):
    path.write_bytes(path.read_bytes() + b"\0" * 16)


CORRUPTIONS = {
    "truncated": (_truncate, "truncated"),
    "truncated_header": (_truncate_header, "truncated"),
    "byte_flipped": (_flip_payload, "checksum mismatch"),
    "edited_header": (_flip_header, "checksum mismatch"),
    "zero_length": (_zero_length, "empty"),
    "rewound": (_rewound, "records step 20 but is named for step 30"),
    "spliced": (_spliced, "checksum mismatch"),
    "appended": (_appended, "no end marker"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_broken_newest_is_reported_kept_and_the_previous_used(tmp_path, kind):
    corrupt, reason = CORRUPTIONS[kind]
    files = _write_run(tmp_path)
    corrupt(files[30], files[20])
    broken = files[30].read_bytes()
    with pytest.warns(CheckpointWarning, match=rf"ckpt-00000030\.ebmckpt: .*{reason}"):
        ckpt = latest_checkpoint(tmp_path, require_finite=("params",))
    assert ckpt.step == 20 and ckpt.path == files[20]
    restored = ckpt.restore(TEMPLATE)["params"]
    np.testing.assert_array_equal(restored["mu"], _params(20)["mu"])
    assert files[30].read_bytes() == broken  # reported, never deleted or rewritten
    with pytest.raises(ValueError, match=r"checkpoint '.*ckpt-00000030\.ebmckpt' failed .*"):
        read_checkpoint(files[30])


def test_two_broken_files_fall_back_to_the_third(tmp_path):
    files = _write_run(tmp_path)
    _zero_length(files[30], None)
    _flip_payload(files[20], None)
    with pytest.warns(CheckpointWarning) as caught:
        ckpt = latest_checkpoint(tmp_path)
    (message,) = [str(w.message) for w in caught]
    assert "ckpt-00000030.ebmckpt" in message and "ckpt-00000020.ebmckpt" in message
    assert "resuming from ckpt-00000010.ebmckpt" in message and ckpt.step == 10


def test_nan_parameters_are_refused(tmp_path):
    save_checkpoint(tmp_path, {"params": _params(10)}, {"step": 10})
    bad = {"mu": jnp.array([1.0, jnp.nan]), "log_prec": jnp.zeros(3)}
    save_checkpoint(tmp_path, {"params": bad}, {"step": 20})
    with pytest.warns(CheckpointWarning, match=r"ckpt-00000020.*params\['mu'\] holds NaN"):
        assert latest_checkpoint(tmp_path, require_finite=("params",)).step == 10
    os.remove(tmp_path / "ckpt-00000010.ebmckpt")
    with pytest.raises(ValueError, match="none verifies"):
        latest_checkpoint(tmp_path, require_finite=("params",))


def test_a_folder_of_only_broken_checkpoints_is_refused_untouched(tmp_path):
    files = _write_run(tmp_path, steps=(10, 20))
    _zero_length(files[20], None)
    _truncate(files[10], None)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValueError) as err:
        latest_checkpoint(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "none verifies" in message
    assert "ckpt-00000020.ebmckpt: the file is empty" in message
    assert "ckpt-00000010.ebmckpt: truncated" in message and "another checkpoint_dir" in message
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_checkpoint_of_the_older_format_is_refused(tmp_path):
    np.savez(tmp_path / "checkpoint.npz", w=np.zeros(2))  # no checkpoint.json beside it
    with pytest.raises(ValueError, match="checkpoint.npz, a checkpoint of an older ebm_ppl"):
        latest_checkpoint(tmp_path)


def test_no_checkpoint_gives_none_and_temporaries_are_ignored(tmp_path):
    assert latest_checkpoint(tmp_path) is None and latest_checkpoint(tmp_path / "no") is None
    (tmp_path / "ckpt-00000010.ebmckpt.tmp.999").write_bytes(b"\x89EBMPPL\npartial")
    assert latest_checkpoint(tmp_path) is None
    assert remove_temporaries(tmp_path) == ["ckpt-00000010.ebmckpt.tmp.999"]
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------- retention
def test_newest_three_kept_broken_ones_never_deleted(tmp_path):
    for step in range(1, 7):
        save_checkpoint(tmp_path, {"params": _params(step)}, {"step": step})
    assert [p.name[5:13] for p in list_checkpoints(tmp_path)] == [
        "00000006",
        "00000005",
        "00000004",
    ]
    broken = tmp_path / "ckpt-00000005.ebmckpt"
    _flip_payload(broken, None)
    for step in (7, 8):
        with pytest.warns(CheckpointWarning, match="ckpt-00000005.ebmckpt.*left in place"):
            save_checkpoint(tmp_path, {"params": _params(step)}, {"step": step})
    # Three good ones (8, 7, 6) and the broken one, which is not counted and not deleted.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt-00000005.ebmckpt",
        "ckpt-00000006.ebmckpt",
        "ckpt-00000007.ebmckpt",
        "ckpt-00000008.ebmckpt",
    ]
    # A broken file at the name of a new checkpoint is moved aside, not overwritten.
    target = tmp_path / "ckpt-00000009.ebmckpt"
    target.write_bytes(b"junk")
    with pytest.warns(CheckpointWarning, match="moved it aside to ckpt-00000009.ebmckpt.corrupt"):
        save_checkpoint(tmp_path, {"params": _params(9)}, {"step": 9}, keep=None)
    assert (tmp_path / "ckpt-00000009.ebmckpt.corrupt").read_bytes() == b"junk"
    assert read_checkpoint(target).step == 9


# ---------------------------------------------------------------------------------- module params
def mlp_model(width=8):
    import equinox as eqx
    from numpyro.contrib.module import eqx_module

    net = eqx_module("net", eqx.nn.MLP(2, 1, width, 1, key=jax.random.PRNGKey(0)))
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", net(x)[0] + 0.5 * jnp.sum(x**2))


def test_equinox_module_parameters_round_trip_through_templates(tmp_path):
    import equinox as eqx

    params = ebm.EnergyModel(mlp_model).init_params(jax.random.PRNGKey(1))
    opt_state = optax.adam(1e-2).init(params)
    save_checkpoint(tmp_path, {"params": params, "opt_state": opt_state}, {"step": 5})
    template = ebm.EnergyModel(mlp_model).init_params(jax.random.PRNGKey(2))  # other values
    trees = latest_checkpoint(tmp_path).restore(
        {"params": template, "opt_state": optax.adam(1e-2).init(template)}
    )
    assert isinstance(trees["params"]["net$params"], eqx.nn.MLP)
    assert jax.tree.structure(trees["opt_state"]) == jax.tree.structure(opt_state)
    for got, want in zip(
        jax.tree.leaves((trees["params"], trees["opt_state"])),
        jax.tree.leaves((params, opt_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)
    # Another architecture is refused with the leaf that differs.
    other = ebm.EnergyModel(mlp_model, width=4).init_params(jax.random.PRNGKey(1))
    with pytest.raises(ValueError, match=r"params\['net\$params'\]\.layers\[0\]\.weight has shape"):
        latest_checkpoint(tmp_path).restore({"params": other})

    path = save_params(tmp_path / "net.ebmparams", params, fingerprint="abc")
    loaded = load_params(path, template, fingerprint="abc")
    assert isinstance(loaded["net$params"], eqx.nn.MLP)
    for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"not a dict of arrays .*pass template="):
        load_params(path)
    with pytest.raises(ValueError, match="written for another model"):
        load_params(path, template, fingerprint="abd")


def test_params_files_round_trip_dicts_and_refuse_what_is_not_theirs(tmp_path):
    params = {"W": jnp.arange(6.0).reshape(2, 3), "b": {"h": jnp.zeros(3), "v": jnp.ones(2)}}
    path = save_params(tmp_path / "p.ebmparams", params)
    loaded = load_params(path)
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(got, want)
    np.savez(tmp_path / "p.npz", W=np.eye(2))
    np.testing.assert_array_equal(load_params(tmp_path / "p.npz")["W"], np.eye(2))
    with pytest.raises(ValueError, match=r"p\.npz' has keys \['W'\]; expected \['V'\]"):
        load_params(tmp_path / "p.npz", {"V": np.eye(2)})
    ckpt = save_checkpoint(tmp_path / "run", {"params": params}, {"step": 1})
    with pytest.raises(ValueError, match="holds a checkpoint, not parameters"):
        load_params(ckpt)
    _flip_payload(path, None)
    with pytest.raises(ValueError, match=r"params file '.*p\.ebmparams' failed .*checksum"):
        load_params(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_params(tmp_path / "missing.ebmparams")


# ---------------------------------------------------------------------------------- the folder
def test_prepare_directory_names_the_argument_and_the_path(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint_dir '.*file' is a file, not a folder"):
        prepare_directory(tmp_path / "file")
    with pytest.raises(ValueError, match=r"'.*file/a/b' cannot be created: '.*file' is a file"):
        prepare_directory(tmp_path / "file" / "a" / "b")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match=r"checkpoint_dir '.*locked' is not writable"):
            prepare_directory(locked)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ckpt_module, "open", refuse, raising=False)
    with pytest.raises(ValueError, match=r"'.*ro' is not writable: Permission denied"):
        prepare_directory(tmp_path / "ro")


# ---------------------------------------------------------------------------------- fit
def gaussian_mean():
    mu = numpyro.param("mu", jnp.zeros(2))
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum((x - mu) ** 2))


def _mean_nll(params, batch, rng_key):
    del rng_key
    value = jnp.mean(0.5 * jnp.sum((batch["x"] - params["mu"]) ** 2, axis=-1))
    return value, {"mu0": params["mu"][0]}


MEAN_NLL = stateless(_mean_nll)
DATA = (np.random.default_rng(1).normal(size=(40, 2)) + np.array([2.0, -1.0])).astype(np.float32)


def _fit(num_steps, checkpoint_dir=None, objective=MEAN_NLL, **kwargs):
    return ebm.fit(
        gaussian_mean,
        DATA,
        objective=objective,
        optimizer=optax.adam(0.1),
        num_steps=num_steps,
        batch_size=10,
        rng_key=0,
        log_every=10,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=10,
        progress=False,
        **kwargs,
    )


def _no_jit(monkeypatch):
    def no_jit(*args, **kwargs):
        raise AssertionError("compiled before checking checkpoint_dir")

    monkeypatch.setattr(jax, "jit", no_jit)


@pytest.mark.parametrize("case", ["file", "under_file", "not_writable"])
def test_fit_checks_checkpoint_dir_before_compiling(tmp_path, monkeypatch, case):
    (tmp_path / "file").write_text("x")
    where, message = {
        "file": (tmp_path / "file", "is a file, not a folder"),
        "under_file": (tmp_path / "file" / "run", "cannot be created"),
        "not_writable": (tmp_path / "run", "is not writable"),
    }[case]
    if case == "not_writable":  # injected: as root every folder is writable
        monkeypatch.setattr(ckpt_module, "open", _refuse_open, raising=False)
    _no_jit(monkeypatch)
    with pytest.raises(ValueError, match=rf"checkpoint_dir '{where}' {message}"):
        _fit(20, where)


def _refuse_open(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


def test_fit_refuses_a_folder_of_broken_checkpoints_before_compiling(tmp_path, monkeypatch):
    (tmp_path / "ckpt-00000010.ebmckpt").write_bytes(b"")
    _no_jit(monkeypatch)
    with pytest.raises(ValueError, match=r"ckpt-00000010.ebmckpt: the file is empty"):
        _fit(20, tmp_path)
    assert (tmp_path / "ckpt-00000010.ebmckpt").read_bytes() == b""  # not overwritten


def test_fit_resumes_from_the_newest_good_checkpoint_bit_for_bit(tmp_path):
    straight = _fit(40)
    run = tmp_path / "run"
    first = _fit(30, run)
    assert [p.name for p in list_checkpoints(run)] == [
        "ckpt-00000030.ebmckpt",
        "ckpt-00000020.ebmckpt",
        "ckpt-00000010.ebmckpt",
    ]
    np.testing.assert_array_equal(first.history["loss"], straight.history["loss"][:30])
    _truncate(run / "ckpt-00000030.ebmckpt", None)
    _flip_payload(run / "ckpt-00000020.ebmckpt", None)
    with pytest.warns(CheckpointWarning) as caught:
        resumed = _fit(40, run)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3, messages
    assert "ckpt-00000030.ebmckpt: truncated" in messages[0]
    assert "ckpt-00000020.ebmckpt: checksum mismatch" in messages[0]
    assert "resuming from ckpt-00000010.ebmckpt (update 10)" in messages[0]
    # Reaching updates 20 and 30 again, the broken files are moved aside, not overwritten.
    assert "moved it aside to ckpt-00000020.ebmckpt.corrupt" in messages[1]
    assert "moved it aside to ckpt-00000030.ebmckpt.corrupt" in messages[2]
    assert resumed.flags["resumed_from"] == 10 and resumed.flags["step"] == 40
    np.testing.assert_array_equal(resumed.params["mu"], straight.params["mu"])
    for name in ("step", "loss", "mu0"):
        np.testing.assert_array_equal(resumed.history[name], straight.history[name])
    assert sorted(p.name for p in run.iterdir()) == [
        "ckpt-00000020.ebmckpt",
        "ckpt-00000020.ebmckpt.corrupt",
        "ckpt-00000030.ebmckpt",
        "ckpt-00000030.ebmckpt.corrupt",
        "ckpt-00000040.ebmckpt",
    ]


def _diverging(params, batch, rng_key):
    # sum(mu) grows by 0.2 per update (SGD, gradient -1 per coordinate); the loss turns NaN
    # once it passes 2.5, i.e. at update 13.
    total = jnp.sum(params["mu"])
    value = -total + jnp.where(total > 2.5, jnp.nan, 0.0) + 0.0 * jnp.sum(batch["x"])
    return value, {}


def test_nonfinite_stop_is_checkpointed_and_resuming_it_returns_at_once(tmp_path):
    def run():
        return ebm.fit(
            gaussian_mean,
            DATA,
            objective=stateless(_diverging),
            optimizer=optax.sgd(0.1),
            num_steps=40,
            batch_size=10,
            rng_key=0,
            log_every=5,
            checkpoint_dir=tmp_path,
            checkpoint_every=5,
            progress=False,
        )

    with pytest.warns(RuntimeWarning, match="fit stopped at update 13"):
        first = run()
    assert first.flags["nonfinite"] and first.flags["nonfinite_step"] == 13
    ckpt = latest_checkpoint(tmp_path, require_finite=("params",))
    assert ckpt.path.name == "ckpt-00000013.ebmckpt" and ckpt.step == 13
    assert ckpt.metadata["flags"] == {"nonfinite": True, "nonfinite_step": 13}
    stored = ckpt.restore({"params": {"mu": jnp.zeros(2)}})["params"]["mu"]
    np.testing.assert_array_equal(stored, first.params["mu"])  # the last finite parameters
    np.testing.assert_allclose(stored, [1.3, 1.3], rtol=1e-5)
    files = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}

    with pytest.warns(RuntimeWarning, match=r"stopped at update 13 .*lower the learning rate"):
        again = run()
    assert again.flags["nonfinite"] and again.flags["nonfinite_step"] == 13
    assert again.flags["resumed_from"] == 13 and again.flags["step"] == 13
    np.testing.assert_array_equal(again.params["mu"], first.params["mu"])
    np.testing.assert_array_equal(again.history["loss"], first.history["loss"])
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == files  # nothing re-run


def test_fit_with_an_equinox_module_resumes_bit_for_bit(tmp_path):
    def fit(num_steps, checkpoint_dir=None):
        return ebm.fit(
            mlp_model,
            DATA,
            objective="sm",
            optimizer=optax.adam(1e-2),
            num_steps=num_steps,
            batch_size=10,
            rng_key=1,
            log_every=10,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=10,
            progress=False,
        )

    straight = fit(30)
    fit(20, tmp_path)
    resumed = fit(30, tmp_path)
    assert resumed.flags["resumed_from"] == 20
    for got, want in zip(
        jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(resumed.history["loss"], straight.history["loss"])
    trees, meta = load_checkpoint(tmp_path, {"params": straight.params})
    assert meta["step"] == 30
    np.testing.assert_array_equal(
        trees["params"]["net$params"].layers[0].weight,
        straight.params["net$params"].layers[0].weight,
    )
