"""``sample``: run any NumPyro ``MCMCKernel`` on an EBM in jitted chunks and return ``InferenceData``.

NumPyro 0.22's ``MCMC.run`` recompiles on every call and its per-step progress bar costs a
Python dispatch per step. This driver compiles one chunk function per model and configuration
(cached across calls), runs ``kernel.init``/``kernel.sample`` inside ``lax.scan`` and syncs with
the host only between chunks (progress bar, collection).
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
from numpyro import handlers
from numpyro.infer.mcmc import MCMCKernel

from ebm_ppl.diagnostics import to_inference_data
from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.infer.adapter import KernelAdapter, check_finite_starts, content_key
from ebm_ppl.infer.lattice import lattice_kernel_factory
from ebm_ppl.infer.registry import check_kernel_moves, get_kernel_factory
from ebm_ppl.infer.tempering import ParallelTempering, tempered_kernel
from ebm_ppl.kernels import chains as _chains
from ebm_ppl.kernels._random import as_key
from ebm_ppl.kernels.chains import CHAIN_METHODS
from ebm_ppl.kernels.compile_cache import enable_compilation_cache
from ebm_ppl.kernels.resolve import auto_kernel_name

__all__ = ["sample", "CHAIN_METHODS"]

_PARAMS_KWARG = "_ebm_params"
_CHUNK = 100
# Without a progress bar, runs of at least this many steps go in chunks this long: every chunk
# boundary is a host round trip (dispatch, collection), which on a loaded machine costs a
# scheduling delay; the shorter remainder still goes in ``_CHUNK``-step chunks, so only one
# more chunk length is compiled.
_LONG_CHUNK = 1000
# At most this many bytes of draws per long chunk (a multiple of ``_CHUNK`` steps): a chunk's
# draws are written step by step and transposed to chains first, so they are kept near the
# size of a core's L2 cache (a 25 MiB chunk once measured 0.85x as fast as 100-step chunks, a
# difference within the noise of that loaded machine; the bound is the cautious choice).
_CHUNK_BYTES = 4 * 2**20


def _is_param(msg: dict[str, Any]) -> bool:
    return msg["type"] == "param"


def _with_params(model: Callable[..., Any], hide: bool = False) -> Callable[..., Any]:
    """Model taking its parameters as a keyword argument, so they are dynamic inputs.

    ``hide``: the parameter sites are invisible to the handlers around the model. NumPyro's
    ``initialize_model`` substitutes the parameter values of its first trace into the model it
    hands to the potential, which would freeze the values seen at ``init`` (a tracer when the
    parameters are arguments of the compiled chunks); hidden, every step reads ``kwargs``.
    """

    def model_with_params(*args: Any, **kwargs: Any) -> Any:
        params = kwargs.pop(_PARAMS_KWARG)
        if hide:
            with handlers.block(hide_fn=_is_param), handlers.substitute(data=params):
                return model(*args, **kwargs)
        with handlers.substitute(data=params):
            return model(*args, **kwargs)

    model_with_params.__name__ = getattr(model, "__name__", "model")
    return model_with_params


def _kernel_stats(kernel: Any, state: Any) -> dict[str, jax.Array]:
    """ArviZ-named sample stats of one kernel state: exactly the statistics the kernel has.

    A kernel with a ``sample_stats(state)`` method (every ``ebm_ppl`` adapter) gives its own.
    Otherwise the state's fields are renamed to ArviZ's names: NumPyro's ``potential_energy``,
    ``energy`` (the Hamiltonian of HMC-type states), ``accept_prob``, ``diverging``,
    ``adapt_state.step_size`` and ``num_steps``. Composite states: the fields of an
    ``hmc_state`` field (``HMCECS``, ``MixedHMC``) fill in those the outer state lacks; a
    ``numpyro.infer.Gibbs`` state (``HMCGibbs``, ``DiscreteHMCGibbs``, ...) reports the
    statistics of its last block (the one run last in a sweep, so its potential energy is
    evaluated at the state after the sweep), with ``diverging`` true when any block diverged.
    A state with none of these (e.g. ``DiscreteGibbs`` has only ``potential_energy``) gives
    only what it has, possibly nothing.
    """
    own = getattr(kernel, "sample_stats", None)
    if own is not None:
        return own(state)
    fields = getattr(state, "_fields", ())
    if "block_states" in fields and len(state.block_states) > 0:
        blocks = getattr(kernel, "blocks", None) or [(None, None)] * len(state.block_states)
        per_block = [
            _kernel_stats(block_kernel, block_state)
            for (block_kernel, _), block_state in zip(blocks, state.block_states, strict=True)
        ]
        out = dict(per_block[-1])
        flags = [b["diverging"] for b in per_block if "diverging" in b]
        if flags:
            diverging = flags[0]
            for flag in flags[1:]:
                diverging = diverging | flag
            out["diverging"] = diverging
        return out
    out = _state_stats(state, fields)
    if "hmc_state" in fields:
        inner = _kernel_stats(getattr(kernel, "inner_kernel", None), state.hmc_state)
        for name, value in inner.items():
            out.setdefault(name, value)
    return out


def _state_stats(state: Any, fields: tuple[str, ...]) -> dict[str, jax.Array]:
    out: dict[str, jax.Array] = {}
    if "potential_energy" in fields:
        out["potential_energy"] = state.potential_energy
    if "energy" in fields and "r" in fields:  # the Hamiltonian, only for HMC-type states
        out["energy"] = state.energy
    for src in ("accept_prob", "acceptance_rate"):
        if src in fields:
            out["acceptance_rate"] = getattr(state, src)
            break
    for src in ("diverging", "is_divergent"):
        if src in fields:
            out["diverging"] = getattr(state, src)
            break
    if "adapt_state" in fields and hasattr(state.adapt_state, "step_size"):
        out["step_size"] = state.adapt_state.step_size
    elif "step_size" in fields:
        out["step_size"] = state.step_size
    if "num_steps" in fields:
        out["n_steps"] = state.num_steps
    return out


class _Runner(NamedTuple):
    """Compiled pieces for one (model, kernel, configuration); chunk functions by length."""

    kernel: Any
    init: Callable[..., Any]
    steps_one: Callable[..., Any]
    draws_one: Callable[..., Any]
    warmup: dict[Any, Callable[..., Any]]
    draw: dict[Any, Callable[..., Any]]


_CACHE: OrderedDict[Any, _Runner] = OrderedDict()
_CACHE_SIZE = 32  # compiled configurations kept (least recently used dropped)


# Chain placement (vmap / lax.map / jit(shard_map(vmap)) over devices, processes) lives in
# ebm_ppl.kernels.chains, shared with PCD chains and AIS.
_map_chains = _chains.map_chains


def _build_runner(
    kernel: Any,
    num_warmup: int,
    chain_method: str,
    devices: tuple[Any, ...],
    model_args: tuple[Any, ...],
    model_kwargs: dict[str, Any],
    has_init: bool,
    dynamic_params: bool = False,
) -> _Runner:
    # ebm_ppl's own kernels rebuild their potential inside ``sample`` from the model arguments,
    # so the parameters are a dynamic argument ``dyn`` of every chunk: a new value reuses the
    # compiled chunks. Otherwise (NumPyro's HMC/NUTS store closures built at ``init``, the
    # step-size search inside their warmup adapter, that would capture tracers of the init
    # computation) the parameters are compile-time constants of the chunk functions.
    def args_of(dyn):
        if dynamic_params:
            return model_args, {**model_kwargs, _PARAMS_KWARG: dyn}
        return model_args, model_kwargs

    def init_one(key, z0, dyn):
        model_args, model_kwargs = args_of(dyn)
        return kernel.init(key, num_warmup, z0 if has_init else None, model_args, model_kwargs)

    def stats_fn(state: Any) -> dict[str, jax.Array]:
        return _kernel_stats(kernel, state)

    def steps_one(state, dyn, n):
        model_args, model_kwargs = args_of(dyn)

        def body(s, _):
            return kernel.sample(s, model_args, model_kwargs), None

        state, _ = jax.lax.scan(body, state, None, length=n)
        return state

    def draws_one(state, dyn, n, thinning):
        model_args, model_kwargs = args_of(dyn)
        post = kernel.postprocess_fn(model_args, model_kwargs)
        field = kernel.sample_field

        def body(s, _):
            if thinning == 1:  # no inner loop: the step fuses with the collection of its draw
                s = kernel.sample(s, model_args, model_kwargs)
            else:
                s = jax.lax.fori_loop(
                    0, thinning, lambda _, x: kernel.sample(x, model_args, model_kwargs), s
                )
            values = post(getattr(s, field))
            return s, (values, stats_fn(s))

        return jax.lax.scan(body, state, None, length=n)

    init = _map_chains(init_one, chain_method, devices, (0, 0 if has_init else None, None))
    return _Runner(kernel, init, steps_one, draws_one, {}, {})


_DYNAMIC_PARAMS: dict[Any, bool] = {}


def _takes_dynamic_params(factory: Callable[..., Any], run_model: Callable[..., Any]) -> bool:
    """Whether ``factory`` builds an ``ebm_ppl`` adapter (its potential is rebuilt from the
    model arguments at every step, so parameters can be traced arguments of the chunks)."""
    known = _DYNAMIC_PARAMS.get(factory)
    if known is None:
        known = _DYNAMIC_PARAMS[factory] = isinstance(factory(run_model, {}), KernelAdapter)
    return known


def _select_kernel(kernel: str, plan: Any) -> str:
    """The registered kernel ``sample`` runs for ``kernel`` (a name or ``"auto"``) on ``plan``.

    ``"auto"``: NUTS on all-continuous models, block Gibbs on binary ones and the composite
    adapter on mixed ones (:func:`ebm_ppl.kernels.resolve.auto_kernel_name`, which also refuses
    sites no kernel moves). A named kernel is checked against every state site.
    """
    name = kernel.lower()
    if name != "auto":
        get_kernel_factory(name)  # an unknown name lists the known ones
        check_kernel_moves(name, plan)
        return name
    name = auto_kernel_name(plan, purpose="sample")
    if plan.continuous_sites and plan.discrete_sites:
        # One Gibbs sweep over binary sites and Gaussian blocks, or blocks of several
        # kernels: the composite adapter runs both (and moves a declared real block that is
        # not conditionally Gaussian with MALA).
        name = "composite"
    return name


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def sample(
    model: Callable[..., Any] | EnergyModel,
    *,
    params: Mapping[str, Any] | None = None,
    kernel: str | MCMCKernel = "auto",
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 1000,
    thinning: int = 1,
    chain_method: str = "auto",
    devices: int | Any | None = None,
    init_values: Mapping[str, Any] | None = None,
    init_strategy: Callable[..., Any] | None = None,
    init_state: Any = None,
    return_state: bool = False,
    rng_key: jax.Array | int | None = None,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
    init_params: Mapping[str, Any] | None = None,
    tempering: Any = None,
) -> Any:
    """Sample the state of an energy model with MCMC; return ``arviz.InferenceData``.

    Chains run inside jitted ``lax.scan`` chunks; the compiled chunk is cached per model, kernel
    and configuration, so calling ``sample`` again with the same shapes does not recompile.
    With ``ebm_ppl``'s own kernels (MALA, ULA, SGLD, Gibbs, GWG, composite) the parameters are
    dynamic arguments of the chunks: new parameter values of the same shapes reuse them too.
    NumPyro's NUTS/HMC compile the parameters in as constants (their warmup adapter keeps
    closures built at ``init``), so a new value compiles again. Compiled programs are also kept
    on disk across processes (:func:`ebm_ppl.kernels.compile_cache.enable_compilation_cache`).
    Per-chain keys are ``jax.random.split(rng_key, num_chains)`` and adaptation is per chain,
    so a chain computes the same thing wherever it runs: draws equal bit for bit across
    ``chain_method``/``devices`` when XLA vectorizes the per-device blocks alike (e.g. blocks of
    64 vs 256 chains), else up to float rounding (``docs/scaling.md``).

    Args:
        model: NumPyro EBM program, or an :class:`~ebm_ppl.EnergyModel` (its bound arguments
            are used; then ``model_args``/``model_kwargs`` must be empty).
        params: model parameters (``numpyro.param`` values, constrained; a
            ``numpyro.contrib.module`` network's entry is its parameter pytree), checked against
            the model before anything compiles (every site, shapes, finite values, constraints);
            ``None`` uses the model's own initial values (``EnergyModel.init_params(PRNGKey(0))``).
        kernel: ``"auto"`` (default: NUTS on all-continuous models, block Gibbs on binary ones,
            :class:`~ebm_ppl.infer.composite.Composite` on mixed ones), a name (``"nuts"``,
            ``"hmc"``, and every registered kernel, e.g. ``"mala"``, ``"gibbs"``, ``"gwg"``,
            ``"composite"``) or a ``numpyro.infer.mcmc.MCMCKernel`` instance (then ``params``
            must be given to the kernel itself). A named kernel that cannot move a state site
            (e.g. ``"mala"`` on a ``Spins`` site) is a ``ValueError`` naming the site and the
            kernels that can.
        num_chains: number of chains (>= 1).
        num_warmup: adaptation steps per chain, discarded (>= 0).
        num_samples: draws kept per chain (>= 1).
        thinning: keep every ``thinning``-th step (>= 1).
        chain_method: ``"auto"`` (``"sharded"`` with several devices, else ``"vectorized"``),
            ``"vectorized"`` (vmap), ``"sequential"`` (one chain after another),
            ``"parallel"`` (one chain per device) or ``"sharded"`` (many vectorized chains per
            device; a chain count the device count does not divide is padded, see
            :func:`ebm_ppl.kernels.chains.map_chains`). Under ``jax.distributed.initialize``
            every process runs its block of the chains on its own devices and all processes
            receive all chains (:func:`ebm_ppl.kernels.chains.gather_chains`).
        devices: devices for the chains: ``None`` (all local devices), an int ``n`` (the
            first ``n``) or a sequence of local ``jax.Device``.
        init_values: dict state site -> array ``(num_chains, *site_shape)`` of constrained
            initial values of the chains (the model's parameters are ``params``).
        init_strategy: a NumPyro init strategy (e.g. ``numpyro.infer.init_to_median``) used to
            draw initial values when ``init_values`` is not given.
        init_state: a kernel state returned by an earlier call (``return_state=True``); the
            chains continue from it without warmup.
        return_state: also return the last kernel state (batched over chains).
        rng_key: PRNG key or int seed; ``None`` means ``jax.random.PRNGKey(0)``.
        model_args, model_kwargs: arguments of ``model``.
        progress: show a progress bar (updated once per chunk).
        init_params: deprecated name of ``init_values`` (a ``DeprecationWarning``; removed in
            the next release). In :func:`ebm_ppl.fit`, ``init_params`` are model parameters.
        tempering: ``None``, or non-reversible parallel tempering around the kernel: an int
            (the number of temperatures) or a dict of
            :class:`~ebm_ppl.infer.tempering.ParallelTempering` options (``num_temperatures``,
            ``reference`` for ``Flat`` sites, ``swap``, ...); ``kernel="auto"`` tempers MALA
            on continuous models. The draws are the ``β = 1`` replica's; ``sample_stats``
            add ``beta``, ``swap_acceptance``, ``replica``, ``round_trips``, ``energy_gap``
            (``docs/tempering.md``).

    Every chain starts where the energy is finite: drawn starts are redrawn (up to
    :data:`ebm_ppl.infer.adapter.MAX_INIT_TRIES` draws per chain), and a chain that still has
    none, or ``init_values`` with a non-finite energy, is a ``ValueError`` naming the chains.

    Returns:
        ``arviz.InferenceData`` with ``posterior`` (every state site, shape
        ``(chain, draw, *site_shape)``) and, when the kernel has any, ``sample_stats``: exactly
        the statistics the kernel has, in ArviZ's names. The ``ebm_ppl`` kernels report
        ``potential_energy`` (= E(x) on the unconstrained space; SGLD: its minibatch estimate),
        ``acceptance_rate``, ``diverging`` and ``step_size`` (Gibbs sweeps have none); NUTS/HMC
        also ``energy`` (the Hamiltonian) and ``n_steps``; another NumPyro kernel what its
        state carries (``DiscreteGibbs``: ``potential_energy`` only; ``HMCGibbs`` and other
        ``numpyro.infer.Gibbs`` composites: the statistics of their last block, ``diverging``
        from every block). With a ``device`` coordinate per chain and timings in
        ``posterior.attrs``; and the last state if ``return_state``.

    Raises:
        ValueError, TypeError: for bad arguments, before anything is compiled; ``ValueError``
            for a chain without a start of finite energy, after the initialization.

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gaussian():
        ...     x = numpyro.sample("x", ebm.Flat((2,)))
        ...     ebm.energy("E", 0.5 * jnp.sum(x**2))
        >>> idata = ebm.sample(gaussian, num_chains=2, num_warmup=100, num_samples=100, progress=False)
        >>> idata.posterior["x"].shape
        (2, 100, 2)
    """
    enable_compilation_cache()  # persistent across processes (EBM_PPL_NO_CACHE=1 opts out)
    # ---------------------------------------------------------------- validation (no compilation)
    if init_params is not None:
        warnings.warn(
            "sample(init_params=...) is deprecated and will be removed in the next release; use "
            "init_values= (initial values of the chains; params= holds the model's parameters)",
            DeprecationWarning,
            stacklevel=2,
        )
        if init_values is not None:
            raise ValueError("give init_values, not both init_values and init_params")
        init_values = init_params
    rng_key = as_key(rng_key, default=0)
    num_chains = _check_int("num_chains", num_chains, 1)
    num_warmup = _check_int("num_warmup", num_warmup, 0)
    num_samples = _check_int("num_samples", num_samples, 1)
    thinning = _check_int("thinning", thinning, 1)
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {CHAIN_METHODS}, got {chain_method!r}")
    _chains.resolve_devices(devices)  # argument errors before anything else
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise TypeError(f"model_kwargs must be a dict, got {type(model_kwargs).__name__}")
    model_kwargs = dict(model_kwargs or {})
    model_args = tuple(model_args)
    if isinstance(model, EnergyModel):
        if model_args or model_kwargs:
            raise ValueError("model_args/model_kwargs must be empty when model is an EnergyModel")
        em = model
        model_fn, model_args, model_kwargs = em.model, em.args, dict(em.kwargs)
    elif callable(model):
        model_fn = model
        em = EnergyModel(model_fn, *model_args, **model_kwargs)
    else:
        raise TypeError(
            f"model must be a NumPyro model or an EnergyModel, got {type(model).__name__}"
        )
    if _PARAMS_KWARG in model_kwargs:
        raise ValueError(f"model_kwargs must not contain the reserved key {_PARAMS_KWARG!r}")

    user_kernel = isinstance(kernel, MCMCKernel)
    if not user_kernel:
        if not isinstance(kernel, str):
            raise TypeError(f"kernel must be a name or an MCMCKernel, got {type(kernel).__name__}")
        kernel_name = _select_kernel(kernel, em.plan)
        if tempering is not None:
            kernel_name, tempering = tempered_kernel(kernel, kernel_name, em.plan, tempering)
        factory = get_kernel_factory(kernel_name)
        if params is None:
            params = em.init_params(jax.random.PRNGKey(0))
        # Keys, shapes, module structure, finiteness and constraints, before anything compiles
        # (NaN parameters would otherwise give chains that never move); module parameters
        # (numpyro.contrib.module) stay pytrees.
        params = em.plan.validate_params(params)
        # A site that declares its lattice: "gibbs" runs the compact heat bath, and
        # "swendsen_wang" the cluster kernel; the declaration is checked here, on concrete values.
        factory = lattice_kernel_factory(kernel_name, em, params, tempering=tempering) or factory
    else:
        if params is not None:
            raise ValueError(
                "params must be None when kernel is an MCMCKernel: give it to the kernel"
            )
        kernel_name = type(kernel).__name__
        if tempering is not None:
            raise ValueError(
                "tempering wraps a named kernel; wrap an MCMCKernel in "
                "ebm_ppl.infer.ParallelTempering yourself"
            )
    placement = _chains.place_chains(num_chains, chain_method, devices)
    chain_method, devices = placement.chain_method, placement.devices

    z_init = None
    if init_values is not None:
        if init_state is not None:
            raise ValueError("give init_values or init_state, not both")
        if not isinstance(init_values, Mapping):
            raise TypeError(
                f"init_values must be a dict site -> array, got {type(init_values).__name__}"
            )
        for name, value in init_values.items():
            want = (num_chains, *em.plan[name].shape) if name in em.state_sites else None
            if want is not None and np.shape(value) != want:
                raise ValueError(
                    f"init_values[{name!r}] must have shape {want} (num_chains first), "
                    f"got {np.shape(value)}"
                )
        # Against the plan, on the host: unknown or missing sites, dtypes, values outside a
        # discrete support or a constraint, non-finite values.
        z_init = em.plan.validate_values(
            init_values,
            argument="init_values",
            batch_ndim=1,
            required=em.state_sites,
            allow_data=False,
        )
        z_init = em.unconstrain(z_init)
    elif init_strategy is not None and init_state is None:
        z_init = _strategy_init(
            model_fn,
            params if not user_kernel else {},
            init_strategy,
            rng_key,
            num_chains,
            model_args,
            model_kwargs,
            em,
        )

    # ---------------------------------------------------------------- compile (cached) and run
    call_kwargs = dict(model_kwargs)
    if user_kernel:
        kernel_obj_key: Any = ("instance", id(kernel))
        run_model = model_fn
    else:
        kernel_obj_key = ("name", kernel_name)
        if tempering is not None:
            kernel_obj_key = (*kernel_obj_key, "tempering", content_key(tempering))
        run_model = _with_params(model_fn)
    dynamic: Any = []
    dynamic_params = not user_kernel and _takes_dynamic_params(factory, run_model)
    if dynamic_params:
        run_model = _with_params(model_fn, hide=True)
        dynamic = jax.tree.map(jax.numpy.asarray, params)
        params_key: Any = jax.tree.map(lambda x: (x.shape, str(x.dtype)), dynamic)
    elif not user_kernel:
        call_kwargs[_PARAMS_KWARG] = params
        params_key = None
    else:
        params_key = None
    has_init = z_init is not None
    cache_key = (
        model_fn,
        kernel_obj_key,
        num_warmup,
        chain_method,
        tuple(str(d) for d in devices),
        content_key((model_args, call_kwargs, params_key)),
        has_init,
    )

    def make():
        k = kernel if user_kernel else factory(run_model, {})
        if tempering is not None:
            k = ParallelTempering(k, **tempering)
        return _build_runner(
            k,
            num_warmup,
            chain_method,
            devices,
            model_args,
            call_kwargs,
            has_init,
            dynamic_params,
        )

    runner = _CACHE.get(cache_key)
    if runner is None or (user_kernel and runner.kernel is not kernel):
        runner = _CACHE[cache_key] = make()
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(cache_key)

    t0 = time.perf_counter()
    # Global per-chain keys, then this process's block (all of them in a single process).
    keys = _chains.local_chains(jax.random.split(rng_key, num_chains), placement)
    z_init = _chains.local_chains(z_init, placement)
    if init_state is None:
        state = runner.init(keys, z_init, dynamic)
    else:
        # The kernel's closures are set by ``init``; trace it once without running it.
        jax.eval_shape(runner.init, keys, z_init, dynamic)
        state = init_state
        num_warmup = 0
    state = jax.block_until_ready(state)
    if init_state is None:
        # every chain must start where the energy is finite (drawn starts were redrawn already)
        energy = _kernel_stats(runner.kernel, state).get("potential_energy")
        if energy is not None:
            source = "init_values" if init_values is not None else None
            check_finite_starts(jax.device_get(energy), source, placement.start)
    t_init = time.perf_counter() - t0

    bar = _progress(progress, num_warmup + num_samples * thinning, kernel_name)
    long_chunk = _CHUNK if bar else _LONG_CHUNK
    t_compile = 0.0
    t0 = time.perf_counter()
    remaining = num_warmup
    while remaining > 0:
        n = long_chunk if remaining >= long_chunk else min(_CHUNK, remaining)
        fn = runner.warmup.get(n)
        if fn is None:
            fn = runner.warmup[n] = _map_chains(
                lambda s, d, n=n: runner.steps_one(s, d, n), chain_method, devices, (0, None)
            )
            tc = time.perf_counter()
            state = jax.block_until_ready(fn(state, dynamic))
            t_compile += time.perf_counter() - tc
        else:
            state = fn(state, dynamic)
        remaining -= n
        bar.update(n) if bar else None
    state = jax.block_until_ready(state)
    t_warmup = time.perf_counter() - t0 - t_compile
    t_compile_warmup = t_compile

    chunks_v: list[Any] = []
    chunks_s: list[Any] = []
    t0 = time.perf_counter()
    remaining = num_samples
    draw_per_chunk = max(1, _CHUNK // thinning)
    # bytes of one draw of all local chains (the sample field, and 8 per chain for statistics)
    draw_bytes = sum(
        int(np.prod(np.shape(x))) * np.dtype(getattr(x, "dtype", np.float64)).itemsize
        for x in jax.tree.leaves(getattr(state, runner.kernel.sample_field))
    ) + 8 * len(keys)
    fit = min(long_chunk // thinning, _CHUNK_BYTES // draw_bytes)
    long_draws = max(draw_per_chunk, fit // draw_per_chunk * draw_per_chunk)
    pending: Any = None
    while remaining > 0:
        n = long_draws if remaining >= long_draws else min(draw_per_chunk, remaining)
        fn = runner.draw.get((n, thinning))
        if fn is None:
            fn = runner.draw[(n, thinning)] = _map_chains(
                lambda s, d, n=n: runner.draws_one(s, d, n, thinning),
                chain_method,
                devices,
                (0, None),
            )
            tc = time.perf_counter()
            state, (values, stats) = jax.block_until_ready(fn(state, dynamic))
            t_compile += time.perf_counter() - tc
        else:
            state, (values, stats) = fn(state, dynamic)
        # Fetch the previous chunk's draws after this chunk is enqueued, so the device is not
        # idle while the host copies (one chunk of draws waits on the device at a time).
        if pending is not None:
            chunks_v.append(jax.device_get(pending[0]))
            chunks_s.append(jax.device_get(pending[1]))
        pending = (values, stats)
        remaining -= n
        bar.update(n * thinning) if bar else None
    if pending is not None:
        chunks_v.append(jax.device_get(pending[0]))
        chunks_s.append(jax.device_get(pending[1]))
    t_sample = time.perf_counter() - t0 - (t_compile - t_compile_warmup)
    if bar:
        bar.close()

    def join(chunks: list[Any]) -> dict[str, Any]:
        if len(chunks) == 1:  # no copy of a single chunk's draws
            return dict(chunks[0])
        return {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}

    posterior, stats_np = join(chunks_v), join(chunks_s)
    posterior, stats_np = _chains.gather_chains((posterior, stats_np), placement)
    chain_devices = _chains.chain_device_labels(placement)
    attrs = {
        "kernel": kernel_name,
        "chain_method": chain_method,
        "num_devices": len(devices) * placement.process_count,
        "num_processes": placement.process_count,
        "num_warmup": num_warmup,
        "thinning": thinning,
        "init_time": t_init,
        "warmup_time": t_warmup,
        "sampling_time": t_sample,
        # first call of each newly compiled chunk function (compilation plus one chunk)
        "compile_time": t_compile,
    }
    idata = to_inference_data(posterior, stats_np, attrs=attrs, chain_devices=chain_devices)
    return (idata, state) if return_state else idata


def _strategy_init(
    model_fn, params, init_strategy, rng_key, num_chains, model_args, model_kwargs, em
):
    from numpyro.infer.util import initialize_model

    rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    keys = jax.random.split(jax.random.fold_in(rng_key, 1), num_chains)
    model = handlers.substitute(model_fn, data=dict(params)) if params else model_fn
    try:
        # redraws each chain's start until the potential is finite (NumPyro's 100 tries)
        info = initialize_model(
            keys,
            model,
            init_strategy=init_strategy,
            model_args=model_args,
            model_kwargs=model_kwargs,
        )
    except RuntimeError as err:
        raise ValueError(
            f"init_strategy found no start with a finite energy for some of the {num_chains} "
            f"chains ({err}); give init_values where the energy is finite, or check the model"
        ) from err
    z = info.param_info.z
    return {k: z[k] for k in em.state_sites if k in z}


class _Bar:
    def __init__(self, total: int, desc: str):
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, leave=False)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def _progress(progress: bool, total: int, desc: str) -> _Bar | None:
    return _Bar(total, desc) if progress else None
