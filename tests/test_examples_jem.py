"""The JEM digits example runs its ``main`` in its tiny mode (in the test process)."""

from tests.helpers.examples import run_example


def test_jem_digits_tiny(tmp_path, capsys, monkeypatch):
    stdout, _ = run_example(
        "jem_digits.py",
        *("--tiny", "--out", tmp_path / "jem.png"),
        capsys=capsys,
        monkeypatch=monkeypatch,
        cwd=tmp_path,
    )
    for line in ("fully supervised", "held-out class 9", "semi-supervised JEM accuracy"):
        assert line in stdout
    assert "JEM   |" in stdout and "MLP   |" in stdout
    assert (tmp_path / "jem.png").stat().st_size > 1000
