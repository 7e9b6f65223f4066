"""Compare tradeoff's MMLU predictions with lm-evaluation-harness's, question by question.

lm-evaluation-harness is never a dependency of this project: install it in its own virtual environment
(docs/benchmarks.md, "Agreement with lm-evaluation-harness"). It cannot reach the Hugging Face hub here,
so ``prepare`` writes the local MMLU CSV rows as JSONL files and one task YAML per subject that builds
the harness's ``mmlu_continuation`` prompt (``--format cloze``, task tag ``tradeoff_cloze``) or its
default letters prompt (``--format letters``, tag ``tradeoff_letters``) from them; ``compare`` reads the
harness's ``--log_samples`` output and tradeoff's ``cases.jsonl`` and prints the agreement.
``bench_lmeval.py`` runs the whole procedure and times both tools.

    python benchmarks/lmeval_agreement.py prepare --subjects global_facts,anatomy --out /tmp/agree
    <lm-eval venv>/bin/lm_eval --model hf --model_args pretrained=<model folder>,dtype=float32 \
        --include_path /tmp/agree/tasks --tasks tradeoff_cloze --num_fewshot 0 --device cpu --batch_size 8 \
        --log_samples --output_path /tmp/agree/lmeval
    pytest tests/eval --suites=mmlu --mmlu-format=cloze --mmlu-shots=0 --mmlu-sample=all \
        --mmlu-subjects=global_facts,anatomy --report-dir=/tmp/agree/tradeoff
    python benchmarks/lmeval_agreement.py compare --out /tmp/agree
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from evalkit.data.mmlu import LETTERS, load_mmlu
from evalkit.metrics.mmlu_accuracy import argmax
from evalkit.prompts import (MMLU_CONTINUATIONS, mmlu_cloze_continuations, mmlu_cloze_header, mmlu_cloze_kshot_prompt,
                             mmlu_header, mmlu_kshot_prompt)

TASK = """task: tradeoff_{format}_{subject}
tag: tradeoff_{format}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
    dev: {dev}
output_type: multiple_choice
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
{prompt}description: {description}
metric_list:
  - metric: acc
  - metric: acc_norm
"""
# The harness's mmlu/continuation and mmlu/default templates (lm-evaluation-harness 0.4.x).
PROMPTS = {
    "cloze": """doc_to_text: "Question: {{question.strip()}}\\nAnswer:"
doc_to_choice: "{{choices}}"
doc_to_target: "{{answer}}"
""",
    "letters": """doc_to_text: "{{question.strip()}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\nD. {{choices[3]}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
""",
}
HEADERS = {"cloze": mmlu_cloze_header, "letters": mmlu_header}


def prepare(subjects: list[str], out: Path, data_dir: Path | None, form: str = "cloze") -> None:
    """JSONL copies of the CSV rows (choices kept as strings: "10%" must not become a number) and a task each."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "tasks").mkdir(parents=True, exist_ok=True)
    for subject in subjects:
        files = {}
        for split in ("test", "dev"):
            path = out / "data" / f"{subject}_{split}.jsonl"
            rows = load_mmlu(split, data_dir, [subject])
            path.write_text("".join(json.dumps({"id": q.id, "question": q.question, "choices": list(q.choices),
                                                "answer": LETTERS.index(q.answer)}) + "\n" for q in rows))
            files[split] = path
        (out / "tasks" / f"tradeoff_{form}_{subject}.yaml").write_text(TASK.format(
            format=form, subject=subject, test=files["test"], dev=files["dev"], prompt=PROMPTS[form],
            description=json.dumps(HEADERS[form](subject))))
    print(f"wrote {len(subjects)} task(s) under {out / 'tasks'}")


def _harness_rows(out: Path, form: str) -> dict[str, dict]:
    rows = {}
    for path in sorted((out / "lmeval").rglob(f"samples_tradeoff_{form}_*.jsonl")):
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            rows[sample["doc"]["id"]] = sample
    return rows


def compare(out: Path, data_dir: Path | None, shots: int, form: str = "cloze") -> dict[str, float]:
    """Print and return the per-question agreement: argmax per rule, max |Δ log-likelihood|, same strings."""
    ours = {c["id"]: c for c in map(json.loads, (out / "tradeoff" / "cases.jsonl").read_text().splitlines())
            if c["suite"] == "mmlu" and c["variant"] == "base" and c["status"] == "scored"}
    theirs = _harness_rows(out, form)
    shared = sorted(set(ours) & set(theirs))
    rules = ("acc", "acc_norm") if form == "cloze" else ("acc",)  # one-letter answers: acc_norm is acc
    agree = dict.fromkeys(rules, 0)
    worst, texts_same = 0.0, 0
    subjects = sorted({qid.rsplit("-", 1)[0] for qid in shared})
    questions = {q.id: q for q in load_mmlu("test", data_dir, subjects)}
    for qid in shared:
        sample, case = theirs[qid], ours[qid]
        harness_ll = [float(r[0][0]) for r in sample["resps"]]
        worst = max(worst, *(abs(a - b) for a, b in zip(harness_ll, case["logprobs"])))
        lengths = [float(len(c)) for c in sample["doc"]["choices"]]
        harness = {"acc": argmax(harness_ll), "acc_norm": argmax([ll / n for ll, n in zip(harness_ll, lengths)])}
        mine = case["details"]["predictions"] if form == "cloze" else {"acc": case["extracted"]}
        for rule in rules:
            agree[rule] += mine[rule] == LETTERS[harness[rule]]
            if mine[rule] != LETTERS[harness[rule]]:
                print(f"{qid} {rule}: tradeoff {mine[rule]}, harness {LETTERS[harness[rule]]}")
            # the harness's own per-sample metric agrees with its argmax
            assert math.isclose(sample[rule], float(harness[rule] == int(sample["target"])))
        question = questions[qid]
        requests = [(a["arg_0"], a["arg_1"]) for a in sample["arguments"].values()]
        if form == "cloze":
            expected = [(mmlu_cloze_kshot_prompt(question, shots=shots), c) for c in mmlu_cloze_continuations(question)]
        else:
            expected = [(mmlu_kshot_prompt(question, shots=shots), c) for c in MMLU_CONTINUATIONS]
        texts_same += requests == expected
    print(f"{len(shared)} questions compared ({len(ours)} tradeoff, {len(theirs)} harness): "
          + ", ".join(f"{rule} argmax agrees on {n}/{len(shared)}" for rule, n in agree.items())
          + f"; max |Δ log-likelihood| {worst:.2e}; prompt and continuation strings identical on {texts_same}")
    return {"compared": len(shared), **{f"{rule} agree": n for rule, n in agree.items()},
            "max |Δ ll|": worst, "strings identical": texts_same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("prepare", "compare"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--subjects", default="global_facts,anatomy,abstract_algebra")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--shots", type=int, default=0, help="the --num_fewshot both runs used")
    parser.add_argument("--format", choices=("cloze", "letters"), default="cloze")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare([s for s in args.subjects.split(",") if s], args.out, args.data_dir, args.format)
    else:
        compare(args.out, args.data_dir, args.shots, args.format)


if __name__ == "__main__":
    main()
