"""Every prompt the suites send to a model, built in one place and named in a registry.

MMLU follows lm-evaluation-harness byte for byte (``lm_eval/tasks/mmlu/default``): a per-subject
description, then ``k`` dev shots in file order (sampler ``first_n``), each ``doc_to_text + " " + letter
+ "\\n\\n"``, then the question's ``doc_to_text``, which ends in ``"Answer:"``. The model is scored on
the continuations ``" A"`` .. ``" D"``. Hendrycks' ``evaluate.py`` differs only in its header, which has
two spaces after "about" (its ``format_subject`` prefixes every word with a space) and in not stripping
the question (963 test questions start with a space or end in a newline). ``header="hendrycks"`` selects
that format; the default is the harness's.

The MMLU *cloze* format is the harness's ``mmlu_continuation``: the description "The following are
questions (with answers) about <subject>.", each question as ``"Question: <question>\nAnswer:"`` without
the lettered choices, shots answered with their gold answer *text*, and the four answer texts as the
scored continuations (each after the delimiter " "). Small models that cannot map letters to answers
are scored on the answers themselves.

Spider has two prompts that share one rendering of (schema, question): the zero-shot chat prompt that
fine-tuning trains on and evaluation sends (``spider_chat_messages`` is the single builder both import,
so train and eval prompts cannot drift apart), and a fixed 3-shot completion prompt for base models.

``build_prompt(template, item)`` makes any of them from a registered template name; the returned
:class:`PromptRecord` is stored next to each result, so every prompt is reproducible from
(template name, options, example).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from evalkit.data.mmlu import LETTERS, MMLUQuestion, load_shots
from evalkit.data.spider import SchemaStyle, SpiderExample, load_spider
from evalkit.errors import ConfigError, DataError

Header = Literal["harness", "hendrycks"]
MAX_MMLU_SHOTS = 5  # MMLU's dev split has exactly 5 questions per subject
# What is scored after an MMLU prompt: the harness's target_delimiter " " before each answer letter.
MMLU_CONTINUATIONS = tuple(f" {letter}" for letter in LETTERS)
CHOICE_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # multiple-choice files may have more than four choices


class ChatTokenizer(Protocol):
    """What the chat prompt needs from a tokenizer (any ``transformers`` tokenizer with a template)."""

    def apply_chat_template(self, conversation: list[dict], **kwargs: Any) -> Any: ...


# --------------------------------------------------------------------------------------------- MMLU


def mmlu_header(subject: str, header: Header = "harness") -> str:
    """The per-subject description line; the two styles differ only in the spaces after "about"."""
    words = subject.replace("_", " ")
    if header == "harness":
        return f"The following are multiple choice questions (with answers) about {words}.\n\n"
    if header == "hendrycks":
        return f"The following are multiple choice questions (with answers) about  {words}.\n\n"
    raise ConfigError(f"Unknown MMLU header style {header!r}. Fix: use 'harness' or 'hendrycks'.")


def mmlu_question_text(question: MMLUQuestion, header: Header = "harness") -> str:
    """The harness's ``doc_to_text``: question, the four lettered choices, and ``Answer:``.

    The harness strips the question (Jinja ``question.strip()``); Hendrycks' script uses the raw field.
    """
    return lettered_question(question.question.strip() if header == "harness" else question.question,
                             question.choices)


def lettered_question(text: str, choices: Sequence[str]) -> str:
    """``text``, each choice on its own line after its letter (A., B., ...), then ``Answer:``."""
    lines = "".join(f"\n{letter}. {choice}" for letter, choice in zip(CHOICE_LETTERS, choices))
    return f"{text}{lines}\nAnswer:"


def multiple_choice_prompt(question: str, choices: Sequence[str], subject: str | None = None) -> str:
    """A zero-shot multiple-choice prompt in the harness's MMLU format, for any number of choices: the
    description (naming the subject when there is one), the stripped question, lettered choices, ``Answer:``."""
    about = f" about {subject.replace('_', ' ')}" if subject else ""
    return (f"The following are multiple choice questions (with answers){about}.\n\n"
            + lettered_question(question.strip(), choices))


def mmlu_prompt(question: MMLUQuestion, shots: Sequence[MMLUQuestion], header: Header = "harness") -> str:
    """The full MMLU prompt: header, each shot answered (``" <letter>\\n\\n"``), then the open question.

    ``header`` picks the reference format, "harness" (lm-evaluation-harness, the default) or
    "hendrycks" (the original ``evaluate.py``). The answer is the next token after the final
    ``"Answer:"``, one of " A" .. " D".
    """
    head = mmlu_header(question.subject, header)  # validates ``header`` first
    answered = "".join(f"{mmlu_question_text(shot, header)} {shot.answer}\n\n" for shot in shots)
    return head + answered + mmlu_question_text(question, header)


def mmlu_cloze_header(subject: str) -> str:
    """The ``mmlu_continuation`` description line (no "multiple choice")."""
    return f"The following are questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def mmlu_cloze_question(question: MMLUQuestion) -> str:
    """The ``mmlu_continuation`` ``doc_to_text``: the stripped question, then ``Answer:``; no choices."""
    return f"Question: {question.question.strip()}\nAnswer:"


def mmlu_cloze_continuations(question: MMLUQuestion) -> list[str]:
    """The scored continuations: each answer text after the harness's target delimiter " "."""
    return [f" {choice}" for choice in question.choices]


