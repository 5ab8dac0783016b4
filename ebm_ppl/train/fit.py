"""``fit``: the training loop for energy models, in jitted ``lax.scan`` chunks, resumable."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import os
import threading
import time
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebm_ppl.energy.binding import bind_data
from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.energy.plan import as_param_array
from ebm_ppl.kernels import _random
from ebm_ppl.kernels.compile_cache import (
    compile_lowered,
    discard_executable,
    enable_compilation_cache,
    load_executable,
    load_record,
    save_executable,
    save_record,
    store_name,
)
from ebm_ppl.objectives.base import Objective
from ebm_ppl.train.checkpoint import (
    _LIBRARY_PACKAGES,
    fingerprint,
    latest_checkpoint,
    prepare_directory,
    remove_temporaries,
    save_checkpoint,
)
from ebm_ppl.train.history import History

__all__ = ["FitResult", "bind_data", "fit", "resolve_objective"]

#: objective names accepted by ``fit(objective="...")`` and the CLI: name -> (module, class).
OBJECTIVE_NAMES: dict[str, tuple[str, str]] = {
    "cd": ("ebm_ppl.objectives.contrastive", "ContrastiveDivergence"),
    "pcd": ("ebm_ppl.objectives.contrastive", "PersistentContrastiveDivergence"),
    "replay": ("ebm_ppl.objectives.contrastive", "ReplayBuffer"),
    "nce": ("ebm_ppl.objectives.nce", "NCE"),
    "fce": ("ebm_ppl.objectives.nce", "FlowContrastiveEstimation"),
    "sm": ("ebm_ppl.objectives.score_matching", "ScoreMatching"),
    "ssm": ("ebm_ppl.objectives.score_matching", "SlicedScoreMatching"),
    "dsm": ("ebm_ppl.objectives.score_matching", "DenoisingScoreMatching"),
}


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
        params: trained parameters (dict site -> array, or a module's parameter pytree), on
            their constrained space; after a non-finite update, the last finite ones.
        obj_state: the objective's state (persistent chains, replay buffer, ...).
        history: :class:`~ebm_ppl.train.history.History` of per-update loss and metrics.
        flags: dict with ``"nonfinite"`` (bool), ``"nonfinite_step"`` (int or None: the update
            whose loss or parameters were not finite), ``"stopped_by_callback"`` (bool),
            ``"resumed_from"`` (step of the checkpoint resumed from, or None), ``"step"``
            (number of updates done), ``"model_fingerprint"`` (of the model and its
            arguments, checked when a saved result is loaded) and ``"programs"`` (where the
            compiled setup and training chunk came from: ``"traced"`` and compiled, reused in
            this ``"process"``, ``"stored"`` by an earlier process and loaded whole, or
            ``"eager"`` for a setup that needs concrete values).

    Examples:
        >>> r = FitResult({"w": 1.0}, (), History(), {"nonfinite": False})
        >>> r.flags["nonfinite"]
        False
    """

    params: dict[str, Any]
    obj_state: Any
    history: History
    flags: dict[str, Any]


# ---------------------------------------------------------------------------------- validation
#: Seconds between checkpoints when ``checkpoint_every`` is not given (at chunk ends).
_CHECKPOINT_SECONDS = 60.0

#: Most shuffle indices ``fit`` draws up front for one compiled chunk (16 MiB of int32).
_MAX_PRESHUFFLED = 1 << 22


#: The compiled setups and chunks of the most recent configurations, by :func:`_program` key
#: (see :func:`_structure_key`): a later ``fit`` of the same configuration in the process reuses
#: them instead of tracing; a new process loads them from the executable store.
_COMPILED: OrderedDict[str, Any] = OrderedDict()
_COMPILED_MAX = 32
_COMPILED_LOCK = threading.Lock()

