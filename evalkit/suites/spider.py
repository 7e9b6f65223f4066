"""Spider 1.0 text-to-SQL, scored by execution accuracy: the skill a SQL fine-tune trains (its target)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evalkit.data.hardness import LEVELS
from evalkit.data.spider import SCHEMA_STYLES
from evalkit.errors import ConfigError
from evalkit.suites.base import Example, Generation, Scored, Setting, Suite, parse_count, parse_names
from evalkit.summary import Layout

TEMPLATES = ("spider-chat", "spider-fewshot")


class SpiderSuite(Suite):
    """Spider dev (or train) questions, grouped by official hardness, one cluster per database.

    Deltas are not stratified: McNemar's test (with Tango's interval) on the questions, as is usual for Spider.
    An example whose database file is missing is collected as skipped with that reason, never scored 0.
    """

    name = "spider"
    layout = Layout(title="Spider execution accuracy", group_title="hardness", cluster_title="database",
                    groups=LEVELS, stratified=False, role="target", metrics=("em",))
    settings = (
        Setting("split", "Spider split: dev or train", "dev"),
        Setting("template", f"Spider prompt template ({', '.join(TEMPLATES)})", "spider-chat"),
        Setting("sample", "Spider examples sampled per hardness level, or 'all'", "20"),
        Setting("dbs", "comma-separated Spider databases to draw from (default: all)", ""),
        Setting("sample_rows", "first rows of each table shown under it in the prompt (a prompt option: an "
                "adapter trained with another value is refused)", "0"),
        Setting("schema", "schema rendering in the prompt: create (CREATE TABLE statements) or compact (one "
                "table(col, ...) line per table; a prompt option like sample_rows)", "create"),
    )
    request = Generation(stop=(";",))
    markers = {"easy": "Spider easy", "medium": "Spider medium", "hard": "Spider hard", "extra": "Spider extra hard"}

    def __init__(self, values: Mapping[str, str], data_dir: Any) -> None:
        super().__init__(values, data_dir)
        if self.values["split"] not in ("dev", "train"):
            raise ConfigError(f"{self.flag('split')} {self.values['split']!r}: use dev or train.")
        if self.values["template"] not in TEMPLATES:
            raise ConfigError(f"{self.flag('template')} {self.values['template']!r}: use one of {', '.join(TEMPLATES)}.")
        self.split = self.values["split"]
        self._sample = parse_count(self.flag("sample"), self.values["sample"], allow_all=True, minimum=1)
        self.dbs = parse_names(self.flag("dbs"), self.values["dbs"])
        if self.values["schema"] not in SCHEMA_STYLES:
            raise ConfigError(f"{self.flag('schema')} {self.values['schema']!r}: use one of {', '.join(SCHEMA_STYLES)}.")
        # The prompt options, named as training.json's "prompt" section names them.
        self.prompt_options = {"sample_rows": parse_count(self.flag("sample_rows"), self.values["sample_rows"]),
                               "schema": self.values["schema"]}

    @property
    def template(self) -> str:
        return self.values["template"]

    @property
    def sample(self) -> int | None:
        return self._sample

    def load(self) -> list[Example]:
        from evalkit.data.spider import load_spider

        examples = load_spider(self.split, self.data_dir)
        if self.dbs:
            unknown = sorted(set(self.dbs) - {ex.db_id for ex in examples})
            if unknown:
                raise ConfigError(f"{self.flag('dbs')}: no {self.split} examples on {', '.join(unknown)}. "
                                  "Fix: use database ids from the split (e.g. concert_singer).")
            examples = [ex for ex in examples if ex.db_id in self.dbs]
        return [Example(ex.id, ex.hardness, ex.db_id, ex.hardness, ex, ex.skip_reason) for ex in examples]

    def checksum(self) -> str:
        from evalkit.data.spider import checksum

        return checksum(self.split, self.data_dir)

    def prompt(self, example: Example, tokenizer: Any) -> str:
        from evalkit.prompts import build_prompt

        return build_prompt(self.template, example.data, tokenizer, self.data_dir, **self.prompt_options).text

    def score(self, example: Example, prompt: str, output: Any) -> Scored:
        from deepeval.test_case import LLMTestCase

        from evalkit.metrics.execution_accuracy import ExecutionAccuracy, Outcome

        data = example.data
        case = LLMTestCase(input=data.question, actual_output=output, expected_output=data.query,
                           metadata={"db_id": data.db_id, "db_path": str(data.db_path)}, name=example.id)
        metric = ExecutionAccuracy()
        metric.measure(case)
        result = metric.result
        status = "error" if result.outcome is Outcome.GOLD_ERROR else "scored"
        # Exact-set match comes from the same measurement (no second sandbox run); None: the gold does not parse.
        em = None if result.exact_set_match is None else {"em": float(result.exact_set_match)}
        return Scored(case, metric, status, dict(outcome=result.outcome.value, extracted=result.extracted_sql,
                                                 output=result.raw_output, expected=data.query, input=data.question,
                                                 secondary=em))

    def comparable(self) -> dict[str, Any]:
        return {"prompt template": self.template, "sample rows": self.prompt_options["sample_rows"],
                "schema": self.prompt_options["schema"]}

    def check_training(self, adapter: str, provenance: Mapping[str, Any]) -> None:
        """Refuse an adapter trained on other prompts than this run sends: its score would measure the
        prompt change, not the training."""
        trained = provenance.get("prompt") or {}
        for option, sent in self.prompt_options.items():
            if option in trained and trained[option] != sent:
                raise ConfigError(
                    f"adapter {adapter!r} was trained with prompt.{option}={trained[option]} (its training.json), "
                    f"this run sends {self.flag(option)}={sent}. Fix: pass {self.flag(option)}={trained[option]}, "
                    "or train with the run's value.")

    def contamination(self, adapter: str, provenance: Mapping[str, Any]) -> str | None:
        """An adapter trained on the split this run scores (or on dev questions while dev is scored): its
        Spider figures measure recall of the answers, not skill."""
        same_split = provenance.get("data_split") == self.split
        if not (same_split or (self.split == "dev" and provenance.get("trained_on_eval_data"))):
            return self.selection(adapter, provenance)
        seen = f"Spider {self.split}" if same_split else "questions of Spider dev"
        return (f"adapter {adapter!r} was trained on {seen} (its training.json), which this run scores: its Spider "
                "figures and deltas are not held-out results. Fix: train with data.split: train and "
                "allow_eval_split: false.")
