"""NumPyro adapters for discrete samplers: :class:`BlockGibbs`, :class:`GibbsWithGradients`,
:class:`DULA` and :class:`DMALA`.

They move the binary (``Bits``/``Spins``/``Bernoulli``) and categorical (``ebm.Categorical``,
NumPyro's ``Categorical``) state sites of a model and keep everything else fixed;
they are :class:`~ebm_ppl.infer.adapter.KernelAdapter` subclasses, so they run under
``ebm_ppl.sample`` (``kernel="gibbs"``/``"gwg"``/``"dula"``/``"dmala"``), under
``numpyro.infer.MCMC`` with
sequential, parallel or vectorized chains, and as a block of ``numpyro.infer.Gibbs`` next to a
MALA or NUTS block for the continuous sites of a mixed model. :class:`BlockGibbs` also samples a
real-valued site declared as a block (``infer={"blocks": c}`` on a ``Flat`` site) when it is
conditionally Gaussian given the other blocks (quadratic energy, positive curvature, checked at
:meth:`init`): the visible layer of a Gaussian–Bernoulli RBM.

**Blocks** (for :class:`BlockGibbs`), in order of precedence:

1. ``blocks=`` given to the kernel: a dict site -> int colours (broadcastable to the site's
   shape), or a list of site names (each site one block, in that order);
2. the model's declaration ``numpyro.sample(name, base, infer={"blocks": colours})`` on every
   binary site (the zoo models do: checkerboard for lattices, one colour per layer for RBMs);
3. a greedy colouring of the interaction graph read off the Hessian's sparsity, for up to
   :data:`~ebm_ppl.kernels.gibbs.MAX_COLOURING_UNITS` units; beyond, a ``ValueError`` asks
   for ``blocks=``.

**Conditionals**: with ``conditionals="auto"`` the kernel checks once, at :meth:`init`, whether
the energy is affine in each unit (:func:`~ebm_ppl.energy.conditionals.check_model_affine`):
then all logits come from one gradient, otherwise from exact energy differences. Model
arguments that are traced at that time (inside ``jit``) are replaced by arrays of ones of the
same shape for the check (a structural property; if the stand-ins break it, the kernel uses the
always-correct exact differences). ``conditionals="gradient"``/``"exact"`` force a choice.
For categorical sites the check is
:func:`~ebm_ppl.energy.conditionals.check_categorical_affine` (one gradient with respect to the
:func:`~ebm_ppl.one_hot` encoding), preceded by
:func:`~ebm_ppl.energy.conditionals.check_one_hot` (a one-hot encoding with the wrong number of
states is refused).

Examples:
    >>> from ebm_ppl.infer.registry import available_kernels
    >>> {"gibbs", "gwg"} <= set(available_kernels())
    True

    With ``numpyro.infer.MCMC`` (a sketch; see :class:`BlockGibbs` for a run)::

        mcmc = MCMC(BlockGibbs(ising.model), num_warmup=100, num_samples=1000)
        mcmc.run(jax.random.PRNGKey(0), (32, 32), beta=0.4)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform

from ebm_ppl.energy.conditionals import (
    categorical_logits_fn,
    check_affine,
    check_categorical_affine,
    check_one_hot,
)
from ebm_ppl.energy.plan import SitePlan, SiteSpec
from ebm_ppl.infer.adapter import KernelAdapter
from ebm_ppl.infer.registry import kernels_for_site, register_kernel
from ebm_ppl.kernels import dlangevin, gibbs, gwg
from ebm_ppl.kernels.resolve import gaussian_sites, normalize_declared

__all__ = ["DMALA", "DULA", "BlockGibbs", "GibbsWithGradients"]

_CONDITIONALS = ("auto", "gradient", "exact")


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _stand_in(x: Any) -> Any:
    """A concrete array of ones in place of a traced value (for the structural checks)."""
    if _is_traced(x):
        # numpy, not jnp: a jnp constructor inside an enclosing jit would be traced too.
        return np.ones(jnp.shape(x), np.dtype(jnp.result_type(x)))
    return x


def _with_param_init(model: Callable[..., Any]) -> Callable[..., Any]:
    """``model`` whose parameters with a callable initializer (networks, random weights) get it
    with ``PRNGKey(0)``, as ``EnergyModel.init_params(PRNGKey(0))``; substituted values (e.g.
    the driver's) win."""

    def init_param(site: dict) -> Any:
        # only when no inner handler (e.g. the driver's substitute) set the value already
        if site["type"] == "param" and site["value"] is None and not site["args"]:
            return handlers.seed(site["fn"], rng_seed=0)()
        return None

    return handlers.substitute(model, substitute_fn=init_param)


def _trace_plan(
    model: Callable[..., Any], position: Mapping[str, Any], model_args: tuple, model_kwargs: dict
) -> SitePlan:
    """The site plan of ``model`` traced at ``position`` (state sites absent from it drawn by
    ``init_to_uniform``).

    Only sample sites enter the plan: parameter values may be traced here (inside ``jit``), and
    the kernels need the state sites alone. The plan is built eagerly
    (``jax.ensure_compile_time_eval``), so the finite supports it enumerates are concrete even
    while an enclosing function is traced.
    """

    def value_of(site: dict) -> Any:
        if site["name"] in position:
            return position[site["name"]]
        return init_to_uniform(site)

    tr = handlers.trace(
        handlers.substitute(handlers.seed(model, rng_seed=0), substitute_fn=value_of)
    ).get_trace(*model_args, **model_kwargs)
    with jax.ensure_compile_time_eval():
        return SitePlan.from_trace({n: s for n, s in tr.items() if s["type"] == "sample"})


class _BinaryAdapter(KernelAdapter):
    """Shared parts: binary and categorical sites, levels, numbers of states, the affinity
    decision, positions in constrained space."""

    unconstrained = False
    _uses_step_size = False
    _gaussian_ok = False  # BlockGibbs: declared real-valued blocks get Gaussian conditionals
    # how categorical logits are chosen (None: as ``conditionals``); gradient proposals want
    # the one-gradient logits whenever they are exact
    _categorical_conditionals: str | None = None
    _gaussian: tuple[str, ...] = ()

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], jax.Array] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        levels: Mapping[str, tuple[float, float]] | None = None,
        conditionals: str = "auto",
        init_strategy: Callable[..., Any] = init_to_uniform,
        max_delta_energy: float = 1000.0,
        num_states: Mapping[str, int] | None = None,
        **step_options: Any,
    ):
        super().__init__(
            model,
            potential_fn,
            params=params,
            init_strategy=init_strategy,
            max_delta_energy=max_delta_energy,
            **step_options,
        )
        if num_states is not None:
            if not isinstance(num_states, Mapping):
                raise TypeError(f"num_states must be a dict site -> q, got {num_states!r}")
            for name, q in num_states.items():
                if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 2:
                    raise ValueError(f"num_states[{name!r}] must be an int >= 2, got {q!r}")
        self._user_num_states = None if num_states is None else dict(num_states)
        self._num_states: dict[str, int] = {}
        self._cat_affine: dict[str, bool] = {}
        if conditionals not in _CONDITIONALS:
            raise ValueError(f"conditionals must be one of {_CONDITIONALS}, got {conditionals!r}")
        if potential_fn is not None and not levels and not num_states:
            raise ValueError(
                "levels or num_states must be given with potential_fn= (dict site -> (lo, hi), "
                "e.g. {'s': (-1.0, 1.0)}, or dict site -> number of states, e.g. {'c': 3})"
            )
        if levels is not None:
            if not isinstance(levels, Mapping):
                raise TypeError(f"levels must be a dict site -> (lo, hi), got {levels!r}")
            for name, lv in levels.items():
                if len(tuple(lv)) != 2 or float(lv[0]) >= float(lv[1]):
                    raise ValueError(f"levels[{name!r}] must be (lo, hi) with lo < hi, got {lv!r}")
        self._user_levels = (
            None
            if levels is None
            else {n: (float(lo), float(hi)) for n, (lo, hi) in levels.items()}
        )
        self._conditionals = conditionals
        self._levels: dict[str, tuple[float, float]] = {}
        self._plan: SitePlan | None = None  # set at init (model=): the state sites' plan
        self._affine: dict[str, bool] = {}
        self._declared: dict[str, Any] = {}

    def _bound_model(self) -> Callable[..., Any]:
        model = super()._bound_model()
        return model if self._params is not None else _with_param_init(model)

    # ------------------------------------------------------------------ model analysis
    def _analyse_model(
        self, position: Mapping[str, Any], model_args: tuple, model_kwargs: dict
    ) -> None:
        model = self._bound_model()
        plan = _trace_plan(model, position, model_args, model_kwargs)
        levels, declared, gaussian, num_states = {}, {}, [], {}
        for name in plan.state_sites:
            if name not in position:
                continue
            spec = plan[name]
            if spec.levels is not None:  # binary: Spins, Bits, NumPyro's Bernoulli
                levels[name] = spec.levels
            elif spec.kind == "categorical":  # ebm.Categorical, NumPyro's Categorical
                num_states[name] = int(spec.num_states or 0)
            elif (
                self._gaussian_ok
                and spec.kind == "continuous"
                and spec.blocks is not None
                and not spec.is_constrained
            ):
                # a declared continuous block: Gaussian conditionals (checked at init)
                gaussian.append(name)
            else:
                raise ValueError(self._cannot_move(spec))
            if spec.blocks is not None:
                declared[name] = spec.blocks
        self._plan = plan
        self._levels = levels
        self._num_states = num_states
        self._declared = declared
        self._gaussian = tuple(gaussian)

    def _cannot_move(self, spec: SiteSpec) -> str:
        if spec.support_values is not None:
            values = ", ".join(f"{v:g}" for v in spec.support_values)
            what = f"{spec.kind} with support {{{values}}}"
        else:
            what = f"{spec.kind} ({spec.support})"
        moves = (
            "binary sites (Spins, Bits, NumPyro's Bernoulli) and categorical sites "
            "(ebm.Categorical, NumPyro's Categorical)"
        )
        if self._gaussian_ok:
            moves += " and real-valued sites declared as Gaussian blocks (infer={'blocks': ...})"
        can = kernels_for_site(spec)
        hint = (
            f"kernels that can move it: {', '.join(repr(k) for k in can)}"
            if can
            else "no kernel of ebm_ppl moves it"
        )
        return (
            f"site {spec.name!r} is {what}, but {type(self).__name__} samples {moves} only; "
            f"{hint} (in a block of numpyro.infer.Gibbs, or ebm.sample(kernel='auto'))"
        )

    def _affinity(
        self, position: Mapping[str, Any], model_args: tuple, model_kwargs: dict
    ) -> dict[str, bool]:
        # Traced inputs (inside jit) are replaced by ones: affinity is a structural property,
        # and a stand-in that breaks it only selects the always-correct exact differences.
        args, kwargs = jax.tree.map(_stand_in, (model_args, model_kwargs))
        if self._model is None:
            energy_fn = self._potential_fn
        else:
            energy_fn = self.get_potential_fn(args, kwargs)
        pos = jax.tree.map(_stand_in, dict(position))
        if self._num_states:
            pos = {
                n: (np.zeros(np.shape(v), np.int32) if n in self._num_states else v)
                for n, v in pos.items()
            }
            # a one-hot encoding with the wrong number of states is an error, whatever the mode
            check_one_hot(energy_fn, pos, self._num_states)  # type: ignore[arg-type]
            mode = self._categorical_conditionals or self._conditionals
            if mode == "auto":
                self._cat_affine = check_categorical_affine(
                    energy_fn,  # type: ignore[arg-type]
                    pos,
                    self._num_states,
                )
            else:
                self._cat_affine = {n: mode == "gradient" for n in self._num_states}
        if self._conditionals != "auto":
            return {n: self._conditionals == "gradient" for n in self._levels}
        return check_affine(energy_fn, pos, self._levels)  # type: ignore[arg-type]

    def _initialize_model(self, rng_key, init_params, model_args, model_kwargs):
        position = super()._initialize_model(rng_key, init_params, model_args, model_kwargs)
        position = {n: jnp.asarray(v) for n, v in dict(position).items()}
        self._analyse_model(position, model_args, model_kwargs)
        # Kernels and gradients work on floats: discrete values of the model's own dtype
        # (int32 for NumPyro's Bernoulli) are cast once here, and back in postprocess_fn.
        plan = self._plan
        assert plan is not None
        position = plan.to_kernel(position)
        self._postprocess_fn_gen = lambda *args, **kwargs: plan.from_kernel
        self._affine = self._affinity(position, model_args, model_kwargs)
        return position

    def _init_position(self, key_model, init_params, model_args, model_kwargs):
        position = super()._init_position(key_model, init_params, model_args, model_kwargs)
        if self._model is None and isinstance(position, Mapping):
            # potential_fn=: the sites named in levels are moved as floats, categorical as int32
            ftype = jnp.result_type(float)
            cats = self._user_num_states or {}
            position = {
                n: (
                    jnp.asarray(v, ftype)
                    if n in (self._user_levels or {})
                    else (jnp.asarray(v).astype(jnp.int32) if n in cats else v)
                )
                for n, v in position.items()
            }
        return position

    def _validate_position(self, position: Any) -> None:
        if self._model is None:
            self._levels = dict(self._user_levels or {})
            self._num_states = dict(self._user_num_states or {})
            missing = [n for n in (*self._levels, *self._num_states) if n not in position]
            if missing:
                raise ValueError(
                    f"init_params is missing site(s) {missing} named in levels or num_states"
                )
            self._affine = self._affinity(position, (), {})
        if not self._levels and not self._gaussian and not self._num_states:
            raise ValueError(
                f"{type(self).__name__}: the model has no binary or categorical state site to "
                "sample"
            )
        for name, q in self._num_states.items():
            value = position[name]
            if _is_traced(value):
                continue
            value = np.asarray(value)
            ok = (value >= 0) & (value < q) & (value == np.round(value))
            if not np.all(ok):
                bad = value[~ok].ravel()[:3].tolist()
                raise ValueError(
                    f"init_params[{name!r}] must hold states in {{0, ..., {q - 1}}} (a categorical "
                    f"site with {q} states), got e.g. {bad}"
                )
        for name, (lo, hi) in self._levels.items():
            value = position[name]
            if _is_traced(value):
                continue
            value = np.asarray(value)
            if not np.all((value == lo) | (value == hi)):
                bad = value[(value != lo) & (value != hi)].ravel()[:3].tolist()
                raise ValueError(
                    f"init_params[{name!r}] must hold only the values {lo:g} and {hi:g} "
                    f"(a binary site), got e.g. {bad}"
                )

    def _step(self, rng_key, state, model_args, model_kwargs):
        energy_fn = self.get_potential_fn(model_args, model_kwargs)
        return self._pure_pair()[1](rng_key, state.kernel_state, energy_fn)

    def _categorical_options(self) -> dict[str, Any]:
        if not self._num_states:
            return {}
        return {
            "num_states": dict(self._num_states),
            "logits_fn": categorical_logits_fn(self._cat_affine),
        }