def mmlu_cloze_prompt(question: MMLUQuestion, shots: Sequence[MMLUQuestion]) -> str:
    """Description, each shot with its gold answer text (``" <text>\n\n"``), then the open question."""
    answered = "".join(f"{mmlu_cloze_question(shot)} {shot.choices[LETTERS.index(shot.answer)]}\n\n"
                       for shot in shots)
    return mmlu_cloze_header(question.subject) + answered + mmlu_cloze_question(question)


@functools.lru_cache(maxsize=None)
def _cached_shots(subject: str, k: int, data_dir: Path | None) -> tuple[MMLUQuestion, ...]:
    """Dev shots per (subject, k): 14042 prompts would otherwise re-read the dev CSV every time."""
    return tuple(load_shots(subject, k, data_dir)) if k else ()


def mmlu_kshot_prompt(question: MMLUQuestion, *, shots: int = MAX_MMLU_SHOTS, header: Header = "harness",
                      data_dir: Path | None = None) -> str:
    """``mmlu_prompt`` with the first ``shots`` dev questions of the question's own subject."""
    if not 0 <= shots <= MAX_MMLU_SHOTS:
        raise ConfigError(f"MMLU shots={shots}: must be 0..{MAX_MMLU_SHOTS} (the dev split has 5 per subject).")
    return mmlu_prompt(question, _cached_shots(question.subject, shots, data_dir), header)


def mmlu_cloze_kshot_prompt(question: MMLUQuestion, *, shots: int = MAX_MMLU_SHOTS,
                            data_dir: Path | None = None) -> str:
    """``mmlu_cloze_prompt`` with the first ``shots`` dev questions of the question's own subject."""
    if not 0 <= shots <= MAX_MMLU_SHOTS:
        raise ConfigError(f"MMLU shots={shots}: must be 0..{MAX_MMLU_SHOTS} (the dev split has 5 per subject).")
    return mmlu_cloze_prompt(question, _cached_shots(question.subject, shots, data_dir))


# ------------------------------------------------------------------------------------------- Spider

SPIDER_SYSTEM_PROMPT = (
    "You are an expert in SQLite. Given a database schema and a question, write one SQLite query that "
    "answers the question. Reply with the SQL query only, ending with a semicolon."
)

# The fixed few-shot examples: train-split rows (file order of train_spider.json) on small two-table
# databases that never occur in dev, one each of ORDER BY .. LIMIT, GROUP BY with count, and a JOIN with
# a filter. The db_id is checked on load so a different train file cannot silently change the prompt.
SPIDER_FEWSHOT_SHOTS: tuple[tuple[int, str], ...] = ((4008, "ship_mission"), (767, "race_track"), (223, "book_2"))

