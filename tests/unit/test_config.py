"""Run configuration: raw option values to a validated RunConfig, without pytest (evalkit.config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit.config import OPTIONS, parse_run_config
from evalkit.errors import ConfigError


def parse(tmp_path: Path, **raw):
    return parse_run_config(raw, tmp_path / "data", tmp_path / "cache")


@pytest.fixture
def adapter(tmp_path: Path) -> Path:
    folder = tmp_path / "runs" / "epoch-1"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    return folder


def test_defaults_are_the_built_in_suites_and_the_documented_settings(tmp_path):
    cfg = parse(tmp_path)
    assert [s.name for s in cfg.suites] == ["spider", "mmlu"]
    assert cfg.templates == {"spider": "spider-chat", "mmlu": "mmlu-5shot"}
    spider, mmlu = cfg.suites
    assert (spider.split, spider.sample, spider.dbs) == ("dev", 20, ())
    assert (mmlu.shots, mmlu.sample, mmlu.subjects) == (5, 5, ())
    assert [v.name for v in cfg.variants] == ["base"] and cfg.max_new_tokens == 128 and cfg.confidence == 0.95
    assert json.loads(json.dumps(cfg.to_json()))["suites"]["mmlu"]["shots"] == "5"


def test_every_suite_setting_is_an_option(tmp_path):
    names = {opt.name for opt in OPTIONS}
    assert {"spider_split", "spider_template", "spider_sample", "spider_dbs", "mmlu_shots", "mmlu_sample",
            "mmlu_subjects", "mmlu_categories"} <= names
    cfg = parse(tmp_path, suites="mmlu", mmlu_shots="0", mmlu_sample="all", mmlu_subjects="anatomy, virology",
                mmlu_categories="lm-eval")
    (mmlu,) = cfg.suites
    assert (mmlu.template, mmlu.sample, mmlu.subjects) == ("mmlu-0shot", None, ("anatomy", "virology"))


def test_adapters_become_named_variants(tmp_path, adapter):
    cfg = parse(tmp_path, adapter=[str(adapter), f"late={adapter}"])
    assert [(v.name, v.adapter) for v in cfg.variants] == [("base", None), ("epoch-1", adapter), ("late", adapter)]
    assert [v.name for v in cfg.run_variants] == ["base", "epoch-1", "late"]


@pytest.mark.parametrize(("raw", "message"), [
    ({"suites": "spider,gsm8k"}, "use a comma-separated subset of spider, mmlu"),
    ({"suites": ",,"}, "--suites ',,' names nothing"),
    ({"mmlu_subjects": ",,,"}, "--mmlu-subjects ',,,' names nothing"),
    ({"mmlu_subjects": "anatomy,astrology"}, "unknown subject(s) astrology"),
    ({"mmlu_shots": "7"}, "use 0-5"),
    ({"mmlu_sample": "some"}, "expected an integer >= 1 or 'all'"),
    ({"mmlu_categories": "mine"}, "use one of hendrycks, lm-eval"),
    ({"spider_template": "mmlu-0shot"}, "use one of spider-chat, spider-fewshot"),
    ({"spider_split": "test"}, "use dev or train"),
    ({"confidence": "95"}, "between 0 and 1"),
    ({"max_new_tokens": "0"}, "--max-new-tokens '0': expected an integer >= 1"),
    ({"gate_basis": "vibes"}, "use ci|point"),
    ({"baseline": "a.json", "save_baseline": "b.json"}, "Fix: drop one"),
    ({"adapter": ["/nonexistent/epoch-1"]}, "is not an adapter folder (no adapter_config.json)"),
    ({"gate": ["mmlu.score >= 30"]}, "thresholds are fractions"),
    ({"gate": ["spider.delta >= 0"], "suites": "mmlu"}, "suite 'spider' is not in this run"),
    ({"gate": ["mmlu.delta@epoch-9 >= -0.02"]}, "variant 'epoch-9' is not evaluated in this run"),
    ({"dtype": "fp8"}, "--dtype 'fp8': use one of auto, float32, bfloat16, float16"),
    ({"mmlu_format": "words"}, "--mmlu-format 'words': use letters or cloze"),
    ({"mmlu_cloze_metric": "f1"}, "use acc_norm or acc"),
    ({"suite": ["mine"]}, "expected NAME=PATH"),
    ({"suite": ["mine=/nonexistent.jsonl"]}, "is not a file"),
    ({"backend": "tgi"}, "--backend 'tgi': use hf (transformers) or vllm"),
    ({"vllm_arg": ["tensor_parallel_size=2"]}, "without --backend vllm. Fix: add --backend vllm"),
    ({"backend": "vllm", "vllm_arg": ["tensor parallel=2"]}, "expected KEY=VALUE with a vllm.LLM argument name"),
])
def test_bad_values_name_the_option_and_the_fix(tmp_path, raw, message):
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, **raw)
    assert message in str(caught.value)


def test_vllm_backend_and_its_engine_arguments(tmp_path):
    assert parse(tmp_path).backend == "hf"
    cfg = parse(tmp_path, backend="vllm", vllm_arg=["tensor_parallel_size=2", "gpu_memory_utilization=0.9",
                                                    "enforce_eager=true", "kv_cache_dtype=fp8"])
    assert cfg.backend == "vllm"
    assert dict(cfg.vllm_args) == {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.9, "enforce_eager": True,
                                   "kv_cache_dtype": "fp8"}
    assert cfg.to_json()["vllm_args"]["tensor_parallel_size"] == 2


@pytest.mark.parametrize("name", ["spider", "mmlu", "stem", "extra", "base"])
def test_variant_names_that_are_suites_markers_or_the_base_are_refused(tmp_path, adapter, name):
    with pytest.raises(ConfigError, match=f"variant name '{name}' is reserved"):
        parse(tmp_path, adapter=[f"{name}={adapter}"])


def test_own_suite_joins_the_run_and_its_gates(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "2+2?", "choices": ["3", "4"], "answer": 1, "subject": "arithmetic"}\n'
                    '{"question": "Capital of France?", "choices": ["Paris", "Rome", "Oslo"], "answer": "A"}\n')
    cfg = parse(tmp_path, suite=[f"mine={path}"], gate=["mine.score >= 0.25"])
    assert [s.name for s in cfg.suites] == ["spider", "mmlu", "mine"]
    mine = cfg.suites[-1]
    examples = mine.load()
    assert [(e.id, e.group) for e in examples] == [("00001", "arithmetic"), ("00002", "no_subject")]
    assert mine.layout.groups == ("arithmetic", "no_subject") and mine.layout.stratified
    assert [e.data["answer"] for e in examples] == ["B", "A"]
    assert mine.continuations(examples[1]) == [" A", " B", " C"]
    assert mine.prompt(examples[0], None) == ("The following are multiple choice questions (with answers) about "
                                              "arithmetic.\n\n2+2?\nA. 3\nB. 4\nAnswer:")


@pytest.mark.parametrize("name", ["spider", "mmlu", "easy", "stem", "humanities", "base", "hellaswag", "arc_easy",
                                  "forgetting"])
def test_suite_names_that_are_built_in_suites_markers_families_or_the_base_are_refused(tmp_path, name):
    """`--suite easy=...` was accepted, and `-m easy` then selected the user's file beside Spider's easy level."""
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "2+2?", "choices": ["3", "4"], "answer": 1}\n')
    with pytest.raises(ConfigError, match=f"--suite '{name}=.*': the name '{name}' is reserved .* Fix: give your file"):
        parse(tmp_path, suite=[f"{name}={path}"])


def test_two_suites_under_one_name_are_refused(tmp_path):
    """The second file was dropped silently (--suites=NAME), or every test crashed: 'choices has 4 lists for 2
    contexts'."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text('{"question": "2+2?", "choices": ["3", "4"], "answer": 1}\n')
    second.write_text('{"question": "3+3?", "choices": ["5", "6", "7", "8"], "answer": 1}\n')
    with pytest.raises(ConfigError, match=f"a second suite named 'mine' \\(the first is {first}\\)"):
        parse(tmp_path, suite=[f"mine={first}", f"mine={second}"], suites="mine")


