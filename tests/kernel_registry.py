"""Registry of kernels run through the contract suite (``tests/test_contract.py``).

Every sampler of ``ebm_ppl.kernels`` joins by appending a :class:`KernelEntry` to ``KERNELS``
(one entry per configuration worth checking). An entry describes a small test problem and how
to take one pure step on it; the suite checks, for every entry:

* same key, same output (bitwise);
* ``jit`` vs eager and ``vmap`` vs a Python loop: ``allclose`` at ``rtol=1e-5`` for continuous
  kernels, bitwise (``exact=True``) for discrete ones;
* stable state structure, shapes and dtypes from step to step (so ``lax.scan`` works);
* the energy function is traced at most twice when ``init`` and a scan of steps are compiled
  together (once for ``init``, once for the step);
* non-finite energies become rejections flagged ``is_divergent`` (``check_divergence=True``);
* the NumPyro adapter (``make_mcmc_kernel``) runs under ``numpyro.infer.MCMC`` with
  ``chain_method="sequential"`` and ``"vectorized"``, collecting NumPyro's
  ``extra_fields=("diverging", "potential_energy")``.

Example of an entry (a discrete kernel would set ``exact=True``)::

    KernelEntry(
        name="gibbs-ising",
        build=lambda energy_fn: (lambda: gibbs.init(x0, energy_fn),
                                 lambda key, s: gibbs_kernel(key, s, energy_fn)),
        energy_fn=ising_energy,
        exact=True,
        make_mcmc_kernel=lambda: BlockGibbs(ising_model),
    )
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpyro
from ebm_ppl.models import boltzmann, ising, potts

import ebm_ppl as ebm
from ebm_ppl.energy.conditionals import categorical_value_and_logits
from ebm_ppl.infer.discrete import DMALA, BlockGibbs, GibbsWithGradients
from ebm_ppl.infer.langevin import MALA, SGLD, ULA
from ebm_ppl.infer.lattice import LatticeGibbs, SwendsenWang
from ebm_ppl.kernels import compact, dlangevin, gibbs, gwg, mala, sgld, ula

StepFn = Callable[[Any, Any], tuple[Any, Any]]


@dataclass(frozen=True)
class KernelEntry:
    """One kernel configuration for the contract suite.

    Attributes:
        name: test id.
        build: ``build(energy_fn) -> (init_fn, step_fn)`` with ``init_fn() -> state`` and
            ``step_fn(rng_key, state) -> (state, info)``; the suite passes a wrapped
            ``energy_fn`` (to count traces) with the same signature as ``energy_fn``.
        energy_fn: the test problem's energy (any signature ``build`` expects).
        exact: compare jit/eager and vmap/loop bitwise (discrete kernels) instead of
            ``allclose(rtol=1e-5)``.
        divergent_energy_fn: an energy that is non-finite on part of the space reachable
            from ``init_fn()``'s state; with it, steps must flag ``is_divergent`` and never
            produce a non-finite state. ``None`` skips the check.
        make_mcmc_kernel: ``() -> (MCMCKernel, model_args)`` for the ``numpyro.infer.MCMC``
            checks, or ``None``.
    """

    name: str
    build: Callable[[Callable[..., Any]], tuple[Callable[[], Any], StepFn]]
    energy_fn: Callable[..., Any]
    exact: bool = False
    divergent_energy_fn: Callable[..., Any] | None = None
    make_mcmc_kernel: Callable[[], tuple[Any, tuple]] | None = None


# ----------------------------------------------------------------------------- test problems
_PREC = jnp.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.5]])
_X0 = {"a": jnp.array([0.3, -0.2]), "b": jnp.array(0.5)}  # a pytree position (flat size 3)


def _flat(p: Any) -> Any:
    return jnp.concatenate([p["a"], p["b"][None]])


def gaussian_energy(p: Any) -> Any:
    x = _flat(p)
    return 0.5 * x @ _PREC @ x


def _wall(x: Any) -> Any:
    # a pseudo-random ~7% of the space where the energy is not finite, reachable from anywhere
    return jnp.sin(1e3 * x[0]) > 0.9


def walled_energy(p: Any) -> Any:
    """The Gaussian energy, but +inf on a scattered set: some proposals must diverge."""
    x = _flat(p)
    return jnp.where(_wall(x), jnp.inf, 0.5 * x @ _PREC @ x)


_DATA = jnp.linspace(-1.0, 1.0, 16)


def minibatch_energy(p: Any, batch: Any) -> Any:
    x = _flat(p)
    return jnp.sum(0.5 * (x[:, None] - batch[None, :]) ** 2)


def walled_minibatch_energy(p: Any, batch: Any) -> Any:
    x = _flat(p)
    return jnp.where(_wall(x), jnp.nan, jnp.sum(0.5 * (x[:, None] - batch[None, :]) ** 2))


def gaussian_model(dim: int = 3):
    x = numpyro.sample("x", ebm.Flat((dim,)))
    ebm.energy("E", 0.5 * jnp.sum(x**2))


def regression_model(x, y):
    w = numpyro.sample("w", numpyro.distributions.Normal(0.0, 1.0).expand([2]).to_event(1))
    with numpyro.plate("data", x.shape[0], subsample_size=8) as idx:
        numpyro.sample("y", numpyro.distributions.Normal(x[idx] @ w, 1.0), obs=y[idx])


def _regression_args() -> tuple:
    x = jnp.stack([jnp.linspace(-1.0, 1.0, 32), jnp.cos(jnp.arange(32.0))], axis=1)
    return (x, x @ jnp.array([0.5, -1.0]))


# ----------------------------------------------------------------------------- Langevin entries
def _continuous(init: Callable[..., Any], kernel: Callable[..., Any], *step_args: Any):
    def build(energy_fn: Callable[..., Any]):
        return (lambda: init(_X0, energy_fn)), (
            lambda key, state: kernel(key, state, energy_fn, *step_args)
        )

    return build


def _sgld_build(energy_fn: Callable[..., Any]):
    kernel = sgld.build_kernel(data_size=64, prior_energy_fn=gaussian_energy)
    return (lambda: sgld.init(_X0)), (lambda key, state: kernel(key, state, energy_fn, _DATA, 1e-3))


KERNELS: list[KernelEntry] = [
    KernelEntry(
        name="ula",
        build=_continuous(ula.init, ula.build_kernel(), 0.05),
        energy_fn=gaussian_energy,
        divergent_energy_fn=walled_energy,
        make_mcmc_kernel=lambda: (ULA(gaussian_model, step_size=0.05), ()),
    ),
    KernelEntry(
        name="ula-clipped",
        build=_continuous(
            ula.init, ula.build_kernel(clip_grad_norm=0.5, clip_position=(-1.0, 1.0)), 0.05
        ),
        energy_fn=gaussian_energy,
    ),
    KernelEntry(
        name="mala",
        build=_continuous(mala.init, mala.build_kernel(), 0.3),
        energy_fn=gaussian_energy,
        divergent_energy_fn=walled_energy,
        make_mcmc_kernel=lambda: (MALA(gaussian_model, adapt_mass_matrix=True), ()),
    ),
    KernelEntry(
        name="mala-diagonal-mass",
        build=_continuous(mala.init, mala.build_kernel(), 0.3, jnp.array([0.5, 1.0, 2.0])),
        energy_fn=gaussian_energy,
    ),
    KernelEntry(
        name="sgld",
        build=_sgld_build,
        energy_fn=minibatch_energy,
        divergent_energy_fn=walled_minibatch_energy,
        make_mcmc_kernel=lambda: (SGLD(regression_model, step_size=1e-3), _regression_args()),
    ),
]


# ----------------------------------------------------------------------------- discrete entries
_SPINS0 = {"s": jnp.where(jnp.arange(36).reshape(6, 6) % 3 == 0, -1.0, 1.0)}
_SPIN_LEVELS = {"s": (-1.0, 1.0)}


def ising_energy(p: Any) -> Any:
    # beta = 1/2: energies and their gradients are exact in float32, so eager and jit agree bitwise
    return ising.energy(p["s"], beta=0.5)


def walled_ising_energy(p: Any) -> Any:
    """Ising energy, +inf when the first two spins are both -1 (reachable by single flips)."""
    s = p["s"]
    return jnp.where((s[0, 0] < 0) & (s[0, 1] < 0), jnp.inf, ising.energy(s, beta=0.5))


def _gibbs_build(energy_fn: Callable[..., Any]):
    kernel = gibbs.build_kernel(colours={"s": ising.blocks((6, 6))}, levels=_SPIN_LEVELS)
    return (lambda: gibbs.init(_SPINS0, energy_fn)), (lambda key, s: kernel(key, s, energy_fn))


def _gibbs_exact_build(energy_fn: Callable[..., Any]):
    kernel = gibbs.build_kernel(
        colours={"s": ising.blocks((6, 6))}, levels=_SPIN_LEVELS, affine=False
    )
    return (lambda: gibbs.init(_SPINS0, energy_fn)), (lambda key, s: kernel(key, s, energy_fn))


def _gwg_build(energy_fn: Callable[..., Any]):
    kernel = gwg.build_kernel(levels=_SPIN_LEVELS)
    return (lambda: gwg.init(_SPINS0, energy_fn)), (lambda key, s: kernel(key, s, energy_fn))


KERNELS += [
    KernelEntry(
        name="gibbs-ising",
        build=_gibbs_build,
        energy_fn=ising_energy,
        exact=True,
        make_mcmc_kernel=lambda: (BlockGibbs(ising.model), ((4, 4),)),
    ),
    KernelEntry(
        name="gibbs-exact-differences",
        build=_gibbs_exact_build,
        energy_fn=ising_energy,
        exact=True,
    ),
    KernelEntry(
        name="gwg-ising",
        build=_gwg_build,
        energy_fn=ising_energy,
        exact=True,
        divergent_energy_fn=walled_ising_energy,
        make_mcmc_kernel=lambda: (GibbsWithGradients(boltzmann.model), (5,)),
    ),
]


# ----------------------------------------------------------------------------- categorical entries
# A 2x4 periodic Potts model, q = 3, beta = 1/2 and fields in quarters: every energy, logit and
# gradient is exact in float32, so eager and jit agree bitwise.
_CAT0 = {"c": (jnp.arange(8).reshape(2, 4) * 7 % 3).astype(jnp.int32)}
_CAT_Q = {"c": 3}
_CAT_FIELD = jnp.array([0.0, 0.25, -0.5])


def potts_energy(p: Any) -> Any:
    o = ebm.one_hot(p["c"], 3)
    agree = jnp.sum(o * jnp.roll(o, -1, 0)) + jnp.sum(o * jnp.roll(o, -1, 1))
    return -0.5 * agree - jnp.sum(o @ _CAT_FIELD)


def walled_potts_energy(p: Any) -> Any:
    """Potts energy, +inf when the first unit is in state 2 (one move away from the start)."""
    return jnp.where(p["c"][0, 0] == 2, jnp.inf, potts_energy(p))


def potts_model():
    blocks = gibbs.lattice_colouring((2, 4))
    c = numpyro.sample("c", ebm.Categorical((2, 4), 3), infer={"blocks": blocks})
    ebm.energy("E", potts_energy({"c": c}))


def _gradient_logits(energy_fn: Any, position: Any, num_states: Any) -> Any:
    return categorical_value_and_logits(energy_fn, position, num_states, affine={"c": True})


def _categorical_build(make: Callable[[], Any], init: Callable[..., Any], *step_args: Any):
    def build(energy_fn: Callable[..., Any]):
        kernel = make()
        return (lambda: init(_CAT0, energy_fn)), (
            lambda key, s: kernel(key, s, energy_fn, *step_args)
        )

    return build


KERNELS += [
    KernelEntry(
        name="gibbs-potts",
        build=_categorical_build(
            lambda: gibbs.build_kernel(
                colours={"c": gibbs.lattice_colouring((2, 4))}, num_states=_CAT_Q
            ),
            gibbs.init,
        ),
        energy_fn=potts_energy,
        exact=True,
        # BlockGibbs on categorical sites runs under ebm.sample and numpyro.infer.Gibbs in
        # tests/test_categorical.py; the adapter checks here run DMALA's
    ),
    KernelEntry(
        name="dmala-potts-gradient",
        build=_categorical_build(
            lambda: dlangevin.build_kernel(num_states=_CAT_Q, logits_fn=_gradient_logits),
            dlangevin.init,
            0.75,
        ),
        energy_fn=potts_energy,
        exact=False,
        divergent_energy_fn=walled_potts_energy,
        make_mcmc_kernel=lambda: (DMALA(potts_model), ()),
    ),
]


# ----------------------------------------------------------------------------- declared lattices
# The compact heat bath and Swendsen–Wang read beta, J and h from a LatticeEnergy, not from an
# energy function: ``build`` ignores the suite's (counting) energy_fn. beta = 1/2 keeps every
# energy exact in float32, so eager and jit agree bitwise.
def _lattice_build(method: str, kind: str, q: int, position: Any, dtype: str):
    init, step = compact.build(method, kind, site="s", num_states=q, dtype=dtype)
    energy = compact.LatticeEnergy("s", kind, q, jnp.float32(0.5))

    def one_step(key: Any, state: Any) -> Any:
        state, info = step(key, state, energy)
        if method == "swendsen_wang":
            # the labelling loop's iteration count is, by design, that of the merged loop of
            # all vmapped chains (cluster.ClusterInfo): a cost diagnostic, not part of a chain
            info = info._replace(num_iterations=jnp.zeros_like(info.num_iterations))
        return state, info

    def build(energy_fn: Callable[..., Any]):
        del energy_fn
        return (lambda: init(position, energy)), one_step

    return build


_POTTS0 = {"s": (jnp.arange(36).reshape(6, 6) * 7 % 3).astype(jnp.int32)}

KERNELS += [
    KernelEntry(
        name="lattice-gibbs-ising",
        build=_lattice_build("gibbs", "ising", 2, _SPINS0, "float32"),
        energy_fn=compact.LatticeEnergy("s", "ising", 2, 0.5),
        exact=True,
        make_mcmc_kernel=lambda: (LatticeGibbs(ising.model), ((4, 4),)),
    ),
    KernelEntry(
        name="swendsen-wang-potts",
        build=_lattice_build("swendsen_wang", "potts", 3, _POTTS0, "int32"),
        energy_fn=compact.LatticeEnergy("s", "potts", 3, 0.5),
        exact=True,
        make_mcmc_kernel=lambda: (SwendsenWang(potts.model), ((4, 4), 3)),
    ),
]
