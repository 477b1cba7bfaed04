"""The fingerprint: the normalized text a policy lists statements by.

:func:`fingerprint` turns the lexer's tokens back into text with comments
removed, every literal and bound placeholder (with its bind cast such as
``::INTEGER``, which psycopg statements carry) replaced by ``?``, keywords
upper-cased, identifiers kept as written (quoted identifiers lose their
quotes unless they need them) and single spaces between tokens.  A
parenthesized list whose items are all placeholders (or all collapsed lists)
becomes ``(?+)`` and a ``VALUES`` list of identical tuples becomes a single
tuple, so expanding ``IN`` and "insertmanyvalues" batches of any size share
one fingerprint.  The column list of a final ``RETURNING`` clause is sorted:
its order decides only the order of the returned columns, and some code
builds it from a set, whose order changes from process to process with the
hash seed (Airflow's DAG processor deletes ``dag_schedule_asset_reference``
rows with ``RETURNING`` in either order).  Fingerprints are idempotent:
``fingerprint(fingerprint(s)) == fingerprint(s)``, which lets a policy file
list either fingerprints or plain SQL.

A fingerprint identifies a statement's shape, not its meaning: two texts
with one fingerprint may touch different rows (the literals are gone), and
a fingerprint is not SQL any backend should run.  Results are cached with
:func:`functools.lru_cache` because the same SQL text repeats constantly.
"""

from __future__ import annotations

import functools
import re

from .keywords import FUNCTION_KEYWORDS, KEYWORDS, STRUCTURAL_KEYWORDS
from .lexer import lex

__all__ = ["fingerprint"]

# Statements longer than this are not cached (huge insertmanyvalues batches
# would otherwise pin a lot of memory in the cache).
_CACHE_MAX_SQL = 32_768
_CACHE_SIZE = 4096

_BARE_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")

# Elements of a fingerprint: (class, text).  Classes: "k" structural keyword,
# "f" identifier / function-like word, "v" the placeholder "?", "g" a
# parenthesized group, "G" a collapsed group "(item+)", "o" operator, "::",
# "[", "]", and the punctuation ",", ";", ".", ")".
_Element = tuple[str, str]
_PLACEHOLDER: _Element = ("v", "?")
_PLUS: _Element = ("o", "+")
_COMMA: _Element = (",", ",")
# Words that continue a type name after a bind cast: "?::DOUBLE PRECISION".
_TYPE_TAIL_WORDS = frozenset({"WITH", "WITHOUT", "TIME", "ZONE", "PRECISION", "VARYING"})


def _render(elements: list[_Element]) -> str:
    parts: list[str] = []
    prev = ""
    for cls, text in elements:
        if parts:
            tight = (
                cls in (",", ";", ".", "::", "]", ")")
                or prev in (".", "::", "[")
                or (cls in ("g", "G", "[") and prev in ("f", "g", "G", "]"))
            )
            if not tight:
                parts.append(" ")
        parts.append(text)
        prev = cls
    return "".join(parts)


def _render_quoted(name: str) -> str:
    if _BARE_IDENT_RE.fullmatch(name) and name.upper() not in KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def _collapsible(item: list[_Element]) -> bool:
    """A list item that is a single placeholder or an already collapsed list."""
    return len(item) == 1 and item[0][0] in ("v", "G")


def _collapse_values(elements: list[_Element]) -> list[_Element]:
    """``VALUES (a), (a), (a)`` -> ``VALUES (a)`` for identical tuples."""
    out: list[_Element] = []
    i = 0
    count = len(elements)
    while i < count:
        element = elements[i]
        out.append(element)
        i += 1
        if element == ("k", "VALUES") and i < count and elements[i][0] in ("g", "G"):
            group = elements[i]
            out.append(group)
            i += 1
            while i + 1 < count and elements[i] == _COMMA and elements[i + 1] == group:
                i += 2
    return out


def _close_group(inner: list[_Element]) -> _Element:
    inner = _collapse_values(inner)
    if not inner:
        return ("g", "()")
    if inner[-1] == _PLUS and _collapsible(inner[:-1]):
        return ("G", "(" + _render(inner[:-1]) + "+)")
    items: list[list[_Element]] = [[]]
    for element in inner:
        if element == _COMMA:
            items.append([])
        else:
            items[-1].append(element)
    first = items[0]
    if all(item == first for item in items) and _collapsible(first):
        return ("G", "(" + _render(first) + "+)")
    return ("g", "(" + _render(inner) + ")")


def _word_element(kind: str, text: str, upper: str | None) -> _Element:
    if kind == "q":
        return ("f", _render_quoted(text))
    if upper in STRUCTURAL_KEYWORDS:
        return ("k", upper)
    if upper in FUNCTION_KEYWORDS:
        return ("f", upper)
    return ("f", text)