class BlockGibbs(_BinaryAdapter):
    """Block Gibbs sampler of binary sites: one sweep over the blocks per ``sample`` call.

    A sweep draws from exact conditionals and is always accepted, so it has no energy error:
    it is ``diverging`` only when the energy after the sweep is not finite.

    Args:
        model: NumPyro model (exactly one of ``model``/``potential_fn``).
        potential_fn: energy of a dict position (then ``levels=`` and ``blocks=`` are needed).
        params: dict of parameter values substituted into the model's ``numpyro.param`` sites.
        blocks: dict site -> int colours broadcastable to the site's shape, or a list of site
            names (one block each, in order); default: the model's declared blocks, else a
            greedy colouring of the interaction graph (see the module docstring).
        levels: dict site -> ``(lo, hi)``; needed with ``potential_fn=``.
        conditionals: ``"auto"`` (check affinity once), ``"gradient"`` or ``"exact"``.
        init_strategy: NumPyro init strategy for ``model=``.

    Raises:
        ValueError: unknown ``conditionals``; ``blocks`` that are not colours of binary
            sites; at :meth:`init`, a non-binary state site, non-binary ``init_params``, or
            more than 4096 binary units without blocks.

    Examples:
        >>> import jax
        >>> from ebm_ppl.models import ising
        >>> kernel = BlockGibbs(ising.model, conditionals="gradient")  # skip the affinity check
        >>> state = kernel.init(jax.random.PRNGKey(0), 0, None, ((4, 4),), {})
        >>> state = kernel.sample(state, ((4, 4),), {})
        >>> state.z["s"].shape, sorted(kernel.sample_stats(state))
        ((4, 4), ['acceptance_rate', 'diverging', 'potential_energy'])
    """

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], jax.Array] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        blocks: Mapping[str, Any] | Sequence[str] | None = None,
        levels: Mapping[str, tuple[float, float]] | None = None,
        conditionals: str = "auto",
        init_strategy: Callable[..., Any] = init_to_uniform,
        num_states: Mapping[str, int] | None = None,
    ):
        super().__init__(
            model,
            potential_fn,
            params=params,
            levels=levels,
            conditionals=conditionals,
            init_strategy=init_strategy,
            num_states=num_states,
        )
        if blocks is not None:
            if isinstance(blocks, Mapping):
                blocks = {n: np.asarray(c) for n, c in blocks.items()}
                for n, c in blocks.items():
                    if not np.issubdtype(c.dtype, np.integer):
                        raise TypeError(
                            f"blocks[{n!r}] must be integer colours, got dtype {c.dtype}"
                        )
            elif isinstance(blocks, Sequence) and not isinstance(blocks, str):
                if not all(isinstance(n, str) for n in blocks):
                    raise TypeError(
                        f"blocks must be a dict site -> colours or a list of sites, got {blocks!r}"
                    )
                blocks = {n: np.int32(k) for k, n in enumerate(blocks)}
            else:
                raise TypeError(
                    f"blocks must be a dict site -> colours or a list of sites, got {blocks!r}"
                )
        elif potential_fn is not None:
            raise ValueError("blocks must be given with potential_fn=")
        self._blocks = blocks
        self._colours: dict[str, Any] = {}

    _gaussian_ok = True

    def _check_gaussian(self, position, model_args, model_kwargs) -> None:
        """Declared real blocks must be conditionally Gaussian: constant positive curvature."""
        if not self._gaussian:
            return
        args, kwargs = jax.tree.map(_stand_in, (model_args, model_kwargs))
        energy_fn = (
            self._potential_fn if self._model is None else self.get_potential_fn(args, kwargs)
        )
        pos0 = jax.tree.map(_stand_in, dict(position))
        names = self._gaussian
        ok_sites = gaussian_sites((energy_fn, pos0), names)
        for n in names:
            ok = n in ok_sites
            if not ok:
                raise ValueError(
                    f"site {n!r} is continuous and declared as a Gibbs block, but its energy is "
                    "not quadratic with positive curvature in each unit (not conditionally "
                    "Gaussian): use kernel='auto' (MALA moves it) or NUTS in a block of "
                    "numpyro.infer.Gibbs"
                )

    def _choose_colours(self, position, model_args, model_kwargs) -> dict[str, Any]:
        self._check_gaussian(position, model_args, model_kwargs)
        if self._blocks is not None:
            movable = (*self._levels, *self._gaussian, *self._num_states)
            unknown = [n for n in self._blocks if n not in movable]
            if unknown:
                raise ValueError(
                    f"blocks names site(s) {unknown} that are not binary or categorical state "
                    f"sites {sorted(movable)}"
                )
            missing = [n for n in movable if n not in self._blocks]
            if missing:
                raise ValueError(
                    f"blocks must colour every binary and categorical state site; missing {missing}"
                )
            return dict(self._blocks)
        every = set(self._levels) | set(self._gaussian) | set(self._num_states)
        if self._declared and set(self._declared) == every:
            return dict(self._declared)
        if self._num_states:
            return self._categorical_colours(position, model_args, model_kwargs)
        energy_fn = self.get_potential_fn(*jax.tree.map(_stand_in, (model_args, model_kwargs)))
        pos = jax.tree.map(_stand_in, dict(position))
        pos = {
            n: (
                np.full(np.shape(v), self._levels[n][1], np.dtype(jnp.result_type(float)))
                if n in self._levels
                else v
            )
            for n, v in pos.items()
        }
        return gibbs.interaction_colouring(energy_fn, pos, self._levels)

    def _categorical_colours(self, position, model_args, model_kwargs) -> dict[str, Any]:
        """Binary sites coloured as without categorical ones; categorical sites after them
        (declared colours, else read off energy differences), sites one after another."""
        out: dict[str, Any] = {}
        binary = {n: self._declared[n] for n in self._levels if n in self._declared}
        if self._levels:
            if len(binary) == len(self._levels):
                out.update(binary)
            else:
                energy_fn = self.get_potential_fn(
                    *jax.tree.map(_stand_in, (model_args, model_kwargs))
                )
                pos = jax.tree.map(_stand_in, dict(position))
                pos = {
                    n: (
                        np.full(np.shape(v), self._levels[n][1], np.dtype(jnp.result_type(float)))
                        if n in self._levels
                        else v
                    )
                    for n, v in pos.items()
                }
                out.update(gibbs.interaction_colouring(energy_fn, pos, self._levels))
            out, _ = gibbs.normalize_colours(out, {n: np.shape(position[n]) for n in out})
        offset = max((int(np.max(c)) + 1 for c in out.values() if np.size(c)), default=0)
        if all(n in self._declared for n in self._num_states):
            cat = {
                n: normalize_declared(self._declared[n], np.shape(position[n]))
                for n in self._num_states
            }
        else:
            energy_fn = self.get_potential_fn(*jax.tree.map(_stand_in, (model_args, model_kwargs)))
            pos = jax.tree.map(_stand_in, dict(position))
            cat = gibbs.categorical_interaction_colouring(energy_fn, pos, self._num_states)
        for n, c in cat.items():
            out[n] = np.asarray(c) + offset
        return out

    def _init_kernel_state(self, position, energy_fn):
        if not self._colours:
            raise RuntimeError("init must run before the kernel state is built")
        return gibbs.init(position, energy_fn)

    def _initialize_model(self, rng_key, init_params, model_args, model_kwargs):
        position = super()._initialize_model(rng_key, init_params, model_args, model_kwargs)
        self._colours = self._choose_colours(position, model_args, model_kwargs)
        return position

    def _validate_position(self, position: Any) -> None:
        super()._validate_position(position)
        if self._model is None:
            self._colours = self._choose_colours(position, (), {})

    def _build(self):
        kernel = gibbs.build_kernel(
            colours=self._colours,
            levels=self._levels,
            affine=self._affine,
            gaussian=self._gaussian,
            **self._categorical_options(),
        )
        return gibbs.init, kernel

    def _info_cls(self) -> type:
        return gibbs.GibbsInfo


