"""What changed between the base and one adapter on one suite, beyond how much: the examples that flipped,
every cluster's paired effect with a multiple-comparison correction, and the outcome transitions.

The summary's deltas say *how much* a score moved; a user's next question is *what* moved: which MMLU
subjects lost knowledge, which Spider questions the adapter now answers, whether syntax errors became
wrong answers or right ones. :func:`changes` answers from the same paired records the deltas use
(:mod:`evalkit.summary` calls it; it is part of the one aggregation).

**Why Benjamini-Hochberg for the clusters.** A per-subject or per-database list is a screen over 20
databases or 57 subjects, read to find where to look. Holm (used for gates, which are decisions)
controls the chance of *any* false finding and, with 57 tests, rarely marks anything on a CI-sized
sample; Benjamini-Hochberg controls the expected *share* of false findings among those marked (at most
1 - confidence, 5 %), which is the promise a screening list needs. The CIs shown are per cluster and
not adjusted; a cluster "stands" when its adjusted p-value is below 1 - confidence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evalkit.stats import PairedDelta, adjusted_p_values

if TYPE_CHECKING:
    from evalkit.records import CaseRecord, Figures

RIGHT_TO_WRONG = "right_to_wrong"
WRONG_TO_RIGHT = "wrong_to_right"
CORRECTION = "benjamini-hochberg"


@dataclass(frozen=True)
class Flip:
    """One example the base and the adapter got differently: what was asked, the gold answer, and each
    side's answer (the extracted SQL or letter) and outcome."""

    id: str
    direction: str  # RIGHT_TO_WRONG or WRONG_TO_RIGHT
    group: str
    cluster: str
    input: str | None
    expected: str | None
    base: str | None
    adapter: str | None
    base_outcome: str | None
    adapter_outcome: str | None


@dataclass(frozen=True)
class FlipCounts:
    """The McNemar cells: right -> wrong (b) and wrong -> right (c), of ``n`` paired examples."""

    right_to_wrong: int
    wrong_to_right: int
    n: int


@dataclass(frozen=True)
class ClusterEffect:
    """One cluster's paired delta with its per-cluster CI, the Benjamini-Hochberg adjusted p-value over
    the suite's clusters, and whether it stands after the correction."""

    cluster: str
    delta: PairedDelta
    p_adjusted: float
    stands: bool


@dataclass(frozen=True)
class Changes:
    """Everything that changed for one adapter on one suite (see the module docstring)."""

    flips: list[Flip]
    counts: FlipCounts
    group_counts: dict[str, FlipCounts]
    cluster_counts: dict[str, FlipCounts]
    effects: list[ClusterEffect]
    transitions: dict[str, dict[str, int]]  # base outcome -> adapter outcome -> examples
    correction: str = CORRECTION
    outcomes: list[str] = field(default_factory=list)  # the transition matrix's order


def _counts(delta: PairedDelta) -> FlipCounts:
    return FlipCounts(right_to_wrong=delta.b, wrong_to_right=delta.c, n=delta.n)


def _flip(base: CaseRecord, adapter: CaseRecord) -> Flip:
    return Flip(id=base.id, direction=RIGHT_TO_WRONG if base.passed else WRONG_TO_RIGHT, group=base.group,
                cluster=base.cluster, input=base.input or adapter.input, expected=base.expected or adapter.expected,
                base=base.extracted, adapter=adapter.extracted, base_outcome=base.outcome,
                adapter_outcome=adapter.outcome)


def cluster_effects(deltas: Figures, confidence: float) -> list[ClusterEffect]:
    """Every cluster's delta, most negative first, each marked by the Benjamini-Hochberg correction."""
    clusters = sorted(deltas.clusters.items(), key=lambda item: (item[1].delta, item[0]))
    adjusted = adjusted_p_values([d.p_value for _, d in clusters], "fdr_bh")
    return [ClusterEffect(name, d, p, bool(p < 1 - confidence)) for (name, d), p in zip(clusters, adjusted)]


def _outcome_order(pairs: Sequence[tuple[CaseRecord, CaseRecord]]) -> list[str]:
    """Outcomes that pass first (``match``, ``correct``), then the others, each by how often they occur."""
    records = [r for pair in pairs for r in pair]
    frequency = Counter(str(r.outcome) for r in records)
    passing = {str(r.outcome) for r in records if r.passed}
    return sorted(frequency, key=lambda o: (o not in passing, -frequency[o], o))


def changes(base: Sequence[CaseRecord], adapter: Sequence[CaseRecord], deltas: Figures,
            confidence: float) -> Changes:
    """What changed from ``base`` to ``adapter`` (scored records, paired by id in base order); ``deltas``
    are the paired deltas the summary computed from the same pairs."""
    by_id = {r.id: r for r in adapter}
    pairs = [(b, by_id[b.id]) for b in base if b.id in by_id]
    transitions = Counter((str(b.outcome), str(a.outcome)) for b, a in pairs)
    outcomes = _outcome_order(pairs)
    return Changes(
        flips=[_flip(b, a) for b, a in pairs if bool(b.passed) != bool(a.passed)],
        counts=_counts(deltas.overall),
        group_counts={g: _counts(d) for g, d in deltas.groups.items()},
        cluster_counts={c: _counts(d) for c, d in deltas.clusters.items()},
        effects=cluster_effects(deltas, confidence),
        transitions={b: {a: transitions[(b, a)] for a in outcomes if transitions[(b, a)]} for b in outcomes
                     if any(transitions[(b, a)] for a in outcomes)},
        outcomes=outcomes,
    )