# A quoted SQL string literal ('..' with '' escapes, or ".."), whitespace before a comma, or other whitespace.
_SQL_LITERAL_OR_SPACE = re.compile(r"('(?:[^']|'')*'|\"[^\"]*\")|(\s+(?=,))|\s+")


def spider_sql_target(example: SpiderExample) -> str:
    """The gold query as a model should write it: outside string literals, whitespace runs collapsed
    and none before commas (Spider's gold has tokeniser spacing such as ``CLASS ,  count(*)``), and one
    trailing semicolon.

    Used for the few-shot answers and as the completion fine-tuning trains on.
    """
    query = _SQL_LITERAL_OR_SPACE.sub(lambda m: m.group(1) or ("" if m.group(2) else " "), example.query)
    return query.strip().rstrip(";").rstrip() + ";"


def spider_user_text(example: SpiderExample, *, sample_rows: int = 0, schema: SchemaStyle = "create") -> str:
    """The schema (rendered in the ``schema`` style) and the question, shared by the chat prompt and each
    few-shot block."""
    return f"Database schema:\n{example.schema(sample_rows, schema)}\n\nQuestion: {example.question.strip()}"


def spider_chat_messages(example: SpiderExample, *, sample_rows: int = 0,
                         schema: SchemaStyle = "create") -> list[dict[str, str]]:
    """The zero-shot chat conversation (system instruction, then schema + question as the user turn).

    Fine-tuning builds its training prompts with this very function; evaluation sends the same.
    """
    return [
        {"role": "system", "content": SPIDER_SYSTEM_PROMPT},
        {"role": "user", "content": spider_user_text(example, sample_rows=sample_rows, schema=schema)},
    ]


def spider_chat_prompt(example: SpiderExample, tokenizer: ChatTokenizer, *, sample_rows: int = 0,
                       schema: SchemaStyle = "create") -> str:
    """:func:`spider_chat_messages` rendered by the tokenizer's chat template, ready for the answer."""
    text = tokenizer.apply_chat_template(
        spider_chat_messages(example, sample_rows=sample_rows, schema=schema), add_generation_prompt=True,
        tokenize=False,
    )
    if not isinstance(text, str):
        raise ConfigError(
            f"{type(tokenizer).__name__}.apply_chat_template(tokenize=False) returned {type(text).__name__}, not text. "
            "Fix: pass a transformers tokenizer that has a chat template."
        )
    return text


@functools.lru_cache(maxsize=1)
def spider_fewshot_examples(data_dir: Path | None = None) -> tuple[SpiderExample, ...]:
    """The fixed train examples of :data:`SPIDER_FEWSHOT_SHOTS`, checked against their expected db_id."""
    train = load_spider("train", data_dir)
    chosen = []
    for index, db_id in SPIDER_FEWSHOT_SHOTS:
        if index >= len(train) or train[index].db_id != db_id:
            found = train[index].db_id if index < len(train) else "nothing"
            raise DataError(
                f"Spider train example {index} should be on database {db_id!r}, found {found!r} "
                f"({train[0].source if train else 'no train file'}). "
                "Fix: use the original train_spider.json (or Spider-Syn's, same order)."
            )
        chosen.append(train[index])
    return tuple(chosen)


def spider_fewshot_prompt(example: SpiderExample, *, shots: int = 3, sample_rows: int = 0,
                          schema: SchemaStyle = "create", data_dir: Path | None = None) -> str:
    """A plain-text completion prompt for base models: the instruction, ``shots`` solved train examples,
    then this example's schema and question, ending in ``"SQL:"`` for the model to continue."""
    pool = spider_fewshot_examples(data_dir)
    if not 0 <= shots <= len(pool):
        raise ConfigError(f"Spider few-shot shots={shots}: must be 0..{len(pool)} (the fixed train examples).")
    blocks = [SPIDER_SYSTEM_PROMPT]
    blocks += [f"{spider_user_text(s, sample_rows=sample_rows, schema=schema)}\nSQL: {spider_sql_target(s)}"
               for s in pool[:shots]]
    blocks.append(f"{spider_user_text(example, sample_rows=sample_rows, schema=schema)}\nSQL:")
    return "\n\n".join(blocks)


