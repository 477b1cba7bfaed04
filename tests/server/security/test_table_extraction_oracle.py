"""PostgreSQL is the oracle for the tables ``session_proxy_server.sql.classify`` reports.

Hypothesis generates statements over a small real schema (tables in
``public`` and in a second schema ``other`` on the search_path, a table
named like one in ``public``, a mixed-case quoted table): joins, subqueries
in the SELECT list, WHERE, HAVING, ORDER BY, LIMIT and JOIN ON, CTEs whose
names shadow real tables, LATERAL, UNION / INTERSECT / EXCEPT, ``TABLE x``,
schema-, database-qualified and quoted names, EXISTS, IN and scalar
subqueries; and DML: INSERT ... SELECT, UPDATE ... FROM, DELETE ... USING,
data-modifying CTEs, with RETURNING.

For each statement PostgreSQL says which relations it touches:
``EXPLAIN (FORMAT JSON, VERBOSE)`` lists every relation the plan scans
(``ModifyTable`` nodes are the written ones), and for a SELECT the
dependencies of a temporary view over it add what the planner pruned
(``WHERE false`` branches, unreferenced CTEs).  The test fails on any
relation PostgreSQL touches that classify() does not report (a written one
must be reported as written), and on any statement that classify() is in
doubt about (that would only refuse it).  Derandomized, so CI runs the same
statements every time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_proxy_server.sql.classify import classify
from tests.conftest import backend_url

pytestmark = pytest.mark.postgresql

SELECT_EXAMPLES = 2000
DML_EXAMPLES = 800

#: (schema, table) of the oracle schema; every table has columns (id, v).
TABLES = [
    ("public", "task"),
    ("public", "xcom"),
    ("public", "connection"),
    ("public", "MixedCase"),
    ("other", "secret"),
    ("other", "task"),
]
CTE_NAMES = ["c1", "c2", "task", "secret", "connection", "xcom"]


@pytest.fixture(scope="module")
def pg() -> Iterator[tuple[Any, str]]:
    url = backend_url("postgresql", Path("unused"))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS other CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA other")
        for schema, table in TABLES:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS {schema}."{table}"')
            conn.exec_driver_sql(f'CREATE TABLE {schema}."{table}" (id integer, v text)')
            conn.exec_driver_sql(f"INSERT INTO {schema}.\"{table}\" VALUES (1, 'a'), (2, 'b')")
        dbname = conn.exec_driver_sql("SELECT current_database()").scalar()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET search_path TO public, other")
        raw.commit()
        yield raw, dbname
    finally:
        raw.close()
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS other CASCADE")
            for schema, table in TABLES:
                if schema == "public":
                    conn.exec_driver_sql(f'DROP TABLE IF EXISTS public."{table}"')
        engine.dispose()


# ---------------------------------------------------------------------------
# Statement generator
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Ctx:
    """What a query being generated may refer to."""

    dbname: str
    counter: list[int]
    ctes: tuple[str, ...] = ()  # CTE names in scope
    outer: tuple[str, ...] = ()  # aliases of enclosing queries (for correlation)
    forbidden: tuple[str, ...] = ()  # names that must not be referenced unqualified

    def alias(self) -> str:
        self.counter[0] += 1
        return f"a{self.counter[0]}"

    def inner(self, *aliases: str, ctes: tuple[str, ...] | None = None) -> Ctx:
        return dataclasses.replace(
            self, outer=self.outer + aliases, ctes=self.ctes if ctes is None else ctes
        )


def _table_ref(draw: st.DrawFn, ctx: Ctx, schema: str, table: str) -> str:
    """One way of spelling (schema, table)."""
    forms = [f'"{schema}"."{table}"', f"{ctx.dbname}.{schema}.\"{table}\""]
    # Unqualified names resolve through search_path (public, other) unless a
    # CTE of that name is in scope; other.task is hidden by public.task.
    visible = not (schema == "other" and table == "task") and table not in ctx.forbidden
    if visible:
        forms.append(f'"{table}"')
    if table == table.lower():
        forms += [f"{schema}.{table}", f"{ctx.dbname}.{schema}.{table}", f"ONLY {schema}.{table}"]
        if visible:
            forms += [table, f"ONLY {table}"]
    return draw(st.sampled_from(forms))


def _relation(draw: st.DrawFn, ctx: Ctx) -> str:
    """A table or a CTE in scope, as a FROM item's relation."""
    names = [n for n in ctx.ctes if n not in ctx.forbidden]
    if names and draw(st.booleans()):
        return draw(st.sampled_from(names))
    schema, table = draw(st.sampled_from(TABLES))
    return _table_ref(draw, ctx, schema, table)


