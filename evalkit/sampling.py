"""Stratified samples: the same examples for every variant, reproducible from a seed."""

from __future__ import annotations

import random
from collections.abc import Sequence

from evalkit.suites.base import Example


def stratified(examples: Sequence[Example], per_stratum: int | None, seed: int) -> list[Example]:
    """``per_stratum`` examples drawn at random from each stratum (all when None), sorted by id.

    Strata are visited in sorted order with one generator, so a sample depends only on the examples,
    ``per_stratum`` and ``seed``.
    """
    strata: dict[str, list[Example]] = {}
    for example in examples:
        strata.setdefault(example.stratum, []).append(example)
    rng = random.Random(seed)
    chosen: list[Example] = []
    for name in sorted(strata):
        members = strata[name]
        chosen += members if per_stratum is None or per_stratum >= len(members) else rng.sample(members, per_stratum)
    return sorted(chosen, key=lambda ex: ex.id)
