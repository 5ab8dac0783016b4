"""Chains across devices and processes: placement, ``jit(shard_map(vmap))`` mapping, gathering.

Every multi-chain computation of ``ebm_ppl`` (``sample``, PCD chains, AIS) lifts a *per-chain*
function to a leading chain axis with :func:`map_chains`:

* ``"vectorized"``: ``jit(vmap(fn))`` on one device;
* ``"sequential"``: ``jit(lax.map(fn))``, one chain after the other (lowest memory);
* ``"sharded"``: ``jit(shard_map(vmap(fn)))`` on a one-axis mesh of devices with the ``Auto`` axis
  type, so each device runs a vectorized block of chains. ``jax.pmap`` is not used (it is being
  retired in favour of ``shard_map``), and GSPMD auto-sharding of a vmapped sampler is avoided
  (measured 10x slower for NUTS). A chain count that the device count does not divide is
  padded by repeating the last chain; the padded chains are dropped from the outputs.
* ``"parallel"``: the same as ``"sharded"`` with one chain per device.

Chains are independent (per-chain keys ``split(rng_key, num_chains)``, per-chain adaptation),
so the mapping changes where a chain runs, never what it computes: sharded draws equal
vectorized draws.

Under JAX's multi-process runtime (``jax.distributed.initialize``), :func:`place_chains` gives
each process a contiguous block of the global chains, the process maps them over its *local*
devices, and :func:`gather_chains` concatenates the blocks of all processes (every process
receives the full result, so process 0 can write diagnostics). No collective runs while the
chains run; only the final gather crosses processes.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> step = lambda key, x: x + jax.random.normal(key)
    >>> run = map_chains(step, "sharded", in_axes=(0, 0))
    >>> keys = jax.random.split(jax.random.PRNGKey(0), 6)
    >>> run(keys, jnp.zeros(6)).shape
    (6,)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CHAIN_METHODS",
    "ChainPlacement",
    "chain_device_labels",
    "gather_chains",
    "local_chains",
    "map_chains",
    "place_chains",
    "resolve_devices",
]

CHAIN_METHODS = ("auto", "vectorized", "sequential", "parallel", "sharded")
"""Accepted ``chain_method`` values."""

InAxes = int | None | Sequence[int | None]


def resolve_devices(devices: int | Sequence[Any] | None = None) -> tuple[Any, ...]:
    """The local devices to run chains on.

    Args:
        devices: ``None`` (all devices of this process, ``jax.local_devices()``), an int ``n``
            (the first ``n`` of them) or a sequence of ``jax.Device`` of this process.

    Returns:
        Tuple of ``jax.Device``.

    Raises:
        ValueError: for more devices than this process has, an empty sequence, or a device
            that belongs to another process.
        TypeError: for anything else.

    Examples:
        >>> len(resolve_devices(1))
        1
    """
    local = tuple(jax.local_devices())
    if devices is None:
        return local
    if isinstance(devices, bool):
        raise TypeError(
            f"devices must be None, an int or a sequence of jax devices, got {devices!r}"
        )
    if isinstance(devices, (int, np.integer)):
        if devices < 1 or devices > len(local):
            raise ValueError(
                f"devices={int(devices)} but this process has {len(local)} local device(s) "
                f"({', '.join(str(d) for d in local)})"
            )
        return local[: int(devices)]
    if isinstance(devices, (str, bytes)) or not isinstance(devices, Sequence):
        raise TypeError(
            f"devices must be None, an int or a sequence of jax devices, got {devices!r}"
        )
    out = tuple(devices)
    if not out:
        raise ValueError("devices must not be empty")
    if len(out) > len(local):
        raise ValueError(f"devices names {len(out)} devices but this process has {len(local)}")
    for d in out:
        if not isinstance(d, jax.Device):
            raise TypeError(f"devices must hold jax.Device objects, got {d!r}")
        if d not in local:
            raise ValueError(f"devices: {d} is not a local device of this process ({list(local)})")
    if len(set(out)) != len(out):
        raise ValueError(f"devices has duplicates: {list(out)}")
    return out


class ChainPlacement(NamedTuple):
    """Where the chains of one run live.

    Attributes:
        chain_method: the resolved method (never ``"auto"``).
        devices: the local devices this process maps its chains over.
        num_chains: chains in total, over all processes.
        start: global index of this process's first chain.
        num_local: chains run by this process (``start .. start + num_local``).
        block: chains per process before padding (``ceil(num_chains / process_count)``); the
            gather pads every process's block to this length.
        process_index: ``jax.process_index()``.
        process_count: ``jax.process_count()``.

    Examples:
        >>> p = place_chains(8, "vectorized")
        >>> (p.chain_method, p.num_local, p.start)
        ('vectorized', 8, 0)
    """

    chain_method: str
    devices: tuple[Any, ...]
    num_chains: int
    start: int
    num_local: int
    block: int
    process_index: int
    process_count: int

    def local_device_of_chain(self) -> list[Any]:
        """Device of each local chain, in chain order (as :func:`map_chains` places them).

        Examples:
            >>> [str(d) for d in place_chains(2, "vectorized").local_device_of_chain()]
            ['cpu:0', 'cpu:0']
        """
        n = self.num_local
        if self.chain_method in ("vectorized", "sequential"):
            return [self.devices[0]] * n
        per = -(-n // len(self.devices))  # ceil: padded chains per device
        return [self.devices[c // per] for c in range(n)]


def place_chains(
    num_chains: int,
    chain_method: str = "auto",
    devices: int | Sequence[Any] | None = None,
) -> ChainPlacement:
    """Resolve ``chain_method`` and ``devices`` and split ``num_chains`` over processes.

    ``"auto"`` is ``"sharded"`` when more than one device is used, else ``"vectorized"``.
    ``"parallel"`` (one chain per device) uses the first ``num_local`` devices and refuses more
    chains than devices. In a multi-process run (``jax.process_count() > 1``) process ``p`` runs
    global chains ``[p * block, min((p + 1) * block, num_chains))``.

    Args:
        num_chains: number of chains over all processes (>= 1, >= ``jax.process_count()``).
        chain_method: one of :data:`CHAIN_METHODS`.
        devices: see :func:`resolve_devices`.

    Returns:
        A :class:`ChainPlacement`.

    Raises:
        ValueError: unknown ``chain_method``, bad ``devices``, or too few chains.

    Examples:
        >>> place_chains(4, "sharded", devices=1).devices == place_chains(4, "vectorized").devices
        True
    """
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {CHAIN_METHODS}, got {chain_method!r}")
    devs = resolve_devices(devices)
    pcount, pindex = jax.process_count(), jax.process_index()
    if num_chains < pcount:
        raise ValueError(
            f"num_chains={num_chains} is smaller than the number of processes ({pcount})"
        )
    block = -(-num_chains // pcount)
    start = pindex * block
    num_local = max(0, min(num_chains, start + block) - start)
    if num_local == 0:
        raise ValueError(
            f"num_chains={num_chains} leaves process {pindex} of {pcount} without chains; "
            f"use a multiple of {pcount}"
        )
    if chain_method == "auto":
        chain_method = "sharded" if len(devs) > 1 else "vectorized"
    if chain_method == "parallel":
        if num_local > len(devs):
            raise ValueError(
                f"chain_method='parallel' runs one chain per device: {num_local} chains > "
                f"{len(devs)} device(s); use chain_method='sharded' or 'vectorized'"
            )
        devs = devs[:num_local]
    elif chain_method in ("vectorized", "sequential"):
        devs = devs[:1]
    return ChainPlacement(chain_method, devs, num_chains, start, num_local, block, pindex, pcount)


def _normalize_in_axes(in_axes: InAxes, num_args: int) -> tuple[int | None, ...]:
    axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * num_args
    if len(axes) != num_args:
        raise ValueError(f"in_axes has {len(axes)} entries for {num_args} arguments")
    for ax in axes:
        if ax not in (0, None):
            raise ValueError(f"in_axes entries must be 0 (per chain) or None (shared), got {ax!r}")
    return axes  # type: ignore[return-value]  # entries checked above


def _pad(tree: Any, target: int) -> Any:
    """Pad the leading (chain) axis to ``target`` by repeating the last chain."""

    def pad(x):
        n = x.shape[0]
        if n == target:
            return x
        return jnp.concatenate([x, jnp.repeat(x[-1:], target - n, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def map_chains(
    fn: Callable[..., Any],
    chain_method: str = "vectorized",
    devices: int | Sequence[Any] | None = None,
    in_axes: InAxes = 0,
) -> Callable[..., Any]:
    """Lift a per-chain function to a leading chain axis, on one device or sharded over several.

    ``fn(*args)`` computes one chain; the returned jitted function takes the same arguments with
    a leading chain axis on every argument whose ``in_axes`` entry is ``0`` (``None``: shared by
    all chains) and returns ``fn``'s outputs stacked along a leading chain axis. For
    ``"sharded"``/``"parallel"`` it is ``jit(shard_map(vmap(fn)))`` on an ``Auto``-axis mesh of
    ``devices`` with ``check_vma=False`` (NumPyro's ``cond`` branches fail the varying-axes
    check); a chain count that is not a multiple of the device count is padded by repeating the
    last chain and the padding is dropped from the outputs. Compile it once and call it on many
    chunks: the result is cached by ``jax.jit`` for each input shape.

    Args:
        fn: per-chain function of pytrees.
        chain_method: ``"vectorized"``, ``"sequential"``, ``"sharded"`` or ``"parallel"``
            (``"auto"`` as in :func:`place_chains`).
        devices: devices for ``"sharded"``/``"parallel"`` (see :func:`resolve_devices`);
            ignored otherwise.
        in_axes: ``0`` or ``None`` per positional argument (or one value for all).

    Returns:
        The jitted chain-mapped function.

    Raises:
        ValueError: unknown ``chain_method`` or bad ``in_axes``/``devices``.

    Examples:
        PCD chains or AIS particles reuse it the same way ``sample`` does:

        >>> import jax, jax.numpy as jnp
        >>> def chain(key, x0, scale):
        ...     return x0 + scale * jax.random.normal(key, x0.shape)
        >>> run = map_chains(chain, "sharded", in_axes=(0, 0, None))
        >>> keys = jax.random.split(jax.random.PRNGKey(1), 5)
        >>> x = run(keys, jnp.zeros((5, 3)), 0.1)
        >>> same = map_chains(chain, "vectorized", in_axes=(0, 0, None))(keys, jnp.zeros((5, 3)), 0.1)
        >>> bool(jnp.all(x == same))
        True
    """
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {CHAIN_METHODS}, got {chain_method!r}")
    devs = resolve_devices(devices)
    if chain_method == "auto":
        chain_method = "sharded" if len(devs) > 1 else "vectorized"
    if chain_method == "vectorized":

        def vectorized(*args):
            return jax.vmap(fn, in_axes=_normalize_in_axes(in_axes, len(args)))(*args)

        return jax.jit(vectorized)
    if chain_method == "sequential":

        def sequential(*args):
            axes = _normalize_in_axes(in_axes, len(args))
            mapped = [a for a, ax in zip(args, axes, strict=True) if ax == 0]
            shared = [a for a, ax in zip(args, axes, strict=True) if ax is None]

            def one(xs):
                it_m, it_s = iter(xs), iter(shared)
                return fn(*[next(it_m) if ax == 0 else next(it_s) for ax in axes])

            return jax.lax.map(one, mapped)

        return jax.jit(sequential)

    from jax.sharding import AxisType, Mesh, PartitionSpec

    # Auto axis type: with the default Explicit type shard_map demands pre-sharded inputs and
    # NumPyro's control flow fails on the sharding types.
    mesh = Mesh(np.array(devs), ("chain",), axis_types=(AxisType.Auto,))
    num_dev = len(devs)

    def sharded(*args):
        axes = _normalize_in_axes(in_axes, len(args))
        mapped = [a for a, ax in zip(args, axes, strict=True) if ax == 0]
        sizes = {x.shape[0] for a in mapped for x in jax.tree.leaves(a)}
        if len(sizes) != 1:
            raise ValueError(
                f"per-chain arguments disagree on the number of chains: {sorted(sizes)}"
            )
        (n,) = sizes
        if chain_method == "parallel" and n > num_dev:
            raise ValueError(
                f"chain_method='parallel' runs one chain per device: {n} chains > {num_dev} devices"
            )
        target = -(-n // num_dev) * num_dev
        args = tuple(_pad(a, target) if ax == 0 else a for a, ax in zip(args, axes, strict=True))
        specs = tuple(PartitionSpec("chain") if ax == 0 else PartitionSpec() for ax in axes)
        out = jax.shard_map(
            jax.vmap(fn, in_axes=axes),
            mesh=mesh,
            in_specs=specs,
            out_specs=PartitionSpec("chain"),
            check_vma=False,
        )(*args)
        return out if target == n else jax.tree.map(lambda x: x[:n], out)

    return jax.jit(sharded)


def local_chains(tree: Any, placement: ChainPlacement) -> Any:
    """This process's block of a pytree of global per-chain arrays (leading axis ``num_chains``).

    Examples:
        >>> import numpy as np
        >>> local_chains(np.arange(4), place_chains(4, "vectorized")).tolist()
        [0, 1, 2, 3]
    """
    if placement.process_count == 1:
        return tree
    s = slice(placement.start, placement.start + placement.num_local)
    return jax.tree.map(lambda x: x[s], tree)


def gather_chains(tree: Any, placement: ChainPlacement) -> Any:
    """Concatenate every process's block of per-chain host arrays into all ``num_chains`` chains.

    Single process: ``tree`` as NumPy arrays. Multi-process: a cross-process all-gather
    (``jax.experimental.multihost_utils.process_allgather``), so every process, process 0
    included, receives all chains in global chain order. Every process must call it.

    Args:
        tree: pytree of arrays with leading axis ``placement.num_local``.
        placement: the run's :class:`ChainPlacement`.

    Returns:
        Pytree of NumPy arrays with leading axis ``placement.num_chains``.

    Examples:
        >>> import numpy as np
        >>> gather_chains({"x": np.ones((3, 2))}, place_chains(3, "vectorized"))["x"].shape
        (3, 2)
    """
    tree = jax.tree.map(np.asarray, tree)
    if placement.process_count == 1:
        return tree
    from jax.experimental import multihost_utils

    # Every process must contribute arrays of the same shape: pad the last block.
    def pad(x):
        missing = placement.block - x.shape[0]
        return (
            x if missing == 0 else np.concatenate([x, np.repeat(x[-1:], missing, axis=0)], axis=0)
        )

    padded = jax.tree.map(pad, tree)
    flat, treedef = jax.tree.flatten(padded)
    dtypes = [x.dtype for x in flat]
    # Booleans travel as uint8 (collectives do not all support bool).
    flat = [x.astype(np.uint8) if x.dtype == np.bool_ else x for x in flat]
    out = multihost_utils.process_allgather(flat, tiled=True)
    out = [
        np.asarray(x)[: placement.num_chains].astype(dt) for x, dt in zip(out, dtypes, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def chain_device_labels(placement: ChainPlacement) -> list[str]:
    """Device name of every chain (global order), gathered over processes.

    Examples:
        >>> chain_device_labels(place_chains(2, "vectorized"))
        ['cpu:0', 'cpu:0']
    """
    local = placement.local_device_of_chain()
    if placement.process_count == 1:
        return [str(d) for d in local]
    ids = gather_chains(np.asarray([d.id for d in local], np.int64), placement)
    by_id = {d.id: d for d in jax.devices()}
    return [f"p{by_id[int(i)].process_index}/{by_id[int(i)]}" for i in ids]
