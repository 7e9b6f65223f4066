"""Spider hardness on sqlglot, checked against the official counting run over dev.json's own parses.

dev.json carries, for every gold query, the parse that the official evaluator's ``eval_hardness``
consumes (the ``sql`` field, made by ``process_sql.get_sql``). The oracle below is an independent
re-statement of ``count_component1`` / ``count_component2`` / ``count_others`` over that structure.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from evalkit.data.hardness import LEVELS, SQLParseError, hardness_counts, level, spider_hardness
from evalkit.errors import DataError

WHERE_OP_LIKE = 9  # index of 'like' in the reference's WHERE_OPS


def official_counts(sql: dict[str, Any]) -> tuple[int, int, int]:
    """The reference's three counts over a process_sql parse, quirks included (see hardness.py)."""
    conds = sql["from"]["conds"][::2] + sql["where"][::2] + sql["having"][::2]
    connectors = sql["from"]["conds"][1::2] + sql["where"][1::2] + sql["having"][1::2]
    component1 = (bool(sql["where"]) + bool(sql["groupBy"]) + bool(sql["orderBy"]) + (sql["limit"] is not None)
                  + max(len(sql["from"]["table_units"]) - 1, 0)
                  + connectors.count("or") + sum(c[1] == WHERE_OP_LIKE for c in conds))
    component2 = (sum(isinstance(c[3], dict) + isinstance(c[4], dict) for c in conds)
                  + sum(sql[op] is not None for op in ("intersect", "except", "union")))

    def aggregated(units: list[Any]) -> int:  # the reference's has_agg: unit[0] != 0, on any unit
        return sum(unit[0] != 0 for unit in units)

    order_units = [u for val_unit in (sql["orderBy"][1] if sql["orderBy"] else []) for u in val_unit[1:] if u]
    aggregates = (aggregated(sql["select"][1]) + aggregated(sql["where"][::2]) + aggregated(sql["groupBy"])
                  + aggregated(order_units) + aggregated(sql["having"]))
    others = ((aggregates > 1) + (len(sql["select"][1]) > 1) + (len(sql["where"]) > 1)
              + (len(sql["groupBy"]) > 1))
    return component1, component2, others


@pytest.fixture(scope="module")
def dev_json(data_dir: Path) -> list[dict[str, Any]]:
    return json.loads((data_dir / "spider" / "dev.json").read_text())


def test_counts_agree_with_official_parse_on_every_dev_query(dev_json: list[dict[str, Any]]) -> None:
    disagreements = [(i, row["query"], tuple(hardness_counts(row["query"])), official_counts(row["sql"]))
                     for i, row in enumerate(dev_json)
                     if tuple(hardness_counts(row["query"])) != official_counts(row["sql"])]
    assert disagreements == []


def test_dev_distribution_is_the_published_one(dev_json: list[dict[str, Any]]) -> None:
    ours = Counter(spider_hardness(row["query"]) for row in dev_json)
    official = Counter(level(*official_counts(row["sql"])) for row in dev_json)
    assert ours == official
    assert [ours[name] for name in LEVELS] == [248, 446, 174, 166]  # easy, medium, hard, extra


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT count(*) FROM singer", "easy"),
    ("SELECT name FROM singer WHERE age > 20", "easy"),
    # two SELECT items + two aggregates: others = 2, component1 = 0
    ("SELECT max(age), min(age) FROM singer", "medium"),
    # ORDER BY + LIMIT: component1 = 2
    ("SELECT name FROM singer ORDER BY age DESC LIMIT 1", "medium"),
    # a set operation alone: component2 = 1
    ("SELECT name FROM singer INTERSECT SELECT name FROM actor", "hard"),
    # the ORDER BY after UNION belongs to the right-hand query, so it does not count for the left one
    ("SELECT name FROM singer UNION SELECT name FROM actor ORDER BY name", "hard"),
    # a subquery in FROM is a table unit, not a nested query: component1 = 0, easy
    ("SELECT a FROM (SELECT a FROM t)", "easy"),
    # join + WHERE + OR + LIKE: component1 = 4
    ("SELECT T1.a FROM t AS T1 JOIN s AS T2 ON T1.id = T2.id WHERE T1.b LIKE '%x%' OR T2.c = 1", "extra"),
])
def test_hand_checked_levels(sql: str, expected: str) -> None:
    assert spider_hardness(sql) == expected


def test_reference_quirk_not_in_where_counts_as_an_aggregation() -> None:
    # NOT IN sets the condition's NOT flag, which the reference's count_agg reads as an aggregate
    plain = hardness_counts("SELECT count(*) FROM t WHERE a IN (SELECT a FROM s)")
    negated = hardness_counts("SELECT count(*) FROM t WHERE a NOT IN (SELECT a FROM s)")
    assert (plain.others, negated.others) == (0, 1)


def test_reference_quirk_having_connectors_count_as_aggregations() -> None:
    # SELECT count(*) is one aggregate; the AND connector in HAVING makes it two (others += 1)
    one = hardness_counts("SELECT count(*) FROM t GROUP BY a HAVING count(*) > 1")
    two = hardness_counts("SELECT count(*) FROM t GROUP BY a HAVING count(*) > 1 AND sum(b) > 2")
    assert (one.others, two.others) == (0, 1)


def test_reference_quirk_or_after_a_column_value_is_not_seen() -> None:
    # the reference's parse_value reads a column value up to the next AND, skipping "OR ..." (dev 225-228)
    column_value = hardness_counts("SELECT a FROM t AS T1 JOIN s AS T2 ON T1.x = T2.y OR T1.x = T2.z")
    number_value = hardness_counts("SELECT a FROM t AS T1 JOIN s AS T2 ON T1.x = 1 OR T1.x = T2.z")
    assert (column_value.component1, number_value.component1) == (1, 2)


@pytest.mark.parametrize("sql", ["", "SELECT FROM WHERE", "We have 10 singers.", "DROP TABLE singer"])
def test_unparseable_sql_raises_a_data_error_naming_it(sql: str) -> None:
    with pytest.raises(SQLParseError, match="SELECT statement") as info:
        spider_hardness(sql)
    assert isinstance(info.value, DataError) and repr(sql) in str(info.value)
