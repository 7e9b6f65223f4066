"""The forgetting suites through the real plugin on the embedded model: each suite's tests, the family's
macro average in tradeoff.json and the summary, a gate on it, and the family marker."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_runs import Run, run_project, save_random_adapter

from evalkit.suites import FAMILIES

pytestmark = pytest.mark.model
SAMPLES = tuple(f"--{name.replace('_', '-')}-sample=2" for name in FAMILIES["forgetting"])


@pytest.fixture(scope="module")
def forgetting(tmp_path_factory, data_dir) -> Run:
    adapter = save_random_adapter(tmp_path_factory.mktemp("adapter") / "lora", seed=3)
    return run_project(tmp_path_factory.mktemp("forgetting"), data_dir, tmp_path_factory.mktemp("cache"),
                       "--suites=forgetting", *SAMPLES, f"--adapter=lora={adapter}",
                       "--gate", "forgetting.delta >= -1", "--gate", "forgetting.hellaswag.delta >= -1")


def test_every_suite_runs_and_the_family_is_their_macro_average(forgetting):
    assert forgetting.rc == 0, forgetting.out
    suites = forgetting.json["suites"]
    assert set(suites) == {*FAMILIES["forgetting"], "forgetting"}
    members = [suites[name]["deltas"]["lora"]["all"]["delta"] for name in FAMILIES["forgetting"]]
    family = suites["forgetting"]["deltas"]["lora"]["all"]
    assert family["delta"] == pytest.approx(sum(members) / len(members))
    assert family["n"] == 2 * len(members) and suites["forgetting"]["scores"]["base"]["all"]["n"] == 2 * len(members)
    assert {g["verdict"] for g in forgetting.json["gates"]} == {"PASS"}
    cases = forgetting.cases()
    assert len(cases) == 2 * 2 * len(members) and not any(c["suite"] == "forgetting" for c in cases)
    hellaswag = next(c for c in cases if c["suite"] == "hellaswag")
    assert len(hellaswag["logprobs"]) == 4 and set(hellaswag["secondary"]) == {"acc", "acc_norm"}
    winogrande = next(c for c in cases if c["suite"] == "winogrande")
    assert len(winogrande["logprobs"]) == 2 and winogrande["template"] == "winogrande-0shot"
    assert "Forgetting suites (macro average)" in forgetting.out and "forgetting.delta@lora" in forgetting.out


def test_the_family_marker_selects_its_suites(tmp_path: Path, data_dir):
    run_ = run_project(tmp_path, data_dir, tmp_path / "cache", "--co", "-q", "--strict-markers",
                       "--suites=spider,forgetting", "--spider-sample=1", *SAMPLES, "-m", "forgetting")
    ids = [line for line in run_.out.splitlines() if "test_eval[" in line]
    assert len(ids) == 2 * len(FAMILIES["forgetting"]) and not any("[spider-" in line for line in ids)