def _from_item(draw: st.DrawFn, ctx: Ctx, depth: int) -> tuple[str, str]:
    alias = ctx.alias()
    choices = ["table", "table", "values"]
    if depth > 0:
        choices += ["subquery", "lateral", "table_subquery"]
    kind = draw(st.sampled_from(choices))
    if kind == "table":
        return f"{_relation(draw, ctx)} AS {alias}", alias
    if kind == "values":
        return f"(VALUES (1, 'x'), (2, 'y')) AS {alias}(id, v)", alias
    if kind == "table_subquery":
        keyword = draw(st.sampled_from(["", "LATERAL "]))
        return f"{keyword}(TABLE {_relation(draw, ctx)}) AS {alias}", alias
    keyword = "LATERAL " if kind == "lateral" else ""
    return f"{keyword}({_query(draw, ctx, depth - 1)}) AS {alias}", alias


def _from_clause(draw: st.DrawFn, ctx: Ctx, depth: int) -> tuple[str, list[str]]:
    text, first = _from_item(draw, ctx, depth)
    aliases = [first]
    segment = [first]  # JOIN binds tighter than ",": ON sees only the items since the last ","
    for _ in range(draw(st.integers(0, 2 if depth == 0 else 1))):
        item, alias = _from_item(draw, ctx, depth)
        join = draw(st.sampled_from([", ", " JOIN ", " LEFT JOIN ", " CROSS JOIN "]))
        if join.strip() in ("JOIN", "LEFT JOIN"):
            on = f"{alias}.id = {draw(st.sampled_from(segment))}.id"
            if depth > 0 and draw(st.booleans()):
                on += f" AND {_condition(draw, ctx.inner(*segment, alias), depth - 1)}"
            text += f"{join}{item} ON {on}"
        else:
            text += f"{join}{item}"
        if join == ", ":
            segment = []
        segment.append(alias)
        aliases.append(alias)
    return text, aliases


def _scalar(draw: st.DrawFn, ctx: Ctx, depth: int, column: str) -> str:
    """A scalar subquery yielding ``column`` (id or v) of some FROM clause."""
    from_clause, aliases = _from_clause(draw, ctx, depth)
    alias = draw(st.sampled_from(aliases))
    where = ""
    if ctx.outer and draw(st.booleans()):
        where = f" WHERE {alias}.id = {draw(st.sampled_from(ctx.outer))}.id"
    return f"(SELECT max({alias}.{column}) FROM {from_clause}{where})"


def _condition(draw: st.DrawFn, ctx: Ctx, depth: int) -> str:
    column = f"{draw(st.sampled_from(ctx.outer))}." if ctx.outer else ""
    simple = [f"{column}id > 0", f"{column}v IS NOT NULL"] if column else ["1 = 1"]
    if depth <= 0:
        return draw(st.sampled_from(simple))
    kind = draw(st.sampled_from(["simple", "exists", "not_exists", "in", "scalar", "any", "and"]))
    if kind == "simple" or not column:
        return draw(st.sampled_from(simple))
    if kind in ("exists", "not_exists"):
        from_clause, aliases = _from_clause(draw, ctx, depth - 1)
        inner = draw(st.sampled_from(aliases))
        negate = "NOT " if kind == "not_exists" else ""
        return f"{negate}EXISTS (SELECT 1 FROM {from_clause} WHERE {inner}.id = {column}id)"
    if kind == "in":
        return f"{column}id IN (SELECT q.id FROM ({_query(draw, ctx, depth - 1)}) AS q)"
    if kind == "any":
        from_clause, aliases = _from_clause(draw, ctx, depth - 1)
        return f"{column}id <= ANY (SELECT {draw(st.sampled_from(aliases))}.id FROM {from_clause})"
    if kind == "scalar":
        return f"{column}v = {_scalar(draw, ctx, depth - 1, 'v')}"
    left = _condition(draw, ctx, depth - 1)
    right = _condition(draw, ctx, depth - 1)
    return f"({left} {draw(st.sampled_from(['AND', 'OR']))} {right})"


