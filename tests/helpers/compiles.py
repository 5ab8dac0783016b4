"""Count JAX compilations: assert that bad input is refused before anything compiles.

JAX reports every lowering and compilation through ``jax.monitoring`` duration events
(``/jax/core/compile/jaxpr_trace_duration``, ``.../jaxpr_to_mlir_module_duration``,
``.../backend_compile_duration``). :func:`count_compilations` records them while its block runs;
:func:`no_compilation` fails if there are any.

Eager operations compile a small program the first time they meet new shapes, and ``jit``
caches what it compiled: warm a model up (build its ``EnergyModel``, draw its parameters) before
the block, so that only work the call under test starts on its own is counted.

Example::

    em = ebm.EnergyModel(model)              # warm-up: eager ops of the prototype trace
    with no_compilation():
        with pytest.raises(ValueError, match="params"):
            ebm.sample(model, params={"a": jnp.nan})
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax.monitoring

__all__ = ["CompileCounter", "count_compilations", "no_compilation"]

_PREFIX = "/jax/core/compile/"


class CompileCounter:
    """Compilation events seen while a :func:`count_compilations` block runs.

    Attributes:
        events: names of the events, in order (``/jax/core/compile/...``).
    """

    def __init__(self) -> None:
        self.events: list[str] = []

    def _listener(self, event: str, duration: float, **kwargs: object) -> None:
        del duration, kwargs
        if event.startswith(_PREFIX):
            self.events.append(event)

    @property
    def traced(self) -> int:
        """Functions traced to a jaxpr for lowering (each ``jit`` cache miss, eager or not)."""
        return self.events.count(_PREFIX + "jaxpr_trace_duration")

    @property
    def compiled(self) -> int:
        """Programs compiled by the backend (XLA)."""
        return self.events.count(_PREFIX + "backend_compile_duration")

    def __len__(self) -> int:
        return len(self.events)


@contextlib.contextmanager
def count_compilations() -> Iterator[CompileCounter]:
    """Record JAX's compilation events while the block runs.

    Yields:
        a :class:`CompileCounter`, filled as the block runs.
    """
    counter = CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(counter._listener)
    try:
        yield counter
    finally:
        jax.monitoring.unregister_event_duration_listener(counter._listener)


@contextlib.contextmanager
def no_compilation() -> Iterator[CompileCounter]:
    """Fail (``AssertionError``) if anything is traced for compilation or compiled in the block.

    An exception raised inside the block propagates unchanged (so ``pytest.raises`` around or
    inside the block works); the check runs when the block exits, whichever way it exits.
    """
    with count_compilations() as counter:
        try:
            yield counter
        finally:
            if len(counter):
                raise AssertionError(
                    f"JAX compiled during the block: {counter.traced} trace(s), "
                    f"{counter.compiled} backend compilation(s)"
                )
