"""The trade-off curve of one training run: each scored checkpoint's gain and cost, the choice of ``best/``,
and the rule that stops training when the cost keeps failing.

- :class:`Curve` keeps the points (:class:`training.scoring.Point`), writes ``tradeoff_curve.json`` after
  every point (a crash keeps what was scored) and ``tradeoff_curve.png``;
- :meth:`Curve.best` is ``select: gates``: the largest skill gain among the checkpoints whose every gate
  passes (ties: the earlier checkpoint);
- :meth:`Curve.failing_streak` counts the last checkpoints in a row that failed a gate
  (``stop_when_cost_fails: K`` stops at K).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

CURVE_FILE = "tradeoff_curve.json"
CURVE_PLOT = "tradeoff_curve.png"


def pp(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:+.1f} pp"


def figure_text(figure: dict[str, Any]) -> str:
    """``spider +3.1 pp [-1.2, +7.4] n=64``."""
    if figure.get("delta") is None:
        return f"{figure['suite']} -"
    return (f"{figure['suite']} {pp(figure['delta'])} [{100 * figure['lo']:+.1f}, {100 * figure['hi']:+.1f}] "
            f"n={figure['n']}")


def log_line(point: dict[str, Any]) -> str:
    """The trainer's log line for one scored checkpoint."""
    gates = ", ".join(f"{g['label']} {g['verdict']}" for g in point["gates"]) or "no gates"
    return (f"scored {point['name']} (step {point['step']}): gain {figure_text(point['gain'])}; "
            f"cost {figure_text(point['cost'])}; {gates}; {point['seconds']:.0f} s")


def tracker_metrics(point: dict[str, Any]) -> dict[str, float]:
    """Flat numbers for the trainer's ``log`` (and so every tracker in ``report_to``)."""
    metrics: dict[str, float] = {}
    for side in ("gain", "cost"):
        figure = point[side]
        if figure.get("delta") is None:
            continue
        for key in ("delta", "lo", "hi"):
            metrics[f"tradeoff/{side}.{figure['suite']}.{key}"] = float(figure[key])
    metrics["tradeoff/gates_pass"] = float(point["passes"])
    metrics["tradeoff/scoring_seconds"] = float(point["seconds"])
    return metrics


class Curve:
    """The scored checkpoints of a run, in step order."""

    def __init__(self, out: Path, meta: dict[str, Any], points: list[dict[str, Any]] | None = None) -> None:
        self.out = out
        self.meta = meta
        self.points: list[dict[str, Any]] = list(points or [])
        self.best_name: str | None = None
        self.stopped: dict[str, Any] | None = None

    @classmethod
    def resume(cls, out: Path, meta: dict[str, Any], up_to_step: int) -> Curve:
        """The points an interrupted run scored before the checkpoint it resumes from."""
        path = out / CURVE_FILE
        previous = json.loads(path.read_text()).get("points", []) if path.is_file() else []
        return cls(out, meta, [p for p in previous if p["step"] <= up_to_step])

    def add(self, point: dict[str, Any]) -> None:
        self.points = [p for p in self.points if p["step"] != point["step"]] + [point]
        self.points.sort(key=lambda p: p["step"])

    def best(self) -> dict[str, Any] | None:
        """The passing checkpoint with the largest gain (the earlier one on a tie), or None."""
        passing = [p for p in self.points if p["passes"] and p["gain"].get("delta") is not None]
        return max(passing, key=lambda p: (p["gain"]["delta"], -p["step"]), default=None)

    def failing_streak(self) -> int:
        streak = 0
        for point in reversed(self.points):
            if point["passes"]:
                break
            streak += 1
        return streak

    def to_json(self) -> dict[str, Any]:
        return {**self.meta, "points": self.points, "best": self.best_name, "stopped": self.stopped}

    def write(self) -> list[Path]:
        path = self.out / CURVE_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        plot = self.out / CURVE_PLOT
        write_curve_plot(self.to_json(), plot)
        return [path, plot]


def _gate_margins(meta_gates: list[dict[str, Any]], suite: str) -> list[float]:
    return sorted({g["threshold"] for g in meta_gates if g["suite"] == suite and g.get("kind", "delta") == "delta"})


def write_curve_plot(curve: dict[str, Any], path: Path) -> None:
    """Gain and cost per checkpoint (x: optimizer step) with their CIs as error bars, the gates' margins as
    dashed lines on the panel of the suite they judge, failing checkpoints drawn hollow and ``best/`` ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curve["points"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    gates = [g for p in points[:1] for g in p["gates"]]
    for ax, side, colour in ((axes[0], "gain", "tab:blue"), (axes[1], "cost", "tab:red")):
        shown = [p for p in points if p[side].get("delta") is not None]
        suite = shown[0][side]["suite"] if shown else curve.get(side, side)
        for p in shown:
            f = p[side]
            y, lo, hi = 100 * f["delta"], 100 * f["lo"], 100 * f["hi"]
            ax.errorbar(p["step"], y, yerr=[[y - lo], [hi - y]], fmt="o", color=colour, capsize=4,
                        markerfacecolor=colour if p["passes"] else "white")
            if p["name"] == curve.get("best"):
                ax.plot(p["step"], y, "o", markersize=14, markerfacecolor="none", markeredgecolor="black")
        if shown:
            ax.plot([p["step"] for p in shown], [100 * p[side]["delta"] for p in shown], color=colour, alpha=0.4)
        ax.axhline(0, color="grey", linewidth=1)
        for margin in _gate_margins(gates, suite):
            ax.axhline(100 * margin, color="black", linestyle="--", linewidth=1)
            ax.annotate(f"gate {100 * margin:+.1f} pp", (0.01, 100 * margin), xycoords=("axes fraction", "data"),
                        fontsize=8, va="bottom")
        ax.set(xlabel="optimizer step", ylabel=f"{suite} delta vs base (pp)",
               title=f"{'skill gain' if side == 'gain' else 'cost'}: {suite}")
        ax.grid(alpha=0.3)
    best = curve.get("best")
    fig.suptitle(f"{curve.get('run', '')}: checkpoints vs base, {curve.get('confidence', 0.95):.0%} CIs"
                 + (f"; best/ = {best}" if best else "; no checkpoint passed the gates")
                 + " (hollow: fails a gate)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
