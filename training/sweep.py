"""``python -m training sweep --config C --set lora.r=8,16,32 --set trainer.learning_rate=2e-4,5e-5 [--out DIR]``.

1. :func:`parse_sets` and :func:`plan_grid` validate the whole grid before anything trains: a ``--set``
   without ``=``, an unknown key (with "did you mean"), an empty list, a value of the wrong type, a key set
   twice: one :class:`~evalkit.errors.ConfigError` each, naming the key and the fix; then every grid point's
   config through the training config loader (:func:`training.config.parse_config`).
2. :func:`run_sweep` trains each point in its own folder ``DIR/<point>/`` with ``python -m training``
   (a subprocess each: a crash stays in its point). A finished point (``run.json`` ``status: finished``
   and ``final/``) is skipped, a crashed one resumes from its last checkpoint (``--resume``), so running
   the same command again continues the sweep.
3. Every final adapter is evaluated against the base in ONE plugin run, ``pytest tests/eval --adapter
   <point>=DIR/<point>/final ...`` with the config's ``evaluation:`` suites, samples and gates (the plugin's
   gates are Holm-corrected over every gate and adapter), its report in ``DIR/report/``.
4. :func:`sweep_report` reads that run's ``cases.jsonl`` and writes ``DIR/sweep.json``, ``DIR/sweep.md``
   and ``DIR/pareto.png``: each configuration's gain and cost with CIs (the plugin's own summary code),
   the Pareto front, and paired adapter-vs-adapter deltas on the same questions
   (:func:`evalkit.stats.paired_delta`, Holm over the pairs), so the answer says which configurations
   differ from each other and not only from the base.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from evalkit.errors import ConfigError
from training.config import RUN_FILE, TrainingConfig, _yaml_loader, grid_problems, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
def _value(text: str) -> Any:
    """A value as the config file would read it (YAML: 16 is an int, 2e-4 a float, true a bool)."""
    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506
    except yaml.YAMLError:
        return text


def parse_sets(specs: Sequence[str], from_file: dict[str, Any] | None = None) -> list[tuple[str, list[Any]]]:
    """The grid: the config file's ``sweep:`` block, then each ``--set KEY=V1,V2`` (which replaces the file's
    values for its key); every problem in one ConfigError."""
    problems, grid, seen = [], dict((from_file or {}).items()), set()
    for key, values in list(grid.items()):
        problem = grid_problems(key, values if isinstance(values, list) else [values], "sweep.")
        if problem:
            problems.append(problem)
            del grid[key]
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"--set {spec!r}: expected KEY=V1,V2,... Fix: e.g. --set lora.r=8,16,32.")
            continue
        if key in seen:
            problems.append(f"--set {key}: given twice. Fix: list every value in one --set {key}=V1,V2.")
            continue
        seen.add(key)
        if text.strip().startswith("["):  # a list-valued key (lora.target_modules): one value per --set
            values = [_value(text)]
        else:
            values = [_value(part.strip()) for part in text.split(",") if part.strip()]
        problem = grid_problems(key, values, "--set ")
        if problem:
            problems.append(problem)
            continue
        grid[key] = values
    if problems:
        raise ConfigError(f"sweep: {len(problems)} problem{'s' if len(problems) > 1 else ''} in the grid:\n  - "
                          + "\n  - ".join(problems))
    return list(grid.items())


def _with(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    section, _, leaf = key.partition(".")
    return {**raw, section: {**(raw.get(section) or {}), leaf: value}}


def _value_problems(raw: dict[str, Any], grid: Sequence[tuple[str, list[Any]]]) -> list[str]:
    """Each value checked alone against the config schema: a wrong type or range names the key and the value."""
    from training.config import _TYPE_FIXES

    problems = []
    for key, values in grid:
        for value in values:
            try:
                TrainingConfig.model_validate(_with(raw, key, value))
            except ValidationError as exc:
                for error in exc.errors():
                    if ".".join(str(p) for p in error["loc"]).startswith(key):
                        fix = _TYPE_FIXES.get(error["type"], "see docs/training.md for allowed values")
                        problems.append(f"--set {key}: value {value!r} ({type(value).__name__}): {error['msg']}. "
                                        f"Fix: {fix}.")
                        break
    return problems


def point_name(point: Sequence[tuple[str, Any]]) -> str:
    """``r-8_learning_rate-0.0002``: a folder name and a plugin variant name (letters, digits, - _ .)."""
    def text(value: Any) -> str:
        shown = f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else \
            "+".join(map(str, value)) if isinstance(value, list) else str(value)
        return "".join(c if c.isalnum() or c in "-." else "-" for c in shown)

    return "_".join(f"{key.rpartition('.')[2]}-{text(value)}" for key, value in point)


def plan_grid(config_path: str | Path, specs: Sequence[str], out: Path) -> tuple[TrainingConfig, list[dict[str, Any]]]:
    """The sweep's base config and every grid point (name, the values set, its validated config), or one
    ConfigError listing every problem: nothing trains until the whole grid is valid."""
    base = load_config(config_path)
    raw = base.model_dump(by_alias=True)
    grid = parse_sets(specs, base.sweep)
    if not grid:
        raise ConfigError("sweep: no grid (no --set, and the config has no sweep: block), so there is nothing to "
                          "compare. Fix: add e.g. --set lora.r=8,16.")
    problems = _value_problems(raw, grid)
    if problems:
        raise ConfigError(f"sweep: {len(problems)} value problem{'s' if len(problems) > 1 else ''}:\n  - "
                          + "\n  - ".join(problems))
    raw["sweep"] = None
    points = []
    for combo in itertools.product(*[[(key, v) for v in values] for key, values in grid]):
        name = point_name(combo)
        point_raw = {**raw, "output_dir": str(out / name)}
        for key, value in combo:
            point_raw = _with(point_raw, key, value)
        point_raw["evaluation"] = None  # points train only; the sweep scores the final adapters together
        config = parse_config(point_raw, f"{config_path} with {', '.join(f'{k}={v!r}' for k, v in combo)}")
        points.append({"name": name, "set": dict(combo), "config": config})
    return base, points


def _state(folder: Path) -> str:
    """``finished``, ``resume`` (a crashed run with a checkpoint), ``restart`` (crashed before its first
    checkpoint) or ``new``."""
    run = folder / RUN_FILE
    if not run.is_file():
        return "new"
    status = json.loads(run.read_text()).get("status")
    if status == "finished" and (folder / "final" / "adapter_config.json").is_file():
        return "finished"
    checkpoints = [p for p in (folder / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return "resume" if checkpoints else "restart"


def train_points(points: list[dict[str, Any]], out: Path, log: Any = sys.stderr) -> list[dict[str, Any]]:
    """Train every point not finished yet, each with ``python -m training`` in a subprocess."""
    configs = out / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    done = []
    for index, point in enumerate(points, 1):
        folder = Path(point["config"].output_dir)
        state = _state(folder)
        path = configs / f"{point['name']}.json"
        path.write_text(json.dumps(point["config"].model_dump(by_alias=True), indent=2) + "\n")
        print(f"[sweep] {index}/{len(points)} {point['name']}: {state}", file=log, flush=True)
        if state != "finished":
            if state == "restart":
                shutil.rmtree(folder)  # its run.json and nothing to resume from: a fresh start
            command = [sys.executable, "-m", "training", "--config", str(path)] + (["--resume"] if state == "resume" else [])
            code = subprocess.call(command, cwd=ROOT)
            if code != 0:
                raise ConfigError(f"sweep: training {point['name']} failed (exit {code}; its messages are above). "
                                  f"Fix the cause and run the same sweep command again: finished points are skipped "
                                  f"and {point['name']} resumes from its last checkpoint.")
        run = json.loads((folder / RUN_FILE).read_text())
        done.append({**point, "folder": folder, "state": state, "wall_time_s": run.get("wall_time_s")})
    return done


def evaluate(base: TrainingConfig, points: list[dict[str, Any]], out: Path) -> tuple[Path, int]:
    """One plugin run over every final adapter; returns (its report folder, pytest's exit status)."""
    from training.scoring import plugin_args

    report = out / "report"
    adapters = [f"--adapter={p['name']}={Path(p['config'].output_dir) / 'final'}" for p in points]
    command = [sys.executable, "-m", "pytest", "tests/eval", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
               *plugin_args(base), *adapters, f"--report-dir={report}"]
    if base.data.data_dir:
        command.append(f"--data-dir={base.data.data_dir}")
    print(f"[sweep] evaluating {len(points)} adapters against the base in one plugin run:\n  {' '.join(command)}",
          file=sys.stderr, flush=True)
    code = subprocess.call(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if code not in (0, 1) or not (report / "cases.jsonl").is_file():
        raise ConfigError(f"sweep: the plugin run failed (pytest exit {code}; its messages are above). Fix the "
                          "cause and run the same command again: trained points are skipped.")
    return report, code


def _pp(x: float) -> str:
    return f"{100 * x:+.1f} pp"


def _ci(figure: dict[str, Any]) -> str:
    return f"{_pp(figure['delta'])} [{100 * figure['lo']:+.1f}, {100 * figure['hi']:+.1f}]"


def _delta_json(delta: Any) -> dict[str, Any]:
    return {"delta": delta.delta, "lo": delta.lo, "hi": delta.hi, "n": delta.n, "p_value": delta.p_value,
            "test": delta.test}


def pairwise(records: Sequence[Any], names: Sequence[str], suite_members: dict[str, tuple[str, ...]],
             layouts: dict[str, Any], confidence: float) -> dict[str, list[dict[str, Any]]]:
    """For each side (gain, cost): every pair of adapters' paired delta ``b - a`` on the questions both scored
    (a family: the macro of its members' paired deltas, as the plugin averages them), Holm over the pairs."""
    from evalkit.stats import holm, macro_of, paired_delta

    scored = {(r.suite, r.variant, r.id): r for r in records if r.status == "scored"}
    out: dict[str, list[dict[str, Any]]] = {}
    for side, members in suite_members.items():
        rows = []
        for a, b in itertools.combinations(names, 2):
            per_suite, changed = [], 0
            for suite in members:
                ids = sorted({i for (s, v, i) in scored if s == suite and v == a} &
                             {i for (s, v, i) in scored if s == suite and v == b})
                if not ids:
                    continue
                strata = [scored[(suite, a, i)].cluster for i in ids] if layouts[suite].stratified else None
                changed += sum(scored[(suite, a, i)].score != scored[(suite, b, i)].score for i in ids)
                per_suite.append(paired_delta([float(scored[(suite, a, i)].score or 0) for i in ids],
                                              [float(scored[(suite, b, i)].score or 0) for i in ids], strata, confidence))
            if not per_suite:
                continue
            delta = per_suite[0] if len(per_suite) == 1 else macro_of(per_suite, confidence)
            rows.append({"a": a, "b": b, **_delta_json(delta), "changed": changed})  # questions scored differently
        for row, adjusted in zip(rows, holm([r["p_value"] for r in rows])):
            row["p_holm"] = adjusted
            row["differ"] = adjusted < 1 - confidence
        out[side] = rows
    return out


def pareto_front(configs: list[dict[str, Any]]) -> list[str]:
    """Names not dominated: no other configuration has at least the gain and at least the cost delta (less
    forgetting), and more of one."""
    front = []
    for c in configs:
        g, k = c["gain"]["delta"], c["cost"]["delta"]
        if not any(o is not c and o["gain"]["delta"] >= g and o["cost"]["delta"] >= k
                   and (o["gain"]["delta"] > g or o["cost"]["delta"] > k) for o in configs):
            front.append(c["name"])
    return front


def write_pareto_plot(report: dict[str, Any], path: Path) -> None:
    """Gain (y) against cost (x) per configuration with both CIs as error bars, the Pareto front as a line,
    the cost gates' margins as dashed vertical lines and the gain gates' as horizontal ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    configs = report["configurations"]
    for c in configs:
        x, y = 100 * c["cost"]["delta"], 100 * c["gain"]["delta"]
        on_front = c["name"] in report["pareto_front"]
        ax.errorbar(x, y, xerr=[[x - 100 * c["cost"]["lo"]], [100 * c["cost"]["hi"] - x]],
                    yerr=[[y - 100 * c["gain"]["lo"]], [100 * c["gain"]["hi"] - y]], fmt="o", capsize=4,
                    color="tab:blue" if on_front else "tab:grey", markerfacecolor="tab:blue" if on_front else "white")
    at: dict[tuple[float, float], list[str]] = {}  # configurations on the same spot share one label
    for c in configs:
        at.setdefault((round(100 * c["cost"]["delta"], 6), round(100 * c["gain"]["delta"], 6)), []).append(c["name"])
    for (x, y), names in at.items():
        ax.annotate("\n".join(names), (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    front = sorted((c for c in configs if c["name"] in report["pareto_front"]), key=lambda c: c["cost"]["delta"])
    ax.plot([100 * c["cost"]["delta"] for c in front], [100 * c["gain"]["delta"] for c in front], color="tab:blue",
            alpha=0.5, label="Pareto front")
    for gate in report["gates_margins"]:
        line = ax.axvline if gate["side"] == "cost" else ax.axhline
        line(100 * gate["threshold"], color="black", linestyle="--", linewidth=1)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(xlabel=f"cost: {report['cost']} delta vs base (pp; right is less forgetting)",
           ylabel=f"gain: {report['gain']} delta vs base (pp)",
           title=f"sweep {report['sweep']}: {report['confidence']:.0%} CIs, dashed: gate margins")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sweep_report(base: TrainingConfig, points: list[dict[str, Any]], report_dir: Path, out: Path) -> dict[str, Any]:
    """The sweep's answer from the plugin run's cases.jsonl and tradeoff.json (see the module docstring)."""
    from evalkit.summary import BASE, CaseRecord, summarize
    from training.scoring import default_cost, default_gain, run_config

    cfg = run_config(base, report_dir)
    ev = base.evaluation
    suites = [s.name for s in cfg.suites]
    gain = (ev.gain if ev else None) or default_gain(suites)
    cost = (ev.cost if ev else None) or default_cost(suites)
    records = [CaseRecord.from_dict(json.loads(line)) for line in (report_dir / "cases.jsonl").read_text().splitlines()
               if line.strip()]
    names = [p["name"] for p in points]
    summary = summarize(records, [BASE, *names], cfg.layouts, cfg.templates, cfg.confidence, cfg.families)
    plugin = json.loads((report_dir / "tradeoff.json").read_text())
    configurations = []
    for p in points:
        verdicts = [g for g in plugin.get("gates", []) if g["label"].endswith("@" + p["name"])]
        configurations.append({
            "name": p["name"], "set": p["set"], "adapter": str(Path(p["config"].output_dir) / "final"),
            "gain": {"suite": gain, **_delta_json(summary.suites[gain].deltas[p["name"]].overall)},
            "cost": {"suite": cost, **_delta_json(summary.suites[cost].deltas[p["name"]].overall)},
            "gates": [{"gate": g["gate"], "verdict": g["verdict"], "p_adjusted": g.get("p_adjusted")} for g in verdicts],
            "passes": all(g["verdict"] == "PASS" for g in verdicts) if verdicts else None,
            "wall_time_s": p.get("wall_time_s"),
        })
    families = dict(cfg.families)
    members = {"gain": families[gain][1] if gain in families else (gain,),
               "cost": families[cost][1] if cost in families else (cost,)}
    pairs = pairwise(records, names, members, cfg.layouts, cfg.confidence)
    margins = [{"side": "gain" if g.suite == gain else "cost", "threshold": g.threshold}
               for g in cfg.gates if g.kind == "delta" and g.bound is None and g.suite in (gain, cost)]
    result = {"sweep": out.name, "gain": gain, "cost": cost, "confidence": cfg.confidence,
              "gates": [g.text for g in cfg.gates], "gates_margins": margins, "report": str(report_dir),
              "configurations": configurations, "pareto_front": pareto_front(configurations), "pairwise": pairs}
    result["answer"] = answer_lines(result)
    (out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    write_pareto_plot(result, out / "pareto.png")
    (out / "sweep.md").write_text(to_markdown(result))
    return result


def answer_lines(result: dict[str, Any]) -> list[str]:
    """The sweep's answer in words: each configuration against the base, the front, and which differ."""
    lines = []
    for c in result["configurations"]:
        verdict = "no gate" if c["passes"] is None else "passes its gates" if c["passes"] else "FAILS a gate"
        lines.append(f"{c['name']}: gain {result['gain']} {_ci(c['gain'])}, cost {result['cost']} {_ci(c['cost'])} "
                     f"vs base (n={c['gain']['n']}/{c['cost']['n']}); {verdict}.")
    lines.append(f"Pareto front (gain vs cost): {', '.join(result['pareto_front'])}.")
    for side in ("gain", "cost"):
        rows = result["pairwise"].get(side, [])
        differ = [r for r in rows if r["differ"]]
        suite = result[side]
        if not rows:
            continue
        if not differ:
            widest = max(rows, key=lambda r: abs(r["delta"]))
            lines.append(f"{suite} ({side}): no two configurations differ on the same questions (Holm over "
                         f"{len(rows)} pairs); the largest difference, {widest['b']} - {widest['a']} "
                         f"{_ci(widest)}, is within noise.")
        for r in differ:
            lines.append(f"{suite} ({side}): {r['b']} - {r['a']} = {_ci(r)} on {r['n']} paired questions "
                         f"(Holm p={r['p_holm']:.3g}): they differ.")
        same = [f"{r['a']} = {r['b']}" for r in rows if r["changed"] == 0]
        if same:
            lines.append(f"{suite} ({side}): scored the same on every one of the {rows[0]['n']} questions: "
                         f"{'; '.join(same)}.")
    return lines


def to_markdown(result: dict[str, Any]) -> str:
    conf = f"{result['confidence']:.0%}"
    out = [f"# Sweep {result['sweep']}", "",
           f"Each configuration's final adapter against the base on the same questions ({conf} CIs; gates Holm-"
           f"corrected across every adapter by the plugin run in `{result['report']}`).", "",
           f"| configuration | {result['gain']} (gain) | {result['cost']} (cost) | gates | Pareto | train s |",
           "|---|---|---|---|---|---|"]
    for c in result["configurations"]:
        out.append(f"| {c['name']} | {_ci(c['gain'])} | {_ci(c['cost'])} | {'-' if c['passes'] is None else 'PASS' if c['passes'] else 'FAIL'} | "
                   f"{'yes' if c['name'] in result['pareto_front'] else ''} | {c['wall_time_s']} |")
    for side in ("gain", "cost"):
        rows = result["pairwise"].get(side, [])
        if rows:
            out += ["", f"## {result[side]} ({side}): configuration vs configuration, paired", "",
                    "| b - a | delta | n | p (Holm) | differ |", "|---|---|---|---|---|"]
            out += [f"| {r['b']} - {r['a']} | {_ci(r)} | {r['n']} | {r['p_holm']:.3g} | {'yes' if r['differ'] else 'no'} |"
                    for r in rows]
    out += ["", "## Answer", "", *[f"- {line}" for line in result["answer"]], "", "![Pareto front](pareto.png)", ""]
    return "\n".join(out)


def run_sweep(config_path: str | Path, specs: Sequence[str], out: str | Path | None = None) -> dict[str, Any]:
    """Validate the grid, train what is not trained, evaluate all final adapters in one plugin run, report."""
    import time

    started = time.monotonic()
    out_dir = Path(out) if out else ROOT / "runs" / f"sweep-{Path(config_path).stem}"
    base, points = plan_grid(config_path, specs, out_dir)
    print(f"[sweep] {len(points)} configurations, all valid: {', '.join(p['name'] for p in points)}",
          file=sys.stderr, flush=True)
    trained = train_points(points, out_dir)
    trained_at = time.monotonic()
    report_dir, _ = evaluate(base, trained, out_dir)
    result = sweep_report(base, trained, report_dir, out_dir)
    result["wall_time_s"] = {"total": round(time.monotonic() - started, 1),
                             "training": round(trained_at - started, 1),
                             "evaluation": round(time.monotonic() - trained_at, 1)}
    (out_dir / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(["", f"sweep answer ({out_dir / 'sweep.md'}, {out_dir / 'pareto.png'}):",
                     *[f"  {line}" for line in result["answer"]]]), flush=True)
    return result