#: Top-level packages whose functions' globals are not followed by :func:`_user_globals`.
_LIBRARIES = _LIBRARY_PACKAGES


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _user_globals(roots: Sequence[Any], limit: int = 4096) -> list[Any]:
    """The module globals (values, and functions with their code) that user code reads.

    A compiled program bakes in what the model, objective and optimizer functions read from
    their modules' globals; a fingerprint of the functions' code and closures alone would not
    see such a global change between two fits (``T = 2.0`` then ``T = 3.0`` in a notebook).
    Functions of the libraries themselves are followed through their closures only.
    """
    out: list[Any] = []
    seen: set[int] = set()
    stack = list(roots)
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float)):
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            stack.extend(obj)
            continue
        if isinstance(obj, Mapping):
            stack.extend(obj.values())
            continue
        if isinstance(obj, functools.partial):
            stack.extend((obj.func, obj.args, obj.keywords))
            continue
        if isinstance(obj, types.MethodType):
            stack.extend((obj.__func__, obj.__self__))
            continue
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            stack.extend(getattr(obj, f.name, None) for f in dataclasses.fields(obj))
            continue
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None and not isinstance(obj, types.FunctionType):
            stack.append(wrapped)
            continue
        if not isinstance(obj, types.FunctionType):
            # a user object's methods and attributes (a class defined outside the libraries)
            cls = obj if isinstance(obj, type) else type(obj)
            if (getattr(cls, "__module__", "") or "").split(".")[0] not in _LIBRARIES:
                for klass in cls.__mro__[:-1]:
                    stack.extend(v for k, v in vars(klass).items() if not k.startswith("__"))
                if not isinstance(obj, type):
                    stack.extend(getattr(obj, "__dict__", {}).values())
            continue
        for cell in obj.__closure__ or ():
            try:
                stack.append(cell.cell_contents)
            except ValueError:  # empty cell
                pass
        if (obj.__module__ or "").split(".")[0] in _LIBRARIES:
            continue
        names = sorted(_code_names(obj.__code__))
        for name in names:
            if name not in obj.__globals__:
                continue
            value = obj.__globals__[name]
            if isinstance(value, types.ModuleType):
                # a user module's attributes read by name (``config.SCALE``)
                if value.__name__.split(".")[0] not in _LIBRARIES:
                    for attr in names:
                        if attr in vars(value) and not isinstance(
                            vars(value)[attr], types.ModuleType
                        ):
                            out.append((value.__name__, attr, vars(value)[attr]))
                            stack.append(vars(value)[attr])
                continue
            if isinstance(value, type):
                stack.append(value)  # its methods may read globals too
                continue
            out.append((obj.__module__, name, value))
            stack.append(value)
    return out


def _structure_key(fingerprints: Mapping[str, str], *roots: Any, **settings: Any) -> str | None:
    """What a compiled setup and chunk of ``fit`` depend on, or ``None`` if not fingerprintable.

    The model, its arguments, the objective, the optimizer and the data (values: objectives
    may fold statistics of the data into their programs), the globals their code reads, and
    the settings given; not the key or the initial parameters, which are arguments of the
    compiled programs.
    """
    try:
        # strict: the methods of user classes count (a class redefined in a notebook cell), and
        # anything the fingerprint cannot describe means no reuse rather than a guess
        extra = fingerprint((roots, _user_globals(roots), sorted(settings.items())), strict=True)
    except Exception:  # noqa: BLE001  (unhashable configuration: compile afresh)
        return None
    return ":".join([fingerprints["data"], extra])


def _types_key(args: Any) -> str:
    """The structure, shapes and dtypes (weak types included) of a compiled program's arguments."""
    leaves, treedef = jax.tree.flatten(args)
    return repr((str(treedef), [str(jax.typeof(x)) for x in leaves]))


