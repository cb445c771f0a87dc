"""Data-parallel layer-local training over processes with :mod:`torch.distributed`.

Launch with ``torchrun --nproc_per_node=K -m spikeff train ...``; backend ``nccl`` on CUDA,
``gloo`` on CPU. The scheme (see ``docs/distributed.md``):

* every rank iterates the same seeded global batches and keeps its contiguous part of each
  (:func:`shard_batch`), so the global batch is the single-process batch;
* the ED loss of a layer is that of the global batch: the diversity statistics and the
  consistency sum go through a differentiable all-reduce (:meth:`DataParallel.reduce`,
  ``torch.distributed.nn.functional.all_reduce``, whose backward sums the upstream
  gradients over the ranks);
* after each layer's (and the head's) ``backward`` the gradients are averaged over the
  ranks (:meth:`DataParallel.average_gradients`) before the optimizer steps. Every rank's
  loss is the global loss ``L``; its gradient through the all-reduce is ``world * dL/d(own
  part)``, so the average over ranks is exactly ``dL/dtheta``, for unequal parts too.

Every rank draws its own trial noise (:func:`rank_seed`), so a run depends on the seed and
the world size. Only rank 0 (:attr:`DistContext.is_main`) prints and writes files.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "DistContext",
    "DataParallel",
    "ShardedBatches",
    "init_from_env",
    "shutdown",
    "rank_seed",
    "shard_bounds",
    "shard_batch",
    "check_shardable",
    "broadcast_parameters",
    "broadcast_flag",
    "gather_objects",
    "barrier",
    "leave_group",
]

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class DistContext:
    """This process's place in the group: ``rank`` of ``world`` processes, and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that prints and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    # What a training loop asks of the group. On one process each is the identity (or a no-op),
    # so the loop reads the same with and without data parallelism.

    def data_parallel(self, net: nn.Module, n_train: int, batch_size: int) -> DataParallel | None:
        """Ready ``net`` for data-parallel training: check that every batch splits over the ranks
        and give every rank rank 0's weights.

        Parameters
        ----------
        net : the model; its parameters are broadcast from rank 0.
        n_train : the number of training samples.
        batch_size : the global batch size.

        Returns
        -------
        The :class:`DataParallel` reducer for the trainer, or ``None`` on one process.

        Raises
        ------
        ValueError : a batch does not split over the ranks.
        """
        if not self.distributed:
            return None
        check_shardable(n_train, batch_size, self.world)
        broadcast_parameters(net)  # seeded init agrees anyway; this makes it certain
        return DataParallel(self.world)

    def shard(self, batches: Iterable[Batch]) -> Iterable[Batch]:
        """This rank's part of every batch (:class:`ShardedBatches`); ``batches`` on one process.

        Parameters
        ----------
        batches : the global ``(x, y)`` batches.

        Returns
        -------
        Iterable of this rank's ``(x, y)`` batches.
        """
        return ShardedBatches(batches, self.rank, self.world) if self.distributed else batches

    def own_noise(self, generator: torch.Generator) -> None:
        """Reseed ``generator`` with this rank's seed (:func:`rank_seed`); rank 0 keeps its own.

        Parameters
        ----------
        generator : the neuron noise; reseeded in place.
        """
        if self.rank > 0:
            generator.manual_seed(rank_seed(generator.initial_seed(), self.rank))

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank, so that all take the same branch.

        Parameters
        ----------
        flag : this rank's value.

        Returns
        -------
        bool, rank 0's ``flag``.
        """
        return broadcast_flag(flag, self)

    def gather(self, obj: object) -> list[object]:
        """Every rank's ``obj``, in rank order, on every rank.

        Parameters
        ----------
        obj : this rank's object (picklable).

        Returns
        -------
        list, one entry per rank.
        """
        return gather_objects(obj, self)

    def leave(self) -> None:
        """Wait for every rank, then leave the group together (:func:`leave_group`)."""
        leave_group(self)

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. downloads and caches the data), then the others."""
        if not self.is_main:
            barrier(self)
        yield
        if self.is_main:
            barrier(self)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init_from_env(device: str | torch.device = "cpu", timeout: timedelta | None = None) -> DistContext:
    """Read ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (as set by torchrun) and join the process group.

    Without ``WORLD_SIZE`` (or with 1) nothing is initialised and a single-process context is
    returned. ``device="cuda"`` becomes ``cuda:LOCAL_RANK`` with backend ``nccl``; on CPU the
    backend is ``gloo``. The rendezvous is ``env://`` (``MASTER_ADDR``, ``MASTER_PORT``).

    Parameters
    ----------
    device : ``"cpu"`` or ``"cuda"`` (no index under torchrun).
    timeout : of the process group's operations (``None``: torch's default).

    Returns
    -------
    DistContext

    Raises
    ------
    ValueError : a non-integer environment variable, a CUDA device with an index or without CUDA,
        or a device other than cpu and cuda.
    RuntimeError : no ``torch.distributed``, or a process group that disagrees with the environment.
    """
    world = _env_int("WORLD_SIZE", 1)
    dev = torch.device(device)
    if world <= 1:
        return DistContext(0, 1, dev)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if dev.type == "cuda":
        if dev.index is not None:
            raise ValueError(f"--device {dev}: under torchrun give --device cuda; each process uses cuda:LOCAL_RANK")
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: CUDA is not available on this machine")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    elif dev.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"data-parallel training supports cpu and cuda devices, got {dev}")
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed")
    if not dist.is_initialized():
        kwargs = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout, **kwargs)
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise RuntimeError(
            f"process group is rank {dist.get_rank()} of {dist.get_world_size()}, environment says {rank} of {world}"
        )
    return DistContext(rank, world, dev)


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave_group(ctx: DistContext) -> None:
    """Wait for every rank, then leave the process group on all of them at once (no-op on one process).

    Parameters
    ----------
    ctx : this process's context.
    """
    if ctx.distributed:
        barrier(ctx)
        shutdown()


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s noise generator derived from the single-process ``seed``.

    Rank 0 keeps ``seed``; rank ``r`` adds ``r * 2**32``, which never meets a seed below
    ``2**32`` (all of :func:`spikeff.experiment.seeded_generators`' for seeds below 4e6).

    Parameters
    ----------
    seed : the single-process seed.
    rank : the process's rank.

    Returns
    -------
    int

    Raises
    ------
    ValueError : a negative rank.
    """
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    return int(seed) + (int(rank) << 32)


def shard_bounds(batch: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous part of a batch of ``batch`` inputs.

    Parts differ in size by at most one (``torch.tensor_split``'s rule); every part must be
    non-empty.

    Parameters
    ----------
    batch : the global batch size.
    rank, world : this process's rank and the number of processes.

    Returns
    -------
    start, stop : ints.

    Raises
    ------
    ValueError : ``batch < world``.
    """
    if batch < world:
        raise ValueError(
            f"a batch of {batch} inputs cannot be split over {world} processes; "
            f"every batch (the last one too) needs at least {world} inputs"
        )
    q, r = divmod(batch, world)
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


def shard_batch(x: Tensor, y: Tensor, rank: int, world: int) -> Batch:
    """This rank's part of a time-first batch: ``x`` ``(T, B, ...)`` along dim 1, ``y`` ``(B,)``.

    Parameters
    ----------
    x : inputs ``(T, B, ...)``.
    y : labels ``(B,)``.
    rank, world : as in :func:`shard_bounds`.

    Returns
    -------
    x, y : views of this rank's part.

    Raises
    ------
    ValueError : mismatched shapes, or ``B < world``.
    """
    if x.dim() < 2 or y.shape[:1] != x.shape[1:2]:
        raise ValueError(f"expected x (T, B, ...) and y (B,), got {tuple(x.shape)} and {tuple(y.shape)}")
    start, stop = shard_bounds(y.shape[0], rank, world)
    return x[:, start:stop], y[start:stop]


class ShardedBatches:
    """Re-iterable view of ``batches`` (e.g. a DataLoader) yielding this rank's part of each batch.

    Every rank must iterate the same global batches (same seed), which makes the union of
    the parts the single-process batch.

    Parameters
    ----------
    batches : re-iterable global batches ``(x, y)``.
    rank, world : as in :func:`shard_bounds`.
    """

    def __init__(self, batches: Iterable[Batch], rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self) -> Iterator[Batch]:
        for x, y in self.batches:
            yield shard_batch(x, y, self.rank, self.world)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


class DataParallel:
    """The trainer's hooks for data parallelism over the default process group.

    ``reduce`` is a differentiable all-reduce sum (pass it to :func:`spikeff.ed.ed_loss`);
    ``average_gradients`` all-reduces the gradients of a parameter group and divides by the
    world size (call it after ``backward``, before ``step``).

    Parameters
    ----------
    world : the number of processes (by default the process group's size).

    Raises
    ------
    RuntimeError : no initialised process group.
    """

    def __init__(self, world: int | None = None) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("DataParallel needs an initialised process group (see init_from_env)")
        self.world = dist.get_world_size() if world is None else world

    def reduce(self, t: Tensor) -> Tensor:
        """Sum of ``t`` over the ranks; its backward sums the upstream gradients over the ranks.

        Parameters
        ----------
        t : the same shape on every rank.

        Returns
        -------
        Tensor, the sum.
        """
        with warnings.catch_warnings():
            # Deprecated in favour of a private API since torch 2.11; still the public way.
            warnings.simplefilter("ignore", FutureWarning)
            from torch.distributed.nn.functional import all_reduce

            return all_reduce(t)

    def mean(self, local_sum: Tensor, n_local: int) -> Tensor:
        """Global mean from each rank's (differentiable) sum over its ``n_local`` items.

        Parameters
        ----------
        local_sum : a scalar, this rank's sum.
        n_local : the number of items in it.

        Returns
        -------
        Tensor, a scalar.
        """
        total = self.reduce(torch.stack([local_sum, local_sum.new_tensor(float(n_local)).detach()]))
        return total[0] / total[1]

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Replace each ``p.grad`` by its mean over the ranks (one flat all-reduce).

        Parameters
        ----------
        params : the parameter group; those without a gradient are skipped.
        """
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(self.world)
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))


@torch.no_grad()
def broadcast_parameters(module: nn.Module, src: int = 0) -> None:
    """Copy ``src``'s parameters and buffers to every rank (initial weights must agree).

    Parameters
    ----------
    module : changed in place on every rank but ``src``.
    src : the rank whose values are kept.
    """
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src)


def broadcast_flag(flag: bool, ctx: DistContext, src: int = 0) -> bool:
    """Rank ``src``'s ``flag`` on every rank (so that all take the same branch); ``flag`` on one process.

    Parameters
    ----------
    flag : this rank's value.
    ctx : this process's context.
    src : the rank whose value is kept.

    Returns
    -------
    bool
    """
    if not ctx.distributed:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int32, device=ctx.device)
    dist.broadcast(t, src)
    return bool(t.item())


def gather_objects(obj: object, ctx: DistContext) -> list[object]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` on one process.

    Parameters
    ----------
    obj : this rank's object.
    ctx : this process's context.

    Returns
    -------
    list, one entry per rank.
    """
    if not ctx.distributed:
        return [obj]
    out: list[object] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def check_shardable(n: int, batch_size: int, world: int) -> None:
    """Raise ``ValueError`` unless every batch of ``n`` inputs in batches of ``batch_size`` splits over ``world``
    ranks.

    Parameters
    ----------
    n : the number of training inputs.
    batch_size : the global batch size.
    world : the number of processes.

    Raises
    ------
    ValueError : a batch (the last one included) has fewer than ``world`` inputs.
    """
    last = n % batch_size
    if batch_size < world or 0 < last < world:
        raise ValueError(
            f"{n} training inputs in batches of {batch_size} give a batch of {min(batch_size, last or batch_size)} "
            f"inputs, too few to split over {world} processes; change --batch-size or --limit"
        )


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op on one process).

    Parameters
    ----------
    ctx : this process's context.
    """
    if ctx.distributed:
        dist.barrier()