def test_dtype_auto_is_fp32_on_cpu_and_explicit_dtypes_are_kept():
    import torch

    from evalkit.models import pick_dtype

    assert pick_dtype("cpu", "auto") == torch.float32  # bf16 agreed with fp32 on under 99% of questions
    assert pick_dtype("cpu", "float32") == torch.float32 and pick_dtype("cpu", "bfloat16") == torch.bfloat16
    with pytest.raises(ConfigError, match="use one of auto"):
        pick_dtype("cpu", "half")


def test_adapter_trained_on_other_prompt_options_is_refused(tmp_path, adapter):
    from evalkit.plugin import training_data_warnings

    (adapter / "training.json").write_text(json.dumps({"data_split": "train", "prompt": {"sample_rows": 3}}))
    with pytest.raises(ConfigError, match=r"trained with prompt.sample_rows=3 .* Fix: pass --spider-sample-rows=3"):
        training_data_warnings(parse(tmp_path, adapter=[str(adapter)]))
    cfg = parse(tmp_path, adapter=[str(adapter)], spider_sample_rows="3")
    assert training_data_warnings(cfg) == []
    assert next(s for s in cfg.suites if s.name == "spider").comparable() == {"prompt template": "spider-chat",
                                                                           "sample rows": 3, "schema": "create"}
    (adapter / "training.json").write_text(json.dumps({"data_split": "train",
                                                       "prompt": {"sample_rows": 0, "schema": "compact"}}))
    with pytest.raises(ConfigError, match=r"trained with prompt.schema=compact .* Fix: pass --spider-schema=compact"):
        training_data_warnings(parse(tmp_path, adapter=[str(adapter)]))
    assert training_data_warnings(parse(tmp_path, adapter=[str(adapter)], spider_schema="compact")) == []
    with pytest.raises(ConfigError, match=r"--spider-schema 'short': use one of create, compact"):
        parse(tmp_path, spider_schema="short")
