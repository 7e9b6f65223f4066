"""Prompts: exact MMLU text on real questions, the Spider prompts on real examples, the registry."""

from __future__ import annotations

import pytest

from evalkit.data.mmlu import load_mmlu
from evalkit.data.spider import load_spider
from evalkit.errors import ConfigError
from evalkit.prompts import (
    SPIDER_FEWSHOT_SHOTS,
    SPIDER_SYSTEM_PROMPT,
    TEMPLATES,
    build_prompt,
    mmlu_cloze_continuations,
    mmlu_cloze_kshot_prompt,
    mmlu_kshot_prompt,
    mmlu_prompt,
    spider_chat_messages,
    spider_chat_prompt,
    spider_fewshot_examples,
    spider_fewshot_prompt,
    spider_sql_target,
)


def mmlu_question(subject: str, index: int):
    return load_mmlu("test", subjects=[subject])[index]


@pytest.fixture(scope="module")
def dev_example():
    return load_spider("dev")[0]  # concert_singer: "How many singers do we have?"


# The question field is 'What are histones?\n' in nutrition_test.csv: the harness strips it, Hendrycks does not.
HISTONES_HARNESS = (
    "The following are multiple choice questions (with answers) about nutrition.\n\n"
    "What are histones?\nA. Lipids\nB. Carbohydrates\nC. Nucleotides\nD. Proteins\nAnswer:"
)
HISTONES_HENDRYCKS = (
    "The following are multiple choice questions (with answers) about  nutrition.\n\n"
    "What are histones?\n\nA. Lipids\nB. Carbohydrates\nC. Nucleotides\nD. Proteins\nAnswer:"
)

ABSTRACT_ALGEBRA_0_5SHOT = (
    "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
    "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
    "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K are "
    "subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\n"
    "Answer: B\n\n"
    "Statement 1 | Every element of a group generates a cyclic subgroup of the group. Statement 2 | The symmetric "
    "group S_10 has 10 elements.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer: C\n\n"
    "Statement 1| Every function from a finite set onto itself must be one to one. Statement 2 | Every subgroup "
    "of an abelian group is abelian.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer: A\n\n"
    "Find the characteristic of the ring 2Z.\nA. 0\nB. 3\nC. 12\nD. 30\nAnswer: A\n\n"
    "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
    "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
)


def test_mmlu_zero_shot_exact_text_both_formats():
    question = mmlu_question("nutrition", 155)
    assert question.question == "What are histones?\n"
    assert mmlu_prompt(question, []) == HISTONES_HARNESS
    assert mmlu_prompt(question, [], header="hendrycks") == HISTONES_HENDRYCKS
    assert build_prompt("mmlu-0shot", question).text == HISTONES_HARNESS


def test_mmlu_five_shot_exact_text():
    question = mmlu_question("abstract_algebra", 0)
    assert mmlu_kshot_prompt(question) == ABSTRACT_ALGEBRA_0_5SHOT
    assert build_prompt("mmlu-5shot", question).text == ABSTRACT_ALGEBRA_0_5SHOT


def test_mmlu_matches_the_harness_jinja_template_on_whole_subjects():
    """Render the harness's own ``doc_to_text`` (Jinja, from _default_template_yaml) and its few-shot assembly
    (description + shot + " " + letter + "\\n\\n" ... + question) independently of our f-strings."""
    jinja2 = pytest.importorskip("jinja2")
    doc_to_text = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(
        "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:")

    def render(q):
        return doc_to_text.render(question=q.question, choices=list(q.choices))

    for subject in ("nutrition", "moral_disputes", "college_mathematics"):  # stray whitespace, 'None' choices
        shots = load_mmlu("dev", subjects=[subject])[:5]
        words = subject.replace("_", " ")
        description = f"The following are multiple choice questions (with answers) about {words}.\n\n"
        context = description + "".join(f"{render(s)} {s.answer}\n\n" for s in shots)
        for question in load_mmlu("test", subjects=[subject]):
            assert mmlu_kshot_prompt(question) == context + render(question), question.id


