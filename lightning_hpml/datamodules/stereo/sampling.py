"""Reproducible sampling: shuffling and augmentation seeded by ``(seed, epoch, index)``.

Resuming from a checkpoint must continue exactly as an uninterrupted run. Lightning restores the epoch counter but
not the global random state that a plain ``RandomSampler`` and the worker processes draw from, so shuffling and
augmentation would differ after a resume. Here the sampler derives each epoch's order from ``seed + epoch`` (it is a
``DistributedSampler``, so Lightning keeps it under DDP and calls ``set_epoch``) and yields ``(epoch, index)`` keys;
the dataset seeds the augmentation of each sample from its key. Nothing depends on process or worker state.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["EpochSeededSampler", "sample_rng", "seeded_train_loader"]


class EpochSeededSampler(DistributedSampler):
    """A ``DistributedSampler`` (also for one process) that yields ``(epoch, index)`` pairs.

    Args:
        dataset: The dataset to sample.
        num_replicas: World size (1 without DDP).
        rank: This process's rank.
        seed: Base seed; epoch ``e`` is shuffled with ``seed + e``.
        shuffle: Shuffle each epoch.
        drop_last: Drop the tail that does not divide evenly among replicas.
    """

    def __init__(
        self,
        dataset,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for index in super().__iter__():
            yield epoch, index


@contextlib.contextmanager
def sample_rng(seed: int, epoch: int, index: int) -> Iterator[None]:
    """Run the body with torch's global RNG seeded from ``(seed, epoch, index)``, restoring it afterwards."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
        yield


def seeded_train_loader(
    dataset: Dataset,
    trainer: Any,
    batch_size: int,
    num_workers: int,
    seed: int,
    collate_fn: Callable[[list], Any],
    pin_memory: bool = False,
) -> DataLoader:
    """The training DataLoader of every DataModule here: an :class:`EpochSeededSampler` over the trainer's ranks
    (samples seeded by ``(epoch, index)``: exact resume), full batches only.

    Raises:
        ValueError: A process would get fewer samples than one batch.
    """
    world_size = trainer.world_size if trainer is not None else 1
    rank = trainer.global_rank if trainer is not None else 0
    sampler = EpochSeededSampler(dataset, num_replicas=world_size, rank=rank, seed=seed, shuffle=True)
    if len(sampler) < batch_size:
        raise ValueError(
            f"the train split has {len(sampler)} samples per process, fewer than batch_size={batch_size}; "
            "with drop_last=True no batch would be formed"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
    )
