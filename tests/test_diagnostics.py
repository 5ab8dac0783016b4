"""ebm_ppl.diagnostics: ArviZ agreement, AR(1) oracles, group (device) tests, conversions, plots, CLI."""

import math
from collections import namedtuple

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import numpyro
import pytest
from scipy.signal import lfilter

import ebm_ppl as ebm
from ebm_ppl import diagnostics as dg

matplotlib.use("Agg")
AZ = dg._az()


def ar1(rho, num_chains, num_draws, seed):
    """Stationary AR(1) chains with unit marginal variance: x_t = rho x_{t-1} + sqrt(1-rho^2) e_t."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(num_chains, num_draws)) * math.sqrt(1 - rho**2)
    x0 = rng.normal(size=num_chains)  # stationary start
    x, _ = lfilter([1.0], [1.0, -rho], e, axis=1, zi=(rho * x0)[:, None])
    return x


@pytest.fixture(scope="module", params=[0.5, 0.9])
def ar1_chains(request):
    rho = request.param
    return rho, ar1(rho, 4, 100_000, seed=int(rho * 10))


# ------------------------------------------------------------------------------ AR(1) oracles
def test_bulk_ess_matches_ar1_oracle(ar1_chains):
    rho, x = ar1_chains
    truth = x.size * (1 - rho) / (1 + rho)
    got = float(dg.ess(x, method="bulk"))
    assert abs(got - truth) < 0.1 * truth, (rho, got, truth)


def test_rhat_stationary_and_shifted(ar1_chains):
    rho, x = ar1_chains
    assert float(dg.rhat(x)) < 1.005
    shifted = x.copy()
    shifted[0] += 1.0  # one chain of four shifted by one marginal standard deviation
    assert float(dg.rhat(shifted)) > 1.1
    assert float(dg.rhat(shifted, method="folded")) < float(dg.rhat(shifted))


# ------------------------------------------------------------------------------ ArviZ agreement
@pytest.fixture(scope="module")
def vector_idata():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 300, 3)) * np.array([1.0, 2.0, 0.5]) + np.array([0.0, 1.0, -1.0])
    y = ar1(0.7, 4, 300, seed=4)
    e = rng.gamma(2.0, size=(4, 300))
    return dg.to_inference_data(
        {"x": x, "y": y},
        {"potential_energy": e},
        chain_devices=["cpu:0", "cpu:0", "cpu:1", "cpu:1"],
        attrs={"sampling_time": 2.0, "kernel": "mala", "thinning": 1},
    )


def test_functions_agree_with_arviz(vector_idata):
    x = vector_idata.posterior["x"].values
    for k in range(3):
        for method in ("rank", "folded", "split"):
            assert float(
                dg.rhat(x)[k] if method == "rank" else dg.rhat(x, method)[k]
            ) == pytest.approx(float(AZ.rhat(x[..., k], method=method)), rel=1e-12)
        for method in ("bulk", "tail", "mean"):
            assert float(dg.ess(x, method)[k]) == pytest.approx(
                float(AZ.ess(x[..., k], method=method)), rel=1e-12
            )


def test_summary_agrees_with_arviz(vector_idata):
    ours = dg.summary(vector_idata)
    theirs = AZ.summary(vector_idata, kind="all")
    for col in theirs.columns:
        np.testing.assert_allclose(ours[col].values, theirs[col].values, rtol=1e-12)
    folded = AZ.rhat(vector_idata, method="folded")
    assert ours.loc["x[1]", "r_hat_folded"] == pytest.approx(float(folded["x"].values[1]))
    assert ours["ok"].dtype == bool


def test_z_scale_agrees_with_arviz():
    from arviz.stats.diagnostics import _z_scale

    x = np.random.default_rng(0).normal(size=(3, 50, 2))
    ours = dg._z_scale(x)
    for k in range(2):
        np.testing.assert_allclose(ours[..., k], _z_scale(x[..., k]), rtol=1e-12)


def test_nested_rhat_detects_between_group_shift():
    x = np.random.default_rng(5).normal(size=(8, 500))
    groups = [0] * 4 + [1] * 4
    assert float(dg.nested_rhat(x, groups)) < 1.01
    x[4:] += 0.5
    assert float(dg.nested_rhat(x, groups)) > 1.05


# ------------------------------------------------------------------------------ mixing report
def test_mixing_report_on_good_chains(vector_idata):
    rep = dg.mixing_report(vector_idata)
    assert rep.bad_groups == []
    assert list(rep.groups.index) == ["cpu:0", "cpu:1"]
    assert rep.groups["num_chains"].tolist() == [2, 2]
    assert set(rep.nested_rhat) == {"x", "y"}
    assert rep.bfmi is None  # no Hamiltonian energy recorded
    assert rep.energy_trace.shape == (4, 300)
    # ESS per second and per gradient (MALA: one gradient per step)
    np.testing.assert_allclose(rep.summary["ess_per_s"], rep.summary["ess_bulk"] / 2.0)
    np.testing.assert_allclose(rep.summary["ess_per_grad"], rep.summary["ess_bulk"] / 1200.0)
    assert "chains grouped by device" in str(rep)


def test_mixing_report_names_the_bad_group():
    x = np.random.default_rng(7).normal(size=(12, 400))
    x[3:6] = 0.5 * x[3:6] + 0.7  # the chains of one device sample another distribution
    labels = [f"gpu:{c // 3}" for c in range(12)]
    rep = dg.mixing_report(dg.to_inference_data({"x": x}, chain_devices=labels))
    assert rep.bad_groups == ["gpu:1"]
    assert not rep.ok
    assert rep.groups.loc["gpu:1", "max_abs_z"] > rep.z_threshold
    assert "BAD device(s): gpu:1" in str(rep)
    by_chain = dg.mixing_report(dg.to_inference_data({"x": x}), group_by="chain")
    assert len(by_chain.groups) == 12


def test_bfmi_only_with_hamiltonian_energy():
    rng = np.random.default_rng(2)
    stats = {
        "energy": rng.normal(size=(2, 200)).cumsum(axis=1) * 0.1,
        "potential_energy": rng.normal(size=(2, 200)),
    }
    rep = dg.mixing_report(dg.to_inference_data({"x": rng.normal(size=(2, 200))}, stats))
    assert rep.bfmi.shape == (2,)
    np.testing.assert_allclose(rep.bfmi, AZ.bfmi(stats["energy"]))


# ------------------------------------------------------------------------------ conversions
def _obs_model(y=None):
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", 0.5 * x**2)
    numpyro.sample("y", numpyro.distributions.Normal(x, 1.0), obs=y)


def test_from_numpyro_mcmc_drops_factor_groups():
    from numpyro.infer import HMC, MCMC

    # one chain of a fixed-length HMC keeps NumPyro's compile short (the conversion depends on
    # neither the chain count nor the kernel)
    kernel = HMC(_obs_model, num_steps=2, adapt_step_size=False)
    mcmc = MCMC(kernel, num_warmup=0, num_samples=50, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), y=jnp.array(0.3), extra_fields=("potential_energy",))
    idata = dg.to_inference_data(mcmc)
    assert idata.posterior["x"].shape == (1, 50)
    assert "log_likelihood" not in idata.groups()
    assert list(idata.observed_data.data_vars) == ["y"]  # the real observation stays, "E" goes
    np.testing.assert_allclose(
        idata.sample_stats["potential_energy"].values,
        mcmc.get_extra_fields(group_by_chain=True)["potential_energy"],
    )


def test_from_training_chains_orders_ring_buffer():
    from ebm_ppl.objectives.contrastive import PCDState

    window, chains = 5, 3
    energies = np.arange(7 * chains, dtype=np.float32).reshape(7, chains)  # update t -> row t
    ring = np.zeros((window, chains), np.float32)
    for t in range(7):
        ring[t % window] = energies[t]
    state = PCDState({"x": jnp.zeros((chains, 2))}, jnp.asarray(ring), jnp.asarray(7, jnp.int32))
    fit_result = namedtuple("R", "obj_state")(state)
    idata = dg.to_inference_data(fit_result)
    np.testing.assert_array_equal(idata.posterior["potential_energy"].values, energies[2:].T)
    assert idata.posterior.attrs["last_update"] == 7


# ------------------------------------------------------------------------------ plots
def test_plots_write_files(vector_idata, tmp_path):
    import matplotlib.pyplot as plt

    for name, fig in [
        ("trace", dg.plot_trace(vector_idata, ["x"], path=tmp_path / "trace.png")),
        ("rank", dg.plot_rank(vector_idata, path=tmp_path / "rank.png")),
        ("energy", dg.plot_energy(vector_idata, path=tmp_path / "energy.png")),
        (
            "density",
            dg.plot_samples(
                vector_idata.posterior["x"].values[..., :2], path=tmp_path / "density.png"
            ),
        ),
        (
            "images",
            dg.plot_samples(np.zeros((10, 64)), kind="images", path=tmp_path / "images.png"),
        ),
    ]:
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        plt.close(fig)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: dg.rhat(np.zeros(10)), ValueError, "draws must have shape"),
        (lambda: dg.rhat(np.zeros((4, 3))), ValueError, "at least 4 draws"),
        (lambda: dg.ess(np.full((2, 10), np.nan)), ValueError, "NaN"),
        (lambda: dg.rhat(np.zeros((2, 10)), method="magic"), ValueError, "method must be one of"),
        (lambda: dg.ess(np.zeros((2, 10)), method="magic"), ValueError, "method must be one of"),
        (lambda: dg.summary({"x": 1}), ValueError, "idata has no posterior"),
        (lambda: dg.mixing_report(object()), ValueError, "idata has no posterior"),
        (lambda: dg.to_inference_data(3), TypeError, "posterior must be"),
        (lambda: dg.to_inference_data({"x": np.zeros(4)}), ValueError, "posterior\\['x'\\]"),
        (
            lambda: dg.to_inference_data({"x": np.zeros((2, 4))}, chain_devices=["a"]),
            ValueError,
            "chain_devices",
        ),
        (lambda: dg.nested_rhat(np.zeros((2, 10)), [0, 0]), ValueError, "two distinct"),
        (lambda: dg.plot_samples(np.zeros((10, 3)), kind="density"), ValueError, "2-D points"),
        (lambda: dg.plot_samples(np.zeros((10, 3)), kind="pie"), ValueError, "kind must be"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_report_arguments_errors(vector_idata):
    with pytest.raises(ValueError, match="group_by='host'"):
        dg.mixing_report(vector_idata, group_by="host")
    with pytest.raises(ValueError, match="alpha must be"):
        dg.mixing_report(vector_idata, alpha=2.0)
    with pytest.raises(ValueError, match="var_names has unknown"):
        dg.mixing_report(vector_idata, var_names=["z"])
    idata = dg.to_inference_data({"x": np.zeros((2, 10))})
    with pytest.raises(ValueError, match="potential_energy"):
        dg.plot_energy(idata)


# ------------------------------------------------------------------------------ CLI
def test_cli_sample_then_diagnose(tmp_path, capsys):
    from ebm_ppl.cli import main

    out = tmp_path / "run"
    assert (
        main(
            [
                "sample",
                "ebm_ppl.cli:demo_model",
                "--kernel",
                "mala",
                "--chains",
                "4",
                "--num-warmup",
                "100",
                "--num-samples",
                "100",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (out / "idata.nc").is_file()
    assert main(["diagnose", str(out / "idata.nc")]) == 0
    text = capsys.readouterr().out
    assert "chains grouped by device" in text and "wrote" in text
    for name in ("trace", "rank", "energy", "samples"):
        assert (out / f"{name}.png").is_file()


def test_cli_diagnose_without_posterior(tmp_path, capsys):
    from ebm_ppl.cli import main

    path = tmp_path / "prior.nc"
    AZ.from_dict(prior={"x": np.zeros((1, 10))}).to_netcdf(str(path))
    assert main(["diagnose", str(path)]) == 2
    assert "has no posterior group" in capsys.readouterr().err
    assert main(["diagnose", str(tmp_path / "missing.nc")]) == 2
    assert "no such file" in capsys.readouterr().err