def _core(draw: st.DrawFn, ctx: Ctx, depth: int) -> str:
    """A SELECT of columns (id, v) without ORDER BY / LIMIT."""
    from_clause, aliases = _from_clause(draw, ctx, depth)
    inner = ctx.inner(*aliases)
    alias = draw(st.sampled_from(aliases))
    id_expr = f"{alias}.id"
    v_expr = f"{alias}.v"
    if depth > 0 and draw(st.booleans()):
        v_expr = draw(st.sampled_from([
            _scalar(draw, inner, depth - 1, "v"),
            f"coalesce({alias}.v, {_scalar(draw, inner, depth - 1, 'v')})",
        ]))
    where = ""
    if draw(st.booleans()):
        where = f" WHERE {_condition(draw, inner, depth)}"
    if depth > 0 and draw(st.integers(0, 3)) == 0:
        having = draw(st.sampled_from([
            "count(*) > 0",
            f"count(*) <= {_scalar(draw, ctx, depth - 1, 'id')}",
            f"EXISTS (SELECT 1 FROM {_from_clause(draw, ctx, depth - 1)[0]})",
        ]))
        return (f"SELECT {id_expr} AS id, max({alias}.v) AS v FROM {from_clause}{where} "
                f"GROUP BY {id_expr} HAVING {having}")
    return f"SELECT {id_expr} AS id, {v_expr} AS v FROM {from_clause}{where}"


def _set_operand(draw: st.DrawFn, ctx: Ctx, depth: int) -> str:
    if depth > 0 and draw(st.integers(0, 3)) == 0:
        return f"({_body(draw, ctx, depth - 1)})"
    return _core(draw, ctx, depth)


def _body(draw: st.DrawFn, ctx: Ctx, depth: int) -> str:
    """A core SELECT or a set operation."""
    kind = draw(st.sampled_from(["core", "core", "setop", "table"]))
    if kind == "core":
        return _core(draw, ctx, depth)
    left = _set_operand(draw, ctx, depth)
    op = draw(st.sampled_from(["UNION", "UNION ALL", "INTERSECT", "EXCEPT", "EXCEPT ALL"]))
    if kind == "table":
        return f"{left} {op} TABLE {_relation(draw, ctx)}"
    return f"{left} {op} {_set_operand(draw, ctx, depth)}"


def _with(draw: st.DrawFn, ctx: Ctx, depth: int) -> tuple[str, Ctx]:
    """A WITH clause (maybe none) and the context its main query sees."""
    if depth <= 0 or draw(st.integers(0, 2)) > 0:
        return "", ctx
    names = draw(st.lists(st.sampled_from(CTE_NAMES), min_size=1, max_size=3, unique=True))
    if draw(st.integers(0, 3)) == 0:
        name = names[0]
        anchor = _query(draw, dataclasses.replace(ctx, forbidden=ctx.forbidden + (name,)),
                        depth - 1)
        body = (f"SELECT q.id, q.v FROM ({anchor}) AS q UNION ALL "
                f"SELECT {name}.id + 1, {name}.v FROM {name} WHERE {name}.id < 3")
        return (f"WITH RECURSIVE {name}(id, v) AS ({body}) ",
                dataclasses.replace(ctx, ctes=ctx.ctes + (name,)))
    parts = []
    scope = ctx.ctes
    for name in names:
        materialized = draw(st.sampled_from(["", "MATERIALIZED ", "NOT MATERIALIZED "]))
        parts.append(f"{name} AS {materialized}({_query(draw, ctx.inner(ctes=scope), depth - 1)})")
        scope = scope + (name,)
    return "WITH " + ", ".join(parts) + " ", ctx.inner(ctes=scope)


