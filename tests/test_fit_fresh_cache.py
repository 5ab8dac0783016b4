"""With the library's own cache settings, a second process compiles nothing: the setup and the
training chunk of a ``fit`` are loaded whole from the executable store (no tracing or lowering),
the inputs the first process checked are not checked (nor the model analysed) again, and the
rest is read from the persistent cache the first one wrote. A changed global of the user's model
module is a new configuration in a new process too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from ebm_ppl.kernels import compile_cache

_MODULE = textwrap.dedent(
    """
    import jax.numpy as jnp, numpyro
    import ebm_ppl as ebm

    SCALE = {scale}

    def gaussian():
        mu = numpyro.param("mu", jnp.zeros(2))
        x = numpyro.sample("x", ebm.Flat(2))
        ebm.energy("E", 0.5 * jnp.sum((x - mu) ** 2))

    def nll(p, b, k):
        return jnp.mean(0.5 * SCALE * jnp.sum((b["x"] - p["mu"]) ** 2, -1)), {{}}
    """
)

_SCRIPT = textwrap.dedent(
    """
    import collections, json, sys
    import jax
    counts = collections.Counter()
    jax.monitoring.register_event_listener(lambda name, **kw: counts.update([name]))
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, duration, **kw: counts.update([name]))
    import numpy as np, optax
    import ebm_ppl as ebm
    from ebm_ppl.objectives import stateless
    sys.path.insert(0, sys.argv[1])
    import user_model

    data = np.full((32, 2), 3.0, np.float32)
    res = ebm.fit(user_model.gaussian, data, objective=stateless(user_model.nll),
                  optimizer=optax.sgd(0.1), num_steps=16, batch_size=8, rng_key=0, log_every=8,
                  progress=False)
    print(json.dumps({"compiles": counts["/jax/core/compile/backend_compile_duration"],
                      "hits": counts["/jax/compilation_cache/cache_hits"],
                      "programs": res.flags["programs"],
                      "mu": np.asarray(res.params["mu"]).tolist()}))
    """
)


def _run(cache_dir, code_dir, scale):
    (code_dir / "user_model.py").write_text(_MODULE.format(scale=scale))
    keep = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE", "EBM_PPL_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(keep)}
    env.update(EBM_PPL_CACHE_DIR=str(cache_dir), TQDM_DISABLE="1", PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(code_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_warm_process_compiles_nothing_and_sees_changed_globals(tmp_path):
    assert compile_cache.MIN_COMPILE_TIME_SECS == 0.0
    cache, code = tmp_path / "cache", tmp_path / "code"
    code.mkdir()
    cold = _run(cache, code, 1.0)
    warm = _run(cache, code, 1.0)
    assert cold["compiles"] >= 10 and cold["hits"] == 0, cold
    assert cold["programs"] == {"setup": "traced", "chunk": "traced"}, cold
    # the setup and the chunk come from the executable store, and the model is not analysed
    # again (the cold process checked these inputs): of the cold process's programs only the
    # seed's conversion to a key is left, read back from JAX's cache (before the store, the
    # warm process ran all 16 again: 12 compiled at a 0.2 s threshold, then 16 cache loads)
    assert warm["programs"] == {"setup": "stored", "chunk": "stored"}, warm
    assert warm["hits"] == warm["compiles"] <= 2, warm
    assert warm["mu"] == cold["mu"]  # the stored programs compute the same bits
    # the loss reads a module global: another value is another program, not the stored one
    changed = _run(cache, code, 2.0)
    assert changed["programs"]["chunk"] == "traced", changed
    # SGD on SCALE * quadratic / 2: mu moves by (1 - (1 - 0.1 SCALE)^16) of the way to 3
    for result, scale in ((cold, 1.0), (changed, 2.0)):
        expected = 3.0 * (1.0 - (1.0 - 0.1 * scale) ** 16)
        assert abs(result["mu"][0] - expected) < 1e-5, (result, expected)
