"""Training monitors: JSONL and TensorBoard logs written by a fit and read back; alarms; raising
callbacks keep the checkpoint and re-raise."""

from __future__ import annotations

import json
import struct
import warnings

import jax
import numpy as np
import optax
import pytest
from ebm_ppl.models import rbm
from tensorboardX.proto import event_pb2

import ebm_ppl as ebm
from ebm_ppl.objectives import PersistentContrastiveDivergence
from ebm_ppl.objectives.contrastive import PCDState
from ebm_ppl.train.callbacks import (
    JSONLLogger,
    Monitor,
    MonitorError,
    MonitorWarning,
    TensorBoardLogger,
    chain_record,
)
from ebm_ppl.train.checkpoint import list_checkpoints

NUM_STEPS = 12
LOG_EVERY = 4


def _fit(**kwargs):
    """PCD on a small RBM (64 visible units of binarized digits, 3 hidden, 32 chains)."""
    data = ebm.data.binarized_digits()[0][:200]
    init = rbm.init_params(jax.random.PRNGKey(0), data, num_hidden=3)
    objective = PersistentContrastiveDivergence("gibbs", num_chains=32, diagnostics_window=4)
    return ebm.fit(
        rbm.model, data, model_args=(64, 3), data_site="v", init_params=init,
        objective=objective, optimizer=optax.sgd(0.05), batch_size=20,
        rng_key=jax.random.PRNGKey(1), log_every=LOG_EVERY, progress=False, **kwargs,
    )  # fmt: skip


def _read_events(path):
    """Scalars (tag -> [(step, value)]) of a TensorBoard event file, read as TFRecords."""
    out: dict[str, list[tuple[int, float]]] = {}
    raw = path.read_bytes()
    pos = 0
    while pos < len(raw):
        (length,) = struct.unpack("<Q", raw[pos : pos + 8])
        data = raw[pos + 12 : pos + 12 + length]
        pos += 12 + length + 4
        event = event_pb2.Event.FromString(data)
        for value in event.summary.value:
            out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("logs")
    monitors = [
        JSONLLogger(tmp / "train.jsonl", log_every=LOG_EVERY, energy_gap_max=None),
        TensorBoardLogger(tmp / "tb", log_every=LOG_EVERY, energy_gap_max=None),
    ]
    result = _fit(num_steps=NUM_STEPS, callbacks=monitors)
    return tmp, result