def _query(draw: st.DrawFn, ctx: Ctx, depth: int) -> str:
    prefix, ctx = _with(draw, ctx, depth)
    body = _body(draw, ctx, depth)
    tail = ""
    if draw(st.integers(0, 3)) == 0:
        tail += " ORDER BY 1"
    if draw(st.integers(0, 3)) == 0:
        limit = _scalar(draw, ctx, depth - 1, "id") if depth > 0 else "5"
        tail += f" LIMIT {limit}"
    return prefix + body + tail


def _target(draw: st.DrawFn, ctx: Ctx) -> str:
    schema, table = draw(st.sampled_from(TABLES))
    return _table_ref(draw, ctx, schema, table).removeprefix("ONLY ")


def _returning(draw: st.DrawFn, ctx: Ctx, alias: str) -> str:
    if not draw(st.booleans()):
        return ""
    return f" RETURNING {alias}.id AS id, {_scalar(draw, ctx.inner(alias), 1, 'v')} AS v"


def _modification(draw: st.DrawFn, ctx: Ctx, depth: int, returning: bool) -> str:
    kind = draw(st.sampled_from(["insert", "update", "delete"]))
    alias = ctx.alias()
    if kind == "insert":
        target = _target(draw, ctx)
        tail = _returning(draw, ctx, alias) if returning else ""
        if returning and not tail:
            tail = f" RETURNING {alias}.id, {alias}.v"
        return f"INSERT INTO {target} AS {alias} (id, v) {_query(draw, ctx, depth)}{tail}"
    if kind == "update":
        target = _target(draw, ctx)
        value = draw(st.sampled_from([f"{alias}.v", _scalar(draw, ctx.inner(alias), depth, "v")]))
        text = f"UPDATE {target} AS {alias} SET v = {value}"
        where = [f"{alias}.id > 0"]
        if draw(st.booleans()):
            from_clause, aliases = _from_clause(draw, ctx, depth)
            text += f" FROM {from_clause}"
            where.append(f"{alias}.id = {draw(st.sampled_from(aliases))}.id")
            ctx = ctx.inner(*aliases)
        where.append(_condition(draw, ctx.inner(alias), depth))
    else:
        target = _target(draw, ctx)
        text = f"DELETE FROM {target} AS {alias}"
        where = [f"{alias}.id > 0"]
        if draw(st.booleans()):
            from_clause, aliases = _from_clause(draw, ctx, depth)
            text += f" USING {from_clause}"
            where.append(f"{alias}.id = {draw(st.sampled_from(aliases))}.id")
            ctx = ctx.inner(*aliases)
        where.append(_condition(draw, ctx.inner(alias), depth))
    tail = _returning(draw, ctx, alias)
    if returning and not tail:
        tail = f" RETURNING {alias}.id, {alias}.v"
    return f"{text} WHERE {' AND '.join(where)}{tail}"


@st.composite
def selects(draw: st.DrawFn, dbname: str) -> str:
    return _query(draw, Ctx(dbname, [0]), draw(st.integers(1, 3)))


@st.composite
def modifications(draw: st.DrawFn, dbname: str) -> str:
    ctx = Ctx(dbname, [0])
    depth = draw(st.integers(1, 2))
    if draw(st.integers(0, 3)) == 0:
        cte = _modification(draw, ctx, depth - 1, returning=True)
        main = _body(draw, ctx.inner(ctes=("m",)), depth - 1)
        return f"WITH m AS ({cte}) {main}"
    prefix, inner = _with(draw, ctx, depth)
    return prefix + _modification(draw, inner, depth, returning=False)


# ---------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------


def _plan_relations(plan: dict, scanned: set, written: set) -> None:
    if "Relation Name" in plan:
        key = (plan.get("Schema", ""), plan["Relation Name"])
        (written if plan.get("Node Type") == "ModifyTable" else scanned).add(key)
    for child in plan.get("Plans", ()):
        _plan_relations(child, scanned, written)


_VIEW_DEPENDENCIES = """
SELECT DISTINCT n.nspname, c.relname
FROM pg_depend d
JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
JOIN pg_class c ON d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE r.ev_class = 'oracle_view'::regclass AND c.oid <> 'oracle_view'::regclass
"""


