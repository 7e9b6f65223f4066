"""What a benchmark suite declares, as data the plugin, the summary and the report iterate over.

A suite says how it loads its examples (respecting its settings), each example's id, group, cluster and
sampling stratum, its data checksum, its prompt template, the inference request it needs (greedy
generation with stop strings, or the log-likelihood of each answer choice), the metric that scores one
example, how its figures are laid out (group titles and order, stratified or not, its role in the
trade-off), its pytest markers, and what in an adapter's training makes its figures not held out.

Settings become command-line options named after the suite (``--spider-sample``, ``--mmlu-shots``), with
``TRADEOFF_*`` environment variables and ``pytest.ini`` keys, so adding a suite adds its options too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from evalkit.errors import ConfigError
from evalkit.summary import Layout


@dataclass(frozen=True)
class Setting:
    """One suite option: ``--<suite>-<name>``; its value reaches the suite as a string."""

    name: str
    help: str
    default: str


@dataclass(frozen=True)
class Example:
    """One example as the run sees it; ``data`` is the suite's own record (a SpiderExample, ...)."""

    id: str
    group: str
    cluster: str
    stratum: str
    data: Any
    skip_reason: str | None = None


@dataclass(frozen=True)
class Generation:
    """Greedy generation up to the run's token budget, cut before the first of ``stop``."""

    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogLikelihoods:
    """The log-likelihood of each of an example's continuations (:meth:`Suite.continuations`) after its prompt."""


Request = Generation | LogLikelihoods


@dataclass(frozen=True)
class Scored:
    """One example measured once: the DeepEval test case and the measured metric (which replays its
    measurement when DeepEval's ``assert_test`` measures its copy), and the fields of the example's record."""

    test_case: Any
    metric: Any
    status: str  # "scored", or "error" when the example itself is broken (a failing gold query)
    fields: dict[str, Any] = field(default_factory=dict)


def parse_count(flag: str, text: str, *, allow_all: bool = False, minimum: int = 0) -> int | None:
    """An integer option value (``None`` for 'all' where allowed), or a ConfigError naming the option."""
    if allow_all and text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        hint = f"an integer >= {minimum}" + (" or 'all'" if allow_all else "")
        raise ConfigError(f"{flag} {text!r}: expected {hint}.")
    return value


def parse_names(flag: str, text: str) -> tuple[str, ...]:
    """A comma-separated list; an option given but holding no name at all (``,,,``) is an error."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if text.strip() and not names:
        raise ConfigError(f"{flag} {text!r} names nothing. Fix: list names separated by commas, or leave it empty "
                          "for all.")
    return names


class Suite(ABC):
    """A benchmark: subclasses set the class attributes and implement the methods below."""

    name: ClassVar[str]
    layout: ClassVar[Layout]
    settings: ClassVar[tuple[Setting, ...]] = ()
    request: ClassVar[Request]
    markers: ClassVar[Mapping[str, str]] = {}  # marker -> description; the suite's own name is added
    family: ClassVar[str | None] = None  # a family's suites are also summarised together (their macro average)

    def __init__(self, values: Mapping[str, str], data_dir: Path) -> None:
        self.data_dir = data_dir
        self.values = {s.name: values.get(s.name) or s.default for s in self.settings}

    def flag(self, setting: str) -> str:
        return f"--{self.name}-{setting.replace('_', '-')}"

    @classmethod
    def available(cls, data_dir: Path) -> bool:
        """Whether the suite's data is in ``data_dir``: runs that name no suite take those available."""
        return True

    @property
    @abstractmethod
    def template(self) -> str:
        """The prompt template's name, recorded with every result."""

    @property
    def sample(self) -> int | None:
        """Examples drawn per stratum (None: all)."""
        return None

    @abstractmethod
    def load(self) -> list[Example]:
        """Every example the settings select, in a fixed order."""

    @abstractmethod
    def checksum(self) -> str:
        """sha256 of the data files the examples and prompts come from."""

    @abstractmethod
    def prompt(self, example: Example, tokenizer: Any) -> str:
        """The exact text sent to the model for ``example``."""

    def continuations(self, example: Example) -> list[str]:
        """The answer continuations scored after the prompt (log-likelihood suites)."""
        raise NotImplementedError(f"suite {self.name!r} generates text; it scores no continuations")

    def requests(self, example: Example, prompt: str) -> list[tuple[str, str]]:
        """The (context, continuation) pairs whose log-likelihoods score the example, one per choice: the
        continuations after the prompt, unless the choices are contexts (partial evaluation, WinoGrande)."""
        return [(prompt, continuation) for continuation in self.continuations(example)]

    @abstractmethod
    def score(self, example: Example, prompt: str, output: Any) -> Scored:
        """Measure the model's ``output`` (text, or one log-likelihood per continuation) on ``example``."""

    def describe(self) -> dict[str, Any]:
        """The settings as the report and a baseline record them."""
        return {"template": self.template, **self.values}

    def comparable(self) -> dict[str, Any]:
        """What must be equal for two runs' results to be paired (a baseline is refused otherwise)."""
        return {"prompt template": self.template}

    def check_training(self, adapter: str, provenance: Mapping[str, Any]) -> None:
        """Raise a ConfigError when an adapter was trained on prompts this suite would not send."""

    def contamination(self, adapter: str, provenance: Mapping[str, Any]) -> str | None:
        """A warning when an adapter's training data overlaps what this suite scores, else None."""
        return self.selection(adapter, provenance)

    def selection(self, adapter: str, provenance: Mapping[str, Any]) -> str | None:
        """A warning when the adapter was chosen among checkpoints on examples of this suite (``best/`` of a
        training run with ``select: gates``; its training.json lists them): this run does not exclude them, so
        its figures on them are biased in the adapter's favour (selection bias), else None."""
        chosen = (provenance.get("selection") or {})
        ids = ((chosen.get("selection_sample") or {}).get("ids") or {}).get(self.name)
        if not ids:
            return None
        seed = chosen["selection_sample"].get("sample_seed")
        return (f"adapter {adapter!r} ({chosen.get('checkpoint', 'a checkpoint')}) was chosen among its run's "
                f"checkpoints on {len(ids)} {self.name} examples (sample seed {seed}; listed in its training.json), and this run does "
                "not exclude them: its figures on them favour it (selection bias). Fix: confirm on fresh examples, "
                "e.g. another --sample-seed or a larger sample, and read the delta on the examples not listed.")

    def all_markers(self) -> dict[str, str]:
        return {self.name: self.layout.title, **self.markers}
