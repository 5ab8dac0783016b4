import os

# The suite spends most of its time compiling small programs that then run for milliseconds:
# without XLA's backend optimizations (LLVM -O0, no expensive passes) CPU compiles take ~35-40 %
# less time, and the programs compute the same values up to floating-point rounding. Set before
# JAX starts, so the test process and the subprocesses it starts (they inherit the environment)
# all use it; JAX_DISABLE_MOST_OPTIMIZATIONS=0 runs the suite with XLA's defaults.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

# Shared fixtures and settings for the whole suite. Tests that need float64 enable it locally
# with ``jax.experimental.enable_x64()``.
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


# The longest files, longest first (measured with --durations on 2 cores). pytest-xdist hands
# whole files to the workers (--dist loadfile, in collection order: --no-loadscope-reorder), so
# starting with these leaves short files and doctests for the end instead of one long file
# running alone on one worker while the other idles.
_LONGEST_FIRST = (
    "tests/test_examples.py",
    "tests/test_docs.py",
    "tests/test_durability.py",
    "tests/test_potts_critical.py",
    "tests/test_zoo_poe.py",
    "tests/test_ais.py",
    "tests/test_package.py",
    "tests/test_variational.py",
    "tests/test_tempering_devices.py",
    "tests/test_tempering_sample.py",
    "tests/test_mixed.py",
    "tests/test_potts.py",
    "tests/test_lint.py",
    "tests/test_zoo_deep.py",
    "tests/test_lattice_sample.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(_LONGEST_FIRST)}
    # stable: other files, and the tests within a file, keep their order
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture
def no_executable_store(monkeypatch):
    """``fit`` neither reads nor writes stored executables during the test (JAX's cache as set):
    for tests that count what one process traces, whatever an earlier run stored."""
    monkeypatch.setenv("EBM_PPL_NO_CACHE", "1")


@pytest.fixture
def xla_optimized():
    """XLA's default optimizations for one test: long-running chains run faster compiled fully.

    The suite compiles at -O0 (above) because most tests run their programs for milliseconds;
    a test that runs one program for tens of seconds is the opposite case.
    """
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update(
            "jax_disable_most_optimizations",
            os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS", "0") not in ("0", "false", "False"),
        )
