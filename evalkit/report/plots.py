"""The summary as pictures (matplotlib PNGs): per-group deltas per suite, and the trade-off itself."""

from __future__ import annotations

from pathlib import Path

from evalkit.report.text import finite
from evalkit.summary import ALL, BASE, Summary


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


def plot_tradeoff(summary: Summary, path: Path) -> bool:
    """The target suite's gain (y) against a retention suite's change (x), one point per adapter with both
    CIs, adapters joined in the order given (e.g. checkpoints) to draw the trade-off curve; one panel per
    retention suite."""
    from matplotlib.figure import Figure

    targets = [s for s in summary.suites.values() if s.layout.role == "target" and s.deltas]
    retentions = [s for s in summary.suites.values() if s.layout.role == "retention" and s.deltas]
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
        ax.set_xlabel(f"{retention.layout.title} Δ vs {BASE} (pp)")
        ax.set_ylabel(f"{target.layout.title} Δ vs {BASE} (pp)")
        ax.set_title(f"Trade-off per adapter ({100 * summary.confidence:g}% paired CIs)")
    if drawn:
        fig.savefig(path, dpi=120)
    return drawn
