"""Exact-set match on real Spider gold queries and on hand-written pairs with a known answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot

from evalkit.data.spider import load_spider
from evalkit.metrics.exact_set import exact_set_match


@pytest.fixture(scope="module")
def dev_golds(data_dir: Path) -> list[str]:
    return [example.query for example in load_spider("dev", data_dir)]


def test_every_dev_gold_matches_itself(dev_golds: list[str]) -> None:
    assert [q for q in dev_golds if not exact_set_match(q, q)] == []


def test_every_dev_gold_matches_its_reformatted_uppercase_rendering(dev_golds: list[str]) -> None:
    # sqlglot re-renders with other whitespace, keyword case and quoting; identifiers upper-cased on top
    def rewritten(sql: str) -> str:
        tree = sqlglot.parse_one(sql, read="sqlite")
        for identifier in tree.find_all(sqlglot.exp.Identifier):
            if not identifier.quoted:
                identifier.set("this", identifier.name.upper())
        return tree.sql(dialect="sqlite", pretty=True)

    assert [q for q in dev_golds if not exact_set_match(rewritten(q), q)] == []


@pytest.mark.parametrize(("pred", "gold"), [
    ("select AGE ,  Name from SINGER", "SELECT name, age FROM singer"),  # select order, case, spaces
    ("SELECT name FROM singer WHERE country = 'Spain' AND age > 30",
     "SELECT name FROM singer WHERE age > 20 AND country = \"France\""),  # AND order; values ignored
    ("SELECT a.name FROM concert AS b JOIN singer AS a ON b.sid = a.id",
     "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.sid"),  # aliases, table order, = sides
    ("SELECT x, count(*) FROM t GROUP BY t.x ORDER BY count(*) DESC LIMIT 5",
     "SELECT count(*) AS c, x FROM t GROUP BY x ORDER BY c DESC LIMIT 1"),  # select alias; LIMIT value
    ("SELECT count(name) FROM singer", "SELECT count(DISTINCT name) FROM singer"),  # DISTINCT ignored
    ("SELECT name FROM singer WHERE age IN (1, 2, 3)", "SELECT name FROM singer WHERE age IN (4)"),
    ("SELECT name FROM singer WHERE age > -5", "SELECT name FROM singer WHERE age > 3"),
    ("SELECT name FROM singer;", "SELECT name FROM singer"),
    ("SELECT name FROM t WHERE id IN (SELECT sid FROM s WHERE y = 2)",
     "SELECT name FROM t WHERE id IN (SELECT sid FROM s WHERE y = 1)"),  # values ignored in subqueries
])
def test_structurally_equal_pairs_match(pred: str, gold: str) -> None:
    assert exact_set_match(pred, gold)


@pytest.mark.parametrize(("pred", "gold"), [
    ("SELECT age FROM singer", "SELECT name FROM singer"),  # different column
    ("SELECT name FROM singer", "SELECT name FROM concert"),  # different table
    ("SELECT max(age) FROM singer", "SELECT min(age) FROM singer"),  # different aggregate
    ("SELECT name FROM singer WHERE age > 20", "SELECT name FROM singer WHERE age < 20"),  # operator
    ("SELECT name FROM singer WHERE a = 1 OR b = 2", "SELECT name FROM singer WHERE a = 1 AND b = 2"),
    ("SELECT name FROM singer ORDER BY age", "SELECT name FROM singer ORDER BY age DESC"),
    ("SELECT name FROM singer ORDER BY age LIMIT 1", "SELECT name FROM singer ORDER BY age"),
    ("SELECT name, age FROM singer", "SELECT name FROM singer"),  # extra select item
    ("SELECT name FROM singer GROUP BY name", "SELECT name FROM singer"),
    ("SELECT a FROM t INTERSECT SELECT a FROM s", "SELECT a FROM t UNION SELECT a FROM s"),
    ("SELECT a FROM t WHERE b IN (SELECT c FROM s)", "SELECT a FROM t WHERE b IN (SELECT d FROM s)"),
    ("SELECT a FROM t WHERE b NOT IN (SELECT c FROM s)", "SELECT a FROM t WHERE b IN (SELECT c FROM s)"),
])
def test_structurally_different_pairs_do_not_match(pred: str, gold: str) -> None:
    assert not exact_set_match(pred, gold)


@pytest.mark.parametrize("pred", ["", "We have 10 singers.", "SELECT FROM WHERE", "DROP TABLE singer",
                                  "SELECT name FROM singer WHERE (", "SELECT 'unterminated"])
def test_invalid_prediction_is_no_match_and_never_raises(pred: str) -> None:
    assert exact_set_match(pred, "SELECT name FROM singer") is False