def postgres_relations(raw: Any, sql: str, is_select: bool) -> tuple[set, set]:
    """(scanned, written) relations of ``sql`` as (schema, name), by PostgreSQL."""
    cursor = raw.cursor()
    scanned: set = set()
    written: set = set()
    try:
        cursor.execute("EXPLAIN (FORMAT JSON, VERBOSE) " + sql)
        plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        _plan_relations(plan[0]["Plan"], scanned, written)
        if is_select:
            cursor.execute("CREATE TEMP VIEW oracle_view AS " + sql)
            cursor.execute(_VIEW_DEPENDENCIES)
            scanned |= set(cursor.fetchall())
    finally:
        raw.rollback()
    return scanned, written


def _covers(reported: frozenset[str], relation: tuple[str, str]) -> bool:
    """Whether some reported name may denote ``relation`` (unqualified names: any schema)."""
    schema, table = relation
    for name in reported:
        parts = name.split(".")
        if parts[-1] == table.lower() and (len(parts) < 2 or parts[-2] == schema.lower()):
            return True
    return False


def check_statement(raw: Any, sql: str, is_select: bool) -> bool:
    """Assert classify() reports every relation PostgreSQL touches; return whether it doubts.

    A statement in doubt is refused for every role judged by table rules,
    so it cannot leak; its reported tables must still cover PostgreSQL's.
    """
    info = classify(sql)
    assert info.ambiguity is None, (sql, info.ambiguity)
    scanned, written = postgres_relations(raw, sql, is_select)
    missed_writes = [r for r in written if not _covers(info.tables_written, r)]
    touched = info.tables_read | info.tables_written
    missed_reads = [r for r in scanned if not _covers(touched, r)]
    assert not missed_writes and not missed_reads, (sql, missed_reads, missed_writes, info)
    return info.table_doubt is not None


# 2,000 EXPLAINs and parses: minutes on a loaded two-core machine, not 300 s.
@pytest.mark.timeout(1200)
def test_classify_misses_no_relation_postgresql_scans_in_selects(pg: tuple[Any, str]) -> None:
    raw, dbname = pg
    checked: list[str] = []
    doubted: list[str] = []

    @settings(max_examples=SELECT_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(sql=selects(dbname))
    def check(sql: str) -> None:
        if check_statement(raw, sql, is_select=True):
            doubted.append(sql)
        checked.append(sql)

    check()
    assert len(checked) >= SELECT_EXAMPLES
    print(f"\n{len(checked)} SELECTs, {len(doubted)} in doubt")
    # Doubt refuses a statement for table-rule roles: safe, but it must stay rare.
    assert len(doubted) <= len(checked) // 50, doubted[:5]
    # The generator reaches the constructs the issue names.
    text = "\n".join(checked)
    for construct in ("UNION TABLE", "LATERAL (TABLE", "WITH RECURSIVE", f"{dbname}.public.",
                      "EXCEPT", "INTERSECT", "EXISTS", " IN (SELECT", "HAVING", "LIMIT (SELECT",
                      '"MixedCase"', "other.task", "WITH task AS"):
        assert construct in text, construct


def test_classify_misses_no_relation_postgresql_touches_in_dml(pg: tuple[Any, str]) -> None:
    raw, dbname = pg
    checked: list[str] = []
    doubted: list[str] = []

    @settings(max_examples=DML_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(sql=modifications(dbname))
    def check(sql: str) -> None:
        if check_statement(raw, sql, is_select=False):
            doubted.append(sql)
        checked.append(sql)

    check()
    assert len(checked) >= DML_EXAMPLES
    print(f"\n{len(checked)} DML statements, {len(doubted)} in doubt")
    # sqlglot does not read some FROM / USING lists of UPDATE and DELETE (a
    # VALUES list with column aliases followed by JOIN): those are refused.
    assert len(doubted) <= len(checked) // 5, doubted[:5]
    text = "\n".join(checked)
    for construct in ("INSERT INTO", "UPDATE", " FROM ", "DELETE FROM", " USING ", "RETURNING",
                      "WITH m AS (DELETE", "WITH m AS (UPDATE", "WITH m AS (INSERT"):
        assert construct in text, construct