# lm-evaluation-harness 0.4.13's mmlu_continuation, rendered by its own TaskManager (fewshot_context) from a
# local JSONL copy of the CSV rows (benchmarks/lmeval_agreement.py prepare), copied here as literals.
HISTONES_CLOZE = "The following are questions (with answers) about nutrition.\n\nQuestion: What are histones?\nAnswer:"
ABSTRACT_ALGEBRA_0_CLOZE_2SHOT = (
    "The following are questions (with answers) about abstract algebra.\n\n"
    "Question: Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nAnswer: 1\n\n"
    "Question: Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K "
    "are subgroups of G then HK is a subgroup of G.\nAnswer: False, False\n\n"
    "Question: Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nAnswer:"
)


def test_mmlu_cloze_exact_text_zero_and_two_shots():
    histones = mmlu_question("nutrition", 155)
    assert mmlu_cloze_kshot_prompt(histones, shots=0) == HISTONES_CLOZE
    assert build_prompt("mmlu-cloze-0shot", histones).text == HISTONES_CLOZE
    assert mmlu_cloze_continuations(histones) == [" Lipids", " Carbohydrates", " Nucleotides", " Proteins"]
    question = mmlu_question("abstract_algebra", 0)
    assert mmlu_cloze_kshot_prompt(question, shots=2) == ABSTRACT_ALGEBRA_0_CLOZE_2SHOT
    assert build_prompt("mmlu-cloze-2shot", question).text == ABSTRACT_ALGEBRA_0_CLOZE_2SHOT
    assert mmlu_cloze_continuations(question) == [" 0", " 4", " 2", " 6"]


def test_mmlu_cloze_matches_the_harness_jinja_template_on_whole_subjects():
    """The continuation task's ``doc_to_text`` rendered by Jinja; shots answered with their gold *text*."""
    jinja2 = pytest.importorskip("jinja2")
    doc_to_text = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(
        "Question: {{question.strip()}}\nAnswer:")
    for subject in ("nutrition", "moral_disputes", "college_mathematics"):
        shots = load_mmlu("dev", subjects=[subject])
        description = f"The following are questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        for k in (0, 5):
            context = description + "".join(f"{doc_to_text.render(question=s.question)} "
                                            f"{s.choices['ABCD'.index(s.answer)]}\n\n" for s in shots[:k])
            for question in load_mmlu("test", subjects=[subject]):
                assert mmlu_cloze_kshot_prompt(question, shots=k) == context + doc_to_text.render(
                    question=question.question), question.id


def test_mmlu_k_shots_are_a_prefix_chain():
    """k shots are the first k dev rows in file order: each k-shot prompt's shot block extends the (k-1)'s."""
    question = mmlu_question("high_school_geography", 7)
    question_block = mmlu_prompt(question, [])[len("The following are multiple choice questions (with answers) "
                                                   "about high school geography.\n\n"):]
    prefixes = [mmlu_kshot_prompt(question, shots=k).removesuffix(question_block) for k in range(6)]
    assert all(prefixes[k].startswith(prefixes[k - 1]) and prefixes[k] != prefixes[k - 1] for k in range(1, 6))
    assert [p.count("\nAnswer: ") for p in prefixes] == [0, 1, 2, 3, 4, 5]


def test_mmlu_bad_shot_count_and_header_are_config_errors():
    question = mmlu_question("anatomy", 0)
    with pytest.raises(ConfigError, match="shots=6"):
        mmlu_kshot_prompt(question, shots=6)
    with pytest.raises(ConfigError, match="'harness' or 'hendrycks'"):
        mmlu_prompt(question, [], header="helm")  # type: ignore[arg-type]


def test_spider_sql_target_normalises_spacing_outside_literals():
    train = load_spider("train")
    assert train[767].query == "SELECT CLASS ,  count(*) FROM race GROUP BY CLASS"
    assert spider_sql_target(train[767]) == "SELECT CLASS, count(*) FROM race GROUP BY CLASS;"
    # Literals keep their exact text, tokeniser spacing and tabs included.
    assert "'Louisville ,  Kentucky'" in spider_sql_target(train[5440])
    assert spider_sql_target(train[5635]).endswith('Country != "Australia\t";')


