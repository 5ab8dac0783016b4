"""The ``ebm-ppl`` command's bad inputs and trust boundary.

Every user error is one line on stderr, ``ebm-ppl: error: ...``, naming the flag, file or site,
with exit status 2 and no traceback (``--debug`` adds it). The rows run the command in-process
with the library's entry points (``fit``, ``sample``, ``log_partition``) replaced by a tripwire
where the CLI can check the input itself, so those errors are shown to come before any training
or sampling work; rows marked ``library`` are caught by the library's own argument checks.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import tokenize
import warnings
from pathlib import Path

import numpy as np
import pytest

import ebm_ppl
from ebm_ppl.cli import main
from ebm_ppl.train.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]

MODEL = """
import jax.numpy as jnp
import numpyro
import ebm_ppl as ebm


def gauss(dim=2):
    mu = numpyro.param("mu", jnp.zeros(dim))
    x = numpyro.sample("x", ebm.Flat((dim,)))
    ebm.energy("E", 0.5 * jnp.sum((x - mu) ** 2))


def nan_energy(dim=2):
    mu = numpyro.param("mu", jnp.zeros(dim))
    x = numpyro.sample("x", ebm.Flat((dim,)))
    ebm.energy("E", 0.5 * jnp.sum((x - mu) ** 2) * jnp.log(mu[0] - 1.0))


not_a_model = 3
"""

COMMAND = {
    "model": "cli_model:gauss",
    "data": "data.npy",
    "data_site": None,
    "model_kwargs": "",
    "objective": "sm",
    "kernel": None,
    "mcmc_steps": None,
    "num_chains": None,
    "step_size": None,
    "optimizer": "sgd",
    "learning_rate": 0.01,
    "steps": 4,
    "batch_size": 8,
    "num_examples": 10000,
    "seed": 0,
    "checkpoint_every": None,
    "log_every": 2,
}


def _run_folder(folder: Path, command: dict | str) -> Path:
    folder.mkdir()
    text = command if isinstance(command, str) else json.dumps(command)
    (folder / "command.json").write_text(text)
    return folder


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with a model module, data, params and run folders, good and bad."""
    d = tmp_path_factory.mktemp("cli")
    (d / "cli_model.py").write_text(MODEL)
    (d / "imports_loudly.py").write_text(MODEL + '\nprint("IMPORTED cli model")\n')
    (d / "broken.py").write_text("def f(:\n    pass\n")
    (d / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    (d / "numpy.py").write_text(MODEL)  # shadows the installed numpy
    (d / "json.py").write_text(MODEL)  # shadows the standard library's json
    np.save(d / "data.npy", np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32))
    np.save(d / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "garbage.npy").write_bytes(b"\x00not an npy file")
    (d / "text.nc").write_text("this is not netCDF\n")
    (d / "notes.txt").write_text("hello\n")
    np.savez(d / "good_params.npz", mu=np.zeros(2, np.float32))
    np.savez(d / "wrong_key_params.npz", mu=np.zeros(2, np.float32), sigma=np.ones(2))
    np.savez(d / "wrong_shape_params.npz", mu=np.zeros(3, np.float32))
    np.savez(d / "nan_params.npz", mu=np.array([np.nan, 0.0], np.float32))
    np.savez(d / "empty.npz")
    (d / "a_file").write_text("")
    ebm_ppl.diagnostics._az().from_dict(prior={"x": np.zeros((1, 10))}).to_netcdf(
        str(d / "prior.nc")
    )
    draws = np.random.default_rng(1).normal(size=(4, 100))
    ebm_ppl.diagnostics.to_inference_data({"x": draws}).to_netcdf(str(d / "ok.nc"))
    _run_folder(d / "run", COMMAND)
    # a run with progress: a checkpoint of its parameters
    save_checkpoint(d / "run", {"params": {"mu": np.zeros(2, np.float32)}}, {"step": 2})
    _run_folder(d / "run_no_data", {k: v for k, v in COMMAND.items() if k != "data"})
    _run_folder(d / "run_bad_json", '{"model": "cli_model:gauss",')
    _run_folder(d / "run_list", "[1, 2]")
    _run_folder(d / "run_bad_steps", {**COMMAND, "steps": "many"})
    _run_folder(d / "run_bad_optimizer", {**COMMAND, "optimizer": "rmsprop"})
    (d / "run_empty").mkdir()
    save_checkpoint(d / "api_run", {"params": {"mu": np.zeros(2, np.float32)}}, {"step": 2})
    # for `python -m`, which puts the current folder first on sys.path: no numpy.py there
    clean = d / "clean"
    clean.mkdir()
    for name in ("cli_model.py", "data.npy", "text.nc"):
        (clean / name).write_bytes((d / name).read_bytes())
    return d


