"""Spider-style exact-set match on sqlglot's parse tree: a structural signal beside execution accuracy.

In the spirit of the official ``evaluate.py`` exact match (``Evaluator.eval_exact_match``): each query
is reduced to a canonical *signature* and two queries match when their signatures are equal.

* Clauses are compared as multisets: SELECT items, FROM tables, ON / WHERE / HAVING conditions,
  GROUP BY columns; the AND/OR connectors of WHERE and HAVING as sets. ORDER BY is a list (order matters), LIMIT
  only by presence.
* Values are ignored, as in the official exact match (``DISABLE_VALUE``): every literal, negative
  number, double-quoted string (SQLite reads ``"France"`` as a string when no column has that name;
  the official tokenizer treats every quoted token as a value) and IN-list becomes one placeholder.
* DISTINCT is ignored, in SELECT and inside aggregates (official ``DISABLE_DISTINCT``).
* Case, whitespace, table aliases (``T1.name`` -> ``singer.name``) and SELECT aliases used in
  ORDER BY / HAVING are normalised; ``a = b`` equals ``b = a``.
* Subqueries are compared recursively; set operations compare both sides and the operator.

Without a schema an unqualified column is qualified only when FROM names a single table; pass
``schema`` (table -> column names, e.g. from tables.json) to resolve it in multi-table queries too,
the way the official parser does (first FROM table that has the column). Foreign-key equivalence
(the official ``kmap``) is not applied. Invalid prediction SQL never raises: it does not match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlglot import exp

from evalkit.data.hardness import (
    Condition,
    SQLParseError,
    clause_condition,
    is_value,
    join_condition,
    parse_query,
    table_units,
    unparen,
)

Schema = Mapping[str, Iterable[str]]
Signature = tuple[object, ...]
VALUE = "?"


@dataclass(frozen=True)
class Scope:
    """Name resolution for one SELECT: table aliases (outer ones included) and its FROM tables."""

    aliases: Mapping[str, str]
    tables: tuple[str, ...]
    schema: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def table_of(self, column: str) -> str | None:
        for table in self.tables:
            if column in self.schema.get(table, ()):
                return table
        return self.tables[0] if len(self.tables) == 1 else None


def canonical_expression(node: exp.Expression, scope: Scope, select_aliases: Mapping[str, exp.Expression]) -> str:
    """SQL text of ``node`` with values, aliases, DISTINCT and case normalised; subqueries by signature."""

    def rewrite(n: exp.Expression) -> exp.Expression:
        if is_value(n):
            return exp.var(VALUE)
        if isinstance(n, exp.Query) and n is not node:
            return exp.var(repr(signature(n, scope)))
        if isinstance(n, exp.Subquery):
            return exp.var(repr(signature(n.this, scope)))
        if isinstance(n, exp.Distinct) and len(n.expressions) == 1:
            return n.expressions[0].transform(rewrite, copy=False)  # transform skips returned nodes
        if isinstance(n, exp.In) and n.expressions and all(is_value(e) for e in n.expressions):
            return exp.In(this=n.this, expressions=[exp.var(VALUE)])
        if isinstance(n, exp.Column):
            name = n.name.lower()
            if not n.table and name in select_aliases:
                return exp.var(canonical_expression(select_aliases[name], scope, {}))
            table = scope.aliases.get(n.table.lower(), n.table.lower()) if n.table else scope.table_of(name)
            return exp.column(name, table) if table else exp.column(name)
        return n

    node = node.copy().transform(rewrite, copy=False)
    return node.sql(dialect="sqlite").lower()


def canonical_unit(unit: exp.Expression, scope: Scope, select_aliases: Mapping[str, exp.Expression]) -> str:
    """One condition unit; the operands of = and != are sorted so that ``a = b`` equals ``b = a``."""
    unit = unparen(unit)
    if isinstance(unit, (exp.EQ, exp.NEQ)):
        left, right = sorted(canonical_expression(side, scope, select_aliases)
                             for side in (unit.this, unit.expression))
        return f"{left} {unit.key} {right}"
    return canonical_expression(unit, scope, select_aliases)


def bag(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(items))


def select_signature(select: exp.Select, outer: Scope) -> Signature:
    units = table_units(select)
    names = [u.name.lower() for u in units if isinstance(u, exp.Table)]
    aliases = dict(outer.aliases)
    aliases.update({u.alias_or_name.lower(): u.name.lower() for u in units if isinstance(u, exp.Table)})
    aliases.update({name: name for name in names})
    scope = Scope(aliases, tuple(names), outer.schema)
    select_aliases = {e.alias.lower(): e.unalias() for e in select.expressions if isinstance(e, exp.Alias)}

    def conditions(condition: Condition, aliases_visible: Mapping[str, exp.Expression]) -> Signature:
        return bag(canonical_unit(u, scope, aliases_visible) for u in condition.units), frozenset(condition.connectors)

    group = select.args.get("group")
    order = select.args.get("order")
    from_tables = bag(repr(signature(u.this, scope)) if isinstance(u, exp.Subquery) else u.name.lower()
                      for u in units)
    return (
        "select",
        bag(canonical_expression(e.unalias(), scope, {}) for e in select.expressions),
        from_tables,
        bag(canonical_unit(u, scope, {}) for u in join_condition(select).units),
        conditions(clause_condition(select, "where"), {}),
        bag(canonical_expression(e, scope, {}) for e in (group.expressions if group else [])),
        conditions(clause_condition(select, "having"), select_aliases),
        tuple((canonical_expression(o.this, scope, select_aliases), bool(o.args.get("desc")))
              for o in (order.expressions if order else [])),
        select.args.get("limit") is not None,
    )


def signature(query: exp.Expression, outer: Scope) -> Signature:
    """Canonical, hashable form of a query; equal signatures mean an exact-set match."""
    query = unparen(query)
    while isinstance(query, exp.Subquery):
        query = query.this
    if isinstance(query, exp.SetOperation):
        operation = query.key + ("" if query.args.get("distinct", True) else " all")
        order = query.args.get("order")
        return (operation, signature(query.this, outer), signature(query.expression, outer),
                tuple(canonical_expression(o, outer, {}) for o in (order.expressions if order else [])),
                query.args.get("limit") is not None)
    if isinstance(query, exp.Select):
        return select_signature(query, outer)
    return ("other", canonical_expression(query, outer, {}))


def query_signature(sql: str, schema: Schema | None = None) -> Signature:
    """Signature of one SQL string; raises :class:`SQLParseError` when it does not parse."""
    lowered = {t.lower(): frozenset(c.lower() for c in cols) for t, cols in (schema or {}).items()}
    return signature(parse_query(sql), Scope({}, (), lowered))


def exact_set_match(pred_sql: str, gold_sql: str, schema: Schema | None = None) -> bool:
    """True when ``pred_sql`` has the same structure as ``gold_sql`` (values ignored); never raises on bad SQL.

    A gold query that does not parse raises :class:`SQLParseError` (a data problem). A prediction that
    does not parse, is not a query, or is nested too deeply to walk (runaway model output) does not match.
    """
    gold = query_signature(gold_sql, schema)
    try:
        return query_signature(pred_sql, schema) == gold
    except (SQLParseError, RecursionError):
        return False