def test_spider_chat_messages_hold_instruction_schema_and_question(dev_example):
    messages = spider_chat_messages(dev_example, sample_rows=1)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SPIDER_SYSTEM_PROMPT
    user = messages[1]["content"]
    assert user.startswith('Database schema:\nCREATE TABLE "stadium" (')
    assert "1 example rows:\nSELECT * FROM singer LIMIT 1;" in user
    assert user.endswith("\n\nQuestion: How many singers do we have?")


@pytest.mark.model
def test_spider_chat_prompt_uses_the_model_chat_template(dev_example, embedded_model):
    text = spider_chat_prompt(dev_example, embedded_model.tokenizer)
    assert text.startswith(
        f"<|im_start|>system\n{SPIDER_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\nDatabase schema:\n")
    assert text.endswith("Question: How many singers do we have?<|im_end|>\n<|im_start|>assistant\n")
    assert "You are a helpful AI assistant" not in text  # our system turn replaces SmolLM2's default one
    record = build_prompt("spider-chat", dev_example, embedded_model.tokenizer)
    assert record.text == text


def test_spider_fewshot_prompt_is_three_fixed_train_examples_then_the_question(dev_example):
    shots = spider_fewshot_examples()
    assert [(s.split, s.index, s.db_id) for s in shots] == [("train", i, db) for i, db in SPIDER_FEWSHOT_SHOTS]
    assert {s.db_id for s in shots}.isdisjoint({e.db_id for e in load_spider("dev")})
    text = spider_fewshot_prompt(dev_example)
    blocks = text.split("\n\nDatabase schema:\n")
    assert blocks[0] == SPIDER_SYSTEM_PROMPT and len(blocks) == 5
    assert blocks[1].endswith("Question: What is the name of the ship with the largest tonnage?\n"
                              "SQL: SELECT Name FROM ship ORDER BY Tonnage DESC LIMIT 1;")
    assert blocks[2].endswith("SQL: SELECT CLASS, count(*) FROM race GROUP BY CLASS;")
    assert blocks[3].endswith("SQL: SELECT T1.Writer FROM book AS T1 JOIN publication AS T2 ON T1.Book_ID = T2.Book_ID "
                              "WHERE T2.Price > 4000000;")
    assert blocks[4].endswith("Question: How many singers do we have?\nSQL:")
    assert spider_fewshot_prompt(dev_example, shots=0) == (
        f"{SPIDER_SYSTEM_PROMPT}\n\nDatabase schema:\n{dev_example.schema()}\n\n"
        "Question: How many singers do we have?\nSQL:"
    )


def test_every_template_rebuilds_from_its_record(dev_example):
    question = mmlu_question("virology", 3)
    for name, template in TEMPLATES.items():
        if template.needs_tokenizer:
            continue  # covered with the real tokenizer above
        item = question if name.startswith("mmlu") else dev_example
        options = {"sample_rows": 2} if "sample_rows" in template.options else {}
        record = build_prompt(name, item, **options)
        assert (record.template, record.item_id, record.options) == (name, item.id, options)
        assert build_prompt(record.template, item, **record.options) == record


@pytest.mark.parametrize(
    ("template", "use_spider", "options", "message"),
    [
        ("mmlu-6shot", False, {}, "Unknown prompt template 'mmlu-6shot'"),
        ("mmlu-5shot", True, {}, "takes a MMLUQuestion, got SpiderExample"),
        ("mmlu-5shot", False, {"shots": 3}, "has no option"),
        ("spider-chat", True, {}, "pass tokenizer="),
        ("spider-fewshot", True, {"shots": 4}, "shots=4: must be 0..3"),
    ],
)
def test_build_prompt_rejects_misuse_with_a_fix(template, use_spider, options, message, dev_example):
    item = dev_example if use_spider else mmlu_question("virology", 0)
    with pytest.raises(ConfigError, match=message):
        build_prompt(template, item, **options)
