"""Compare the forgetting suites with lm-evaluation-harness 0.4.13, question by question.

The harness's *own* task YAMLs do the formulation (``include:`` of its installed ``hellaswag.yaml``,
``arc_easy.yaml``, ...; HellaSwag's ``process_docs`` and WinoGrande's functions come with them); only the
data source is replaced, since the hub is out of reach: ``prepare`` writes the rows tradeoff samples
(``--<suite>-sample=N``, seed 0) as local JSONL in the row shapes of the hub datasets those YAMLs read
(``Rowan/hellaswag``, ``allenai/ai2_arc``, ``allenai/winogrande``, ``baber/piqa``,
``allenai/openbookqa``), each with an ``id`` to match on. ``run`` runs both tools; ``compare`` prints,
per suite, argmax agreement for acc and acc_norm, max |Δ log-likelihood| and whether the harness's
(context, continuation) strings equal ours.

    python benchmarks/forgetting_agreement.py run --lmeval-python /tmp/lmeval-venv/bin/python --out /tmp/fagree \
        --sample hellaswag=300,arc_challenge=300,arc_easy=300,piqa=300,winogrande=all,openbookqa=all
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalkit.metrics.mmlu_accuracy import LETTERS_ANY, argmax
from evalkit.paths import data_dir as resolve_data_dir
from evalkit.sampling import stratified
from evalkit.suites import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
# suite -> (the harness's YAML, relative to lm_eval/tasks, the split it evaluates)
HARNESS_TASKS = {
    "hellaswag": ("hellaswag/hellaswag.yaml", "validation"),
    "arc_challenge": ("arc/arc_challenge.yaml", "test"),
    "arc_easy": ("arc/arc_easy.yaml", "test"),
    "winogrande": ("winogrande/default.yaml", "validation"),
    "piqa": ("piqa/piqa.yaml", "validation"),
    "openbookqa": ("openbookqa/openbookqa.yaml", "test"),
}
TASK = """include: {include}
task: tradeoff_{suite}
tag: tradeoff_forgetting
dataset_path: json
dataset_name: null
training_split: null
validation_split: {validation}
test_split: {test}
dataset_kwargs:
  data_files:
    {split}: {data}
"""


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _arc_shape(row: dict[str, Any], stem_key: str) -> dict[str, Any]:
    choices = row["question"]["choices"]
    return {"id": row["id"], stem_key: row["question"]["stem"],
            "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]},
            "answerKey": row["answerKey"]}


def hub_rows(suite: str, root: Path) -> dict[str, dict[str, Any]]:
    """Every row of the suite's upstream file in its hub dataset's shape, by tradeoff's id."""
    from evalkit.data.commonsense import files

    paths = files(suite, root)
    rows = _jsonl(paths[0])
    shapes: dict[str, Callable[[int, dict[str, Any]], tuple[str, dict[str, Any]]]] = {
        "hellaswag": lambda i, r: (f"{i:05d}", {**r, "id": f"{i:05d}", "label": str(r["label"])}),
        "arc_challenge": lambda i, r: (r["id"], _arc_shape(r, "question")),
        "arc_easy": lambda i, r: (r["id"], _arc_shape(r, "question")),
        "openbookqa": lambda i, r: (r["id"], _arc_shape(r, "question_stem")),
        "winogrande": lambda i, r: (r["qID"], {"id": r["qID"], "sentence": r["sentence"], "option1": r["option1"],
                                               "option2": r["option2"], "answer": r["answer"]}),
    }
    if suite == "piqa":
        labels = [line.strip() for line in paths[1].read_text().splitlines() if line.strip()]
        return {r["id"]: {"id": r["id"], "goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": int(label)}
                for r, label in zip(rows, labels)}
    numbered = [shapes[suite](number, row) for number, row in enumerate(rows, start=1)]
    return dict(numbered)


def _sampled(suite: str, sample: str, root: Path) -> list[Any]:
    chosen = REGISTRY[suite]({"sample": sample}, root)
    return stratified(chosen.load(), chosen.sample, 0)