class GibbsWithGradients(_BinaryAdapter):
    """Gibbs with gradients (Grathwohl et al. 2021): one gradient-proposed flip per ``sample``.

    Exact Metropolis–Hastings for any energy of binary units; the gradient only shapes the
    proposal. One step flips at most one unit: for a sweep-equivalent, thin by the number of
    units. A step is ``diverging`` (as in NumPyro's HMC) when its energy error, ``-log`` of the
    acceptance ratio (``+inf`` for a non-finite proposal), exceeds ``max_delta_energy``.

    Args:
        model: NumPyro model (exactly one of ``model``/``potential_fn``).
        potential_fn: energy of a dict position (then ``levels=`` is needed).
        params: dict of parameter values for the model's ``numpyro.param`` sites.
        levels: dict site -> ``(lo, hi)``; needed with ``potential_fn=``.
        init_strategy: NumPyro init strategy for ``model=``.
        max_delta_energy: divergence threshold on the energy error (NumPyro's default 1000).

    Examples:
        >>> import jax
        >>> from ebm_ppl.models import boltzmann
        >>> kernel = GibbsWithGradients(boltzmann.model)
        >>> state = kernel.init(jax.random.PRNGKey(0), 0, None, (5,), {})
        >>> kernel.sample(state, (5,), {}).z["x"].shape
        (5,)
    """

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], jax.Array] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        levels: Mapping[str, tuple[float, float]] | None = None,
        init_strategy: Callable[..., Any] = init_to_uniform,
        max_delta_energy: float = 1000.0,
        num_states: Mapping[str, int] | None = None,
    ):
        # GWG is exact for any energy: the affinity check of binary sites is not needed.
        super().__init__(
            model,
            potential_fn,
            params=params,
            levels=levels,
            conditionals="exact",
            init_strategy=init_strategy,
            max_delta_energy=max_delta_energy,
            num_states=num_states,
        )

    _categorical_conditionals = "auto"

    def _init_kernel_state(self, position, energy_fn):
        return gwg.init(position, energy_fn)

    def _build(self):
        return (
            gwg.init,
            gwg.build_kernel(
                levels=self._levels,
                max_delta_energy=self._max_delta_energy,
                **self._categorical_options(),
            ),
        )

    def _info_cls(self) -> type:
        return gwg.GWGInfo


