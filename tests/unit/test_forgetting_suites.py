"""The forgetting suites on the real upstream files: the rows, the harness's strings byte for byte, and a
malformed row as one error naming the file, the line and the fix.

The literal strings were printed by lm-evaluation-harness 0.4.13 itself (its task YAMLs and
``hellaswag/utils.process_docs`` on these rows; benchmarks/forgetting_agreement.py runs the comparison
on hundreds of questions per suite).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evalkit.config import parse_run_config
from evalkit.data.commonsense import load_arc, load_hellaswag, load_piqa, load_winogrande
from evalkit.errors import ConfigError, DataError
from evalkit.suites import FAMILIES, REGISTRY
from evalkit.summary import CaseRecord, summarize


def requests(data_dir: Path, suite: str, example_id: str) -> list[tuple[str, str]]:
    chosen = REGISTRY[suite]({}, data_dir)
    example = next(e for e in chosen.load() if e.id == example_id)
    return chosen.requests(example, chosen.prompt(example, None))


def test_every_split_loads_with_the_manifests_counts(data_dir):
    counts = {name: len(REGISTRY[name]({}, data_dir).load()) for name in FAMILIES["forgetting"]}
    assert counts == {"hellaswag": 10042, "arc_challenge": 1172, "arc_easy": 2376, "winogrande": 1267, "piqa": 1838,
                      "openbookqa": 500}
    hellaswag = load_hellaswag(data_dir)
    assert len({row.id for row in hellaswag}) == 10042  # the line number: ind repeats across sources
    assert {row.source for row in hellaswag} == {"ActivityNet", "WikiHow"}
    assert sum(row.source == "WikiHow" for row in hellaswag) == 6799


def test_arc_gold_is_the_answer_keys_position_for_numbered_and_lettered_choices(data_dir):
    questions = {q.id: q for q in load_arc("challenge", data_dir)}
    regents = questions["NYSEDREGENTS_2012_8_42"]  # labels "1".."3", key "2"
    assert regents.labels == ("1", "2", "3") and regents.gold == 1 and regents.choices[1] == "increase"
    assert {len(q.choices) for q in questions.values()} == {3, 4, 5}


def test_hellaswag_strings_are_the_harnesses(data_dir):
    assert requests(data_dir, "hellaswag", "00664")[:2] == [
        ("Washing hands: A man is seen wearing scrubs and standing in front of a sink. The man",
         " washes his hands and turns to face the camera."),
        ("Washing hands: A man is seen wearing scrubs and standing in front of a sink. The man",
         " pushes a scrub into a bowl and rubs it all over various areas.")]
    wikihow = requests(data_dir, "hellaswag", "03244")  # [header]/[title]/[step] markup removed as the harness does
    assert wikihow[0][0] == (
        "Personal Care and Style: How to become a fashion consultant. Obtain your high school diploma or ged. This "
        "job requires a high school diploma or equivalent, so make sure to apply yourself and finish school. If your "
        "high school offers these classes, take art, design, and sewing to familiarize yourself with foundational "
        "concepts in fashion.")
    assert [c for _, c in wikihow] == [
        "  Many high schools have classes offered for their students who do not have a high school diploma, so be "
        "sure to register to take these classes and find a job in your field.. Search for entry-level positions in "
        "fashion industries.",
        " Having an associate's degree in business, political science, economics, or practically anything else will "
        "help you hone and prepare for your future work. Some graduate schools also have dress code and headband "
        "classes for all subjects in their fashion departments.",
        " You should also be able to show the world what fashion is, even the fundamentals. If you have not achieved "
        "your high school diploma or ged, obtain your ged by getting your ged at an accredited college or applying to "
        "a variety of colleges or universities.",
        "  Earn a bachelor's degree in a fashion-related field. Degrees for the fashion industry include art, fashion "
        "merchandising, and marketing."]


def test_arc_piqa_and_openbookqa_strings_are_the_harnesses(data_dir):
    assert requests(data_dir, "arc_challenge", "MCAS_2005_5_25")[:2] == [
        ("Question: When the temperature of a sample of 25 water is -5°C, the water is\nAnswer:", " a gas."),
        ("Question: When the temperature of a sample of 25 water is -5°C, the water is\nAnswer:", " a liquid.")]
    assert requests(data_dir, "arc_easy", "Mercury_400256")[1] == (
        "Question: Which set of tools would be best to use for dissecting in a biology lab?\nAnswer:",
        " scissors, forceps, and a scalpel")
    assert requests(data_dir, "piqa", "03e163c2-bf9e-492b-b232-d4fe464b6dd7") == [
        ("Question: How to serve chips directly from the bag?\nAnswer:",
         " Open the packet, fold the top of the bag inward and allow the bag to rest on the top with the chips at the top"),
        ("Question: How to serve chips directly from the bag?\nAnswer:",
         " Open the packet, fold the bottom of the bag inward and allow the bag to rest on the bottom with the chips at "
         "the top")]
    assert requests(data_dir, "openbookqa", "1150")[:2] == [
        ("Objects used to hold sheets of paper together are often", " large"),
        ("Objects used to hold sheets of paper together are often", " wooden")]


def test_winogrande_is_partial_evaluation_two_contexts_one_continuation(data_dir):
    assert requests(data_dir, "winogrande", "302U8RURJ1F4PRVV7VD96AIPFFINV2-2") == [
        ("The blue car was a pleasure to drive but the blue", " car was not as the red car was very cheap."),
        ("The blue car was a pleasure to drive but the red", " car was not as the red car was very cheap.")]
    rows = {row.id: row for row in load_winogrande(data_dir)}
    assert rows["302U8RURJ1F4PRVV7VD96AIPFFINV2-2"].gold == 1  # answer "2"


def test_piqa_labels_come_from_their_own_file(data_dir):
    rows = load_piqa(data_dir)
    assert len(rows) == 1838 and sum(row.gold for row in rows) == 928  # MANIFEST: 0 -> 910, 1 -> 928


def copy_of(data_dir: Path, tmp_path: Path, folder: str) -> Path:
    shutil.copytree(data_dir / folder, tmp_path / folder)
    return tmp_path


def rewrite_line(path: Path, number: int, change) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    row = json.loads(lines[number - 1])
    change(row)
    lines[number - 1] = json.dumps(row)
    path.write_text("\n".join(lines), encoding="utf-8")


@pytest.mark.parametrize(("folder", "file", "change", "message"), [
    ("winogrande", "winogrande/dev.jsonl", lambda r: r.update(sentence=r["sentence"].replace("_", "it")),
     r"dev\.jsonl, line 7: the sentence has 0 blanks"),
    ("winogrande", "winogrande/dev.jsonl", lambda r: r.pop("option2"), r"dev\.jsonl, line 7: field 'option2' is missing"),
    ("hellaswag", "hellaswag/hellaswag_val.jsonl", lambda r: r.update(label=4), r"hellaswag_val\.jsonl, line 7: label 4 is not 0-3"),
    ("hellaswag", "hellaswag/hellaswag_val.jsonl", lambda r: r.update(endings=r["endings"][:3]),
     r"line 7: 'endings' must be a list of 4 texts"),
    ("arc", "arc/ARC-Easy/ARC-Easy-Test.jsonl", lambda r: r.update(answerKey="F"),
     r"ARC-Easy-Test\.jsonl, line 7: answerKey 'F' is not one of the choice labels A, B, C, D"),
    ("openbookqa", "openbookqa/Main/test.jsonl", lambda r: r["question"].pop("stem"),
     r"test\.jsonl, line 7: field 'stem' is missing"),
])
def test_a_malformed_row_is_one_error_naming_file_line_and_fix(data_dir, tmp_path, folder, file, change, message):
    root = copy_of(data_dir, tmp_path, folder)
    rewrite_line(root / file, 7, change)
    name = {"arc": "arc_easy"}.get(folder, folder)
    with pytest.raises(ConfigError, match=message) as caught:
        REGISTRY[name]({}, root).load()
    assert "Fix: restore the upstream" in str(caught.value)


def test_piqa_labels_out_of_range_or_short_name_the_labels_file(data_dir, tmp_path):
    root = copy_of(data_dir, tmp_path, "piqa")
    labels = root / "piqa" / "dev-labels.lst"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join(lines[:5] + ["2"] + lines[6:]) + "\n")
    with pytest.raises(DataError, match=r"dev-labels\.lst, line 6: label '2' is not 0 or 1"):
        load_piqa(root)
    labels.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=r"1837 labels for the 1838 questions"):
        load_piqa(root)


def parse(data_dir: Path, tmp_path: Path, **raw):
    return parse_run_config(raw, data_dir, tmp_path / "cache")


def test_runs_take_the_suites_whose_data_is_there(data_dir, tmp_path):
    assert [s.name for s in parse(data_dir, tmp_path).suites] == list(REGISTRY)
    only_core = tmp_path / "core"
    only_core.mkdir()
    for folder in ("spider", "mmlu"):
        (only_core / folder).symlink_to(data_dir / folder)
    assert [s.name for s in parse(only_core, tmp_path).suites] == ["spider", "mmlu"]
    with pytest.raises(ConfigError, match=r"no data for hellaswag, arc_challenge.*Fix: run `python -m evalkit.data fetch"):
        parse(only_core, tmp_path, suites="forgetting")


def test_the_family_name_selects_its_suites_and_names_a_gate(data_dir, tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")  # a delta gate needs an adapter; this one is never loaded
    cfg = parse(data_dir, tmp_path, suites="spider,forgetting", gate=["forgetting.delta >= -0.02"],
                adapter=[f"a={tmp_path}"])
    assert [s.name for s in cfg.suites] == ["spider", *FAMILIES["forgetting"]]
    assert cfg.gates[0].suite == "forgetting"
    with pytest.raises(ConfigError, match="reserved"):
        parse(data_dir, tmp_path, adapter=[f"forgetting={tmp_path}"])
    with pytest.raises(ConfigError, match="forgetting"):
        parse(data_dir, tmp_path, suites="mmlu", gate=["forgetting.delta >= -0.02"])


def records(suite: str, base: list[int], adapter: list[int]) -> list[CaseRecord]:
    return [CaseRecord(suite, variant, f"{i:03d}", "all", "all", "t", "scored", score=float(s), passed=bool(s))
            for variant, scores in (("base", base), ("a", adapter)) for i, s in enumerate(scores)]


def test_the_family_delta_is_the_macro_average_of_its_members_paired_deltas():
    layouts = {name: REGISTRY[name].layout for name in ("hellaswag", "piqa")}
    from evalkit.suites import FAMILY_LAYOUTS

    rows = records("hellaswag", [1] * 100 + [0] * 100, [1] * 90 + [0] * 110) \
        + records("piqa", [1] * 20 + [0] * 20, [1] * 20 + [0] * 20)
    summary = summarize(rows, ["base", "a"], layouts, {}, families={"forgetting": (FAMILY_LAYOUTS["forgetting"],
                                                                                     ("hellaswag", "piqa"))})
    family = summary.suites["forgetting"]
    hellaswag, piqa = summary.suites["hellaswag"].deltas["a"].overall, summary.suites["piqa"].deltas["a"].overall
    delta = family.deltas["a"].overall
    assert delta.delta == pytest.approx((hellaswag.delta + piqa.delta) / 2) == pytest.approx(-0.025)
    assert (delta.n, delta.n_strata, delta.b, delta.c) == (240, 2, 10, 0)
    halves = [(f.hi - f.lo) / 2 for f in (hellaswag, piqa)]  # each member's own interval carries over
    assert delta.hi - delta.delta == pytest.approx((halves[0] ** 2 + halves[1] ** 2) ** 0.5 / 2)
    assert delta.lo < delta.delta < delta.hi and 0 < delta.p_value < 1
    assert family.scores["base"].overall.mean == pytest.approx(0.5)  # both suites at 50%: the macro mean
    assert set(family.deltas["a"].groups) == {"hellaswag", "piqa"}
    assert summary.figure("forgetting", None, "delta", "a") is delta


def test_the_answer_names_the_family_and_only_the_members_that_moved():
    from evalkit.report.answer import answer_lines
    from evalkit.suites import FAMILY_LAYOUTS

    layouts = {name: REGISTRY[name].layout for name in ("spider", "hellaswag", "piqa")}
    rows = records("spider", [0] * 50, [1] * 20 + [0] * 30) \
        + records("hellaswag", [1] * 100 + [0] * 100, [1] * 70 + [0] * 130) \
        + records("piqa", [1] * 40 + [0] * 40, [1] * 40 + [0] * 40)
    summary = summarize(rows, ["base", "a"], layouts, {}, families={"forgetting": (FAMILY_LAYOUTS["forgetting"],
                                                                                     ("hellaswag", "piqa"))})
    (line,) = answer_lines(summary)
    assert line.startswith("a vs base: Spider")
    family, hellaswag = line.index("Forgetting suites (macro average) fell"), line.index("HellaSwag acc_norm fell")
    assert line.index("Spider") < family < hellaswag and "PIQA" not in line  # PIQA did not move: the average says it
