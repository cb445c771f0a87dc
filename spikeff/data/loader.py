"""Batching at the edge: time-first ``(T, B, ...)`` tensors from seeded DataLoaders."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def time_first_collate(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[(frames (T, ...), label)] * B`` → ``(frames (T, B, ...) float32, labels (B,) int64)``."""
    frames = torch.stack([f for f, _ in batch], dim=1).to(torch.float32)
    labels = torch.as_tensor([int(y) for _, y in batch], dtype=torch.int64)
    return frames, labels


class EpochSampler(Sampler):
    """Yields ``(epoch, index)``; the epoch counts the iterations over this sampler.

    Passing the epoch with every index lets an augmented dataset seed its draws by
    ``(seed, epoch, index)`` even inside persistent DataLoader workers.
    """

    def __init__(self, n: int, shuffle: bool, generator: torch.Generator) -> None:
        self.n, self.shuffle, self.generator = n, shuffle, generator
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        order = torch.randperm(self.n, generator=self.generator).tolist() if self.shuffle else range(self.n)
        for i in order:
            yield (epoch, i)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader yielding ``(frames (T, B, 2, H, W) float32, labels (B,) int64)``.

    Shuffling uses a ``torch.Generator`` seeded with ``seed``: the same seed gives the same
    sequence of epoch orders. Workers are persistent when ``num_workers > 0``.
    """
    generator = torch.Generator().manual_seed(int(seed))
    common = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "collate_fn": time_first_collate,
        "drop_last": drop_last,
        "generator": generator,
        "persistent_workers": num_workers > 0,
    }
    if getattr(dataset, "epoch_aware", False):
        return DataLoader(dataset, sampler=EpochSampler(len(dataset), shuffle, generator), **common)
    return DataLoader(dataset, shuffle=shuffle, **common)
