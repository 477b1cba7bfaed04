"""The hand-written scanner: tables, functions and locks of one statement.

:class:`Scanner` walks the lexer's tokens of one statement once with a small
state machine that knows where table names can stand (after ``FROM``,
``JOIN``, commas of a ``FROM`` list, ``INTO``, ``UPDATE``, ``DELETE``,
``USING``), which CTE names shadow tables (with their scope), which words
are function calls, and whether the statement takes row locks.  When unsure
it over-reports tables (refusing a statement is safe, missing a table read
is not).

It is one of two opinions: :func:`session_proxy_server.sql.classify.classify` adds the
tables sqlglot finds (:mod:`session_proxy_server.sql.tables`).  Do not use the scanner
alone to decide access; it never sees a syntax tree.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from .keywords import (
    ALIAS_STOP,
    CLAUSE_END,
    DML_KINDS,
    INSERT_MODIFIERS,
    NOT_A_CALL,
    SUBQUERY_START,
    TABLE_MODIFIERS,
    VALUE_FUNCTIONS,
)
from .lexer import Token

__all__ = ["Scanner"]

# What a word rule of Scanner returns: the next index and the expectation,
# or None when the rule does not apply there.
_Step = tuple[int, str | None] | None


class _Frame:
    """Parser state of one parenthesis level."""

    __slots__ = ("access", "call", "delete_from")

    def __init__(self, call: bool = False, access: str | None = None) -> None:
        self.access = access  # "read" / "write" while inside a table list
        self.call = call  # opened by a function call: FROM is an expression
        self.delete_from = False  # DELETE seen, FROM names the written table


class Scanner:
    """Tables, functions and locks of one statement (see :func:`classify`)."""

    def __init__(self, tokens: tuple[Token, ...]) -> None:
        self.tokens = tokens
        self.reads: list[tuple[str, int]] = []
        self.writes: list[str] = []
        self.functions: set[str] = set()
        self.aliases: dict[str, set[str]] = {}
        self.ctes: list[tuple[str, int, int]] = []  # name, scope start, scope end
        self.not_calls: set[int] = set()
        self.call_parens: set[int] = set()
        self.nested_kinds: list[str] = []
        self.locks = False
        self.select_into = False
        # PostgreSQL attribute notation: ``x.f`` and ``(expr).f`` call f(x) when
        # no column f exists, so ``s.ts_stat`` over ``FROM lower('...') AS s``
        # runs ts_stat('...').  Qualified references (first parts, last part)
        # are kept and judged once every range variable is known.
        self.qualified_refs: list[tuple[str, str]] = []
        self.range_functions = False
        self.close, self.enclosing = self._match_parens()
        self.frames = [_Frame()]

    def _match_parens(self) -> tuple[dict[int, int], list[int]]:
        tokens = self.tokens
        n = len(tokens)
        close: dict[int, int] = {}
        enclosing = [n] * n
        opened: list[int] = []
        members: list[list[int]] = [[]]
        for index, token in enumerate(tokens):
            if token[0] == "(":
                members[-1].append(index)
                opened.append(index)
                members.append([])
            elif token[0] == ")" and opened:
                start = opened.pop()
                close[start] = index
                for member in members.pop():
                    enclosing[member] = index
                members[-1].append(index)
            else:
                members[-1].append(index)
        for start in opened:
            close[start] = n
        return close, enclosing

    def tok(self, index: int) -> Token:
        if 0 <= index < len(self.tokens):
            return self.tokens[index]
        return ("", "", None)

    def name_like(self, index: int) -> bool:
        kind, _, upper = self.tok(index)
        return kind == "q" or (kind == "w" and upper not in ALIAS_STOP)

    def qualified(self, index: int) -> tuple[str, int]:
        """The dotted name starting at ``index`` (lower-cased) and the index after it."""
        parts = [self.tokens[index][1]]
        index += 1
        while self.tok(index)[0] == "." and self.tok(index + 1)[0] in ("w", "q"):
            parts.append(self.tokens[index + 1][1])
            index += 2
        return ".".join(parts).lower(), index

    def is_statement_start(self, index: int) -> bool:
        kind, _, upper = self.tok(index - 1)
        return kind in ("", "(", ")") or upper in ("EXPLAIN", "ANALYZE", "VERBOSE")

    def is_query_start(self, index: int) -> bool:
        """Whether a query may begin at ``index`` (after "(", a set operator, or first)."""
        kind, _, upper = self.tok(index - 1)
        return kind in ("", "(") or upper in (
            "UNION", "INTERSECT", "EXCEPT", "ALL", "DISTINCT", "EXPLAIN", "ANALYZE", "VERBOSE"
        )

    def record(self, name: str, access: str, index: int) -> None:
        if access == "read":
            self.reads.append((name, index))
        else:
            self.writes.append(name)

    def parse_ctes(self, index: int) -> None:
        """Record the CTE names of the WITH at ``index`` with their scopes."""
        tokens = self.tokens
        scope_end = self.enclosing[index]
        i = index + 1
        recursive = self.tok(i)[2] == "RECURSIVE"
        if recursive:
            i += 1
        while self.tok(i)[0] in ("w", "q"):
            name_index = i
            i += 1
            if self.tok(i)[0] == "(":
                i = self.close[i] + 1
            if self.tok(i)[2] != "AS":
                return
            i += 1
            while self.tok(i)[2] in ("NOT", "MATERIALIZED"):
                i += 1
            if self.tok(i)[0] != "(":
                return
            body_end = self.close[i]
            self.not_calls.add(name_index)
            name = tokens[name_index][1].lower()
            self.ctes.append((name, name_index if recursive else body_end, scope_end))
            i = body_end + 1
            depth = 0
            while i < len(tokens):  # skip SEARCH / CYCLE clauses
                kind, _, upper = tokens[i]
                if kind == "(":
                    depth += 1
                elif kind == ")":
                    if depth == 0:
                        return
                    depth -= 1
                elif depth == 0 and (kind == "," or upper in DML_KINDS):
                    break
                i += 1
            if self.tok(i)[0] != ",":
                return
            i += 1

    def take_table(self, i: int, expect: str) -> tuple[int, str | None, bool]:
        """Handle token ``i`` while a table name is expected.

        Returns the next index, the expectation that remains, and whether
        the token was consumed (False: process it normally).
        """
        kind, _, upper = self.tok(i)
        access = "read" if expect == "read" else "write"
        if kind == "w" and upper in TABLE_MODIFIERS:
            following = self.tok(i + 1)
            if following[0] == "(" or following[2] in TABLE_MODIFIERS | {"FROM", "INTO"}:
                return i + 1, expect, True
            if self.name_like(i + 1):
                if self.tok(self.qualified(i + 1)[1])[0] != "(":
                    # "FROM only x" is table "only" in some dialects: over-report.
                    self.record(self.tokens[i][1].lower(), access, i)
                return i + 1, expect, True
            # "UPDATE ignore SET ...": the word is the table.
        if kind == "(":
            j = i + 1
            while self.tok(j)[0] == "(":
                j += 1
            if self.tok(j)[2] in SUBQUERY_START:
                return i, None, False
            # Parenthesized join: the table list continues inside.
            self.frames.append(_Frame(access=access))
            return i + 1, expect, True
        if kind == "q" or (kind == "w" and upper not in SUBQUERY_START):
            name, j = self.qualified(i)
            if self.tok(j)[0] == "(" and expect == "read":
                self.functions.add(name)  # table function: json_each(?)
                self.call_parens.add(j)
                self.range_functions = True
                return j, None, True
            self.record(name, access, i)
            k = j + 1 if self.tok(j)[2] == "AS" else j
            if self.name_like(k):
                self.aliases.setdefault(self.tokens[k][1].lower(), set()).add(name)
            return j, None, True
        return i, None, False

    def delete_targets(self, i: int) -> int:
        """MySQL ``DELETE t1, t2 FROM ...``: record the targets, return FROM's index."""
        tokens = self.tokens
        while i < len(tokens):
            kind, _, upper = tokens[i]
            if upper == "FROM" or kind in ("(", ")"):
                break
            if kind in ("w", "q"):
                name, i = self.qualified(i)
                self.writes.append(name)
                continue
            i += 1
        return i

    def run(self) -> None:
        """Scan the statement once, filling the lists above.

        ``expect`` says whether a table name may stand next ("read",
        "write", "target") and is handled by :meth:`take_table`.  A word
        with its own rule is handled by the method :data:`_WORD_RULES`
        names; the method returns the next index and expectation, or None
        when the word is not what the rule is about here (then it is read as
        a name or a function call).
        """
        tokens = self.tokens
        n = len(tokens)
        expect: str | None = None
        i = 0
        while i < n:
            if expect is not None:
                i, expect, consumed = self.take_table(i, expect)
                if consumed:
                    continue
            kind, _, upper = tokens[i]
            frame = self.frames[-1]
            if kind == "(":
                self.frames.append(_Frame(call=i in self.call_parens))
            elif kind == ")":
                if len(self.frames) > 1:
                    self.frames.pop()
            elif kind == ",":
                if frame.access is not None:
                    expect = frame.access
            elif kind in ("w", "q"):
                rule = _WORD_RULES.get(upper) if kind == "w" else None
                step = None if rule is None else rule(self, i, upper, frame, expect)
                if step is None:
                    i = self.name(i, upper, frame)
                else:
                    i, expect = step
                continue
            elif kind == ".":
                self.attribute(i)
            i += 1
        self._attribute_calls()

    def name(self, i: int, upper: str | None, frame: _Frame) -> int:
        """A (dotted) name at ``i``, recorded as a function when called; the index after it.

        A dotted name not called is kept in :attr:`qualified_refs` for
        :meth:`_attribute_calls`.
        """
        name, j = self.qualified(i)
        if self.tok(j)[0] == "(" and self._is_call(i, upper):
            self.functions.add(name)
            self.call_parens.add(j)
            if frame.access is not None:  # a call in a FROM list
                self.range_functions = True
        elif j > i + 1:
            prefix, _, last = name.rpartition(".")
            self.qualified_refs.append((prefix, last))
        return j

    def attribute(self, i: int) -> None:
        """A "." at ``i``: ``(expr).f`` is a field of a composite value, or the call f(expr)."""
        if self.tok(i - 1)[0] == ")" and self.tok(i + 1)[0] in ("w", "q"):
            self.functions.add(self.tokens[i + 1][1].lower())

    def _attribute_calls(self) -> None:
        """Record ``x.f`` as a possible call of ``f`` when ``x`` is no table's name.

        With a function in FROM (``FROM lower(?) AS s``), ``s`` is a value,
        not a row of a table, and ``s.f`` calls ``f(s)`` on PostgreSQL.  A
        prefix that names a table, a table's alias or a CTE is a column
        reference (a call on a whole table row is only possible for functions
        taking that row type).  Over-reports: a subquery's alias counts as
        unknown here.
        """
        reads = [read for read, _ in self.reads]
        if not self.range_functions and VALUE_FUNCTIONS.isdisjoint(reads):
            return
        known = {
            alias for alias, names in self.aliases.items() if not names <= VALUE_FUNCTIONS
        } | {cte for cte, _, _ in self.ctes}
        for name in [*reads, *self.writes]:
            if name not in VALUE_FUNCTIONS:
                known.add(name)
                known.add(name.rpartition(".")[2])
        for prefix, last in self.qualified_refs:
            if prefix not in known and prefix.rpartition(".")[2] not in known:
                self.functions.add(last)

    # Word rules: (index, upper, frame, expect) -> (next index, expect) or None.

    def on_from(self, i: int, upper: str | None, frame: _Frame, expect: str | None) -> _Step:
        before = self.tok(i - 1)[2]
        if frame.call or (before == "DISTINCT" and self.tok(i - 2)[2] in ("IS", "NOT")):
            pass
        elif frame.delete_from:
            frame.delete_from = False
            frame.access = expect = "write"
        else:
            frame.access = expect = "read"
        return i + 1, expect

    def on_join(self, i: int, upper: str | None, frame: _Frame, expect: str | None) -> _Step:
        if upper == "STRAIGHT_JOIN" and self.tok(i - 1)[2] == "SELECT":
            return None
        return i + 1, frame.access or "read"

    def on_using(self, i: int, upper: str | None, frame: _Frame, expect: str | None) -> _Step:
        if self.tok(i + 1)[0] != "(":
            frame.access = expect = "read"
        return i + 1, expect

    def on_into(self, i: int, upper: str | None, frame: _Frame, expect: str | None) -> _Step:
        frame.access = None
        if len(self.frames) == 1:
            self.select_into = True
        return i + 1, "target"

    def on_clause_end(self, i: int, upper: str | None, frame: _Frame, expect: str | None) -> _Step:
        frame.access = None
        if upper == "SELECT":
            frame.call = False
        elif upper == "FOR" and self.tok(i + 1)[2] in ("UPDATE", "SHARE", "NO", "KEY"):
            self.locks = True
        return i + 1, expect

    def on_table(self, i: int, upper: str | None, frame: _Frame, expect: str | None) -> _Step:
        if not self.is_query_start(i):
            return None
        return i + 1, "read"  # TABLE x is SELECT * FROM x

    def on_lock(self, i: int, upper: str | None, frame: _Frame, expect: str | None) -> _Step:
        if self.tok(i + 1)[2] == "IN" and self.tok(i + 2)[2] == "SHARE":
            self.locks = True
        return i + 1, expect

    def on_with(self, i: int, upper: str | None, frame: _Frame, expect: str | None) -> _Step:
        following = self.tok(i + 1)
        after = self.tok(i + 2)
        if following[2] == "RECURSIVE" or (
            following[0] in ("w", "q") and (after[2] == "AS" or after[0] == "(")
        ):
            self.parse_ctes(i)
        return i + 1, expect

    def on_insert(self, i: int, upper: str | None, frame: _Frame, expect: str | None) -> _Step:
        if not self.is_statement_start(i) or self.tok(i + 1)[0] == "(":
            return None
        if len(self.frames) > 1:
            self.nested_kinds.append("insert")
        i += 1
        while True:
            word = self.tok(i)[2]
            if word == "OR":
                i += 2
            elif word in INSERT_MODIFIERS or word == "INTO":
                i += 1
            else:
                break
        return i, "target"

    def on_update(self, i: int, upper: str | None, frame: _Frame, expect: str | None) -> _Step:
        if not self.is_statement_start(i):
            return None
        if len(self.frames) > 1:
            self.nested_kinds.append("update")
        i += 1
        if self.tok(i)[2] == "OR":
            i += 2
        frame.access = "write"
        return i, "target"

    def on_delete(self, i: int, upper: str | None, frame: _Frame, expect: str | None) -> _Step:
        if not self.is_statement_start(i):
            return None
        if len(self.frames) > 1:
            self.nested_kinds.append("delete")
        i += 1
        j = i
        while self.tok(j)[2] in ("LOW_PRIORITY", "QUICK", "IGNORE"):
            j += 1
        if self.tok(j)[2] == "FROM":
            frame.delete_from = True
            return j, expect
        return self.delete_targets(i), expect

    def on_merge(self, i: int, upper: str | None, frame: _Frame, expect: str | None) -> _Step:
        if not self.is_statement_start(i):
            return None
        i += 1
        while self.tok(i)[2] in ("INTO", "TABLE", "ONLY"):
            i += 1
        return i, "target"

    def _is_call(self, index: int, upper: str | None) -> bool:
        if index in self.not_calls or upper in NOT_A_CALL:
            return False
        before = self.tok(index - 1)
        return before[2] != "AS" and before[1] != "::"

    def tables_read(self) -> frozenset[str]:
        """Names read outside the scope of a CTE of the same name.

        Each name's CTE scopes are merged into sorted, disjoint intervals, so
        a read is looked up by bisection: ``O((reads + ctes) log ctes)``, not
        ``reads x ctes``.
        """
        scopes: dict[str, list[tuple[int, int]]] = {}
        for cte, start, end in self.ctes:
            scopes.setdefault(cte, []).append((start, end))
        starts: dict[str, list[int]] = {}
        ends: dict[str, list[int]] = {}
        for cte, intervals in scopes.items():
            merged: list[list[int]] = []
            for start, end in sorted(intervals):
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            starts[cte] = [start for start, _ in merged]
            ends[cte] = [end for _, end in merged]

        def is_cte(name: str, index: int) -> bool:
            if name not in starts:
                return False
            at = bisect.bisect_right(starts[name], index) - 1
            return at >= 0 and index < ends[name][at]

        return frozenset(name for name, index in self.reads if not is_cte(name, index))

    def tables_written(self) -> frozenset[str]:
        written: set[str] = set()
        for name in self.writes:
            written |= self.aliases.get(name, {name})
        return frozenset(written)


# Word -> rule, in the order the rules used to be tried as one if/elif chain:
# the first rule listed for a word wins.  A rule that does not apply (None)
# leaves the word to be read as a name; no word has a second rule to fall to.
def _word_rules() -> dict[str, Callable[..., _Step]]:
    rules: dict[str, Callable[..., _Step]] = {}
    for words, rule in (
        (("FROM",), Scanner.on_from),
        (("JOIN", "STRAIGHT_JOIN"), Scanner.on_join),
        (("USING",), Scanner.on_using),
        (("INTO",), Scanner.on_into),
        (sorted(CLAUSE_END), Scanner.on_clause_end),
        (("TABLE",), Scanner.on_table),
        (("LOCK",), Scanner.on_lock),
        (("WITH",), Scanner.on_with),
        (("INSERT", "REPLACE"), Scanner.on_insert),
        (("UPDATE",), Scanner.on_update),
        (("DELETE",), Scanner.on_delete),
        (("MERGE", "TRUNCATE"), Scanner.on_merge),
    ):
        for word in words:
            rules.setdefault(word, rule)
    return rules


_WORD_RULES = _word_rules()
