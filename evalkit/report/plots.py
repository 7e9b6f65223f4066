"""The summary as pictures (matplotlib PNGs): per-group deltas per suite, the trade-off itself with the
gates' margins, each cluster's effect (a forest plot) and the outcome transitions (a heat map)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.report.rows import finite
from evalkit.summary import ALL, BASE, Summary

if TYPE_CHECKING:
    from evalkit.gates import GateResult


def plot_deltas(summary: Summary, suite: str, path: Path) -> bool:
    """Per-group paired deltas (percentage points) with CI whiskers, one marker series per adapter."""
    from matplotlib.figure import Figure

    s = summary.suites[suite]
    adapters = [a for a in summary.adapters if a in s.deltas]
    if not adapters:
        return False
    labels = [ALL, *s.groups]
    fig = Figure(figsize=(max(5.0, 1.3 * len(labels) + 2), 4), layout="constrained")
    ax = fig.subplots()
    width = 0.7 / len(adapters)
    for i, adapter in enumerate(adapters):
        xs, ys, err = [], [], [[], []]
        for j, label in enumerate(labels):
            d = s.deltas[adapter].get(label)
            if d is None or not finite(d.lo):
                continue
            xs.append(j - 0.35 + width * (i + 0.5))
            ys.append(100 * d.delta)
            err[0].append(100 * (d.delta - d.lo))
            err[1].append(100 * (d.hi - d.delta))
        ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=4, label=adapter)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(labels)), [s.layout.label(lab).split(" (")[0] for lab in labels])
    ax.set_ylabel(f"Δ vs {BASE} (pp), {100 * summary.confidence:g}% CI")
    ax.set_title(f"{s.layout.title}: paired delta by {s.layout.group_title}")
    ax.legend()
    fig.savefig(path, dpi=120)
    return True


def _margins(gates: Sequence[GateResult], suite: str) -> list[tuple[str, float, str]]:
    """The overall delta gates on ``suite`` (its own score): (gate text, threshold, op), one per gate."""
    seen = {}
    for g in gates:
        if g.suite == suite and g.kind == "delta" and g.group is None and g.metric is None:
            seen.setdefault(g.gate, (g.gate, g.threshold, g.op))
    return list(seen.values())


def _draw_margins(ax: Any, margins: Sequence[tuple[str, float, str]], vertical: bool) -> tuple[float, float]:
    """Each margin as a dashed line labelled with its gate; returns the passing interval (pp) they leave."""
    low, high = float("-inf"), float("inf")
    for text, threshold, op in margins:
        at = 100 * threshold
        (ax.axvline if vertical else ax.axhline)(at, color="tab:green", linestyle="--", linewidth=1, label=text)
        low, high = (max(low, at), high) if op == ">=" else (low, min(high, at))
    return low, high


def plot_tradeoff(summary: Summary, path: Path, gates: Sequence[GateResult] = ()) -> bool:
    """The target suite's gain (y) against a retention suite's change (x), one point per adapter with both
    CIs, adapters joined in the order given (e.g. checkpoints) to draw the trade-off curve; one panel per
    retention suite, a family (the forgetting suites) as one panel for its average, first. The delta gates
    on either suite are dashed lines and the region where every one of them holds is shaded, so the
    acceptable checkpoints show at a glance."""
    from matplotlib.figure import Figure

    targets = [s for s in summary.suites.values() if s.layout.role == "target" and s.deltas]
    in_family = {member for s in summary.suites.values() for member in s.members}
    retentions = sorted((s for s in summary.suites.values()
                         if s.layout.role == "retention" and s.deltas and s.suite not in in_family),
                        key=lambda s: not s.members)
    if not targets or not retentions:
        return False
    target = targets[0]
    fig = Figure(figsize=(6 * len(retentions), 5), layout="constrained")
    axes = fig.subplots(1, len(retentions), squeeze=False)[0]
    drawn = False
    for ax, retention in zip(axes, retentions):
        points = [(a, retention.deltas[a].overall, target.deltas[a].overall)
                  for a in summary.adapters if a in retention.deltas and a in target.deltas]
        if not points:
            continue
        drawn = True
        xs = [100 * m.delta for _, m, _ in points]
        ys = [100 * s.delta for _, _, s in points]
        xerr = [[100 * (m.delta - m.lo) for _, m, _ in points], [100 * (m.hi - m.delta) for _, m, _ in points]]
        yerr = [[100 * (s.delta - s.lo) for _, _, s in points], [100 * (s.hi - s.delta) for _, _, s in points]]
        if len(points) > 1:
            ax.plot(xs, ys, color="grey", linewidth=0.8, zorder=1)
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o", capsize=4, zorder=2)
        for (name, _, _), x, y in zip(points, xs, ys):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6))
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.axvline(0, color="grey", linewidth=0.6)
        x_margins, y_margins = _margins(gates, retention.suite), _margins(gates, target.suite)
        if x_margins or y_margins:  # the lines widen the axes' limits to include themselves
            left, right = _draw_margins(ax, x_margins, vertical=True)
            bottom, top = _draw_margins(ax, y_margins, vertical=False)
            ax.margins(0.1)
            (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
            ax.fill_between([max(x0, left), min(x1, right)], max(y0, bottom), min(y1, top), color="tab:green",
                            alpha=0.12, zorder=0, label="every gate's margin holds (point estimate)")
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.legend(loc="best", fontsize="small")
        ax.set_xlabel(f"{retention.layout.title} Δ vs {BASE} (pp)")
        ax.set_ylabel(f"{target.layout.title} Δ vs {BASE} (pp)")
        ax.set_title(f"Trade-off per adapter ({100 * summary.confidence:g}% paired CIs)")
    if drawn:
        fig.savefig(path, dpi=120)
    return drawn


def plot_effects(summary: Summary, suite: str, adapter: str, path: Path) -> bool:
    """A forest plot: every cluster's paired delta with its CI, sorted, the ones that stand after the
    Benjamini-Hochberg correction in colour."""
    from matplotlib.figure import Figure

    s = summary.suites[suite]
    effects = [e for e in s.changes[adapter].effects if finite(e.delta.lo)] if adapter in s.changes else []
    if len(effects) < 2:
        return False
    fig = Figure(figsize=(7, 1.2 + 0.22 * len(effects)), layout="constrained")
    ax = fig.subplots()
    for y, effect in enumerate(effects):
        d = effect.delta
        colour = "tab:red" if effect.stands and d.delta < 0 else "tab:blue" if effect.stands else "grey"
        ax.errorbar([100 * d.delta], [y], xerr=[[100 * (d.delta - d.lo)], [100 * (d.hi - d.delta)]], fmt="o",
                    color=colour, capsize=2, markersize=4)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(effects)), [e.cluster for e in effects], fontsize="small")
    ax.set_ylim(len(effects) - 0.5, -0.5)
    ax.set_xlabel(f"Δ {adapter} vs {BASE} (pp), {100 * summary.confidence:g}% CI per {s.layout.cluster_title}")
    stands = sum(e.stands for e in effects)
    ax.set_title(f"{s.layout.title}: {adapter} per {s.layout.cluster_title}\n"
                 f"{stands} of {len(effects)} stand after Benjamini-Hochberg (coloured)", fontsize="medium")
    fig.savefig(path, dpi=100)
    return True


def plot_transitions(summary: Summary, suite: str, adapter: str, path: Path) -> bool:
    """A heat map of how each example's outcome moved, base (rows) to adapter (columns), counts written in;
    only where there are more outcomes than right and wrong (Spider's syntax and execution errors...)."""
    from matplotlib.figure import Figure

    change = summary.suites[suite].changes.get(adapter)
    if change is None or len(change.outcomes) <= 2:
        return False
    names = change.outcomes
    counts = [[change.transitions.get(b, {}).get(a, 0) for a in names] for b in names]
    fig = Figure(figsize=(1.1 * len(names) + 2.5, 0.8 * len(names) + 1.8), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    top = max(max(row) for row in counts)
    for i, row in enumerate(counts):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > top / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel(f"{adapter} outcome")
    ax.set_ylabel(f"{BASE} outcome")
    ax.set_title(f"{summary.suites[suite].layout.title}: outcome transitions")
    fig.colorbar(image, ax=ax, label="examples")
    fig.savefig(path, dpi=100)
    return True


def plot_sequential(summary: Summary, path: Path, gates: Sequence[GateResult] = ()) -> bool:
    """A --sequential run: each stream's headline delta per look, its anytime-valid interval narrowing (a band)
    towards the gates' margins, one panel per stream and one band per adapter."""
    from matplotlib.figure import Figure

    streams = [s for s in summary.sequential.streams if s.rounds] if summary.sequential else []
    if not streams:
        return False
    fig = Figure(figsize=(4.2 * len(streams), 3.6), layout="constrained")
    for ax, stream in zip(fig.subplots(1, len(streams), squeeze=False)[0], streams):
        for adapter in dict.fromkeys(r["variant"] for r in stream.rounds):
            rows = [r for r in stream.rounds if r["variant"] == adapter and r["figure"] == stream.name and not r["group"]]
            ns, ys = [r["n"] for r in rows], [100 * r["delta"] for r in rows]
            err = [[y - 100 * r["lo"] for y, r in zip(ys, rows)], [100 * r["hi"] - y for y, r in zip(ys, rows)]]
            line = ax.errorbar(ns, ys, yerr=err, fmt="o-", capsize=3, label=f"{adapter} Δ")
            ax.fill_between(ns, [100 * r["lo"] for r in rows], [100 * r["hi"] for r in rows], alpha=0.2,
                            color=line[0].get_color())
        _draw_margins(ax, _margins(gates, stream.name), vertical=False)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.axvline(stream.total, color="black", linestyle=":", linewidth=1, label=f"all {stream.total:,}")
        ax.set_xlim(0, stream.total * 1.05)
        ax.set_title(f"{stream.name}: {stream.reason} at n={stream.evaluated:,} of {stream.total:,}", fontsize=9)
        ax.set_xlabel("examples evaluated (n)")
        ax.set_ylabel("Δ vs base (pp), anytime-valid")
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    return True