class _DiscreteLangevin(_BinaryAdapter):
    """DULA/DMALA: every unit proposed at once; a step size ``α`` tuned during warmup."""

    _uses_step_size = True
    _categorical_conditionals = "auto"
    _adjusted = True

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], jax.Array] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        step_size: float = 0.5,
        adapt_step_size: bool = True,
        target_accept_prob: float = 0.574,
        levels: Mapping[str, tuple[float, float]] | None = None,
        num_states: Mapping[str, int] | None = None,
        init_strategy: Callable[..., Any] = init_to_uniform,
        max_delta_energy: float = 1000.0,
    ):
        super().__init__(
            model,
            potential_fn,
            params=params,
            levels=levels,
            conditionals="exact",
            init_strategy=init_strategy,
            max_delta_energy=max_delta_energy,
            num_states=num_states,
            step_size=step_size,
            adapt_step_size=adapt_step_size,
            target_accept_prob=target_accept_prob,
        )

    def _step(self, rng_key, state, model_args, model_kwargs):
        energy_fn = self.get_potential_fn(model_args, model_kwargs)
        return self._pure_pair()[1](
            rng_key, state.kernel_state, energy_fn, state.adapt_state.step_size
        )

    def _build(self):
        return (
            dlangevin.init,
            dlangevin.build_kernel(
                levels=self._levels,
                adjusted=self._adjusted,
                max_delta_energy=self._max_delta_energy,
                **self._categorical_options(),
            ),
        )

    def _info_cls(self) -> type:
        return dlangevin.DLangevinInfo


