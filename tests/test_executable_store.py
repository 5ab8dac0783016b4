"""The store of compiled executables: round trip, misses on damage or another key, opt-out,
eviction, the environment's fingerprint, and ``fit``'s fallback when a stored file cannot run."""

from __future__ import annotations

import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.kernels import compile_cache
from ebm_ppl.kernels.compile_cache import (
    compile_lowered,
    discard_executable,
    environment_fingerprint,
    load_executable,
    save_executable,
)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An executable store in a folder of its own (JAX's cache directory is left as it is)."""
    monkeypatch.delenv("EBM_PPL_NO_CACHE", raising=False)
    monkeypatch.setattr(compile_cache, "executable_dir", lambda: tmp_path)
    return tmp_path


def _affine(x):
    return 2.0 * x + jnp.arange(x.shape[0], dtype=x.dtype)


def _fresh(x):
    # a program of its own per test run: JAX's cache cannot already hold it
    exe, storable = compile_lowered(jax.jit(_affine).lower(x))
    return exe, storable


def test_round_trip_and_misses(store):
    x = jnp.ones(5)
    exe, storable = _fresh(x)
    if not storable:  # JAX's cache held it (an earlier run): compile one it cannot hold
        exe, storable = compile_lowered(jax.jit(lambda v: _affine(v) + 0.0).lower(x))
    assert save_executable("affine f32[5]", exe)
    loaded = load_executable("affine f32[5]")
    np.testing.assert_array_equal(loaded(x), exe(x))
    assert load_executable("affine f32[6]") is None  # another key
    (path,) = store.glob("*.exe")
    blob = path.read_bytes()
    path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))  # one bit flipped: checksum fails
    assert load_executable("affine f32[5]") is None
    path.write_bytes(blob[: len(blob) // 2])  # cut short
    assert load_executable("affine f32[5]") is None
    path.write_bytes(blob)
    assert load_executable("affine f32[5]") is not None
    discard_executable("affine f32[5]")
    assert load_executable("affine f32[5]") is None and not list(store.glob("*.exe"))


def test_opted_out_store_reads_and_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("EBM_PPL_NO_CACHE", "1")
    assert compile_cache.executable_dir() is None
    exe = jax.jit(_affine).lower(jnp.ones(2)).compile()
    assert save_executable("opted out", exe) is False
    assert load_executable("opted out") is None


def test_least_recently_used_files_are_evicted(store, monkeypatch):
    monkeypatch.setattr(compile_cache, "MAX_EXECUTABLES", 2)
    exe = jax.jit(_affine).lower(jnp.ones(3)).compile()
    for i, key in enumerate(("a", "b", "c")):
        assert save_executable(key, exe)
        path = compile_cache._exe_path(store, key)[0]
        os.utime(path, (1e9 + i, 1e9 + i))  # distinct use times, "a" the oldest
    assert len(list(store.glob("*.exe"))) == 2
    assert load_executable("a") is None
    assert load_executable("b") is not None and load_executable("c") is not None


def test_environment_fingerprint_follows_xla_flags_and_jax_settings(monkeypatch):
    base = environment_fingerprint()
    assert environment_fingerprint() == base
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    assert environment_fingerprint() != base
    monkeypatch.delenv("XLA_FLAGS")
    with jax.numpy_rank_promotion("raise"):
        assert environment_fingerprint() != base
    assert environment_fingerprint() == base


def test_fit_replaces_a_stored_executable_that_cannot_run(store):
    """A file that loads but fails in XLA's runtime is compiled afresh and stored again."""
    fit_module = importlib.import_module("ebm_ppl.train.fit")

    def broken(*args):
        raise jax.errors.JaxRuntimeError("INTERNAL: Function wrapped_iota not found")

    x = jnp.arange(4.0)
    save_executable("broken", jax.jit(_affine).lower(x).compile())  # something to replace
    call = fit_module._checked_first_call(broken, "broken", lambda: jax.jit(_affine).lower(x))
    np.testing.assert_array_equal(call(x), _affine(x))
    np.testing.assert_array_equal(call(x), _affine(x))  # the fresh executable from now on
    again = load_executable("broken")
    assert again is None or np.array_equal(again(x), _affine(x))
