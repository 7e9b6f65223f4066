"""Regression gates: ``--gate "mmlu.delta >= -0.02"`` parsed, judged against a :class:`~evalkit.summary.Summary`.

Grammar: ``SUITE[.GROUP][.METRIC].KIND[.BOUND][@VARIANT] OP NUMBER`` where KIND is ``score`` (a variant's
accuracy) or ``delta`` (its paired difference to the base), GROUP one of the suite's groups or clusters (a Spider
hardness or database, an MMLU category or subject), METRIC one of the suite's secondary scores (Spider's
``em``, exact-set match; the suite's own score when absent), BOUND ``lo``/``hi`` (compare that end of the CI),
OP ``>=`` or ``<=``, and NUMBER a fraction (``0.30`` is 30 %). Without ``@VARIANT`` a gate applies to every adapter
(the models under test), or to the base when no adapter was evaluated.

Judging (why): by default (``basis="ci"``) a gate fails only when the data show a violation, i.e. the
one-sided test of "the true value violates the gate" has p < (1 - confidence) / 2. For one gate that is
exactly "the whole CI lies on the wrong side" (a non-inferiority test for ``delta >= -margin``); with
several gates the p-values are Holm-adjusted, so adding gates does not multiply false alarms. A gate
that needs the opposite burden of proof ("the gain must be shown") names the bound: ``spider.delta.lo
>= 0``. ``basis="point"`` compares point estimates. A gate over a figure that was not computed is an
ERROR (never a pass). Each delta gate also states the sample's minimal detectable effect at 80 % power
and warns when the margin is finer than that.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from evalkit.errors import ConfigError
from evalkit.summary import BASE, Summary
from evalkit.stats import Estimate, PairedDelta, holm, minimal_detectable_effect, violation_p_value

Basis = Literal["ci", "point"]
Correction = Literal["holm", "none"]
_GATE = re.compile(
    r"^\s*(?P<path>[\w.\-]+?)(?:@(?P<variant>[\w.\-]+))?\s*(?P<op>>=|<=)\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_FORM = "SUITE[.GROUP][.METRIC].score|delta[.lo|.hi][@VARIANT] >=|<= NUMBER, e.g. \"mmlu.delta >= -0.02\""


@dataclass(frozen=True)
class Gate:
    text: str
    suite: str
    group: str | None
    kind: str
    bound: str | None
    variant: str | None
    op: str
    threshold: float
    metric: str | None = None


def parse_gate(text: str, suites: Mapping[str, Collection[str]], variants: Collection[str] | None = None) -> Gate:
    """Parse one gate expression against the run's ``suites`` (name -> secondary metric names) and
    ``variants`` (when known), so a typo is reported before the run, not after hours of inference; a
    malformed one raises :class:`ConfigError`."""
    match = _GATE.match(text)
    if not match:
        raise ConfigError(f"Gate {text!r} cannot be read. Fix: write it as {_FORM}.")
    parts = match["path"].split(".")
    if "" in parts:  # "spider..delta" would otherwise read as "spider.delta": a typo must not gate something else
        raise ConfigError(f"Gate {text!r} has an empty part between dots. Fix: write it as {_FORM}.")
    bound = parts.pop() if len(parts) > 2 and parts[-1] in ("lo", "hi") else None
    if len(parts) < 2 or parts[-1] not in ("score", "delta"):
        raise ConfigError(f"Gate {text!r}: the figure must end in .score or .delta (optionally .lo/.hi). "
                          f"Fix: write it as {_FORM}.")
    if parts[0] not in suites:
        raise ConfigError(f"Gate {text!r}: suite {parts[0]!r} is not in this run. Fix: use one of {', '.join(suites)}.")
    variant = match["variant"]
    if variants is not None and variant is not None and variant not in variants:
        raise ConfigError(f"Gate {text!r}: variant {variant!r} is not evaluated in this run. "
                          f"Fix: use one of {', '.join(variants)}, or drop @{variant} to gate every adapter.")
    middle = parts[1:-1]
    metric = middle.pop() if middle and middle[-1] in suites[parts[0]] else None
    threshold, kind = float(match["value"]), parts[-1]
    if kind == "delta" and variant == BASE:
        raise ConfigError(f"Gate {text!r}: the base has no delta against itself. Fix: name an adapter after @, or "
                          "drop @base to gate every adapter.")
    if kind == "delta" and variants is not None and not set(variants) - {BASE}:
        raise ConfigError(f"Gate {text!r}: no adapter is evaluated in this run, so there is no delta. Fix: add "
                          "--adapter, or gate the score (.score) instead.")
    low = -1.0 if kind == "delta" else 0.0
    if not low <= threshold <= 1.0:
        raise ConfigError(f"Gate {text!r}: {threshold:g} is outside {low:g}..1; thresholds are fractions "
                          f"(0.30 is 30%, -0.02 is -2 pp). Fix: write it as a fraction.")
    return Gate(text=text.strip(), suite=parts[0], group=".".join(middle) or None, kind=kind,
                bound=bound, variant=variant, op=match["op"], threshold=threshold, metric=metric)


def check_gate_groups(gates: Sequence[Gate], names: dict[str, set[str]]) -> None:
    """Raise :class:`ConfigError` at start-up for a gate whose group is none of the groups or clusters
    (``names``, per suite) of the examples the run drew: it could only end as ERROR after the run."""
    for gate in gates:
        known = names.get(gate.suite, set())
        if gate.group is not None and gate.group not in known:
            close = difflib.get_close_matches(gate.group, known, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"Gate {gate.text!r}: group {gate.group!r} is not a group or cluster of suite "
                              f"{gate.suite!r} in this run. Fix: {hint}name one of the suite's groups or clusters "
                              f"in the selection (e.g. {', '.join(sorted(known)[:5])}), or drop the group.")


@dataclass(frozen=True)
class GateResult:
    """One gate applied to one variant: the figure, the evidence and the verdict (PASS, FAIL, ERROR);
    ``suite``, ``group``, ``metric`` and ``bound`` say which figure, for plots that draw the margins."""

    gate: str
    label: str
    verdict: str
    kind: str
    op: str
    threshold: float
    basis: str
    policy: str
    suite: str
    group: str | None = None
    metric: str | None = None
    bound: str | None = None
    value: float | None = None
    lo: float | None = None
    hi: float | None = None
    n: int | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    mde: float | None = None
    power_warning: str | None = None
    message: str | None = None

    @property
    def figure_text(self) -> str:
        if self.value is None:
            return "-"
        unit = (lambda x: f"{100 * x:+.1f} pp") if self.kind == "delta" else (lambda x: f"{100 * x:.1f}%")
        ci = f" [{unit(self.lo)}, {unit(self.hi)}]" if self.lo is not None and self.hi is not None else ""
        return f"{unit(self.value)}{ci} n={self.n} {self.op} {unit(self.threshold)}"

    @property
    def evidence(self) -> str:
        if self.verdict == "ERROR":
            return self.message or ""
        if self.basis == "ci":
            text = f"one-sided p={self.p_value:.3g}"
            if self.p_adjusted is not None and self.p_adjusted != self.p_value:
                text += f" (Holm {self.p_adjusted:.3g})"
        else:
            text = "CI bound" if self.basis == "bound" else "point estimate"
        if self.mde is not None and math.isfinite(self.mde):
            text += f"; detectable ±{100 * self.mde:.1f} pp"
        elif self.mde is not None:
            text += "; power cannot be computed: every item scored the same (SE 0), so the sample cannot resolve it"
        return text


def _policy(basis: Basis, correction: Correction, confidence: float, n_ci: int) -> str:
    if basis == "point":
        return "Gates compare point estimates (--gate-basis point); .lo/.hi gates compare that CI bound."
    text = (f"Gates judged on the {100 * confidence:g}% CI: a gate fails only when the data show a violation "
            f"(one-sided p < {(1 - confidence) / 2:.3g}, i.e. the whole CI on the wrong side)")
    if correction == "holm" and n_ci > 1:
        text += f", Holm-adjusted over {n_ci} gates"
    return text + "; .lo/.hi gates compare that CI bound."


def _targets(gate: Gate, summary: Summary) -> list[str] | str:
    """The variants a gate applies to, or why it cannot apply."""
    if gate.variant is not None:
        if gate.variant not in summary.variants:
            return f"variant {gate.variant!r} was not evaluated (evaluated: {', '.join(summary.variants)})"
        if gate.kind == "delta" and gate.variant == BASE:
            return f"the base has no delta against itself; name an adapter (@{'|'.join(summary.adapters) or 'NAME'})"
        return [gate.variant]
    if gate.kind == "delta" and not summary.adapters:
        return "no adapter was evaluated, so there is no delta; add --adapter"
    return summary.adapters or [BASE]


def _interval_se(figure: Estimate | PairedDelta) -> float:
    """The SE the figure's interval is built from: for a 0/1 delta the larger of its own and the one Tango's
    score interval implies (a stratified 0/1 interval is the union of both), so "no item changed" does not
    read as infinite power."""
    if isinstance(figure, PairedDelta) and figure.score_se is not None:
        return max(figure.se, figure.score_se)
    return figure.se


def _power_warning(label: str, figure: PairedDelta, op: str, threshold: float, mde: float) -> str | None:
    """Warn when the margin is finer than the minimal detectable effect. What the figure means: a gate judged
    on the CI fails with 80 % probability on a true change of the margin plus that effect (a true change
    at the margin itself passes about 97.5 % of the time, by design, at any sample size)."""
    if threshold == 0:
        return None
    fix = "Fix: evaluate more items (--spider-sample/--mmlu-sample) or widen the margin."
    if _interval_se(figure) == 0:
        return (f"{label}: no item's score changed between {BASE} and the adapter (n={figure.n}), so the CI has zero "
                f"width and this sample says nothing about power against the margin {100 * threshold:+.1f} pp. {fix}")
    if not math.isfinite(mde) or mde <= abs(threshold):
        return None
    caught = threshold - mde if op == ">=" else threshold + mde
    return (f"{label}: with n={figure.n} paired items the smallest true change detectable with 80% power is "
            f"±{100 * mde:.1f} pp, wider than the gate's margin {100 * threshold:+.1f} pp: the gate catches a true "
            f"change of {100 * caught:+.1f} pp (the margin {'minus' if op == '>=' else 'plus'} {100 * mde:.1f} pp) 80% "
            f"of the time, and smaller changes beyond the margin less often. {fix}")


def _anytime_p(sequence: Any, gate: Gate) -> float:
    """The sequence's anytime one-sided p-value for "the gate is violated" (the mean beyond the threshold)."""
    return sequence.p_value(gate.threshold, "below" if gate.op == ">=" else "above")


