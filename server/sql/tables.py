"""Which tables a statement touches, by a second parser, and how table rules match them.

:func:`session_proxy_server.sql.classify.classify` finds tables with its own scanner over the
lexer's tokens.  This module adds a second, independent opinion from
`sqlglot <https://github.com/tobymao/sqlglot>`_, a maintained SQL parser
that builds a full syntax tree for the PostgreSQL, MySQL and SQLite
dialects, and the rule matching that turns a table name into an access
level.

Second parser
-------------
:func:`parser_tables` does not hand sqlglot the raw text: it rebuilds the
statement from the lexer's tokens (the lexer is what decides where strings,
quoted identifiers and comments end, and refuses text the backends read
differently), with every literal and placeholder replaced by a neutral value
and consecutive identical value-only list items (``VALUES`` rows of an
insertmanyvalues batch, expanded ``IN`` lists) kept once.  The text is
parsed in every dialect; the tables of every reading that parses are
reported (a union: one dialect's blind spot, such as SQLite's reading of
``TABLE x``, does not hide a table another dialect sees).  CTE names shadow
a table only where the CTE is in scope: in the main body of its ``WITH``,
in later CTEs of the same list, and in its own body under ``RECURSIVE``;
a CTE never shadows the target of INSERT/UPDATE/DELETE.

When no dialect parses the text, the statement nests deeper than
:data:`MAX_DEPTH` parentheses, or the rebuilt text is longer than
:data:`MAX_PARSE_CHARS`, :attr:`TableAccess.doubt` says why; the policy then
refuses the statement for every role judged by table rules (fail closed).

Rule matching
-------------
:func:`rule_access` maps one table reference (``task``, ``public.task``,
``db.public.task``, compared lower-cased) to an access level under a role's
``tables`` rules.  A rule key *names the reference for certain* when both
have the same parts, or the reference is the key with a database in front
(``db.public.task`` for a rule ``public.task``: PostgreSQL refuses any
database but the current one).  A key *may name* the reference when the
parts both have agree, aligned from the right (``connection`` may be
``public.connection`` or ``other_db.connection``, and the other way round,
depending on search_path, the current database or SQLite's attached
databases).  The access is the most restrictive of the keys that name the
reference for certain; without one, the most restrictive of every key that
may name it and the ``"*"`` default.  So qualification never escapes a
deny rule (``connection: none`` also covers ``public.connection`` and
``db.public.connection``), and an allow rule for ``task`` does not let
``other_schema.task`` through.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
from collections.abc import Iterator, Mapping, Sequence

import sqlglot
from sqlglot import exp

from .lexer import Token

__all__ = [
    "DIALECTS",
    "MAX_DEPTH",
    "MAX_PARSE_CHARS",
    "REQUEST_PARSE_CHARS",
    "ParseBudgetExceeded",
    "parse_budget",
    "TableAccess",
    "parser_tables",
    "rule_access",
    "split_name",
]

#: sqlglot dialects every statement is read in.
DIALECTS = ("postgres", "mysql", "sqlite")
#: Deeper parenthesis nesting is not parsed (the statement is then in doubt).
MAX_DEPTH = 64
#: Longer rebuilt text is not parsed (the statement is then in doubt).
MAX_PARSE_CHARS = 20_000

_CACHE_SIZE = 4096
_RANK = {"none": 0, "read": 1, "write": 2}
_VALUE_WORDS = frozenset({"NULL", "TRUE", "FALSE", "DEFAULT"})
_TYPE_TAIL = frozenset({"WITH", "WITHOUT", "TIME", "ZONE", "PRECISION", "VARYING"})
# What a statement of a DML kind may parse to; anything else (an Alias, a
# Command sqlglot fell back to) means the dialect did not understand it.
_STATEMENT_NODES = (exp.Query, exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Values)


@dataclasses.dataclass(frozen=True)
class TableAccess:
    """Tables the second parser found, lower-cased and dotted as written.

    :param read: tables read (FROM, JOIN, USING, subqueries, ``TABLE x``...).
    :param written: targets of INSERT / UPDATE / DELETE / MERGE / SELECT INTO.
    :param doubt: why the lists may be incomplete, or ``None``.
    """

    read: frozenset[str] = frozenset()
    written: frozenset[str] = frozenset()
    doubt: str | None = None


# ---------------------------------------------------------------------------
# Rebuilding the text from tokens
# ---------------------------------------------------------------------------


def _depth(tokens: Sequence[Token]) -> int:
    deepest = depth = 0
    for token in tokens:
        if token[0] == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif token[0] == ")":
            depth -= 1
    return deepest


def _quote(name: str, dialect: str) -> str:
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def _join(parts: list[str]) -> str:
    """Parts separated by spaces, except around the dots of a qualified name."""
    out: list[str] = []
    for part in parts:
        if out and part != "." and out[-1] != ".":
            out.append(" ")
        out.append(part)
    return "".join(out)


class _Rebuilder:
    """Render tokens as text for one dialect; see :func:`parser_tables`."""

    def __init__(self, tokens: Sequence[Token], dialect: str) -> None:
        self.tokens = tokens
        self.dialect = dialect
        self.close: dict[int, int] = {}
        opened: list[int] = []
        for index, token in enumerate(tokens):
            if token[0] == "(":
                opened.append(index)
            elif token[0] == ")" and opened:
                self.close[opened.pop()] = index
        for index in opened:
            self.close[index] = len(tokens)

    def text(self) -> str:
        return self.items(0, len(self.tokens))[0]

    def items(self, start: int, end: int) -> tuple[str, bool]:
        """Render tokens[start:end]; drop an item equal to the previous value-only item."""
        rendered: list[str] = []
        previous: str | None = None
        parts: list[str] = []
        value_only = True
        all_values = True
        casting = False
        i = start
        while i < end:
            kind, text, upper = self.tokens[i]
            if kind == "(":
                close = self.close[i]
                inner, inner_values = self.items(i + 1, min(close, end))
                parts.append("(" + inner + (")" if close < end else ""))
                value_only = value_only and inner_values
                i = close + 1
                continue
            if kind == ",":
                item = _join(parts)
                if not (value_only and item == previous):
                    rendered.append(item)
                previous = item if value_only else None
                all_values = all_values and value_only
                parts, value_only, casting = [], True, False
                i += 1
                continue
            if kind == "p":
                parts.append("NULL")
            elif kind == "l":
                parts.append(text if text[:1].isdigit() or text[:1] == "." else "'0'")
            elif kind == "q":
                parts.append(_quote(text, self.dialect))
                value_only = False
            elif kind == "w":
                parts.append(text)
                if not (casting or upper in _VALUE_WORDS or upper in _TYPE_TAIL):
                    value_only = False
            elif kind == "o":
                parts.append(text)
                casting = text == "::"
                if casting or text in ("+", "-"):
                    i += 1
                    continue
                value_only = False
            else:  # ";" "." ")"
                parts.append(text)
                if kind != ".":
                    value_only = False
            if kind != "w":
                casting = False
            i += 1
        item = _join(parts)
        if not (value_only and item == previous):
            rendered.append(item)
        all_values = all_values and value_only
        return ", ".join(rendered), all_values


# ---------------------------------------------------------------------------
# Reading the syntax tree
# ---------------------------------------------------------------------------


def _with_of(node: exp.Expression) -> exp.With | None:
    found = node.args.get("with_") or node.args.get("with")
    return found if isinstance(found, exp.With) else None


def _shadowed(table: exp.Table, name: str) -> bool:
    """Whether the one-part ``name`` of ``table`` is a CTE in scope there."""
    child: exp.Expression = table
    node = table.parent
    while node is not None:
        with_ = _with_of(node)
        if with_ is not None:
            ctes = list(with_.expressions)
            recursive = bool(with_.args.get("recursive"))
            if child is with_:  # inside one of the CTE bodies
                inside = next((k for k, cte in enumerate(ctes) if _contains(cte, table)), None)
                visible = ctes if inside is None else ctes[: inside + (1 if recursive else 0)]
            else:
                visible = ctes
            if any(cte.alias.lower() == name for cte in visible):
                return True
        child, node = node, node.parent
    return False


def _contains(outer: exp.Expression, inner: exp.Expression) -> bool:
    node: exp.Expression | None = inner
    while node is not None:
        if node is outer:
            return True
        node = node.parent
    return False


def _is_target(table: exp.Table) -> bool:
    parent = table.parent
    if isinstance(parent, exp.Schema):  # INSERT INTO t (a, b)
        table, parent = parent, parent.parent  # type: ignore[assignment]
    if isinstance(parent, (exp.Insert, exp.Update, exp.Merge)):
        return parent.args.get("this") is table
    if isinstance(parent, exp.Delete):
        return parent.args.get("this") is table or table in (parent.args.get("tables") or [])
    return isinstance(parent, exp.Into)


def _keyword_misread(table: exp.Table) -> bool:
    """An unquoted ``TABLE`` read as a table name (sqlglot's SQLite reading of ``TABLE x``).

    TABLE is reserved in PostgreSQL, MySQL and SQLite, so a table of that
    name is always quoted; the shorthand itself is read by the other dialects.
    """
    this = table.this
    return len(table.parts) == 1 and not this.args.get("quoted") and this.name.upper() == "TABLE"


def _in_delete_list(table: exp.Table) -> bool:
    """``a`` in MySQL's ``DELETE a, b FROM ...``."""
    parent = table.parent
    return isinstance(parent, exp.Delete) and table in (parent.args.get("tables") or [])


def _table_name(table: exp.Table) -> str:
    return ".".join(part.name for part in table.parts).lower()


def _tables_of(tree: exp.Expression) -> tuple[set[str], set[str]]:
    reads: set[str] = set()
    writes: set[str] = set()
    aliases: dict[str, set[str]] = {}
    tables = [
        t for t in tree.find_all(exp.Table)
        if isinstance(t.this, exp.Identifier) and not _keyword_misread(t)
    ]
    named = {_table_name(t) for t in tables if not _in_delete_list(t)}
    for table in tables:
        if table.alias:
            aliases.setdefault(table.alias.lower(), set()).add(_table_name(table))
    for table in tables:
        if table.find_ancestor(exp.Lock) is not None:  # FOR UPDATE OF <alias>
            continue
        name = _table_name(table)
        if _is_target(table):
            if _in_delete_list(table):
                # MySQL DELETE a FROM t AS a: a target names an alias or a table
                # of the FROM list (anything else, such as QUICK, is a modifier).
                writes |= aliases.get(name) or ({name} & named)
            else:
                writes.add(name)
        elif len(table.parts) > 1 or not _shadowed(table, name):
            reads.add(name)
    return reads, writes


def _parse(text: str, dialect: str) -> tuple[set[str], set[str]] | None:
    """Tables of ``text`` read in ``dialect``, or ``None`` when it does not parse."""
    try:
        trees = sqlglot.parse(text, read=dialect)
    except (sqlglot.errors.SqlglotError, RecursionError, ValueError, TypeError):
        return None
    reads: set[str] = set()
    writes: set[str] = set()
    for tree in trees:
        if tree is None:
            continue
        if not isinstance(tree, _STATEMENT_NODES) or tree.find(exp.Command) is not None:
            return None
        tree_reads, tree_writes = _tables_of(tree)
        reads |= tree_reads
        writes |= tree_writes
    return reads, writes


#: Parsed statements, most recently used last (at most :data:`_CACHE_SIZE`).
_parsed: collections.OrderedDict[tuple[str, ...], TableAccess] = collections.OrderedDict()
_parsed_lock = threading.Lock()


def _is_cached(texts: tuple[str, ...]) -> bool:
    with _parsed_lock:
        return texts in _parsed


def _parse_all(texts: tuple[str, ...]) -> TableAccess:
    with _parsed_lock:
        found = _parsed.get(texts)
        if found is not None:
            _parsed.move_to_end(texts)
            return found
    found = _parse_all_uncached(texts)
    with _parsed_lock:
        _parsed[texts] = found
        while len(_parsed) > _CACHE_SIZE:
            _parsed.popitem(last=False)
    return found


def _parse_all_uncached(texts: tuple[str, ...]) -> TableAccess:
    reads: set[str] = set()
    writes: set[str] = set()
    parsed = False
    for dialect, text in zip(DIALECTS, texts, strict=True):
        found = _parse(text, dialect)
        if found is not None:
            parsed = True
            reads |= found[0]
            writes |= found[1]
    if not parsed:
        return TableAccess(doubt="no SQL dialect parses the statement")
    return TableAccess(frozenset(reads), frozenset(writes))


def parser_tables(tokens: Sequence[Token]) -> TableAccess:
    """Tables read and written by the statement(s) ``tokens`` spell, by sqlglot.

    ``tokens`` come from :func:`session_proxy_server.sql.lexer.lex`.  See the module
    docstring for how the text is rebuilt and read.
    """
    if _depth(tokens) > MAX_DEPTH:
        return TableAccess(doubt=f"parentheses nest deeper than {MAX_DEPTH}")
    texts = tuple(_Rebuilder(tokens, dialect).text() for dialect in DIALECTS)
    if max(len(text) for text in texts) > MAX_PARSE_CHARS:
        return TableAccess(doubt=f"statement longer than {MAX_PARSE_CHARS} characters to parse")
    if not _charge(texts):
        raise ParseBudgetExceeded(
            f"the request has more than {REQUEST_PARSE_CHARS} characters of statements "
            "the server has not parsed before; send fewer new statements per request"
        )
    return _parse_all(texts)


class ParseBudgetExceeded(Exception):
    """A request's new statements are more than :func:`parse_budget` allows.

    Raised, not returned as a doubt, so that no cache keeps the verdict:
    the same statement in a later request is parsed.
    """


#: Characters of statements not parsed before that one request may make
#: sqlglot parse.  Parsing costs up to tens of microseconds a character on
#: hostile shapes (``a || a || ...``): a red-team run made the server spend
#: 15.8 s of CPU on 40 statements of 19 KB.  Cached texts cost nothing.
REQUEST_PARSE_CHARS = 60_000

_budget = threading.local()


@contextlib.contextmanager
def parse_budget(chars: int = REQUEST_PARSE_CHARS) -> Iterator[None]:
    """Bound what :func:`parser_tables` parses anew inside the block (one request)."""
    _budget.left = chars
    try:
        yield
    finally:
        _budget.left = None


def _charge(texts: tuple[str, ...]) -> bool:
    """Take ``texts``' length from the request's budget unless their parse is cached."""
    left = getattr(_budget, "left", None)
    if left is None or _is_cached(texts):
        return True
    cost = sum(len(text) for text in texts)
    if cost > left:
        return False
    _budget.left = left - cost
    return True


# ---------------------------------------------------------------------------
# Rule matching
# ---------------------------------------------------------------------------


def split_name(name: str) -> tuple[str, ...]:
    """``"db.public.task"`` -> ``("db", "public", "task")``, lower-cased."""
    return tuple(name.lower().split("."))


def _certain(key: tuple[str, ...], reference: tuple[str, ...]) -> bool:
    return key == reference or (
        len(key) == 2 and len(reference) == 3 and reference[1:] == key
    )


def _may(key: tuple[str, ...], reference: tuple[str, ...]) -> bool:
    common = min(len(key), len(reference))
    return key[-common:] == reference[-common:]


def rule_access(rules: Mapping[str, str], reference: str) -> str:
    """The access ``rules`` (table -> none/read/write, ``"*"`` default) give ``reference``."""
    ref = split_name(reference)
    certain: list[str] = []
    possible: list[str] = [rules.get("*", "none")]
    for key, access in rules.items():
        if key == "*":
            continue
        parts = split_name(key)
        if _certain(parts, ref):
            certain.append(access)
        elif _may(parts, ref):
            possible.append(access)
    chosen = certain or possible
    return min(chosen, key=_RANK.__getitem__)
