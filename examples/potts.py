"""Potts models across the critical temperature: energy, magnetization, Binder cumulant.

For ``q = 3`` and ``q = 4`` on ``L x L`` tori (two sizes), categorical checkerboard Gibbs
(``ebm_ppl.kernels.gibbs``, conditional logits from one gradient with respect to the one-hot
encoding) runs ``--chains`` chains at each of ``--num-temps`` temperatures in
``T_c (1 ± --span)``, all vectorized in one compiled program per size. From the draws:

* the energy per site ``u = -Σ_<ij> δ(σ_i, σ_j) / N`` (``J = 1``), against
  ``u_c = -(1 + 1/√q)`` at ``T_c``;
* the order parameter ``|m|``, ``|m|² = (q Σ_k n_k² - 1) / (q - 1)`` with ``n_k`` the fraction
  of sites in state ``k`` (1 when ordered, ``O(1/N)`` when disordered);
* the Binder cumulant ``U = 1 - ⟨|m|⁴⟩ / (3 ⟨|m|²⟩²)``, whose curves for the two sizes cross
  near ``T_c``: the crossing (linear interpolation between grid points) is the estimate of
  ``T_c``, compared with the exact ``1 / ln(1 + √q)``.

The chains start ordered (all in state 0), which equilibrates fast on both sides of ``T_c`` at
these sizes. A figure (energy, magnetization and Binder cumulant against ``T`` for each q and
size) is written to ``--figure``.

Usage: ``python examples/potts.py [--sizes 12 24] [--figure potts.png]``
(tiny: ``--sizes 4 6 --num-temps 3 --chains 2 --warmup 5 --samples 10``).
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from ebm_ppl.models import potts

from ebm_ppl.energy.conditionals import categorical_value_and_logits
from ebm_ppl.kernels import gibbs


def observables(s: jax.Array, q: int) -> tuple[jax.Array, jax.Array]:
    """Energy per site (J = 1) and ``|m|²`` of one configuration."""
    n = s.size
    frac = jnp.mean(jax.nn.one_hot(s, q), axis=(0, 1))
    m2 = (q * jnp.sum(frac**2) - 1.0) / (q - 1.0)
    return potts.energy(s, q) / n, m2


def run_size(key, q: int, L: int, temps: np.ndarray, chains: int, warmup: int, samples: int):
    """Draws of ``(u, |m|²)``, each of shape ``(num_temps, chains, samples)``."""
    kernel = gibbs.build_kernel(
        colours={"s": potts.blocks((L, L))},
        num_states={"s": q},
        logits_fn=functools.partial(categorical_value_and_logits, affine={"s": True}),
    )

    def chain(key, beta):
        def energy_fn(p):
            return potts.energy(p["s"], q, beta=beta)

        state = gibbs.init({"s": potts.ordered_state((L, L))}, energy_fn)

        def burn(st, k):
            return kernel(k, st, energy_fn)[0], None

        def draw(st, k):
            st, _ = kernel(k, st, energy_fn)
            return st, observables(st.position["s"], q)

        k_warm, k_draw = jax.random.split(key)
        state, _ = jax.lax.scan(burn, state, jax.random.split(k_warm, warmup))
        _, (u, m2) = jax.lax.scan(draw, state, jax.random.split(k_draw, samples))
        return u, m2

    @jax.jit
    def run(key, betas):
        keys = jax.random.split(key, betas.shape[0] * chains).reshape(betas.shape[0], chains, -1)
        return jax.vmap(lambda kb, b: jax.vmap(lambda k: chain(k, b))(kb))(keys, betas)

    u, m2 = run(key, jnp.asarray(1.0 / temps, jnp.float32))
    return np.asarray(u, np.float64), np.asarray(m2, np.float64)


def binder(m2: np.ndarray) -> np.ndarray:
    """``1 - ⟨|m|⁴⟩ / (3 ⟨|m|²⟩²)`` per temperature (over chains and draws)."""
    m2 = m2.reshape(m2.shape[0], -1)
    return 1.0 - np.mean(m2**2, axis=1) / (3.0 * np.mean(m2, axis=1) ** 2)


def crossing(temps: np.ndarray, small: np.ndarray, large: np.ndarray) -> float:
    """Temperature where ``U_large - U_small`` changes sign nearest the middle (linear)."""
    diff = large - small
    signs = np.flatnonzero(np.sign(diff[:-1]) != np.sign(diff[1:]))
    if signs.size == 0:
        return float("nan")
    i = signs[np.argmin(np.abs(signs - (len(temps) - 2) / 2.0))]
    t0, t1, d0, d1 = temps[i], temps[i + 1], diff[i], diff[i + 1]
    return float(t0 - d0 * (t1 - t0) / (d1 - d0))


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qs = sorted(results)
    fig, axes = plt.subplots(len(qs), 3, figsize=(12, 3.4 * len(qs)), squeeze=False)
    for row, q in zip(axes, qs, strict=True):
        r = results[q]
        for L, (u, m, U) in r["sizes"].items():
            row[0].plot(r["temps"], u, "o-", label=f"L = {L}")
            row[1].plot(r["temps"], m, "o-", label=f"L = {L}")
            row[2].plot(r["temps"], U, "o-", label=f"L = {L}")
        for ax in row:
            ax.axvline(r["t_c"], color="k", ls=":", lw=1)
            ax.set_xlabel("T")
            ax.legend()
        row[0].axhline(potts.critical_energy(q), color="gray", ls="--", lw=1)
        row[0].set_ylabel(f"q = {q}: energy per site")
        row[1].set_ylabel("|m|")
        row[2].set_ylabel(f"Binder U (crossing {r['estimate']:.4f})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--sizes", type=int, nargs=2, default=[12, 24])
    parser.add_argument("--num-temps", type=int, default=13)
    parser.add_argument("--span", type=float, default=0.06, help="T in T_c (1 +- span)")
    parser.add_argument("--chains", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default="potts.png", help="figure path ('' for none)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = {}
    for q in args.states:
        t_c = potts.critical_temperature(q)
        temps = t_c * np.linspace(1.0 - args.span, 1.0 + args.span, args.num_temps)
        sizes = {}
        for L in sorted(args.sizes):
            key = jax.random.fold_in(jax.random.PRNGKey(args.seed), 1000 * q + L)
            u, m2 = run_size(key, q, L, temps, args.chains, args.warmup, args.samples)
            sizes[L] = (
                u.mean(axis=(1, 2)),
                np.sqrt(m2).mean(axis=(1, 2)),
                binder(m2),
            )
        small, large = (sizes[L][2] for L in sorted(sizes))
        estimate = crossing(temps, small, large)
        results[q] = {"temps": temps, "t_c": t_c, "sizes": sizes, "estimate": estimate}
        print(f"q = {q}: exact T_c = {t_c:.5f}, u_c = {potts.critical_energy(q):.5f}")
        print(f"{'T':>8} " + " ".join(f"{'u(L=' + str(L) + ')':>10} {'U':>7}" for L in sizes))
        for i, t in enumerate(temps):
            print(
                f"{t:8.4f} "
                + " ".join(f"{sizes[L][0][i]:10.4f} {sizes[L][2][i]:7.4f}" for L in sizes)
            )
        rel = (estimate - t_c) / t_c
        print(f"q = {q}: Binder crossing T = {estimate:.5f} ({100 * rel:+.2f}% from exact T_c)")
    seconds = time.perf_counter() - start
    print(f"run time {seconds:.1f} s")
    if args.figure:
        plot(results, args.figure)
        print(f"figure: {args.figure}")
    return results


if __name__ == "__main__":
    main()
