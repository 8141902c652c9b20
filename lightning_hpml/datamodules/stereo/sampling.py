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
from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler

__all__ = ["EpochSeededSampler", "sample_rng"]


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