def _named(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` under the name it is traced and stored with (see ``compile_cache.store_name``)."""
    fn.__name__ = fn.__qualname__ = store_name(name)
    return fn


def _program(
    name: str, structure: str | None, args: Any, static: Any, lower: Callable[[], Any]
) -> tuple[Any, str]:
    """A compiled program of ``fit`` and where it came from.

    Looked up, in order, in this process (``"process"``), in the executable store written by an
    earlier process (``"stored"``: no tracing, lowering or compilation), else ``lower()`` is
    compiled (``"traced"``) and stored. ``structure`` (see :func:`_structure_key`), the static
    arguments and the argument types make the key; ``None`` (a configuration that cannot be
    fingerprinted) compiles afresh every time.
    """
    if structure is None:
        return lower().compile(), "traced"
    key = f"fit.{name}:{structure}:{static!r}:{_types_key(args)}"
    with _COMPILED_LOCK:
        exe = _COMPILED.get(key)
        if exe is not None:
            _COMPILED.move_to_end(key)
            return exe, "process"
    exe = load_executable(key)
    origin = "stored"
    if exe is None:
        exe, storable = compile_lowered(lower())
        if storable:
            save_executable(key, exe)
        origin = "traced"
    else:
        exe = _checked_first_call(exe, key, lower)
    with _COMPILED_LOCK:  # fits may run in several threads
        _COMPILED[key] = exe
        while len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    return exe, origin


def _checked_first_call(exe: Any, key: str, lower: Callable[[], Any]) -> Callable[..., Any]:
    """A stored executable that, if its first call fails in XLA's runtime, is compiled afresh.

    A stored file that deserializes but cannot run (an XLA runtime error, e.g. a kernel
    missing from it) is replaced rather than failing the fit; errors of the computation itself
    recur in the fresh executable and are raised from it.
    """
    state: dict[str, Any] = {"exe": exe, "checked": False}

    def call(*args: Any) -> Any:
        if state["checked"]:
            return state["exe"](*args)
        try:
            out = jax.block_until_ready(state["exe"](*args))
        except jax.errors.JaxRuntimeError:
            fresh_exe, storable = compile_lowered(lower())
            if not (storable and save_executable(key, fresh_exe)):
                discard_executable(key)
            state["exe"] = fresh_exe
            out = fresh_exe(*args)
        state["checked"] = True
        return out

    return call


def _checked_param(value: Any) -> Any:
    """An initial parameter as ``SitePlan.validate_params`` returns it (module pytrees as given)."""
    numeric = isinstance(value, (jax.Array, np.ndarray, np.generic, float, int))
    return as_param_array(value) if numeric else value


def _input_record(
    data: Any, bound: Mapping[str, Any], checked_init: Any, data_fingerprint: str
) -> dict[str, Any]:
    """What :func:`_recorded_inputs` needs to bind the same inputs again without the model."""
    return {
        "array_site": None if isinstance(data, Mapping) else next(iter(bound)),
        "sites": list(bound),
        "data": data_fingerprint,
        "init": None if checked_init is None else list(checked_init),
        "init_types": _types_key(checked_init),
    }


def _recorded_inputs(
    record: Any, data: Any, init_params: Any, batch_size: int
) -> tuple[dict[str, np.ndarray], Any, str] | None:
    """``(bound data, checked initial parameters, data fingerprint)`` as an earlier fit made
    them from the same inputs (``record``), or ``None`` where anything differs."""
    if not isinstance(record, dict):
        return None
    try:
        dtype = jnp.result_type(float)
        if record["array_site"] is not None:
            if isinstance(data, Mapping):
                return None
            bound = {record["array_site"]: np.asarray(data).astype(dtype)}
        else:
            if not isinstance(data, Mapping) or list(data) != record["sites"]:
                return None
            bound = {n: np.asarray(v).astype(dtype) for n, v in data.items()}
        data_fingerprint = fingerprint((sorted(bound.items()), batch_size))
        if data_fingerprint != record["data"]:
            return None
        checked = None
        if init_params is not None:
            if not isinstance(init_params, Mapping) or list(init_params) != record["init"]:
                return None
            checked = {n: _checked_param(v) for n, v in init_params.items()}
        if _types_key(checked) != record["init_types"]:
            return None
    except Exception:  # noqa: BLE001  (inputs that do not convert: checked afresh)
        return None
    return bound, checked, data_fingerprint


def _check_batch_size(batch_size: int, bound: Mapping[str, Any]) -> int:
    """The number of examples, checked to hold a batch."""
    num_examples = len(next(iter(bound.values())))
    if batch_size > num_examples:
        raise ValueError(
            f"batch_size ({batch_size}) is larger than the data ({num_examples} examples)"
        )
    return num_examples


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def resolve_objective(objective: Any) -> Any:
    """An objective spec or :class:`Objective` from a spec, an ``Objective`` or a name.

    Names: ``"cd"``, ``"pcd"``, ``"replay"``, ``"nce"``, ``"fce"``, ``"sm"``, ``"ssm"``, ``"dsm"``
    (each class with its defaults).

    Raises:
        ValueError: for an unknown name.
        TypeError: for anything else that is neither a spec nor an ``Objective``.

    Examples:
        >>> type(resolve_objective("pcd")).__name__
        'PersistentContrastiveDivergence'
    """
    if isinstance(objective, str):
        key = objective.lower()
        if key not in OBJECTIVE_NAMES:
            raise ValueError(
                f"objective must be one of {sorted(OBJECTIVE_NAMES)}, got {objective!r}"
            )
        module, cls = OBJECTIVE_NAMES[key]
        return getattr(importlib.import_module(module), cls)()
    if isinstance(objective, Objective) or hasattr(objective, "build"):
        return objective
    raise TypeError(
        "objective must be an ObjectiveSpec (e.g. PersistentContrastiveDivergence(...)), an "
        f"Objective(init, loss) or one of {sorted(OBJECTIVE_NAMES)}, got {type(objective).__name__}"
    )


def _inside_supports(plan: Any, params: Mapping[str, Any]) -> jax.Array:
    """Whether the constrained parameters are finite and inside their constraints (traceable)."""
    ok = [_all_finite(params)]
    ok += [jnp.all(plan[n].support(params[n])) for n in plan.constrained_params]
    return jnp.all(jnp.stack(ok))


def _strongly_typed(tree: Any) -> Any:
    """``tree`` with every weakly typed array leaf made strongly typed (same dtype and values)."""

    def strong(a: Any) -> Any:
        if isinstance(a, jax.Array) and getattr(a, "weak_type", False):
            return jax.lax.convert_element_type(a, a.dtype)
        return a

    return jax.tree.map(strong, tree)


def _all_finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


# ---------------------------------------------------------------------------------- the loop
def fit(
    model: Callable[..., Any] | EnergyModel,
    data: Any,
    *,
    objective: Any,
    optimizer: Any,
    num_steps: int,
    batch_size: int,
    rng_key: Any,
    init_params: Mapping[str, Any] | None = None,
    data_site: str | None = None,
    model_args: Sequence[Any] = (),
    model_kwargs: Mapping[str, Any] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    checkpoint_keep: int | None = 3,
    log_every: int = 100,
    progress: bool = True,
    callbacks: Sequence[Callable[..., Any]] = (),
) -> FitResult:
    """Fit the parameters of an energy model to data by stochastic optimization of an objective.

    Updates run in jitted ``lax.scan`` chunks of ``log_every`` updates (``gcd(log_every,
    checkpoint_every)`` when checkpointing), whose boundaries are multiples of the chunk size in
    global update counts; the host syncs only between chunks (progress bar, history, checkpoint,
    callbacks). Update ``t`` uses the key ``fold_in(rng_key, t)`` and the ``t``-th batch of a
    per-epoch shuffle drawn from ``rng_key``, so a run resumed from a checkpoint reproduces an
    uninterrupted one bit for bit.

    Parameters are optimized on their unconstrained space and returned constrained, as NumPyro's
    SVI does: the optimizer state and the scanned carry hold ``EnergyModel.unconstrain_params``
    of the parameters and the objective is evaluated at their constrained values, so a
    ``numpyro.param(..., constraint=...)`` stays inside its support whatever the objective.
    Module parameters (``numpyro.contrib.module``) are pytrees throughout.

    A non-finite loss or parameter (or a constrained parameter that rounds onto the boundary of
    its support, e.g. a positive one underflowing to 0) stops the run: the last finite
    parameters, optimizer and objective states are kept, ``flags["nonfinite"]`` is set and a
    ``RuntimeWarning`` is issued.
    With a ``checkpoint_dir``, that last finite state is checkpointed with the flag and the
    update that failed; calling ``fit`` again on the folder does not re-run into the same values:
    it returns that state at once, with ``flags["nonfinite"]`` set and a ``RuntimeWarning`` that
    says what to change (a smaller learning rate or another objective, in a new
    ``checkpoint_dir``, e.g. with ``init_params=result.params``).

    Checkpoints are one file each (``ckpt-<update>.ebmckpt``: arrays, metadata, fingerprints and
    a checksum; never pickled), written atomically and durably, so a crash or ``kill -9`` at any
    point loses at most the updates since the last one. The newest ``checkpoint_keep`` are kept.
    A resumed run uses the newest that verifies; files that fail (truncated, altered, renamed,
    NaN parameters) are named in a :class:`~ebm_ppl.train.checkpoint.CheckpointWarning` and left
    in place, and a folder holding only such files is refused rather than overwritten.

    Args:
        model: a NumPyro EBM program, or an :class:`~ebm_ppl.EnergyModel`.
        data: an array ``(num_examples, *site_shape)`` bound to ``data_site`` (default: the only
            site whose shape matches), or a dict site -> array.
        objective: an objective spec (``ContrastiveDivergence(...)``, ...), an
            :class:`~ebm_ppl.objectives.Objective`, or a name (``"cd"``, ``"pcd"``, ``"replay"``,
            ``"nce"``, ``"fce"``, ``"sm"``, ``"ssm"``, ``"dsm"``).
        optimizer: an ``optax.GradientTransformation``.
        num_steps: total number of optimizer updates (including those of a resumed checkpoint).
        batch_size: examples per update (``<=`` the number of examples; the remainder of each
            epoch is dropped).
        rng_key: PRNG key (or an int seed).
        init_params: initial parameters (constrained values, every param site; checked against
            the model before anything compiles); default ``EnergyModel.init_params`` with a key
            split from ``rng_key``.
        data_site: site for an array ``data``.
        model_args, model_kwargs: arguments the model is called with.
        checkpoint_dir: folder for checkpoints, created (and checked to be writable) before
            anything compiles; if it already holds one, ``fit`` resumes from it after checking
            fingerprints of model, objective, optimizer, data and key.
        checkpoint_every: write a checkpoint every this many updates. Default: at the end of
            the first chunk that ends a minute or more after the previous checkpoint (a crash
            loses about a minute of training at most, whatever the cost of one update). A
            checkpoint is also written at the end, on a callback stop and on a non-finite stop.
        checkpoint_keep: how many checkpoint files to keep (``None``: all).
        log_every: updates per chunk (progress bar and callbacks refresh once per chunk).
        progress: show a tqdm progress bar with the loss and energies.
        callbacks: functions ``cb(step, params, obj_state, metrics) -> bool | None`` called on the
            host after each chunk; returning ``True`` stops the run. A callback that raises
            stops it too: the state it saw is checkpointed (with a ``checkpoint_dir``) and the
            error re-raised. A callback's ``close()``, if it has one, is called when the fit
            ends. Monitors: :mod:`ebm_ppl.train.callbacks`. ``metrics`` hold the objective's
            metrics and ``loss``, and ``grad_norm`` (global norm of the gradient, also in the
            history) when a callback has a true ``needs_grad_norm`` attribute.

    Returns:
        :class:`FitResult` ``(params, obj_state, history, flags)``.

    Raises:
        ValueError: for bad data, sizes or names, a model without parameters, ``init_params``
            with unknown or missing sites, wrong shapes, non-finite values or values outside a
            constraint (the message names the site), or a checkpoint from a different
            configuration (the message names ``checkpoint_dir``), all before any compilation.
        TypeError: for arguments of the wrong type.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np, numpyro, optax, ebm_ppl as ebm
        >>> from ebm_ppl.objectives import stateless
        >>> def gaussian():
        ...     mu = numpyro.param("mu", jnp.zeros(2))
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", 0.5 * jnp.sum((x - mu) ** 2))
        >>> # for a unit-variance Gaussian, E_data[E] - E_model[E] has the gradient of the NLL
        >>> nll = lambda p, b, k: (jnp.mean(0.5 * jnp.sum((b["x"] - p["mu"]) ** 2, -1)), {})
        >>> obj = stateless(nll)
        >>> data = np.full((100, 2), 3.0, np.float32)
        >>> res = ebm.fit(gaussian, data, objective=obj, optimizer=optax.sgd(0.1), num_steps=100,
        ...               batch_size=10, rng_key=jax.random.PRNGKey(0), progress=False)
        >>> [round(float(m), 3) for m in res.params["mu"]], res.flags["nonfinite"]
        ([3.0, 3.0], False)
    """
    enable_compilation_cache()  # persistent across processes (EBM_PPL_NO_CACHE=1 opts out)
    # ---- configuration checks (all before any compilation)
    num_steps = _positive_int(num_steps, "num_steps")
    batch_size = _positive_int(batch_size, "batch_size")
    log_every = _positive_int(log_every, "log_every")
    if checkpoint_every is not None:
        checkpoint_every = _positive_int(checkpoint_every, "checkpoint_every")
    if checkpoint_keep is not None:
        checkpoint_keep = _positive_int(checkpoint_keep, "checkpoint_keep")
    if checkpoint_dir is not None:
        if not isinstance(checkpoint_dir, (str, os.PathLike)):
            raise TypeError(f"checkpoint_dir must be a path, got {checkpoint_dir!r}")
        checkpoint_dir = os.fspath(checkpoint_dir)
        # Created and probed now, so a file, a path under a file or a read-only folder fails
        # before any training work rather than at the first checkpoint.
        prepare_directory(checkpoint_dir)
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    if callable(callbacks):
        callbacks = (callbacks,)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables, got {cb!r}")
    record_grad_norm = any(getattr(cb, "needs_grad_norm", False) for cb in callbacks)
    spec = resolve_objective(objective)
    key = _random.as_key(rng_key)
    model_kwargs = dict(model_kwargs or {})
    analysed: list[EnergyModel] = []
    if isinstance(model, EnergyModel):
        if model_args or model_kwargs:
            raise ValueError(
                "model is an EnergyModel (arguments bound); model_args/model_kwargs must be empty"
            )
        analysed.append(model)
        base = (model.model, model.args, model.kwargs)
    else:
        base = (model, tuple(model_args), model_kwargs)

    def energy_model() -> EnergyModel:
        # The model's analysis (a trace of the model): needed to check new inputs and to trace
        # a program, not to run stored programs on inputs checked before.
        if not analysed:
            analysed.append(EnergyModel(base[0], *base[1], **base[2]))
        return analysed[0]

    # Inputs an earlier fit of this configuration checked (the same model, data and initial
    # parameters, by value) are bound as it recorded; anything else is checked afresh.
    inputs_key = _structure_key(
        {"data": ""}, (base, spec, optimizer, data, data_site, batch_size, init_params)
    )
    record = None if inputs_key is None else load_record(f"fit.inputs{inputs_key}")
    recorded = _recorded_inputs(record, data, init_params, batch_size)
    if recorded is not None:
        bound, checked_init, data_fingerprint = recorded
        num_examples = _check_batch_size(batch_size, bound)
    else:
        plan = energy_model().plan
        checked_init = (
            None
            if init_params is None
            else plan.validate_params(init_params, argument="init_params")
        )
        bound = bind_data(energy_model(), data, data_site)
        num_examples = _check_batch_size(batch_size, bound)
        state_sites = energy_model().state_sites
        if not any(n in bound for n in state_sites):
            raise ValueError(
                f"data binds no state site (sites {sorted(bound)} are all observed); a model "
                "must generate at least one of the data sites"
            )
        if not plan.param_sites:
            raise ValueError(
                "model has no parameters (numpyro.param sites or numpyro.contrib.module "
                "networks): nothing to fit"
            )
        data_fingerprint = fingerprint((sorted(bound.items()), batch_size))
    if recorded is None and inputs_key is not None:
        save_record(
            f"fit.inputs{inputs_key}", _input_record(data, bound, checked_init, data_fingerprint)
        )
    built: list[Objective] = []

    def objective_fn() -> Objective:
        # Built when a program is traced (its checks run then, before compiling); a fit whose
        # programs are all found compiled skips it (the same configuration built before).
        if not built:
            if isinstance(spec, Objective):
                built.append(spec)
            else:
                em = energy_model()
                obj = spec.build(
                    em,
                    data_sites=tuple(n for n in em.state_sites if n in bound),
                    latent_sites=tuple(n for n in em.state_sites if n not in bound),
                    condition_sites=tuple(n for n in em.data_sites if n in bound),
                    batch_size=batch_size,
                    num_steps=num_steps,
                    data=bound,
                )
                if not isinstance(obj, Objective):
                    raise TypeError(
                        f"objective.build must return an Objective, got {type(obj).__name__}"
                    )
                built.append(obj)
        return built[0]

    diagnose = getattr(spec, "diagnose", None)

    def ready(args: Any) -> Any:
        # The model's analysis and the objective's build run eagerly, before a program is
        # traced: inside a trace their own array work would be staged into it (and values an
        # objective keeps from its build would be tracers).
        energy_model()
        objective_fn()
        return args

    fingerprints = {
        "model": fingerprint(base),
        "objective": fingerprint(spec),
        "optimizer": fingerprint(optimizer),
        "data": data_fingerprint,
        "rng_key": fingerprint(key),
        "init_params": fingerprint(None if init_params is None else dict(init_params)),
    }
    # The newest checkpoint that verifies (checksum, name, finite parameters); others are
    # named in a warning and left in place, and a folder of only broken ones is refused.
    resume = latest_checkpoint(checkpoint_dir, require_finite=("params",))
    trusted: set[str] = set()  # checkpoint files known to be good: resumed from or written
    if resume is not None:
        stored = resume.metadata.get("fingerprints", {})
        differ = [k for k in fingerprints if stored.get(k) != fingerprints[k]]
        if differ:
            raise ValueError(
                f"checkpoint_dir {checkpoint_dir!r} holds a checkpoint ({resume.path.name}) of "
                f"a different {', '.join(differ)}; use another checkpoint_dir (or delete it) "
                "to start afresh"
            )
        trusted.add(resume.path.name)
    if checkpoint_dir is not None:
        remove_temporaries(checkpoint_dir)  # left by writes that a crash interrupted

    # ---- state
    data_dev = {k: jax.device_put(v) for k, v in bound.items()}  # a transfer, not a program
    steps_per_epoch = num_examples // batch_size

    def permutation(shuffle_key, epoch):
        return jax.random.permutation(_random.fold_in(shuffle_key, epoch), num_examples)

    def get_batch(data, perm, step):
        i = step % steps_per_epoch
        idx = jax.lax.dynamic_slice(perm, (i * batch_size,), (batch_size,))
        return {k: jnp.take(v, idx, axis=0) for k, v in data.items()}

    def setup(key, init_params, data):
        init_key, obj_key, shuffle_key = _random.split(key, 3)
        em = energy_model()
        params = em.init_params(init_key) if init_params is None else init_params
        params = jax.tree.map(jnp.asarray, params)
        # As NumPyro's SVI: the optimizer and the scanned carry hold the parameters on their
        # unconstrained space, the objective sees them constrained (constrain_params inside the
        # loss), so every update keeps a numpyro.param(..., constraint=...) inside its support.
        uparams = em.plan.unconstrain_params(params)
        opt_state = optimizer.init(uparams)
        first_batch = get_batch(data, permutation(shuffle_key, 0), 0)
        obj_state = objective_fn().init(obj_key, params, first_batch)
        return shuffle_key, params, uparams, opt_state, obj_state

    # One compiled program rather than an eager op (and a compilation) per array operation; an
    # objective whose init needs concrete values runs eagerly instead.
    structure = _structure_key(
        fingerprints,
        (base, spec, optimizer),
        record_grad_norm=record_grad_norm,
        max_preshuffled=_MAX_PRESHUFFLED,
        num_steps=num_steps,  # objectives may build schedules over the run into their loss
    )
    programs: dict[str, str] = {}  # where each compiled program came from (flags["programs"])
    setup_args = (key, checked_init, data_dev)
    try:
        setup_exe, programs["setup"] = _program(
            "setup",
            structure,
            setup_args,
            None,
            lambda: jax.jit(_named(setup, "fit_setup")).lower(*ready(setup_args)),
        )
        shuffle_key, params, uparams, opt_state, obj_state = setup_exe(*setup_args)
    except Exception:  # noqa: BLE001  (a genuine error is raised again by the eager call)
        shuffle_key, params, uparams, opt_state, obj_state = setup(*setup_args)
        programs["setup"] = "eager"
    # A parameter started from a Python float is weakly typed; the chunk returns it strongly
    # typed, so the second chunk (and the third, once the optimizer state follows) would be
    # traced and compiled again: fix the types once, here.
    params, uparams, opt_state, obj_state = _strongly_typed((params, uparams, opt_state, obj_state))

    history = History()
    flags: dict[str, Any] = {
        "nonfinite": False,
        "nonfinite_step": None,
        "stopped_by_callback": False,
        "resumed_from": None,
        "model_fingerprint": fingerprints["model"],  # checked by ebm_ppl.load(model=...)
        "step": 0,
    }
    start = 0
    if resume is not None:
        trees = resume.restore(
            {"unconstrained_params": uparams, "opt_state": opt_state, "obj_state": obj_state}
        )
        meta = {**resume.metadata, "extra_arrays": resume.extra_arrays}
        # The unconstrained carry itself, not unconstrain(params): bit for bit what the run
        # had (constrain then unconstrain is not the identity in floating point).
        uparams, opt_state = trees["unconstrained_params"], trees["opt_state"]
        obj_state = trees["obj_state"]
        start = int(meta["step"])
        hist = {
            k[len("history/") :]: v
            for k, v in meta["extra_arrays"].items()
            if k.startswith("history/")
        }
        history = History(hist if hist else None, events=meta.get("events", []))
        flags.update(
            {
                k: meta["flags"][k]
                for k in ("nonfinite", "nonfinite_step")
                if k in meta.get("flags", {})
            }
        )
        flags["resumed_from"] = start
        params = energy_model().plan.constrain_params(uparams)
        if flags["nonfinite"]:
            warnings.warn(
                f"checkpoint_dir {checkpoint_dir!r}: this run stopped at update "
                f"{flags['nonfinite_step']} on non-finite values (NaN/inf); {resume.path.name} "
                "holds its last finite state, returned as it is (flags['nonfinite'] is set) "
                "rather than run into the same values again. To go on, lower the learning rate "
                "or change the objective and fit into a new checkpoint_dir (init_params="
                "result.params continues from these parameters)",
                RuntimeWarning,
                stacklevel=2,
            )

    # ---- compiled chunk
    def constrained_loss(uparams, obj_state, batch, rng_key):
        params = energy_model().plan.constrain_params(uparams)
        return objective_fn().loss(params, obj_state, batch, rng_key)

    def one_update(keys, data, perms, first_epoch, carry, step):
        key, shuffle_key = keys
        uparams, opt_state, obj_state, perm, stopped, bad_step = carry
        epoch = step // steps_per_epoch
        if perms is not None:
            batch = get_batch(data, perms[epoch - first_epoch], step)
        else:
            perm = jax.lax.cond(
                step % steps_per_epoch == 0, lambda: permutation(shuffle_key, epoch), lambda: perm
            )
            batch = get_batch(data, perm, step)
        step_key = _random.fold_in(key, step)
        (loss, (new_obj, metrics)), grads = jax.value_and_grad(constrained_loss, has_aux=True)(
            uparams, obj_state, batch, step_key
        )
        updates, new_opt = optimizer.update(grads, opt_state, uparams)
        new_uparams = optax.apply_updates(uparams, updates)
        finite = jnp.isfinite(loss) & _all_finite(new_uparams)
        plan = energy_model().plan
        if plan.constrained_params:
            # A finite unconstrained value can still map outside the floats or onto the
            # support's boundary in floating point (exp overflow or underflow to 0).
            finite = finite & _inside_supports(plan, plan.constrain_params(new_uparams))
        accept = finite & ~stopped
        # Keep the last finite state: a non-finite update is never applied.
        # Elementwise selects rather than a conditional: they fuse into the update.
        uparams, opt_state, obj_state = jax.tree.map(
            lambda new, old: jnp.where(accept, new, old),
            (new_uparams, new_opt, new_obj),
            (uparams, opt_state, obj_state),
        )
        bad_step = jnp.where(~finite & ~stopped, step, bad_step)
        stopped = stopped | ~finite
        row = {"loss": loss, **metrics}
        if record_grad_norm:  # asked for by monitors (callbacks with needs_grad_norm)
            row.setdefault("grad_norm", optax.tree.norm(grads))
        row = {k: jnp.asarray(v, jnp.float32).reshape(()) for k, v in row.items()}
        return (uparams, opt_state, obj_state, perm, stopped, bad_step), row

    def run_chunk(uparams, opt_state, obj_state, data, keys, first, length):
        # The data and the keys are arguments, not constants folded into the compiled program:
        # another seed or data set of the same shapes reuses it (and its persistent cache entry).
        steps = first + jnp.arange(length)
        # The shuffles of every epoch the chunk touches, drawn up front (a static bound on
        # their number), so the scanned update carries no conditional; when they would take
        # much memory (many short epochs of a large data set), each is drawn at its epoch's
        # first update instead. Both give the same batches.
        first_epoch = first // steps_per_epoch
        num_epochs = -(-length // steps_per_epoch) + 1
        perms = None
        if num_epochs * num_examples <= _MAX_PRESHUFFLED:
            perms = jax.vmap(functools.partial(permutation, keys[1]))(
                first_epoch + jnp.arange(num_epochs)
            )
        perm = permutation(keys[1], first_epoch)
        carry = (uparams, opt_state, obj_state, perm, jnp.array(False), jnp.array(-1))
        update = functools.partial(one_update, keys, data, perms, first_epoch)
        carry, rows = jax.lax.scan(update, carry, steps)
        uparams, opt_state, obj_state, _, stopped, bad_step = carry
        params = energy_model().plan.constrain_params(uparams)
        return uparams, params, opt_state, obj_state, stopped, bad_step, rows

    chunks: dict[int, Any] = {}

    def run_chunk_exe(*args):
        *dynamic, length = args
        if length not in chunks:
            chunks[length], origin = _program(
                "chunk",
                structure,
                dynamic,
                length,
                lambda: jax.jit(_named(run_chunk, "fit_chunk"), static_argnums=(6,)).lower(
                    *ready(args)
                ),
            )
            programs.setdefault("chunk", origin)
        return chunks[length](*dynamic)

    chunk = log_every if checkpoint_every is None else math.gcd(log_every, checkpoint_every)

    def write_checkpoint(step):
        arrays = {f"history/{k}": v for k, v in history.items()}
        path = save_checkpoint(
            checkpoint_dir,
            {
                "params": params,  # constrained, for readers
                "unconstrained_params": uparams,  # what a resumed run continues from
                "opt_state": opt_state,
                "obj_state": obj_state,
            },
            {
                "step": step,
                "num_steps": num_steps,
                "fingerprints": fingerprints,
                "flags": {k: flags[k] for k in ("nonfinite", "nonfinite_step")},
                "events": history.events,
                "batch_size": batch_size,
                # The run's key (its raw data), for the record: resuming requires the same key.
                "rng_key": np.asarray(
                    jax.random.key_data(key)
                    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                    else key
                ).tolist(),
            },
            arrays=arrays,
            keep=checkpoint_keep,
            trusted=trusted,
        )
        trusted.add(path.name)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=num_steps, initial=min(start, num_steps), desc="fit", unit="update", leave=True
        )
    step = start
    last_write = time.monotonic()
    try:
        while step < num_steps and not flags["nonfinite"]:
            end = min(num_steps, (step // chunk + 1) * chunk)
            out = run_chunk_exe(
                uparams,
                opt_state,
                obj_state,
                data_dev,
                (key, shuffle_key),
                np.int32(step),
                end - step,
            )
            uparams, params, opt_state, obj_state, stopped, bad_step, rows = out
            rows = {k: np.asarray(v) for k, v in rows.items()}
            steps = np.arange(step, end)
            stopped_now = bool(stopped)
            if stopped_now:
                bad = int(bad_step)
                keep = steps < bad
                history.append({"step": steps[keep], **{k: v[keep] for k, v in rows.items()}})
                flags["nonfinite"], flags["nonfinite_step"] = True, bad
                step = bad
                warnings.warn(
                    f"fit stopped at update {bad}: the loss or the parameters became non-finite "
                    "(NaN/inf); returning the last finite parameters (flags['nonfinite'] is set)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                history.append({"step": steps, **rows})
                step = end
            if diagnose is not None:
                event = diagnose(obj_state)
                if event:
                    history.events.append({"step": step, **{k: float(v) for k, v in event.items()}})
            if bar is not None:
                last = history.last()
                bar.set_postfix(
                    {
                        k: f"{last[k]:.4g}"
                        for k in ("loss", "pos_energy", "neg_energy")
                        if k in last
                    },
                    refresh=False,
                )
                bar.update(step - bar.n)
            last_metrics = history.last()
            stop = False
            try:
                for cb in callbacks:
                    if cb(step, params, obj_state, last_metrics) is True:
                        stop = True
            except BaseException:
                # A callback that raises (a monitor's alarm, Ctrl-C) keeps the state it saw:
                # it is checkpointed first, so the run resumes from it, then the error goes on.
                if checkpoint_dir is not None:
                    write_checkpoint(step)
                raise
            if checkpoint_dir is not None:
                if checkpoint_every is None:
                    due = time.monotonic() - last_write >= _CHECKPOINT_SECONDS
                else:
                    due = step % checkpoint_every == 0
                # A non-finite stop checkpoints the last finite state with its flag, so that
                # resuming reports it instead of running into the same values again.
                if due or step == num_steps or stop or stopped_now:
                    write_checkpoint(step)
                    last_write = time.monotonic()
            if stop:
                flags["stopped_by_callback"] = True
                break
    finally:
        if bar is not None:
            bar.close()
        for cb in callbacks:  # monitors flush and close their files
            close = getattr(cb, "close", None)
            if callable(close):
                close()
    flags["step"] = step
    flags["programs"] = programs
    return FitResult(params, obj_state, history, flags)
