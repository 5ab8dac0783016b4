"""NumPyro adapter of the composite kernel: Gibbs blocks for discrete sites, MALA for the rest.

:class:`Composite` moves every state site of a model that mixes binary and continuous sites
(a Gaussian–Bernoulli RBM, binary switches next to a real-valued state). It reads the model's
site plan once, at :meth:`~Composite.init`, and lets
:func:`ebm_ppl.kernels.resolve.resolve_kernel` (``kernel="auto"``) choose the blocks: block
Gibbs for binary sites whose conditionals are exact (energy affine in each unit, or declared
blocks) together with real sites declared as Gaussian blocks, Gibbs with gradients for the
other binary sites, and MALA for the remaining continuous sites. One ``sample`` call is one pass
over the blocks (:mod:`ebm_ppl.kernels.composite`).

Positions live on the kernel's space: continuous sites unconstrained (the potential carries the
log-Jacobian, as NumPyro's HMC does), discrete sites as floats (``SitePlan.to_kernel``);
``postprocess_fn`` maps them back to constrained values in the model's dtypes (``int32`` for
NumPyro's ``Bernoulli``). The step size of the MALA block is tuned during warmup by dual
averaging toward ``target_accept_prob`` on its acceptance rate. Chains are vectorized like every
:class:`~ebm_ppl.infer.adapter.KernelAdapter`. ``ebm_ppl.sample(kernel="auto")`` uses this
kernel for mixed models (``kernel="composite"`` names it directly).

Examples:
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> import ebm_ppl as ebm
    >>> from numpyro.infer import MCMC
    >>> def switch():                    # x | b ~ N(2b, 1), b ~ Bernoulli(1/2)
    ...     b = numpyro.sample("b", dist.Bernoulli(0.5))
    ...     x = numpyro.sample("x", ebm.Flat(()))
    ...     ebm.energy("E", 0.5 * (x - 2.0 * b) ** 2)
    >>> mcmc = MCMC(Composite(switch), num_warmup=50, num_samples=20, num_chains=2,
    ...             chain_method="vectorized", progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0))
    >>> s = mcmc.get_samples()
    >>> s["x"].shape, s["b"].dtype
    ((40,), dtype('int32'))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import log_density

from ebm_ppl.energy.conditionals import check_affine
from ebm_ppl.energy.plan import SitePlan
from ebm_ppl.infer.adapter import KernelAdapter
from ebm_ppl.infer.discrete import _stand_in, _trace_plan, _with_param_init
from ebm_ppl.infer.registry import register_kernel
from ebm_ppl.kernels import composite
from ebm_ppl.kernels.resolve import Sampler, resolve_kernel

__all__ = ["Composite"]

_GIBBS_SITES_KWARG = "_gibbs_sites"  # numpyro.infer.gibbs.GIBBS_SITES_KWARG


class Composite(KernelAdapter):
    """Composite kernel of a mixed model for ``numpyro.infer.MCMC`` and ``ebm_ppl.sample``.

    The blocks come from the model's site plan (see the module docstring); ``blocks`` (the
    sites of each block) and ``block_names`` (their kernels) are readable after :meth:`init`.
    ``sample_stats`` report ``acceptance_rate`` and ``step_size`` of the MALA block (every
    block's acceptance when none takes a step size), ``diverging`` when any block diverged,
    and ``potential_energy`` = E(z) on the kernel's space.

    Args:
        model: NumPyro model (``potential_fn=`` is not supported: the blocks are read off the
            model's sites).
        params: constrained values of the model's ``numpyro.param`` sites.
        step_size: initial step size of the MALA block.
        adapt_step_size: dual averaging of that step size during warmup.
        target_accept_prob: target acceptance of the MALA block, in ``(0, 1)``.
        init_strategy: NumPyro init strategy.

    Raises:
        ValueError: ``model`` not given; at :meth:`init`, a state site no kernel moves
            (categorical or other discrete supports), naming the site.

    Examples:
        >>> import jax, numpyro, ebm_ppl as ebm
        >>> def m():
        ...     s = numpyro.sample("s", ebm.Spins(2))
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", 0.5 * (x**2).sum() - (x * s).sum())   # affine in each spin
        >>> k = Composite(m)
        >>> state = k.init(jax.random.PRNGKey(0), 10, None, (), {})
        >>> k.blocks, k.block_names
        ((('s',), ('x',)), ('gibbs', 'mala'))
    """

    unconstrained = False  # the position mixes unconstrained reals and discrete floats

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        step_size: float = 0.1,
        adapt_step_size: bool = True,
        target_accept_prob: float = 0.574,
        init_strategy: Callable[..., Any] = init_to_uniform,
    ):
        if model is None:
            raise ValueError("Composite needs model= (its blocks are read off the model's sites)")
        super().__init__(
            model,
            params=params,
            step_size=step_size,
            adapt_step_size=adapt_step_size,
            target_accept_prob=target_accept_prob,
            init_strategy=init_strategy,
        )
        self._sampler: Sampler | None = None
        self._plan: SitePlan | None = None

    def _validate_position(self, position: Any) -> None:
        super()._validate_position(position)
        assert self._plan is not None
        # discrete starts inside their supports (continuous ones are unconstrained here)
        self._plan.validate_values(
            {n: v for n, v in position.items() if self._plan[n].is_discrete},
            argument="init_params",
        )

    def _bound_model(self) -> Callable[..., Any]:
        model = super()._bound_model()
        return model if self._params is not None else _with_param_init(model)

    @property
    def blocks(self) -> tuple[tuple[str, ...], ...]:
        """The sites of each block, in sweep order (after :meth:`init`)."""
        return () if self._sampler is None else self._sampler.blocks

    @property
    def block_names(self) -> tuple[str, ...]:
        """The kernel of each block (``"gibbs"``, ``"gwg"``, ``"mala"``; after :meth:`init`)."""
        return () if self._sampler is None else self._sampler.block_names

    # ------------------------------------------------------------------ model analysis
    def _initialize_model(self, rng_key, init_params, model_args, model_kwargs):
        # Constrained values in the model's dtypes: drawn by the init strategy, or given
        # under numpyro.infer.Gibbs; init_params given otherwise are on the kernel's space.
        position = super()._initialize_model(rng_key, init_params, model_args, model_kwargs)
        position = {n: jnp.asarray(v) for n, v in dict(position).items()}
        constrained = init_params is None or _GIBBS_SITES_KWARG in model_kwargs
        model = self._bound_model()
        plan = _trace_plan(model, {}, *jax.tree.map(_stand_in, (model_args, model_kwargs)))
        self._plan = plan
        sites = tuple(n for n in plan.state_sites if n in position)
        transforms = {n: plan[n].transform for n in sites if plan[n].is_constrained}
        if constrained:
            position = {
                n: (transforms[n].inv(v) if n in transforms else v) for n, v in position.items()
            }
        position = plan.to_kernel(position)

        def to_model(z: Mapping[str, Any]) -> tuple[dict[str, Any], jax.Array]:
            values, log_det = {}, jnp.zeros(())
            for name, value in z.items():
                t = transforms.get(name)
                if t is None:
                    values[name] = value
                else:
                    x = t(value)
                    log_det = log_det + jnp.sum(t.log_abs_det_jacobian(value, x))
                    values[name] = x
            return values, log_det

        def potential_fn_gen(*args: Any, **kwargs: Any) -> Callable[[Any], jax.Array]:
            def potential(z: Any) -> jax.Array:
                values, log_det = to_model(z)
                return -log_density(model, args, kwargs, values)[0] - log_det

            return potential

        def postprocess_fn_gen(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
            return lambda z: plan.from_kernel(to_model(z)[0])

        self._potential_fn_gen = potential_fn_gen
        self._postprocess_fn_gen = postprocess_fn_gen
        self._sampler = self._resolve(plan, sites, position, model_args, model_kwargs)
        return position

    def _resolve(
        self,
        plan: SitePlan,
        sites: tuple[str, ...],
        position: Mapping[str, Any],
        model_args: tuple,
        model_kwargs: dict,
    ) -> Sampler:
        # Structural checks (affinity, colours, Gaussian blocks) run on concrete stand-ins of
        # traced inputs, as the binary adapters do.
        args, kwargs = jax.tree.map(_stand_in, (model_args, model_kwargs))
        energy_fn = self.get_potential_fn(args, kwargs)
        pos = jax.tree.map(_stand_in, dict(position))
        levels = plan.levels(n for n in sites if plan[n].kind == "binary")
        affine = check_affine(energy_fn, pos, levels) if levels else {}
        return resolve_kernel(
            "auto",
            plan=plan,
            sites=sites,
            purpose="sample",
            step_size=self._step_size,
            affine=affine,
            probe=(energy_fn, pos),
        )

    # ------------------------------------------------------------------ pure kernel
    def _build(self):
        if self._sampler is None:
            raise RuntimeError("init must run before the kernel is built")
        return self._sampler.init, self._sampler.step

    def _step(self, rng_key, state, model_args, model_kwargs):
        energy_fn = self.get_potential_fn(model_args, model_kwargs)
        step_size = state.adapt_state.step_size
        return self._pure_pair()[1](rng_key, state.kernel_state, energy_fn, step_size)

    def _info_cls(self) -> type:
        return composite.CompositeInfo

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_sampler"] = None  # closures, rebuilt by init
        return state

    def _init_info(self, kernel_state: Any) -> Any:
        assert self._sampler is not None
        dtype = jnp.result_type(kernel_state.energy)
        return composite.CompositeInfo(
            jnp.zeros((), dtype),
            jnp.array(False),
            jnp.array(False),
            jnp.zeros((len(self._sampler.blocks),), dtype),
        )


register_kernel("composite", lambda model, params: Composite(model, params=params or None))
