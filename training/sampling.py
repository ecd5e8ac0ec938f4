"""The one sample order of every engine: a resumable stream of (epoch, chip) keys.

Each epoch is a permutation (a function of seed and epoch) of the epoch's pool, where chips with
sites appear ``oversample_positives`` times; each of ``world`` processes takes its share. Starting
at ``iteration x batch_size`` makes a resumed run see exactly the samples it would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from training.config import TrainConfig
from training.data import CocoChips


def epoch_pool(chips: CocoChips, oversample_positives: int) -> list[int]:
    """One epoch's chip indexes: chips with sites ``oversample_positives`` times, negatives once."""
    pool = []
    for i, img in enumerate(chips.images):
        pool += [i] * (oversample_positives if chips.anns_by_image[img["id"]] else 1)
    return pool


def epoch_indices(n: int, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """This rank's share of the epoch's permutation (padded so every rank has as many)."""
    perm = np.random.default_rng((seed, epoch)).permutation(n)
    per_rank = math.ceil(n / world)
    perm = np.resize(perm, per_rank * world)
    return perm[rank::world].tolist()


class RunSampler(Sampler):
    """Every (epoch, chip index) this rank trains on, epoch after epoch, from sample ``start`` on
    (endless: the training loop stops it). ``pool`` lists the chip indexes of one epoch."""

    def __init__(self, pool: list[int], seed: int, rank: int, world: int, start: int) -> None:
        self.pool, self.seed, self.rank, self.world, self.start = pool, seed, rank, world, start
        self.per_epoch = math.ceil(len(pool) / world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.per_epoch)
        while True:
            order = epoch_indices(len(self.pool), self.seed, epoch, self.rank, self.world)
            for i in order[offset:]:
                yield epoch, self.pool[i]
            epoch, offset = epoch + 1, 0


def run_sampler(
    chips: CocoChips, cfg: TrainConfig, iteration: int, rank: int = 0, world: int = 1
) -> RunSampler:
    """The sampler of a run resumed at ``iteration`` (0: a fresh run), for either engine."""
    pool = epoch_pool(chips, cfg.oversample_positives)
    return RunSampler(pool, cfg.seed, rank, world, iteration * cfg.batch_size)