@pytest.fixture
def tripwire(monkeypatch):
    """Library entry points that fail the test if a row reaches them."""

    def reached(*args, **kwargs):
        raise AssertionError("the library's entry point was reached")

    monkeypatch.setattr(importlib.import_module("ebm_ppl.train.fit"), "fit", reached)
    monkeypatch.setattr(ebm_ppl, "sample", reached)
    monkeypatch.setattr(ebm_ppl, "log_partition", reached)


F = ["fit", "cli_model:gauss", "--data", "data.npy", "--objective", "sm", "--steps", "4"]
S = ["sample", "cli_model:gauss", "--out", "out_sample", "--no-progress"]
L = ["logz", "cli_model:gauss", "--method", "quadrature"]

# (label, argv, word the one-line message must contain, caught by the library rather than the CLI)
ROWS = [
    ("no command", [], "COMMAND", False),
    ("unknown command", ["train"], "invalid choice", False),
    ("unknown flag", [*F, "--epochs", "3"], "--epochs", False),
    ("steps zero", [*F[:-1], "0"], "--steps", False),
    ("steps not a number", [*F[:-1], "ten"], "--steps", False),
    ("learning rate negative", [*F, "--learning-rate", "-1"], "--learning-rate", False),
    ("learning rate nan", [*F, "--learning-rate", "nan"], "--learning-rate", False),
    ("batch size zero", [*F, "--batch-size", "0"], "--batch-size", False),
    ("seed negative", [*F, "--seed", "-3"], "--seed", False),
    ("optimizer unknown", [*F, "--optimizer", "rmsprop"], "--optimizer", False),
    ("fit without steps", F[:-2], "--steps", False),
    ("fit without data", ["fit", "cli_model:gauss", "--steps", "4"], "--data", False),
    ("data file missing", ["fit", "cli_model:gauss", "--data", "nope.npy", "--steps", "4"],
     "nope.npy", False),
    ("data name unknown", ["fit", "cli_model:gauss", "--data", "mnist", "--steps", "4"],
     "--data", False),
    ("data not an npy file", ["fit", "cli_model:gauss", "--data", "garbage.npy", "--steps", "4"],
     "garbage.npy", False),
    ("data of pickled objects", ["fit", "cli_model:gauss", "--data", "objects.npy", "--steps",
     "4"], "objects.npy", False),
    ("data npz without arrays", ["fit", "cli_model:gauss", "--data", "empty.npz", "--steps", "4"],
     "empty.npz", False),
    ("objective unknown", [*F, "--objective", "mle"], "--objective", False),
    ("kernel on a sampling-free objective", [*F, "--kernel", "mala"], "--kernel", False),
    ("model spec without function", ["fit", "cli_model", "--data", "data.npy", "--steps", "4"],
     "model spec", False),
    ("model file missing", ["fit", "nofile.py:gauss", "--data", "data.npy", "--steps", "4"],
     "nofile.py", False),
    ("model module missing", ["fit", "nomodule:gauss", "--data", "data.npy", "--steps", "4"],
     "nomodule", False),
    ("model attribute missing", ["fit", "cli_model:nothing", "--data", "data.npy", "--steps",
     "4"], "nothing", False),
    ("model attribute not callable", ["fit", "cli_model:not_a_model", "--data", "data.npy",
     "--steps", "4"], "not_a_model", False),
    ("model file with a syntax error", ["fit", "broken.py:f", "--data", "data.npy", "--steps",
     "4"], "broken.py", False),
    ("model module raising on import", ["fit", "raises:f", "--data", "data.npy", "--steps", "4"],
     "boom at import", False),
    ("model file shadowing numpy", ["fit", "numpy.py:gauss", "--data", "data.npy", "--steps",
     "4"], "shadow", False),
    ("model module shadowing json", ["fit", "json:gauss", "--data", "data.npy", "--steps", "4"],
     "shadow", False),
    ("model function not a name", ["fit", "cli_model:1x", "--data", "data.npy", "--steps", "4"],
     "'1x'", False),
    ("model kwargs without =", [*F, "--model-kwargs", "dim"], "--model-kwargs", False),
    ("model kwargs unknown argument", [*F, "--model-kwargs", "size=3"], "size", False),
    ("out is a file", [*F, "--out", "a_file"], "--out", False),
    ("out under a file", [*F, "--out", "a_file/run"], "--out", False),
    ("out holds another run", [*F[:5], "nce", "--steps", "4", "--out", "run"], "already holds",
     False),
    ("out holds a run of the library", [*F, "--out", "api_run"], "no command.json", False),
    ("resume folder missing", ["fit", "--resume", "no_run"], "no_run", False),
    ("resume folder without command.json", ["fit", "--resume", "run_empty"], "command.json",
     False),
    ("resume command.json not JSON", ["fit", "--resume", "run_bad_json"], "not valid JSON",
     False),
    ("resume command.json not an object", ["fit", "--resume", "run_list"], "JSON object", False),
    ("resume command.json incomplete", ["fit", "--resume", "run_no_data"], "'data'", False),
    ("resume command.json bad steps", ["fit", "--resume", "run_bad_steps"], "'steps'", False),
    ("resume command.json bad optimizer", ["fit", "--resume", "run_bad_optimizer"],
     "'optimizer'", False),
    ("resume changing the objective", ["fit", "--resume", "run", "--objective", "nce"],
     "--objective", False),
    ("resume changing the learning rate", ["fit", "--resume", "run", "--learning-rate", "0.5"],
     "--learning-rate", False),
    ("resume changing the model", ["fit", "imports_loudly:gauss", "--resume", "run"],
     "MODEL_SPEC", False),
    ("resume changing model kwargs", ["fit", "--resume", "run", "--model-kwargs", "dim=3"],
     "--model-kwargs", False),
    ("resume into another out", ["fit", "--resume", "run", "--out", "elsewhere"], "--out", False),
    ("batch larger than the data", [*F, "--batch-size", "64", "--out", "run_b"], "--batch-size",
     True),
    ("data site unknown", [*F, "--data-site", "y", "--out", "run_ds"], "data_site must be",
     True),
    ("sample without out", S[:2], "--out", False),
    ("sample chains zero", [*S, "--chains", "0"], "--num-chains", False),
    ("sample warmup negative", [*S, "--num-warmup", "-1"], "--num-warmup", False),
    ("sample chain method unknown", [*S, "--chain-method", "threads"], "--chain-method", False),
    ("sample out is a file", [*S[:2], "--out", "a_file"], "--out", False),
    ("sample params missing", [*S, "--params", "nope.ebmparams"], "nope.ebmparams", False),
    ("sample params is a folder", [*S, "--params", "run"], "--params", False),
    ("sample params not a params file", [*S, "--params", "notes.txt"], "notes.txt", False),
    ("sample params unknown key", [*S, "--params", "wrong_key_params.npz"], "sigma", False),
    ("sample params wrong shape", [*S, "--params", "wrong_shape_params.npz"], "shape", False),
    ("sample params not finite", [*S, "--params", "nan_params.npz"], "non-finite", False),
    ("sample params for other kwargs", [*S, "--params", "good_params.npz", "--model-kwargs",
     "dim=3"], "'mu'", False),
    ("sample kernel unknown", [*S, "--kernel", "metropolis"], "--kernel", True),
    ("logz params unknown key", [*L, "--params", "wrong_key_params.npz"], "sigma", False),
    ("logz num chains zero", [*L, "--num-chains", "0"], "--num-chains", False),
    ("logz method unknown", ["logz", "cli_model:gauss", "--method", "magic"], "--method", True),
    ("diagnose file missing", ["diagnose", "nope.nc"], "nope.nc", False),
    ("diagnose a text file", ["diagnose", "text.nc", "--no-plots"], "text.nc", False),
    ("diagnose an npy file", ["diagnose", "data.npy", "--no-plots"], "data.npy", False),
    ("diagnose without posterior", ["diagnose", "prior.nc", "--no-plots"], "prior.nc", False),
    ("diagnose unknown variable", ["diagnose", "ok.nc", "--no-plots", "--var-names", "z"],
     "--var-names", False),
    ("demo data set unknown", ["demo", "--dataset", "moons"], "--dataset", False),
]  # fmt: skip


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("ebm-ppl: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


def test_rows_are_many_and_distinct():
    assert len(ROWS) >= 60
    assert len({r[0] for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("label,argv,word,library", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line(label, argv, word, library, workdir, monkeypatch, capsys, request):
    monkeypatch.chdir(workdir)
    if not library:
        request.getfixturevalue("tripwire")
    status = main(argv)
    out, err = capsys.readouterr()
    line = _one_error_line(err)
    assert status == 2, f"{label}: status {status}"
    assert word in line, f"{label}: {line!r} lacks {word!r}"


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "broken.py:f", "--data", "data.npy", "--steps", "4", "--debug"],
        ["--debug", "sample", "cli_model:gauss", "--out", "o", "--params", "wrong_key_params.npz"],
        ["--debug", "fit", "--resume", "run_no_data"],
    ],
)
def test_debug_shows_the_traceback(argv, workdir, monkeypatch, capsys, tripwire):
    monkeypatch.chdir(workdir)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("ebm-ppl: error: ")


def test_missing_optional_package_is_one_line(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert main(["diagnose", "ok.nc", "--out", "plots_without_matplotlib"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "'matplotlib'" in line and "ebm_ppl[plot]" in line


def test_a_bug_keeps_its_traceback(workdir, monkeypatch, tripwire):
    """Exceptions that are not user errors propagate (here the tripwire's AssertionError)."""
    monkeypatch.chdir(workdir)
    with pytest.raises(AssertionError, match="entry point was reached"):
        main(["fit", "cli_model:gauss", "--data", "data.npy", "--objective", "sm", "--steps", "4",
              "--out", "fresh_run", "--no-progress"])  # fmt: skip


def test_resume_names_the_model_before_importing_it(workdir, monkeypatch, capsys, tripwire):
    monkeypatch.chdir(workdir)
    run = _run_folder(workdir / "run_loud", {**COMMAND, "model": "imports_loudly:gauss"})
    with pytest.raises(AssertionError, match="entry point was reached"):
        main(["fit", "--resume", str(run), "--no-progress"])
    out = capsys.readouterr().out
    assert "importing the model 'imports_loudly:gauss'" in out
    assert out.index("importing the model") < out.index("IMPORTED cli model")


def test_resume_honours_the_safe_flags(workdir, monkeypatch, capsys):
    """--steps, --checkpoint-every and --log-every reach fit and are saved; the rest is the run's."""
    from ebm_ppl.train.fit import FitResult
    from ebm_ppl.train.history import History

    calls = []

    def fake_fit(model, data, **kwargs):
        calls.append(kwargs)
        history = History({"step": np.arange(2), "loss": np.ones(2)})
        flags = {"nonfinite": False, "nonfinite_step": None, "resumed_from": 4, "step": 9}
        return FitResult({"mu": np.zeros(2, np.float32)}, (), history, flags)

    monkeypatch.setattr(importlib.import_module("ebm_ppl.train.fit"), "fit", fake_fit)
    monkeypatch.chdir(workdir)
    run = _run_folder(workdir / "run_honour", COMMAND)
    argv = ["fit", "--resume", str(run), "--steps", "9", "--checkpoint-every", "3"]
    assert main([*argv, "--log-every", "3", "--no-progress", "--objective", "sm"]) == 0
    kwargs = calls[-1]
    assert (kwargs["num_steps"], kwargs["checkpoint_every"], kwargs["log_every"]) == (9, 3, 3)
    assert type(kwargs["objective"]).__name__ == "ScoreMatching"
    assert kwargs["batch_size"] == 8 and kwargs["progress"] is False
    saved = json.loads((run / "command.json").read_text())
    assert (saved["steps"], saved["checkpoint_every"], saved["log_every"]) == (9, 3, 3)
    assert saved["objective"] == "sm" and saved["learning_rate"] == 0.01
    # without flags, the saved values are used
    assert main(["fit", "--resume", str(run), "--no-progress"]) == 0
    assert calls[-1]["num_steps"] == 9
    assert "(resumed from 4)" in capsys.readouterr().out


def test_nonfinite_at_the_first_update_exits_1_without_crashing(workdir, monkeypatch, capsys):
    """A run that is NaN at update 0 has an empty history: no plot, a message, status 1."""
    monkeypatch.chdir(workdir)
    argv = ["fit", "cli_model:nan_energy", "--data", "data.npy", "--objective", "sm"]
    argv += ["--steps", "3", "--batch-size", "8", "--out", "run_nan", "--no-progress"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fit's own non-finite warning
        assert main(argv) == 1
    out = capsys.readouterr().out
    assert "stopped: non-finite values at update 0" in out
    assert not (workdir / "run_nan" / "history.png").exists()
    assert json.loads((workdir / "run_nan" / "history.json").read_text())["metrics"] == {}


def test_params_written_by_fit_are_read_by_logz(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    argv = ["fit", "cli_model:gauss", "--data", "data.npy", "--objective", "sm", "--steps", "2"]
    assert main([*argv, "--batch-size", "8", "--out", "run_params", "--no-progress"]) == 0
    params = workdir / "run_params" / "params.ebmparams"
    assert main(["logz", "cli_model:gauss", "--params", str(params), "--method", "quadrature"]) == 0
    assert "log Z = 1.837" in capsys.readouterr().out  # log(2 pi): mu does not change log Z
    assert main(["logz", "json:gauss", "--params", str(params)]) == 2
    assert "shadow" in capsys.readouterr().err


EQX_MODEL = """
import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
from numpyro.contrib.module import eqx_module

import ebm_ppl as ebm


def eqx_energy(width=4):
    net = eqx_module("net", eqx.nn.MLP(2, "scalar", width, 1, key=jax.random.PRNGKey(0)))
    x = numpyro.sample("x", ebm.Flat((2,)))
    ebm.energy("E", 0.5 * jnp.sum(x**2) + 0.1 * jnp.tanh(net(x)))
"""


def test_module_params_round_trip(workdir, monkeypatch, capsys):
    """Equinox parameters written by fit are rebuilt by logz from the model's own template."""
    pytest.importorskip("equinox")
    monkeypatch.chdir(workdir)
    (workdir / "cli_eqx_model.py").write_text(EQX_MODEL)
    argv = ["fit", "cli_eqx_model:eqx_energy", "--data", "data.npy", "--objective", "sm"]
    assert (
        main([*argv, "--steps", "2", "--batch-size", "8", "--out", "run_eqx", "--no-progress"]) == 0
    )
    params = str(workdir / "run_eqx" / "params.ebmparams")
    logz = ["logz", "cli_eqx_model:eqx_energy", "--params", params, "--method", "quadrature"]
    assert main(logz) == 0
    assert capsys.readouterr().out.count("log Z = ") == 1
    assert main([*logz, "--model-kwargs", "width=8"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "net$params" in line and "expected (8, 2)" in line


def _cli_process(argv, cwd, *, console_script=False):
    if console_script:
        exe = Path(sys.executable).with_name("ebm-ppl")
        cmd = [str(exe), *argv]
    else:
        cmd = [sys.executable, "-m", "ebm_ppl.cli", *argv]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.subprocess
def test_subprocess_one_line_and_status_2(workdir):
    clean = workdir / "clean"
    out = _cli_process(["fit", "cli_model:gauss", "--data", "nope.npy", "--steps", "3"], clean)
    assert out.returncode == 2
    assert "nope.npy" in _one_error_line(out.stderr)
    out = _cli_process(["diagnose", "text.nc"], clean)
    assert out.returncode == 2
    assert "text.nc" in _one_error_line(out.stderr)
    out = _cli_process(["--debug", "diagnose", "text.nc"], clean)
    assert out.returncode == 2 and "Traceback (most recent call last)" in out.stderr


@pytest.mark.subprocess
def test_console_script_imports_models_from_the_current_folder(workdir):
    """The console script does not search the current folder by itself; the CLI does."""
    exe = Path(sys.executable).with_name("ebm-ppl")
    # the suite runs on an installed project (README: pip install -e ".[dev]"), so it exists
    assert exe.exists(), f"the ebm-ppl console script is not installed next to {sys.executable}"
    for spec in ("cli_model:gauss", "./cli_model.py:gauss"):
        out = _cli_process(["logz", spec, "--method", "quadrature"], workdir, console_script=True)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.startswith("log Z = 1.83787")
    out = _cli_process(["logz", "numpy:gauss"], workdir, console_script=True)
    assert out.returncode == 2 and "shadow" in _one_error_line(out.stderr)


def test_help_states_the_trust_boundary(capsys):
    for argv in (["--help"], ["fit", "--help"], ["sample", "--help"], ["logz", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "runs that code" in text and "never unpickled" in text, argv
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "imports the model named in DIR/command.json" in " ".join(
        capsys.readouterr().out.split()
    )
    for doc in ("README.md", "docs/cli.md"):
        text = " ".join((ROOT / doc).read_text().split())
        assert "Trust boundary" in text and "command.json" in text, doc
        assert "never unpickled" in text, doc


# --------------------------------------------------------------------------- the library's code
# Nothing in the library unpickles, evaluates or executes the contents of a user's file. The
# check reads the code's tokens (so docstrings saying "never unpickled" do not count).
FORBIDDEN_NAMES = {"pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}
FORBIDDEN_CALLS = {"eval", "exec", "__import__"}
# name -> {file: reason} for uses that are legitimate
ALLOWED = {
    "exec_module": {
        "ebm_ppl/cli/common.py": "imports a model spec's file: the documented trust boundary "
        "(a model spec is code, like any import)",
    },
    "spec_from_file_location": {
        "ebm_ppl/cli/common.py": "the same model-spec import",
    },
    "pickle": {
        "ebm_ppl/kernels/compile_cache.py": "fit's stored executables, in JAX's serialized-"
        "executable format (a pickle), read only from the cache directory the library writes: "
        "as trusted as JAX's own cache beside it, which holds machine code; never a user's file",
    },
}


def _library_files():
    return sorted(p for d in ("ebm_ppl", "models") for p in (ROOT / d).rglob("*.py"))


def _violations(path: Path) -> list[str]:
    rel = path.relative_to(ROOT).as_posix()
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.STRING)
    ]
    found = []
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.NAME:
            continue
        prev = tokens[i - 1].string if i else ""
        nxt = tokens[i + 1].string if i + 1 < len(tokens) else ""
        where = f"{rel}:{tok.start[0]}"
        if tok.string in FORBIDDEN_NAMES and rel not in ALLOWED.get(tok.string, {}):
            found.append(f"{where}: {tok.string}")
        elif tok.string in FORBIDDEN_CALLS and nxt == "(" and prev != ".":
            found.append(f"{where}: {tok.string}(")
        elif tok.string == "allow_pickle" and nxt == "=" and tokens[i + 2].string != "False":
            found.append(f"{where}: allow_pickle={tokens[i + 2].string}")
        elif tok.string in ALLOWED and rel not in ALLOWED[tok.string]:
            found.append(f"{where}: {tok.string} (allowed only in {sorted(ALLOWED[tok.string])})")
    return found


def test_library_never_unpickles_or_evaluates_user_files():
    files = _library_files()
    assert len(files) > 30 and any(p.name == "checkpoint.py" for p in files)
    bad = [v for p in files for v in _violations(p)]
    assert not bad, "\n".join(bad)


def test_the_code_scan_finds_what_it_forbids(tmp_path, monkeypatch):
    """The scanner itself: each forbidden use in code is found, the same words in text are not."""
    sample = tmp_path / "ebm_ppl" / "bad.py"
    sample.parent.mkdir()
    sample.write_text(
        '"""Never unpickled; no pickle, no eval(text)."""\n'
        "import pickle  # the module\n"
        "import numpy as np\n"
        "x = np.load('f.npy', allow_pickle=True)\n"
        "y = eval('1 + 1')\n"
        "exec('z = 1')\n"
        "ok = np.load('f.npy', allow_pickle=False)\n"
        "import importlib.util\n"
        "spec = importlib.util.spec_from_file_location('m', 'm.py')\n"
        "literal = __import__('ast').literal_eval('1')\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = _violations(sample)
    assert [v.split(": ", 1)[1] for v in found] == [
        "pickle",
        "allow_pickle=True",
        "eval(",
        "exec(",
        "spec_from_file_location (allowed only in ['ebm_ppl/cli/common.py'])",
        "__import__(",
    ]
