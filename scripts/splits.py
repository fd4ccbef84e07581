"""Seeded, reproducible train/dev/test splits shared by the corpus converters."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence

SPLIT_NAMES = ("train", "dev", "test")


def split_sizes(n_items: int, dev_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Sizes (train, dev, test) for n_items; dev and test are rounded, train takes the rest."""
    if not 0 < dev_fraction < 1 or not 0 < test_fraction < 1 or dev_fraction + test_fraction >= 1:
        raise ValueError(f"dev_fraction={dev_fraction} and test_fraction={test_fraction} must be in (0, 1), sum < 1")
    n_dev = round(n_items * dev_fraction)
    n_test = round(n_items * test_fraction)
    return n_items - n_dev - n_test, n_dev, n_test


def random_split(n_items: int, seed: int, dev_fraction: float, test_fraction: float) -> dict[str, list[int]]:
    """Shuffle indices 0..n_items-1 with `seed` and cut them into train/dev/test (each sorted)."""
    indices = list(range(n_items))
    random.Random(seed).shuffle(indices)
    n_train, n_dev, _ = split_sizes(n_items, dev_fraction, test_fraction)
    parts = (indices[:n_train], indices[n_train : n_train + n_dev], indices[n_train + n_dev :])
    return {name: sorted(part) for name, part in zip(SPLIT_NAMES, parts, strict=True)}


def stratified_split(
    labels: Sequence[Hashable], seed: int, dev_fraction: float, test_fraction: float
) -> dict[str, list[int]]:
    """Split indices per label with `random_split`, so each split keeps the label proportions."""
    by_label: dict[Hashable, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    result: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for label_number, label in enumerate(sorted(by_label, key=str)):
        members = by_label[label]
        local = random_split(len(members), seed + label_number, dev_fraction, test_fraction)
        for name in SPLIT_NAMES:
            result[name].extend(members[i] for i in local[name])
    return {name: sorted(part) for name, part in result.items()}