def test_jsonl_log_is_written_by_a_fit_and_read_back(logged):
    tmp, result = logged
    records = [json.loads(line) for line in (tmp / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8, 12]
    for r in records:
        for name in ("loss", "energy_gap", "acceptance_rate", "grad_norm", "chains_nested_rhat",
                     "chains_ess", "chains_nested_rhat_threshold"):  # fmt: skip
            assert np.isfinite(r[name]), name
        assert r["chains_draws"] == 4 and r["alarms"] in ([], ["chains_nested_rhat"])
    # the record is the history's last update of each chunk
    hist = result.history
    for r in records:
        row = int(np.flatnonzero(hist["step"] == r["step"] - 1)[0])
        assert r["loss"] == pytest.approx(float(hist["loss"][row]), rel=1e-6)
        assert r["grad_norm"] == pytest.approx(float(hist["grad_norm"][row]), rel=1e-6)
        assert r["energy_gap"] == pytest.approx(float(hist["energy_gap"][row]), rel=1e-6)
    # the chains' figures are those of the diagnostics on the final state
    final = chain_record(result.obj_state)
    assert records[-1]["chains_nested_rhat"] == pytest.approx(final["chains_nested_rhat"])
    assert hist["grad_norm"].min() > 0


def test_tensorboard_event_file_is_written_by_a_fit_and_read_back(logged):
    tmp, _ = logged
    records = [json.loads(line) for line in (tmp / "train.jsonl").read_text().splitlines()]
    (event_file,) = (tmp / "tb").iterdir()
    scalars = _read_events(event_file)
    assert [s for s, _ in scalars["train/loss"]] == [4, 8, 12]
    for tag, key in (("train/loss", "loss"), ("train/grad_norm", "grad_norm"),
                     ("chains/nested_rhat", "chains_nested_rhat"), ("chains/ess", "chains_ess"),
                     ("train/acceptance_rate", "acceptance_rate")):  # fmt: skip
        got = [v for _, v in scalars[tag]]
        np.testing.assert_allclose(got, [r[key] for r in records], rtol=1e-6)


def _pcd_state(energies):
    """A PCD state whose energy trace holds ``energies`` ``(chain, draw)``."""
    trace = np.asarray(energies, np.float32).T
    return PCDState({}, trace, np.int32(trace.shape[0]))


class _Memory(Monitor):
    def __init__(self, **options):
        super().__init__(**options)
        self.records = []

    def write(self, record):
        self.records.append(dict(record))


def test_alarms_on_a_planted_non_mixing_block_and_a_wide_energy_gap():
    rng = np.random.default_rng(0)
    mixed = rng.normal(size=(400, 1))  # one draw per chain: 4 superchains of 100 chains
    stuck = mixed.copy()
    stuck[:100] += 2.0
    mon = _Memory(log_every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mon(1, {}, _pcd_state(mixed), {"energy_gap": 0.1}) is None
    with pytest.warns(MonitorWarning, match="nested R-hat .* above") as caught:
        mon(2, {}, _pcd_state(stuck), {"energy_gap": 0.1})
    assert len(caught) == 1 and mon.records[-1]["alarms"] == ["chains_nested_rhat"]
    # once per crossing: no second warning while it stays above
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon(3, {}, _pcd_state(stuck), {"energy_gap": 0.1})
    # the gap in units of the chains' energy spread (sd ~ 1 here)
    with pytest.warns(MonitorWarning, match="energy gap 5 is .* chain energy sd wide"):
        mon(4, {}, _pcd_state(mixed), {"energy_gap": 5.0})
    assert mon.records[-1]["alarms"] == ["energy_gap"]
    stopper = _Memory(log_every=1, on_alarm="stop")
    with pytest.warns(MonitorWarning):
        assert stopper(1, {}, _pcd_state(stuck), {}) is True
    with pytest.raises(MonitorError, match="nested R-hat"):
        _Memory(log_every=1, on_alarm="raise")(1, {}, _pcd_state(stuck), {})


def test_raising_callback_keeps_the_checkpoint_and_reraises(tmp_path):
    def failing(step, params, obj_state, metrics):
        if step >= 8:
            raise KeyboardInterrupt  # as a Ctrl-C in a callback

    ckpt = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _fit(num_steps=NUM_STEPS, checkpoint_dir=ckpt, checkpoint_every=100, callbacks=[failing])
    assert [p.name for p in list_checkpoints(ckpt)] == ["ckpt-00000008.ebmckpt"]
    # a monitor's alarm: the same, and the run resumes from that checkpoint
    log = tmp_path / "alarm.jsonl"
    alarm = JSONLLogger(
        log, log_every=LOG_EVERY, energy_gap_max=1e-9, rhat_delta=None, on_alarm="raise"
    )
    with pytest.raises(MonitorError, match="update 4: energy_gap"):
        _fit(num_steps=NUM_STEPS, checkpoint_dir=tmp_path / "b", checkpoint_every=100,
             callbacks=[alarm])  # fmt: skip
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["ckpt-00000004.ebmckpt"]
    assert json.loads(log.read_text())["alarms"] == ["energy_gap"]  # written before raising
    resumed = _fit(num_steps=NUM_STEPS, checkpoint_dir=ckpt)
    assert resumed.flags["resumed_from"] == 8 and resumed.flags["step"] == NUM_STEPS


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: JSONLLogger(p, log_every=0), "log_every"),
        (lambda p: JSONLLogger(p, num_superchains=1), "num_superchains"),
        (lambda p: JSONLLogger(p, on_alarm="ignore"), "on_alarm"),
        (lambda p: JSONLLogger(p, energy_gap_max=-1.0), "energy_gap_max"),
        (lambda p: JSONLLogger(p.parent), "is not a file"),
        (lambda p: TensorBoardLogger(p, rhat_delta=0.0), "rhat_delta"),
    ],
)
def test_bad_monitor_arguments(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        make(tmp_path / "log.jsonl")


def test_plain_monitor_writes_nothing_and_keeps_its_record():
    from ebm_ppl.train.callbacks import Monitor

    mon = Monitor(log_every=1)
    assert mon(1, {}, None, {"loss": 0.5}) is None
    assert mon.record(1, None, {"loss": 0.5})["loss"] == 0.5