class _Builder:
    """The fingerprint elements of the parenthesis groups still open.

    One element list per open parenthesis, and per list the state of a
    bind cast being dropped: ``?::TIMESTAMP WITH TIME ZONE`` -> ``?``.
    """

    __slots__ = ("stack", "casts")

    def __init__(self) -> None:
        self.stack: list[list[_Element]] = [[]]
        self.casts: list[str | None] = [None]

    def push(self, element: _Element) -> None:
        casts = self.casts
        state = casts[-1]
        if state == "type":
            if element[0] in ("f", "k"):
                casts[-1] = "after"
                return
            casts[-1] = None
        elif state == "after":
            if element[0] == ".":
                casts[-1] = "type"
                return
            if element[0] in ("g", "G", "[", "]") or (
                element[0] in ("f", "k") and element[1].upper() in _TYPE_TAIL_WORDS
            ):
                return
            casts[-1] = None
        elements = self.stack[-1]
        if element[0] == "::" and elements and elements[-1] == _PLACEHOLDER:
            casts[-1] = "type"
            return
        elements.append(element)

    def open(self) -> None:
        self.stack.append([])
        self.casts.append(None)

    def close(self) -> None:
        if len(self.stack) > 1:
            inner = self.stack.pop()
            self.casts.pop()
            self.push(_close_group(inner))
        else:
            self.push((")", ")"))

    def finish(self) -> str:
        """The rendered fingerprint of everything pushed."""
        stack = self.stack
        while len(stack) > 1:  # unbalanced "(": keep it visible
            inner = stack.pop()
            self.casts.pop()
            stack[-1].append(("g", "(" + _render(_collapse_values(inner))))
        elements: list[_Element] = []
        for element in stack[0]:
            if element[0] == ";" and (not elements or elements[-1][0] == ";"):
                continue
            elements.append(element)
        while elements and elements[-1][0] == ";":
            elements.pop()
        return _render(_collapse_values(elements))


# A data-changing statement on TABLE ending in RETURNING and a list of
# columns, all bare or all written TABLE.column: nothing else may follow.
# After FROM, USING, JOIN or a comma the "RETURNING" is a table called so and
# the list is FROM items, whose order matters: those keep their order.
_DML_TARGET = re.compile(r"(?:INSERT INTO|UPDATE|DELETE FROM) ([\w$]+)[ (]")
_RETURNING_TAIL = re.compile(r"(.*) RETURNING ([\w$.]+(?:, [\w$.]+)*)", re.S)
_TABLE_LIST_WORDS = frozenset({"FROM", "USING", "JOIN", "ONLY", "INTO", "UPDATE", "TABLE"})


def _sort_returning(text: str) -> str:
    """``text`` with the column list of its final RETURNING clause sorted."""
    target = _DML_TARGET.match(text)
    match = _RETURNING_TAIL.fullmatch(text)
    if target is None or match is None:
        return text
    before = match.group(1)
    if before.endswith(",") or before.rsplit(" ", 1)[-1] in _TABLE_LIST_WORDS:
        return text
    columns = match.group(2).split(", ")
    tables = {column.split(".")[0] if "." in column else None for column in columns}
    if tables not in ({None}, {target.group(1)}) or any(c.count(".") > 1 for c in columns):
        return text
    return f"{before} RETURNING {', '.join(sorted(columns))}"


def _fingerprint_uncached(sql: str, dialect: str | None = None) -> str:
    tokens, _ = lex(sql, dialect)
    builder = _Builder()
    for kind, text, upper in tokens:
        if kind == "(":
            builder.open()
        elif kind == ")":
            builder.close()
        elif kind in ("l", "p"):
            builder.push(_PLACEHOLDER)
        elif kind in ("w", "q"):
            builder.push(_word_element(kind, text, upper))
        elif kind == "o":
            builder.push((text, text) if text in ("::", "[", "]") else ("o", text))
        else:
            builder.push((kind, text))
    return _sort_returning(builder.finish())


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _fingerprint_cached(sql: str, dialect: str | None) -> str:
    return _fingerprint_uncached(sql, dialect)


def fingerprint(sql: str, dialect: str | None = None) -> str:
    """The normalized fingerprint of ``sql``.

    Comments are removed; literals and bound placeholders of every
    paramstyle, with any ``::type`` cast, become ``?``; lists of
    placeholders become ``(?+)``; a
    ``VALUES`` list of identical tuples becomes one tuple; keywords are
    upper-cased, identifiers keep their case, quoted identifiers lose their
    quotes unless they need them; tokens are separated by single spaces.
    Trailing semicolons are dropped.  Idempotent.  ``dialect`` reads the
    text as that backend does (see :func:`session_proxy_server.sql.lexer.lex`).
    """
    if len(sql) > _CACHE_MAX_SQL:
        return _fingerprint_uncached(sql, dialect)
    return _fingerprint_cached(sql, dialect)