def prepare(samples: dict[str, str], out: Path, root: Path, tasks_dir: Path) -> None:
    """One JSONL of the sampled rows and one task YAML (including the harness's own) per suite."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "tasks").mkdir(parents=True, exist_ok=True)
    for suite, sample in samples.items():
        rows = hub_rows(suite, root)
        chosen = [rows[example.id] for example in _sampled(suite, sample, root)]
        data = out / "data" / f"{suite}.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in chosen), encoding="utf-8")
        include, split = HARNESS_TASKS[suite]
        (out / "tasks" / f"tradeoff_{suite}.yaml").write_text(TASK.format(include=tasks_dir / include, suite=suite,
                                                                          split=split, data=data,
                                                                          validation=split if split == "validation" else "null",
                                                                          test=split if split == "test" else "null"))
        print(f"{suite}: {len(chosen)} rows")


def compare(samples: dict[str, str], out: Path, root: Path) -> dict[str, dict[str, Any]]:
    """Per suite: argmax agreement per metric, max |Δ log-likelihood|, request strings identical."""
    results = {}
    cases = [json.loads(line) for line in (out / "tradeoff" / "cases.jsonl").read_text().splitlines()]
    for suite, sample in samples.items():
        ours = {c["id"]: c for c in cases if c["suite"] == suite and c["variant"] == "base" and c["status"] == "scored"}
        theirs = {}
        for path in (out / "lmeval").rglob(f"samples_tradeoff_{suite}_*.jsonl"):
            theirs.update({s["doc"]["id"]: s for s in _jsonl(path)})
        requests = {e.id: e.data.requests() for e in _sampled(suite, sample, root)}
        rules = ("acc", "acc_norm") if suite != "winogrande" else ("acc",)
        agree, worst, same = dict.fromkeys(rules, 0), 0.0, 0
        shared = sorted(set(ours) & set(theirs))
        if not shared:
            sys.exit(f"{suite}: no question in both outputs ({len(ours)} tradeoff, {len(theirs)} harness); see the logs "
                     f"in {out}")
        for qid in shared:
            sample_, case = theirs[qid], ours[qid]
            lls = [float(r[0][0]) for r in sample_["resps"]]
            worst = max(worst, *(abs(a - b) for a, b in zip(lls, case["logprobs"])))
            args = [(a["arg_0"], a["arg_1"]) for a in sample_["arguments"].values()]
            same += args == requests[qid]
            lengths = [len(continuation) - 1 for _, continuation in args]  # the choice, without the delimiter
            harness = {"acc": argmax(lls), "acc_norm": argmax([ll / n for ll, n in zip(lls, lengths)])}
            mine = (case.get("details") or {}).get("predictions") or {"acc": case["extracted"]}
            for rule in rules:
                agree[rule] += mine[rule] == LETTERS_ANY[harness[rule]]
                # the harness's own per-sample metric agrees with its argmax (WinoGrande's gold is the option)
                gold = int(sample_["doc"]["answer"]) - 1 if suite == "winogrande" else int(sample_["target"])
                assert float(sample_[rule]) == float(harness[rule] == gold), (suite, qid, rule)
        results[suite] = {"compared": len(shared), **{f"{r} agree": n for r, n in agree.items()},
                          "max |Δ ll|": worst, "strings identical": same,
                          **{f"harness {r}": sum(float(theirs[q][r]) for q in shared) / max(1, len(shared))
                             for r in rules}}
        print(f"{suite}: {len(shared)} compared ({len(ours)} tradeoff, {len(theirs)} harness); "
              + ", ".join(f"{r} argmax agrees on {n}/{len(shared)}" for r, n in agree.items())
              + f"; max |Δ log-likelihood| {worst:.2e}; request strings identical on {same}; harness "
              + ", ".join(f"{r} {results[suite][f'harness {r}']:.1%}" for r in rules))
    return results


def _timed(command: list[str], log: Path) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
    if code not in (0, 1):  # pytest exits 1 when some answers are wrong
        sys.exit(f"{command[:4]} ... exited {code}; its output is in {log}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("prepare", "compare", "run"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sample", default=",".join(f"{s}=300" for s in HARNESS_TASKS),
                        help="SUITE=N or SUITE=all, comma-separated (tradeoff's --<suite>-sample, seed 0)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--lmeval-python", type=Path, help="the Python of lm-evaluation-harness's own venv")
    args = parser.parse_args()
    samples = dict(part.split("=", 1) for part in args.sample.split(",") if part)
    root = resolve_data_dir(args.data_dir)
    if args.step == "compare":
        compare(samples, args.out, root)
        return
    if args.lmeval_python is None:
        parser.error(f"{args.step} needs --lmeval-python (the harness's task YAMLs are included from its install)")
    tasks_dir = Path(subprocess.check_output([str(args.lmeval_python), "-c", "import lm_eval, os; "
                                              "print(os.path.dirname(lm_eval.__file__))"], text=True).strip()) / "tasks"
    prepare(samples, args.out, root, tasks_dir)
    if args.step == "prepare":
        return
    from evalkit.models import materialise_embedded

    model = materialise_embedded()
    ours = _timed([sys.executable, "-m", "pytest", "tests/eval", "-q", "-p", "no:cacheprovider",
                   f"--suites={','.join(samples)}", *(f"--{s.replace('_', '-')}-sample={n}" for s, n in samples.items()),
                   f"--data-dir={root}", f"--results-cache={args.out / 'cache'}", f"--report-dir={args.out / 'tradeoff'}"],
                  args.out / "tradeoff.log")
    theirs = _timed([str(args.lmeval_python), "-m", "lm_eval", "--model", "hf", "--model_args",
                     f"pretrained={model},dtype=float32", "--include_path", str(args.out / "tasks"), "--tasks",
                     ",".join(f"tradeoff_{s}" for s in samples), "--num_fewshot", "0", "--device", "cpu",
                     "--batch_size", "8", "--log_samples", "--output_path", str(args.out / "lmeval")],
                    args.out / "lmeval.log")
    compare(samples, args.out, root)
    print(f"tradeoff {ours:.0f} s, lm-evaluation-harness {theirs:.0f} s (outputs in {args.out})")


if __name__ == "__main__":
    main()
