"""Spider's official hardness levels (easy / medium / hard / extra), computed on sqlglot's parse tree.

The reference is ``Evaluator.eval_hardness`` in taoyds/spider ``evaluation.py``. It counts three things on
the *top-level* query only (nested queries are not looked into):

* component1: one each for WHERE, GROUP BY, ORDER BY and LIMIT; one per extra table in FROM (joins);
  one per ``OR`` and one per ``LIKE`` among the ON / WHERE / HAVING conditions;
* component2: subqueries used as condition values (ON / WHERE / HAVING) plus one for a set operation
  (UNION / INTERSECT / EXCEPT) that follows the top-level SELECT;
* others: one each for "more than one aggregation", "more than one SELECT item", "more than one WHERE
  condition", "more than one GROUP BY column".

We reproduce the reference's counting *as it runs*, quirks included, because the published per-level
numbers come from it: its aggregation count reads the NOT flag of each WHERE condition instead of an
aggregate (``count_agg`` applied to condition tuples), and over HAVING it also counts every AND/OR
connector; an aggregate inside a WHERE/HAVING condition is never counted. Subqueries in FROM are table
units, not nested queries. In ``A UNION B ORDER BY x`` the ORDER BY belongs to ``B`` (the reference
parser hands everything after UNION to the right-hand query), so it does not count for ``A``.

SQL that sqlglot cannot parse, or that is not a query, raises :class:`SQLParseError`: hardness is a
property of gold queries, and a gold query that does not parse is a data problem to report, not a level.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from evalkit.errors import DataError

Hardness = Literal["easy", "medium", "hard", "extra"]
LEVELS: tuple[Hardness, ...] = ("easy", "medium", "hard", "extra")

# The five aggregates of the reference grammar (AGG_OPS without 'none').
AGGREGATES = (exp.Count, exp.Max, exp.Min, exp.Sum, exp.Avg)
# The four arithmetic operators of the reference grammar (UNIT_OPS without 'none').
ARITHMETIC = (exp.Sub, exp.Add, exp.Mul, exp.Div)


class SQLParseError(DataError):
    """A SQL string is not a single query sqlglot can parse in the SQLite dialect."""


def parse_query(sql: str) -> exp.Query:
    """Parse one SQLite query (SELECT or set operation).

    Raises :class:`SQLParseError` naming the query and the parser's complaint; that includes input
    nested too deeply for sqlglot's recursive parser (a runaway model output can be).
    """
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except (SqlglotError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if isinstance(exc, SqlglotError) else "nested too deeply to parse"
        raise SQLParseError(f"cannot parse SQL {sql!r}: {reason}. "
                            "Fix: pass one SQLite SELECT statement.") from exc
    while isinstance(tree, exp.Subquery):  # "(SELECT ...)" as the whole statement
        tree = tree.this
    if not isinstance(tree, exp.Query):
        raise SQLParseError(f"not a query: {sql!r} parses as {type(tree).__name__}. "
                            "Fix: pass one SQLite SELECT statement.")
    return tree


def leftmost_select(query: exp.Expression) -> exp.Select:
    """The first SELECT of a set operation chain (sqlglot nests ``A UNION B EXCEPT C`` to the left)."""
    while not isinstance(query, exp.Select):
        query = query.this
    return query


def unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


@dataclass(frozen=True)
class Condition:
    """A flattened AND/OR condition, as the reference parser reads it: units left to right."""

    units: tuple[exp.Expression, ...]
    connectors: tuple[str, ...]  # "and" / "or", between consecutive units


def flatten_condition(node: exp.Expression | None) -> Condition:
    if node is None:
        return Condition((), ())
    node = unparen(node)
    if isinstance(node, exp.Connector):
        left, right = flatten_condition(node.this), flatten_condition(node.expression)
        word = "or" if isinstance(node, exp.Or) else "and"
        return Condition(left.units + right.units, left.connectors + (word,) + right.connectors)
    return Condition((node,), ())


def operator(unit: exp.Expression) -> exp.Expression:
    """A condition unit without its NOT (``x NOT IN ...`` parses as ``NOT (x IN ...)``)."""
    return unit.this if isinstance(unit, exp.Not) else unit


def is_value(node: exp.Expression) -> bool:
    """A value token of the reference tokenizer: a number, a quoted string, or a negated number.

    SQLite (and sqlglot) read ``"France"`` as an identifier, but Spider's gold queries use double quotes
    for strings and the reference tokenizer treats every quoted token as a value, so we do too.
    """
    if isinstance(node, exp.Literal):
        return True
    if isinstance(node, exp.Neg):
        return is_value(node.this)
    return isinstance(node, exp.Column) and not node.table and node.this.quoted


def swallows_following_or(unit: exp.Expression) -> bool:
    """True when the reference parser reads past this unit's right-hand side up to the next AND.

    Its ``parse_value`` takes a column value to extend to the next ``,`` ``)`` ``and`` or keyword, so
    in ``a = b OR c = d`` everything after ``b`` is skipped: the OR and its condition are never seen.
    """
    value = operator(unit).args.get("expression")
    return value is not None and not is_value(value) and not isinstance(value, (exp.Subquery, exp.Query))


def as_reference_reads(condition: Condition) -> Condition:
    """Drop the OR-joined units that the reference parser skips (see :func:`swallows_following_or`)."""
    if not condition.units:
        return condition
    units, connectors = [condition.units[0]], []
    for connector, unit in zip(condition.connectors, condition.units[1:]):
        if connector == "or" and swallows_following_or(units[-1]):
            continue
        units.append(unit)
        connectors.append(connector)
    return Condition(tuple(units), tuple(connectors))


def clause_condition(select: exp.Select, key: str) -> Condition:
    clause = select.args.get(key)
    return flatten_condition(clause.this if clause is not None else None)


def join_condition(select: exp.Select) -> Condition:
    """All ON conditions of the FROM clause, joined with AND (as the reference parser does)."""
    units: tuple[exp.Expression, ...] = ()
    connectors: tuple[str, ...] = ()
    for join in select.args.get("joins") or []:
        part = flatten_condition(join.args.get("on"))
        if part.units and units:
            connectors += ("and",)
        units += part.units
        connectors += part.connectors
    return Condition(units, connectors)


def table_units(select: exp.Select) -> list[exp.Expression]:
    """Tables and FROM-subqueries, in order: the FROM item followed by each joined item."""
    from_ = select.args.get("from_")
    units = [from_.this] if from_ is not None else []
    return units + [join.this for join in select.args.get("joins") or []]


def subqueries(node: exp.Expression) -> Iterator[exp.Query]:
    """Queries directly inside ``node`` (not those nested inside them)."""
    for child in node.walk(prune=lambda n: n is not node and isinstance(n, exp.Query)):
        if child is not node and isinstance(child, exp.Query):
            yield child


def is_aggregate(node: exp.Expression) -> bool:
    return isinstance(unparen(node), AGGREGATES)


def value_unit_aggregates(node: exp.Expression) -> int:
    """Aggregates in a reference 'val_unit': one column unit, or two joined by + - * /."""
    node = unparen(node)
    operands = [node.this, node.expression] if isinstance(node, ARITHMETIC) else [node]
    return sum(is_aggregate(operand) for operand in operands)


def count_component1(select: exp.Select, conditions: list[Condition]) -> int:
    clauses = sum(select.args.get(key) is not None for key in ("where", "group", "order", "limit"))
    joins = max(len(table_units(select)) - 1, 0)
    ors = sum(c.connectors.count("or") for c in conditions)
    likes = sum(isinstance(operator(u), exp.Like) for c in conditions for u in c.units)
    return clauses + joins + ors + likes


def count_component2(query: exp.Query, conditions: list[Condition]) -> int:
    nested = sum(1 for c in conditions for u in c.units for _ in subqueries(u))
    return nested + (1 if isinstance(query, exp.SetOperation) else 0)


def count_others(select: exp.Select, where: Condition, having: Condition) -> int:
    group = select.args.get("group")
    group_items = group.expressions if group is not None else []
    order = select.args.get("order")
    aggregates = (
        sum(is_aggregate(e.unalias()) for e in select.expressions)
        + sum(isinstance(u, exp.Not) for u in where.units)  # reference quirk, see module docstring
        + sum(is_aggregate(e) for e in group_items)
        + sum(value_unit_aggregates(o.this) for o in (order.expressions if order is not None else []))
        + sum(isinstance(u, exp.Not) for u in having.units) + len(having.connectors)  # quirk again
    )
    return sum((aggregates > 1, len(select.expressions) > 1, len(where.units) > 1, len(group_items) > 1))


class HardnessCounts(NamedTuple):
    """The three counts the reference's decision table reads."""

    component1: int
    component2: int
    others: int