def evaluate_gates(gates: Sequence[Gate], summary: Summary, basis: Basis = "ci", correction: Correction = "holm",
                   anytime: Callable[[str, str | None, str, str], Any] | None = None) -> list[GateResult]:
    """Judge every gate on every variant it applies to (see the module docstring). ``anytime`` (a sequential
    run's) gives a figure's confidence sequence, ``(suite, group, kind, variant) -> sequence or None``: its
    anytime p-value replaces the fixed-n one, so the gate is judged on the interval the report shows."""
    confidence = summary.confidence
    pending: list[tuple[Gate, str, Estimate | PairedDelta | None, str | None]] = []
    for gate in gates:
        targets = _targets(gate, summary)
        if isinstance(targets, str):
            pending.append((gate, gate.text, None, targets))
            continue
        for variant in targets:
            path = ".".join(filter(None, [gate.suite, gate.group, gate.metric, gate.kind, gate.bound]))
            label = f"{path}@{variant}"
            figure = summary.figure(gate.suite, gate.group, gate.kind, variant, gate.metric)
            missing = None
            if figure is None:
                what = (f"suite {gate.suite!r}" if gate.suite not in summary.suites
                        else f"group {gate.group!r}" if gate.group else f"metric {gate.metric!r}")
                missing = f"{label} was not computed: {what} has no scored items in this run"
            pending.append((gate, label, figure, missing))
    uses_ci = [i for i, (g, _, f, m) in enumerate(pending) if m is None and g.bound is None and basis == "ci"]
    sequences = {i: anytime(g.suite, g.group, g.kind, label.rpartition("@")[2]) if anytime else None
                 for i, (g, label, _, m) in enumerate(pending) if m is None}
    raw = {i: _anytime_p(sequences[i], pending[i][0]) if sequences[i] is not None
           else violation_p_value(pending[i][2], pending[i][0].threshold, pending[i][0].op) for i in uses_ci}
    adjusted = dict(zip(uses_ci, holm([raw[i] for i in uses_ci]))) if correction == "holm" else dict(raw)
    policy = _policy(basis, correction, confidence, len(uses_ci))
    if any(cs is not None for cs in sequences.values()):
        policy += (" Sequential run (--sequential): a suite that stopped early is judged on its anytime-valid "
                   "confidence sequence (wider than a fixed-n CI at the same n), one that ran out on its fixed-n CI.")
    results = []
    for i, (gate, label, figure, missing) in enumerate(pending):
        common = dict(gate=gate.text, label=label, kind=gate.kind, op=gate.op, threshold=gate.threshold, policy=policy,
                      suite=gate.suite, group=gate.group, metric=gate.metric, bound=gate.bound)
        if missing is not None:
            results.append(GateResult(verdict="ERROR", basis=basis, message=missing, **common))
            continue
        point = figure.delta if isinstance(figure, PairedDelta) else figure.mean
        value = {"lo": figure.lo, "hi": figure.hi}.get(gate.bound, point)
        if i in raw:
            p = adjusted[i]
            ok = None if math.isnan(p) else p >= (1 - confidence) / 2
        else:
            ok = None if math.isnan(value) else (value >= gate.threshold if gate.op == ">=" else value <= gate.threshold)
        se = _interval_se(figure)
        mde = minimal_detectable_effect(se, figure.df, confidence) if math.isfinite(se) and se > 0 else math.nan
        warning = (_power_warning(label, figure, gate.op, gate.threshold, mde)
                   if isinstance(figure, PairedDelta) and sequences.get(i) is None else None)  # a stopped suite was decided
        results.append(GateResult(
            verdict="ERROR" if ok is None else ("PASS" if ok else "FAIL"),
            basis="bound" if gate.bound else basis, value=value, lo=figure.lo, hi=figure.hi, n=figure.n,
            p_value=raw.get(i), p_adjusted=adjusted.get(i), mde=mde, power_warning=warning,
            message=None if ok is not None else f"{label}: too few items for a standard error (n={figure.n})",
            **common,
        ))
    return results
