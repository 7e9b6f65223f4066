"""ExecutionAccuracy on the real Spider dev databases: official result_eq semantics, typed outcomes,
SQL extraction from raw model text, and the DeepEval metric contract."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from deepeval import assert_test
from deepeval.test_case import LLMTestCase

from evalkit.data.spider import connect_readonly, load_spider
from evalkit.errors import ConfigError, DataError
from evalkit.metrics.execution_accuracy import ExecutionAccuracy, Outcome, results_equal, score_execution
from evalkit.metrics.sql_text import extract_sql, gold_orders_rows, strip_distinct
from evalkit.sandbox import Limits, Sandbox


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(Limits(timeout_s=1.0)) as box:
        yield box


@pytest.fixture(scope="module")
def concert(data_dir: Path) -> Path:
    return data_dir / "spider" / "database" / "concert_singer" / "concert_singer.sqlite"


def rows(db: Path, sql: str) -> list[tuple]:
    conn = connect_readonly(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_every_executable_dev_gold_matches_itself(data_dir: Path, sandbox: Sandbox) -> None:
    metric = ExecutionAccuracy(sandbox=sandbox, signals=False)
    scores, failures = [], []
    for example in load_spider("dev", data_dir):
        if example.db_path is None:
            continue
        case = LLMTestCase(input=example.question, actual_output=example.query, expected_output=example.query,
                           metadata={"db_id": example.db_id, "db_path": str(example.db_path)})
        scores.append(metric.measure(case))
        if metric.result.outcome is not Outcome.MATCH:
            failures.append((example.id, metric.reason))
    assert len(scores) == 972
    assert failures == []
    assert sum(scores) / len(scores) == 1.0


# Pairs on a real dev database where Python set() and the official result_eq disagree; the metric must
# take the official side.
DISAGREEMENTS = [
    pytest.param(
        "SELECT T2.name FROM singer_in_concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.singer_id",
        "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM singer_in_concert)",
        Outcome.MISMATCH, id="duplicates_count",
    ),
    pytest.param(
        "SELECT name ,  country ,  age FROM singer ORDER BY age DESC",  # dev0002
        "SELECT name, country, age FROM singer ORDER BY age ASC",
        Outcome.MISMATCH, id="order_by_reversed",
    ),
    pytest.param(
        "SELECT name ,  country ,  age FROM singer ORDER BY age DESC",
        "SELECT age, name, country FROM singer ORDER BY age DESC",
        Outcome.MATCH, id="columns_swapped",
    ),
    pytest.param(
        "SELECT * FROM stadium",  # 7 columns: the pruned permutation search
        "SELECT Highest, Name, Stadium_ID, Average, Capacity, Lowest, Location FROM stadium",
        Outcome.MATCH, id="seven_columns_reordered",
    ),
    pytest.param(
        "SELECT DISTINCT country FROM singer WHERE age  >  20",  # dev0008
        "SELECT country FROM singer WHERE age > 20 GROUP BY country",
        Outcome.MISMATCH, id="distinct_stripped_from_gold_like_the_official",
    ),
]


@pytest.mark.parametrize("gold, pred, official", DISAGREEMENTS)
def test_official_semantics_where_set_disagrees(concert: Path, sandbox: Sandbox, gold: str, pred: str, official: Outcome) -> None:
    set_says_equal = set(rows(concert, gold)) == set(rows(concert, pred))
    assert set_says_equal is (official is Outcome.MISMATCH)
    result = score_execution(pred, gold, concert, sandbox=sandbox)
    assert result.outcome is official, result.reason


def test_columns_holding_the_right_values_in_the_wrong_pairs_mismatch(concert: Path, sandbox: Sandbox) -> None:
    gold = "SELECT name, country FROM singer"
    pred = "SELECT a.name, b.country FROM singer AS a JOIN singer AS b ON a.singer_id = 7 - b.singer_id"
    assert sorted(r[0] for r in rows(concert, gold)) == sorted(r[0] for r in rows(concert, pred))
    assert sorted(r[1] for r in rows(concert, gold)) == sorted(r[1] for r in rows(concert, pred))
    assert score_execution(pred, gold, concert, sandbox=sandbox).outcome is Outcome.MISMATCH


def test_missing_distinct_counts_only_with_keep_distinct(concert: Path, sandbox: Sandbox) -> None:
    gold = "SELECT DISTINCT country FROM singer WHERE age  >  20"  # dev0008: 3 countries
    pred = "SELECT country FROM singer WHERE age > 20"  # 6 rows, France four times
    assert set(rows(concert, gold)) == set(rows(concert, pred))
    assert score_execution(pred, gold, concert, sandbox=sandbox).outcome is Outcome.MATCH
    kept = score_execution(pred, gold, concert, sandbox=sandbox, keep_distinct=True)
    assert kept.outcome is Outcome.MISMATCH and "gold returns 3 rows, the prediction 6" in kept.reason


def test_empty_equals_empty_and_values_compare_with_python_equality(concert: Path, sandbox: Sandbox) -> None:
    empty_gold = "SELECT LOCATION ,  name FROM stadium WHERE capacity BETWEEN 5000 AND 10000"  # dev0014: no rows
    assert score_execution("SELECT name FROM stadium WHERE capacity > 1e9", empty_gold, concert, sandbox=sandbox).outcome is Outcome.MATCH
    assert score_execution("SELECT 6.0", "SELECT count(*) FROM singer", concert, sandbox=sandbox).outcome is Outcome.MATCH
    text_year = score_execution("SELECT 2014", "SELECT year FROM concert WHERE concert_id = 1", concert, sandbox=sandbox)
    assert text_year.outcome is Outcome.MISMATCH and "'2014'" in text_year.reason


def test_row_order_follows_the_outermost_order_by_only(data_dir: Path, sandbox: Sandbox) -> None:
    dev = load_spider("dev", data_dir)
    gold = dev[954].query  # ORDER BY only inside the WHERE subquery: the outer rows have no defined order
    assert "order by" in gold.lower() and not gold_orders_rows(gold)
    db = dev[954].db_path
    gold_rows = rows(db, gold)
    assert len(gold_rows) > 1
    reordered = gold + " ORDER BY T2.date_of_treatment DESC, T1.name DESC"
    assert rows(db, reordered) != gold_rows
    assert score_execution(reordered, gold, db, sandbox=sandbox).outcome is Outcome.MATCH


@pytest.mark.parametrize(
    "sql, ordered",
    [
        ("SELECT name FROM singer ORDER BY age", True),
        ("SELECT a FROM t UNION SELECT b FROM u ORDER BY a", True),
        ("SELECT count(*) FROM t WHERE x = (SELECT x FROM u ORDER BY y LIMIT 1)", False),
        ("SELECT name FROM singer WHERE name = 'order by'", False),
        ("SELECT order by broken", True),  # unparsable: the official substring test
    ],
)
def test_gold_orders_rows(sql: str, ordered: bool) -> None:
    assert gold_orders_rows(sql) is ordered


def test_results_equal_is_the_official_result_eq() -> None:
    assert results_equal([], [], order_matters=True)
    assert not results_equal([(1,)], [], order_matters=False)
    assert results_equal([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], order_matters=False)
    assert not results_equal([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], order_matters=True)
    assert not results_equal([(1,), (1,), (2,)], [(1,), (2,), (2,)], order_matters=False)
    assert results_equal([(1,)], [(1.0,)], order_matters=False)
    # the official quick reject sorts row values by str(value)+str(type): (1, 1.5) and (1.0, 1.5) sort differently
    assert not results_equal([(1, 1.5)], [(1.0, 1.5)], order_matters=False)


@pytest.mark.parametrize(
    "raw, sql",
    [
        ("```sql\nSELECT name FROM singer;\n```\nThis query lists singers.", "SELECT name FROM singer"),
        ("```\nSELECT 1\n```", "SELECT 1"),
        ("Some text\n```sql\n\n```\n```sql\nSELECT 2\n```", "SELECT 2"),
        ("```sql\nSELECT name FROM singer", "SELECT name FROM singer"),  # unclosed fence
        ("SQL: SELECT count(*) FROM singer", "SELECT count(*) FROM singer"),
        ("SQL Query:\nSELECT a FROM t;\nExplanation: it selects a.", "SELECT a FROM t"),
        ("sql: select a from t", "select a from t"),
        ("SELECT a FROM t; SELECT b FROM u;", "SELECT a FROM t"),
        ("SELECT a FROM t WHERE x = 'a;b' AND y = \"c;d\"", "SELECT a FROM t WHERE x = 'a;b' AND y = \"c;d\""),
        ("SELECT a FROM t /* ; not the end */ WHERE x = 1; DROP TABLE t", "SELECT a FROM t /* ; not the end */ WHERE x = 1"),
        ("SELECT a FROM t -- pick a; then\nWHERE x = 1; DROP TABLE t", "SELECT a FROM t -- pick a; then\nWHERE x = 1"),
        ("Here is the query:\nSELECT count(*) FROM singer\n\nThis counts the singers.", "SELECT count(*) FROM singer"),
        ("With this schema the answer is:\nSELECT name FROM singer", "SELECT name FROM singer"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x"),
        ("To select the names use SELECT name FROM singer", "SELECT name FROM singer"),
        ("SELECT name FROM singer```", "SELECT name FROM singer"),
        ("We have 10 singers.", "We have 10 singers."),
        ("   \n ", ""),
        ("```sql\n```", ""),
    ],
)
def test_extract_sql(raw: str, sql: str) -> None:
    assert extract_sql(raw) == sql


def test_strip_distinct_removes_keywords_only() -> None:
    assert strip_distinct("SELECT DISTINCT name FROM t") == "SELECT  name FROM t"
    assert strip_distinct("SELECT count(DISTINCT x) FROM t") == "SELECT count( x) FROM t"
    assert strip_distinct("SELECT 'distinct', \"distinct\" FROM t") == "SELECT 'distinct', \"distinct\" FROM t"


def test_each_outcome_is_typed_with_a_reason(concert: Path, sandbox: Sandbox) -> None:
    gold = "SELECT name FROM singer WHERE age > 40"
    expected = {
        Outcome.MATCH: "```sql\nSELECT name FROM singer WHERE age > 40;\n```",
        Outcome.MISMATCH: "SELECT name FROM singer WHERE age > 30",
        Outcome.SYNTAX_ERROR: "SELECT name FROM singer WHERE",
        Outcome.EXECUTION_ERROR: "SELECT nickname FROM singer",
        Outcome.TIMEOUT: "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        Outcome.RESOURCE_LIMIT: "SELECT randomblob(1000000000)",
        Outcome.EMPTY_OUTPUT: "",
    }
    for outcome, raw in expected.items():
        result = score_execution(raw, gold, concert, sandbox=sandbox)
        assert result.outcome is outcome, (outcome, result.reason)
        assert result.reason and result.raw_output == raw
        assert result.score == (1.0 if outcome is Outcome.MATCH else 0.0)
    assert "no such column: nickname" in score_execution(expected[Outcome.EXECUTION_ERROR], gold, concert, sandbox=sandbox).reason
    mismatch = score_execution(expected[Outcome.MISMATCH], gold, concert, sandbox=sandbox)
    assert mismatch.reason == "gold returns 3 rows, the prediction 4; rows missing from the prediction: []; unexpected rows: [('Timbaland',)]"
    assert mismatch.gold_rows == [["Joe Sharp"], ["Rose White"], ["John Nizinik"]] and len(mismatch.pred_rows) == 4
    broken = score_execution("SELECT 1", "SELECT nickname FROM singer", concert, sandbox=sandbox)
    assert broken.outcome is Outcome.GOLD_ERROR and "no such column" in broken.reason


def test_signals_hardness_and_exact_set_are_reported_not_scored(concert: Path, sandbox: Sandbox) -> None:
    gold = "SELECT name ,  country ,  age FROM singer ORDER BY age DESC"
    result = score_execution("SELECT name, country, age FROM singer WHERE age > 0 ORDER BY age DESC", gold, concert, sandbox=sandbox)
    assert result.outcome is Outcome.MATCH and result.hardness == "medium" and result.exact_set_match is False
    line = result.to_dict()
    assert line["outcome"] == "match" and line["score"] == 1.0 and line["extracted_sql"].endswith("ORDER BY age DESC")


def test_deepeval_metric_contract(concert: Path, sandbox: Sandbox) -> None:
    metric = ExecutionAccuracy(sandbox=sandbox)
    assert metric.threshold == 1.0 and metric.__name__ == "Execution Accuracy"
    good = LLMTestCase(input="How many singers?", actual_output="SQL: SELECT count(*) FROM singer",
                       expected_output="SELECT count(*) FROM singer", additional_metadata={"db_path": str(concert)})
    assert metric.measure(good) == 1.0 and metric.is_successful() and metric.reason.startswith("match")
    assert metric.result.extracted_sql == "SELECT count(*) FROM singer"
    assert_test(good, [ExecutionAccuracy(sandbox=sandbox)])
    bad = LLMTestCase(input="How many singers?", actual_output="We have 10 singers.",
                      expected_output="SELECT count(*) FROM singer", metadata={"db_id": "concert_singer"})
    assert asyncio.run(metric.a_measure(bad)) == 0.0 and not metric.is_successful()
    assert metric.result.outcome is Outcome.SYNTAX_ERROR
    with pytest.raises(AssertionError, match="Execution Accuracy"):
        assert_test(bad, [ExecutionAccuracy(sandbox=sandbox)])


def test_misconfigured_test_cases_get_one_clear_error(data_dir: Path, sandbox: Sandbox) -> None:
    metric = ExecutionAccuracy(sandbox=sandbox)
    with pytest.raises(ConfigError, match="names no database"):
        metric.measure(LLMTestCase(input="q", actual_output="SELECT 1", expected_output="SELECT 1"))
    with pytest.raises(ConfigError, match="expected_output"):
        metric.measure(LLMTestCase(input="q", actual_output="SELECT 1", metadata={"db_id": "concert_singer"}))
    with pytest.raises(DataError, match="wta_1.sqlite"):
        metric.measure(LLMTestCase(input="q", actual_output="SELECT 1", expected_output="SELECT 1", metadata={"db_id": "wta_1"}))


def test_outcome_values_are_the_documented_eight() -> None:
    assert Counter(o.value for o in Outcome) == Counter(
        ["match", "mismatch", "syntax_error", "execution_error", "timeout", "resource_limit", "empty_output", "gold_error"]
    )


@pytest.mark.parametrize("prefix", ["", "SELECT "])
def test_megabytes_of_prose_stop_at_the_length_limit_before_any_parsing(concert: Path, sandbox: Sandbox,
                                                                        prefix: str) -> None:
    """sqlglot parsed 2 MB of model prose for the exact-set signal (3-8 s) before the sandbox's length
    limit refused it."""
    import time

    prose = prefix + ("I think the answer is that there are many singers in the table. " * 31_000)[:2_000_000]
    start = time.perf_counter()
    result = score_execution(prose, "SELECT count(*) FROM singer", concert, sandbox=sandbox)
    assert time.perf_counter() - start < 1.0
    assert result.outcome is Outcome.RESOURCE_LIMIT and "exceeds max_sql_chars" in result.reason
    assert result.exact_set_match is None and result.hardness == "easy"