def level(component1: int, component2: int, others: int) -> Hardness:
    """The reference's decision table over the three counts."""
    if component1 <= 1 and others == 0 and component2 == 0:
        return "easy"
    if (others <= 2 and component1 <= 1 and component2 == 0) or \
            (component1 <= 2 and others < 2 and component2 == 0):
        return "medium"
    if (others > 2 and component1 <= 2 and component2 == 0) or \
            (2 < component1 <= 3 and others <= 2 and component2 == 0) or \
            (component1 <= 1 and others == 0 and component2 <= 1):
        return "hard"
    return "extra"


def hardness_counts(sql: str) -> HardnessCounts:
    """component1 / component2 / others of one query; raises :class:`SQLParseError` when it does not parse."""
    query = parse_query(sql)
    select = leftmost_select(query)
    conditions = [as_reference_reads(c) for c in
                  (join_condition(select), clause_condition(select, "where"), clause_condition(select, "having"))]
    return HardnessCounts(count_component1(select, conditions), count_component2(query, conditions),
                          count_others(select, conditions[1], conditions[2]))


@functools.lru_cache(maxsize=None)
def spider_hardness(sql: str) -> Hardness:
    """Official Spider hardness of one query; raises :class:`SQLParseError` when it does not parse."""
    return level(*hardness_counts(sql))
