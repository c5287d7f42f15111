"""Samplers and loaders with a reproducible, resumable data order.

Training order is the same whether one process or N processes train:
epoch ``e`` uses the permutation ``randperm(len(data), generator=seed + e)``
and rank ``r`` of ``N`` takes ``perm[r::N]`` (this is exactly
``DistributedSampler``, which we reuse with ``num_replicas=1`` for a single
process). So the i-th global batch of N ranks with per-rank batch B holds the
same samples as the i-th batch of one process with batch N*B.

Resuming mid-epoch skips the samples of the batches already consumed, so
the rest of the epoch sees exactly the batches it would have seen. A map-style
dataset with ``set_epoch(epoch)`` has it called before each pass too (before the
loader's workers copy it), for data that regroups itself per epoch; it must then
depend on the epoch alone, so that every rank and a resumed run see the same items.

Streaming (``IterableDataset``) data has no length and no sampler: the dataset
yields its own order. If it has ``set_epoch(epoch)`` that is called before each
pass, so a seeded shuffle buffer can give each epoch its order; rank ``r`` of
``N`` takes items ``r, r+N, ...``. Resuming mid-epoch replays the epoch's
stream and drops the batches already consumed, which is exact for a stream
that is deterministic given its epoch. With ``num_workers > 0`` each worker
runs its own copy of the dataset, which must then split the stream itself
(``torch.utils.data.get_worker_info()``), as with any ``IterableDataset``.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, Sampler

from .distributed import DistInfo


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` (seeded per-epoch shuffle, rank shard) plus a start offset."""

    def __init__(self, dataset: Dataset, info: DistInfo, *, shuffle: bool, seed: int):
        super().__init__(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle,
                         seed=seed, drop_last=False)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start`` samples (this rank); a
        dataset with ``set_epoch`` is told the epoch too."""
        super().set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.start = start

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)


class ShardSampler(Sampler[int]):
    """In-order evaluation shard: rank r gets indices r, r+N, r+2N, ... (no padding,
    so every sample is counted exactly once when the sums are added over ranks)."""

    def __init__(self, dataset: Dataset, info: DistInfo):
        self.indices = range(info.rank, len(dataset), info.world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def is_streaming(dataset) -> bool:
    return isinstance(dataset, IterableDataset)


class RankStream(IterableDataset):
    """Rank ``r`` of ``N``'s share of a stream (items r, r+N, ...), with the epoch passed on."""

    def __init__(self, dataset: IterableDataset, info: DistInfo):
        self.dataset, self.rank, self.world_size = dataset, info.rank, info.world_size

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __iter__(self):
        return itertools.islice(iter(self.dataset), self.rank, None, self.world_size)


class StreamEpochs:
    """The stand-in for :class:`EpochSampler` of a stream: ``set_epoch(epoch, start)`` selects
    the epoch and the number of batches to drop from its start (``start`` counts samples, as
    for the sampler)."""

    def __init__(self, stream: RankStream, batch_size: int):
        self.stream, self.batch_size = stream, batch_size
        self.skip_batches = 0
        self.num_samples = None  # unknown

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.stream.set_epoch(epoch)
        self.skip_batches = start // self.batch_size


class _SkippingLoader:
    """Iterates a loader of a stream, dropping the batches a resumed epoch already consumed."""

    def __init__(self, loader: DataLoader, epochs: StreamEpochs):
        self.loader, self.epochs = loader, epochs

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.epochs.skip_batches, None)


def build_train_loader(dataset: Dataset, info: DistInfo, *, batch_size: int, shuffle: bool, seed: int,
                       num_workers: int, drop_last: bool, pin_memory: bool, collate_fn=None):
    """``(loader, sampler, worker-seed generator)``; for a stream the "sampler" is a
    :class:`StreamEpochs` (``num_samples`` None)."""
    if is_streaming(dataset):
        stream = RankStream(dataset, info)
        generator = torch.Generator()
        loader = DataLoader(stream, batch_size=batch_size, num_workers=num_workers, drop_last=drop_last,
                            pin_memory=pin_memory, collate_fn=collate_fn, generator=generator)
        epochs = StreamEpochs(stream, batch_size)
        return _SkippingLoader(loader, epochs), epochs, generator
    sampler = EpochSampler(dataset, info, shuffle=shuffle, seed=seed)
    # A private generator for worker seeds: DataLoader would otherwise draw them from the
    # global torch RNG, shifting the model's RNG stream (dropout) when a run resumes.
    generator = torch.Generator()
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        drop_last=drop_last, pin_memory=pin_memory, collate_fn=collate_fn,
                        generator=generator)
    return loader, sampler, generator


def build_eval_loader(dataset: Dataset, info: DistInfo, *, batch_size: int, num_workers: int,
                      pin_memory: bool, collate_fn=None) -> DataLoader:
    if is_streaming(dataset):
        return DataLoader(RankStream(dataset, info), batch_size=batch_size, num_workers=num_workers,
                          pin_memory=pin_memory, collate_fn=collate_fn, generator=torch.Generator())
    return DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(dataset, info),
                      num_workers=num_workers, pin_memory=pin_memory, collate_fn=collate_fn,
                      generator=torch.Generator())


def batches_per_epoch(num_samples: int, batch_size: int, drop_last: bool) -> int:
    """Batches one rank sees per epoch, given its ``num_samples``."""
    return num_samples // batch_size if drop_last else math.ceil(num_samples / batch_size)
