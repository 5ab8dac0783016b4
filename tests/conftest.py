import os

import jax
import pytest

# Shared fixtures and settings for the whole suite. Tests that need float64 enable it locally
# with ``jax.experimental.enable_x64()``.
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