class DMALA(_DiscreteLangevin):
    """Discrete Metropolis-adjusted Langevin (Zhang, Liu & Liu 2022) for binary and categorical
    sites: all units proposed at once from the gradient, then a Metropolis–Hastings correction
    (:mod:`ebm_ppl.kernels.dlangevin`). Exact for any energy of discrete units.

    The step size ``α`` is tuned during warmup by dual averaging toward ``target_accept_prob``.
    Categorical logits come from one gradient with respect to the :func:`~ebm_ppl.one_hot`
    encoding when that is exact (checked at :meth:`init`), else from exact energy differences.

    Args:
        model: NumPyro model (exactly one of ``model``/``potential_fn``).
        potential_fn: energy of a dict position (then ``levels=`` or ``num_states=``).
        params: dict of parameter values for the model's ``numpyro.param`` sites.
        step_size: initial ``α > 0``.
        adapt_step_size: dual averaging during warmup (default ``True``).
        target_accept_prob: acceptance target of the adaptation.
        levels: dict binary site -> ``(lo, hi)`` (``potential_fn=`` only).
        num_states: dict categorical site -> q (``potential_fn=`` only).
        init_strategy: NumPyro init strategy for ``model=``.
        max_delta_energy: divergence threshold on the energy error.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def potts():
        ...     o = ebm.one_hot(numpyro.sample("c", ebm.Categorical(6, 3)), 3)
        ...     ebm.energy("E", -jnp.sum(o[1:] * o[:-1]))
        >>> kernel = DMALA(potts)
        >>> state = kernel.init(jax.random.PRNGKey(0), 10, None, (), {})
        >>> str(kernel.sample(state, (), {}).z["c"].dtype)
        'int32'
    """

    _adjusted = True


class DULA(_DiscreteLangevin):
    """Discrete unadjusted Langevin (Zhang, Liu & Liu 2022): the :class:`DMALA` proposal,
    always taken. Biased at any finite ``α`` (less as ``α`` shrinks); the reported acceptance
    rate is the Metropolis–Hastings probability the proposal would have had, which warmup
    tunes ``α`` against. Arguments as :class:`DMALA`.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def chain():
        ...     s = numpyro.sample("s", ebm.Spins(5))
        ...     ebm.energy("E", -jnp.sum(s[1:] * s[:-1]))
        >>> kernel = DULA(chain, step_size=0.3)
        >>> state = kernel.init(jax.random.PRNGKey(0), 10, None, (), {})
        >>> kernel.sample(state, (), {}).z["s"].shape
        (5,)
    """

    _adjusted = False


register_kernel("gibbs", lambda model, params: BlockGibbs(model, params=params or None))
register_kernel("gwg", lambda model, params: GibbsWithGradients(model, params=params or None))
register_kernel("dmala", lambda model, params: DMALA(model, params=params or None))
register_kernel("dula", lambda model, params: DULA(model, params=params or None))