# ----------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Template:
    """A named prompt: the data it takes, the options it accepts, whether it needs a tokenizer."""

    name: str
    item_type: type
    build: Callable[..., str]  # (item, tokenizer, data_dir, **options) -> prompt text
    options: tuple[str, ...] = ()
    needs_tokenizer: bool = False
    description: str = ""


@dataclass(frozen=True)
class PromptRecord:
    """A built prompt and what rebuilds it: ``build_prompt(template, item, **options)``."""

    template: str
    text: str
    item_id: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


def _mmlu_template(shots: int, header: Header) -> Template:
    suffix = "" if header == "harness" else "-hendrycks"
    return Template(
        name=f"mmlu-{shots}shot{suffix}",
        item_type=MMLUQuestion,
        build=lambda item, tokenizer, data_dir: mmlu_kshot_prompt(item, shots=shots, header=header, data_dir=data_dir),
        description=f"MMLU, {shots} dev shots in file order, {header} format",
    )


def _mmlu_cloze_template(shots: int) -> Template:
    return Template(
        name=mmlu_cloze_template_name(shots),
        item_type=MMLUQuestion,
        build=lambda item, tokenizer, data_dir: mmlu_cloze_kshot_prompt(item, shots=shots, data_dir=data_dir),
        description=f"MMLU cloze (mmlu_continuation), {shots} dev shots in file order, answer texts scored",
    )


def mmlu_cloze_template_name(shots: int) -> str:
    return f"mmlu-cloze-{shots}shot"


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        *(_mmlu_template(k, header) for header in ("harness", "hendrycks") for k in range(MAX_MMLU_SHOTS + 1)),
        *(_mmlu_cloze_template(k) for k in range(MAX_MMLU_SHOTS + 1)),
        Template(
            name="spider-chat",
            item_type=SpiderExample,
            build=lambda item, tokenizer, data_dir, **options: spider_chat_prompt(item, tokenizer, **options),
            options=("sample_rows", "schema"),
            needs_tokenizer=True,
            description="Spider zero-shot chat prompt (the fine-tuning prompt), through the chat template",
        ),
        Template(
            name="spider-fewshot",
            item_type=SpiderExample,
            build=lambda item, tokenizer, data_dir, **options: spider_fewshot_prompt(item, data_dir=data_dir,
                                                                                     **options),
            options=("shots", "sample_rows", "schema"),
            description="Spider 3-shot completion prompt for base models (fixed train examples)",
        ),
    )
}


def build_prompt(template: str, item: MMLUQuestion | SpiderExample, tokenizer: ChatTokenizer | None = None,
                 data_dir: Path | None = None, **options: Any) -> PromptRecord:
    """Build the prompt ``template`` for one example; the options (e.g. ``sample_rows``) are recorded
    with it, so the record alone rebuilds the same text. ``data_dir`` is where few-shot examples are read."""
    spec = TEMPLATES.get(template)
    if spec is None:
        raise ConfigError(f"Unknown prompt template {template!r}. Fix: use one of {', '.join(TEMPLATES)}.")
    if not isinstance(item, spec.item_type):
        raise ConfigError(
            f"Prompt template {template!r} takes a {spec.item_type.__name__}, got {type(item).__name__}. "
            "Fix: use an mmlu-* template for MMLU questions and a spider-* template for Spider examples."
        )
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ConfigError(
            f"Prompt template {template!r} has no option(s) {', '.join(unknown)}. "
            f"Fix: use {', '.join(spec.options) or 'no options'} (MMLU shot counts are in the name, e.g. mmlu-0shot)."
        )
    if spec.needs_tokenizer and tokenizer is None:
        raise ConfigError(f"Prompt template {template!r} renders a chat template. Fix: pass tokenizer=.")
    return PromptRecord(template, spec.build(item, tokenizer, data_dir, **options), item.id, dict(options))
