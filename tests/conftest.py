import os

import jax
import pytest

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
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(_LONGEST_FIRST)}
    # stable: other files, and the tests within a file, keep their order
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
