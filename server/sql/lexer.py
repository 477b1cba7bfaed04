"""The tokenizer: SQL text to a flat list of tokens, noting what backends read differently.

:func:`lex` is a hand-written, single-pass tokenizer (a few regular
expressions for words, numbers and operators; hand-written scanning for
strings, quoted identifiers, dollar quotes and comments).  It never builds a
parse tree; the fingerprint, the classifier and both guards work on its
flat token list, so they all agree on where strings, identifiers and
comments end.

*Dialect ambiguity.*  The three databases lex some constructs differently:
MySQL honours backslash escapes in ``'...'`` and ``"..."`` and treats ``#``
as a comment and ``/*! ... */`` as code; PostgreSQL nests block comments and
knows dollar quotes; SQLite reads ``[...]`` as an identifier and ``$name``
as a parameter; the pyformat drivers substitute ``%s`` even inside string
literals.  Told no dialect, :func:`lex` reads the text every way at once and
reports the first such construct; told a dialect, it reads the text as that
backend does and reports what the backend might still read differently.

Cost is linear in the length of the text (parenthesis nesting is capped at
:data:`MAX_NESTING`).  Do not use the tokens to execute or rewrite SQL:
comments are dropped and literals are kept only as text.
"""

from __future__ import annotations

import re

__all__ = [
    "DIALECTS",
    "MAX_NESTING",
    "NestingTooDeep",
    "Token",
    "lex",
    "split_statements",
]

# Token kinds: "w" word, "q" quoted identifier, "l" literal, "p" placeholder,
# "o" operator, and the punctuation "(", ")", ",", ";", ".".
# A token is (kind, text, upper); upper is the upper-cased text of a word
# and None otherwise, so quoted identifiers never match a keyword.
Token = tuple[str, str, "str | None"]

_WHITESPACE = " \t\n\r\f\v"
_WS_RE = re.compile(r"[ \t\n\r\f\v]+")
_WORD_RE = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
_IDENT_CHAR_RE = re.compile(r"[A-Za-z0-9_$\x80-\U0010ffff]")
_NUMBER_RE = re.compile(r"0[xX][0-9A-Fa-f]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DIGITS_WORD_RE = re.compile(r"\d[A-Za-z0-9_$\x80-\U0010ffff]*")
_DOLLAR_TAG_RE = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_DOLLAR_PARAM_RE = re.compile(r"\$(?:\d+|[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)")
_QMARK_RE = re.compile(r"\?\d*")
_COLON_PARAM_RE = re.compile(r":[A-Za-z0-9_\x80-\U0010ffff]+")
_PYFORMAT_RE = re.compile(r"%\([^)]*\)s")
_POSTCOMPILE_RE = re.compile(r"__\[POSTCOMPILE_[^\]]*\]")
_OP_RE = re.compile(
    r"->>|#>>|<=>|!~\*|->|#>|#-|<=|>=|<>|!=|==|\|\||@>|<@|&&|<<|>>|~\*|!~|@@|.", re.S
)
_BACKSLASH_STOP = {"'": re.compile(r"[\\']"), '"': re.compile(r'[\\"]')}
_DRIVER_FORMAT_RE = re.compile(r"%(?:%|\(|s)|__\[POSTCOMPILE_")


def _quote_end(sql: str, start: int, quote: str, limit: int | None = None) -> int:
    """End (exclusive) of a quoted token read the standard way ('' escapes), or -1.

    With ``limit``, -1 also when the token would end after ``limit`` (the scan
    stops there, so checking a second reading never costs more than the first).
    """
    pos = start + 1
    stop = len(sql) if limit is None else limit
    while True:
        end = sql.find(quote, pos, stop)
        if end < 0:
            return -1
        if sql.startswith(quote, end + 1):
            pos = end + 2
            continue
        return end + 1


def _backslash_quote_end(sql: str, start: int, quote: str, limit: int | None = None) -> int:
    """End (exclusive) of a quoted token read with backslash escapes, or -1.

    ``limit`` as for :func:`_quote_end`.
    """
    stop = _BACKSLASH_STOP[quote]
    pos = start + 1
    endpos = len(sql) if limit is None else limit
    while True:
        match = stop.search(sql, pos, endpos)
        if match is None:
            return -1
        end = match.start()
        if sql[end] == "\\":
            pos = end + 2
        elif sql.startswith(quote, end + 1):
            pos = end + 2
        else:
            return end + 1


#: Deepest parenthesis nesting a statement may have.  SQLAlchemy's own
#: statements stay far below it; the limit keeps the fingerprint's cost linear.
MAX_NESTING = 200

#: The dialects :func:`lex` can read exactly (``None``: every reading at once).
DIALECTS = ("postgresql", "mysql", "sqlite")

# MySQL: "--" starts a comment only before these.
_MYSQL_COMMENT_FOLLOW = " \t\n\r"
# Letters that, right before a quote, make one literal with it (E'..', X'..').
_STRING_PREFIXES = {
    None: "eEnNxXbB", "postgresql": "eEnNxXbB", "mysql": "nNxXbB", "sqlite": "xX"
}
_PG_COMMENT_RE = re.compile(r"/\*|\*/")
_SAFE_PERCENT_RE = re.compile(r"%%|%s|%\([^()%]*\)s")
# First characters that may start a comment, quoted text or a parameter.
_COMMENT_STARTS = "-/#"
_QUOTES = "'\"`["
_PARAMETER_STARTS = "$?%:_"


_UNICODE_ESCAPE_RE = re.compile(r"\\(?:\\|\+([0-9a-fA-F]{6})|([0-9a-fA-F]{4}))")


def _unicode_unescape(body: str) -> str:
    """The text of a PostgreSQL ``U&"..."`` body (default escape character ``\\``).

    ``\\XXXX`` and ``\\+XXXXXX`` are code points, ``\\\\`` is a backslash;
    anything else is left as written (PostgreSQL refuses it).  ``UESCAPE``
    (another escape character) is refused by the session guard.
    """
    if "\\" not in body:
        return body

    def one(match: re.Match[str]) -> str:
        code = match.group(1) or match.group(2)
        if code is None:
            return "\\"
        try:
            return chr(int(code, 16))
        except (ValueError, OverflowError):
            return match.group()

    return _UNICODE_ESCAPE_RE.sub(one, body)


#: Where a "--" comment ends on PostgreSQL.
_LINE_END_RE = re.compile("[\r\n]")


class NestingTooDeep(ValueError):
    """A statement nests parentheses deeper than :data:`MAX_NESTING`."""


class _Lexer:
    """One tokenization; see :func:`lex`.

    ``dialect`` None reads the text every supported way at once and notes
    (in :attr:`ambiguity`) any construct one of them reads differently.
    With a dialect it reads the text the way that backend does, and notes
    what that backend might still read differently from this lexer (a
    session setting can change it, or the lexer does not model it).
    ``pyformat`` (pyformat drivers only) says whether the driver will run
    ``%`` substitution on the text: True when parameters are passed.
    """

    __slots__ = (
        "sql", "dialect", "pyformat", "tokens", "ambiguity", "zones", "depth",
        "_newline", "_bracket",
    )

    def __init__(self, sql: str, dialect: str | None = None, pyformat: bool | None = None) -> None:
        self.sql = sql
        self.dialect = dialect
        self.pyformat = pyformat
        self.tokens: list[Token] = []
        self.ambiguity: str | None = None
        # Spans another dialect reads as one token ending earlier: "#" to end
        # of line (MySQL comment) and "[" to "]" (SQLite identifier), as
        # zone end -> earliest start of the zones still open.
        self.zones: dict[int, int] = {}
        self.depth = 0
        # Cached positions of the next "\n" and "]" (keeps repeated "#" and
        # "[" linear).
        self._newline = -1
        self._bracket = -1

    def note(self, problem: str) -> None:
        if self.ambiguity is None:
            self.ambiguity = problem

    def _next(self, char: str, start: int, cache: int) -> int:
        if cache >= start or cache == len(self.sql):
            return cache
        found = self.sql.find(char, start)
        return len(self.sql) if found < 0 else found

    def long_token(self, start: int, end: int, body: str) -> None:
        """Checks on a string, quoted identifier or comment spanning [start, end)."""
        if self.zones:
            for zone_end in [e for e in self.zones if e <= start]:
                del self.zones[zone_end]
            for zone_end, zone_start in self.zones.items():
                if zone_start < start < zone_end < end:
                    self.note(
                        "quoted text or comment crossing a '#' comment or '[...]' identifier"
                    )
        if "%" not in body and "__[" not in body:
            return
        if self.pyformat is None:
            if any(m.group() != "%%" for m in _DRIVER_FORMAT_RE.finditer(body)):
                self.note("driver placeholder inside quoted text or a comment")
        elif self.pyformat and body.replace("%%", "").find("%") >= 0:
            self.note(
                "'%' inside quoted text or a comment: the driver substitutes parameters there"
            )

    def quoted(self, start: int, body_start: int, quote: str, backslash: bool, exact: bool) -> int:
        """Scan a '...' or "..." token; return its end.

        ``backslash``: this dialect reads backslash escapes.  Unless ``exact``
        (the backend always reads the token this way), a token the other
        reading would end elsewhere is noted.
        """
        sql = self.sql
        read, other = (
            (_backslash_quote_end, _quote_end) if backslash else (_quote_end, _backslash_quote_end)
        )
        end = read(sql, body_start, quote)
        if end < 0:
            self.note("unterminated quoted text")
            end = len(sql)
        elif not exact and sql.find("\\", body_start, end) >= 0:
            if other(sql, body_start, quote, end) != end:
                self.note("backslash escape in quoted text")
        self.long_token(start, end, sql[body_start + 1 : end - 1])
        return end

    def line_comment(self, i: int) -> int:
        """End of the "--" comment at ``i``."""
        sql, dialect = self.sql, self.dialect
        n = len(sql)
        if dialect == "postgresql":
            # PostgreSQL ends the comment at CR or LF.  Search for either at
            # once: looking for LF alone scanned to the end of a text of
            # "-- \r" repeated, for every comment (quadratic).
            found = _LINE_END_RE.search(sql, i)
            end = n if found is None else found.start()
            self.long_token(i, end, sql[i:end])
            return end
        newline = sql.find("\n", i)
        end = n if newline < 0 else newline
        carriage = sql.find("\r", i, end)
        if dialect is None:
            if 0 <= carriage < end - 1:
                self.note("carriage return inside a '--' comment")
            if i + 2 < n and sql[i + 2] not in _WHITESPACE:
                self.note("'--' comment without a following space")
        elif dialect == "mysql" and i + 2 < n and sql[i + 2] not in _MYSQL_COMMENT_FOLLOW:
            self.note("'--' without a following space: MySQL reads two minus signs")
        self.long_token(i, end, sql[i:end])
        return end

    def block_comment(self, i: int) -> int:
        """End of the "/*" comment at ``i``."""
        sql, dialect = self.sql, self.dialect
        n = len(sql)
        if dialect in (None, "mysql") and sql.startswith(("/*!", "/*M!"), i):
            self.note("MySQL executable comment")
        if dialect == "postgresql":  # nested, exactly as PostgreSQL reads them
            level = 0
            end = -1
            for match in _PG_COMMENT_RE.finditer(sql, i):
                level += 1 if match.group() == "/*" else -1
                if level == 0:
                    end = match.end()
                    break
            if end < 0:
                self.note("unterminated comment")
                end = n
        else:
            close = sql.find("*/", i + 2)
            if close < 0:
                if dialect != "sqlite":  # SQLite ends it with the text
                    self.note("unterminated comment")
                end = n
            else:
                end = close + 2
            if dialect != "sqlite" and sql.find("/*", i + 2, end) >= 0:
                self.note("nested block comment")
        self.long_token(i, end, sql[i:end])
        return end

    def percent(self, i: int) -> int:
        """A "%" outside quotes and comments; returns the index after its token."""
        sql = self.sql
        out = self.tokens.append
        if self.pyformat is not None:
            match = _SAFE_PERCENT_RE.match(sql, i)
            if self.pyformat and match is None:
                self.note(
                    "'%' the driver would read as a format directive "
                    "(only %s, %(name)s and %% are placeholders or literal '%')"
                )
            elif not self.pyformat and match is not None:
                self.note(
                    f"{match.group()!r} in a statement sent without parameters: "
                    "the driver leaves it as it is"
                )
        nxt = sql[i + 1] if i + 1 < len(sql) else ""
        match = _PYFORMAT_RE.match(sql, i)
        if match is not None:
            out(("p", match.group(), None))
            return match.end()
        if nxt == "s":
            out(("p", "%s", None))
            return i + 2
        out(("o", "%", None))
        return i + 2 if nxt == "%" else i + 1

    def run(self) -> None:
        """Tokenize :attr:`sql` into :attr:`tokens`.

        One pass over the text.  The first character of a token picks the
        helpers that may read it, tried in a fixed order (comments, quoted
        text, parameters, words and numbers, punctuation and operators); a
        helper returns the index after its token, or -1 when the text at
        ``i`` is not of its kind.
        """
        sql = self.sql
        n = len(sql)
        if "\x00" in sql:
            self.note("NUL character")
        i = 0
        while i < n:
            c = sql[i]
            if c in _WHITESPACE:
                i = _WS_RE.match(sql, i).end()
                continue
            nxt = sql[i + 1] if i + 1 < n else ""
            end = -1
            if c in _COMMENT_STARTS:
                end = self.comment(i, c, nxt)
            if end < 0 and (c in _QUOTES or nxt == "'" or nxt == "&"):
                end = self.string(i, c, nxt)
                if end < 0:
                    end = self.quoted_identifier(i, c)
            if end < 0 and c in _PARAMETER_STARTS:
                end = self.parameter(i, c, nxt)
            if end < 0:
                end = self.word_or_number(i, c, nxt)
            if end < 0:
                end = self.symbol(i, c)
            i = end

    def comment(self, i: int, c: str, nxt: str) -> int:
        """A ``--``, ``/* */`` or (MySQL) ``#`` comment at ``i``: its end, or -1."""
        if c == "-" and nxt == "-":
            return self.line_comment(i)
        if c == "/" and nxt == "*":
            return self.block_comment(i)
        if c == "#" and self.dialect == "mysql":
            sql = self.sql
            newline = sql.find("\n", i)
            end = len(sql) if newline < 0 else newline
            self.long_token(i, end, sql[i:end])
            return end
        return -1

    def string(self, i: int, c: str, nxt: str) -> int:
        """A string literal at ``i`` (``'...'``, ``E'...'``, ``U&'...'``): its end, or -1."""
        sql, dialect = self.sql, self.dialect
        out = self.tokens.append
        if c == "'":
            end = self.quoted(i, i, "'", backslash=dialect == "mysql", exact=dialect == "sqlite")
            out(("l", sql[i:end], None))
            return end
        if nxt == "'" and c in _STRING_PREFIXES[dialect]:
            if dialect is None and c not in "xX":
                self.note(f"{c}'...' is a name and a string on SQLite and MySQL")
            # E'...' reads escapes in PostgreSQL; MySQL reads them everywhere.
            escaped = c in "eE" and dialect != "mysql"
            end = self.quoted(
                i, i + 1, "'", backslash=escaped or dialect == "mysql",
                exact=escaped and dialect == "postgresql",
            )
            out(("l", sql[i:end], None))
            return end
        if c in "uU" and nxt == "&" and i + 2 < len(sql) and sql[i + 2] in "'\"" and dialect in (
            None, "postgresql"
        ):
            quote = sql[i + 2]
            if dialect is None:
                self.note("U&'...' is U & '...' on SQLite and MySQL")
            end = self.quoted(i, i + 2, quote, backslash=False, exact=False)
            body = sql[i + 3 : end - 1]
            if quote == '"':
                # The name PostgreSQL reads: U&"conn\0065ction" is connection.
                body = _unicode_unescape(body.replace('""', '"'))
            out(("l" if quote == "'" else "q", body, None))
            return end
        return -1

    def quoted_identifier(self, i: int, c: str) -> int:
        """A ``"..."``, ```...``` or (SQLite) ``[...]`` identifier at ``i``: its end, or -1."""
        sql, dialect = self.sql, self.dialect
        out = self.tokens.append
        if c == '"':
            end = self.quoted(
                i, i, '"', backslash=dialect == "mysql",
                exact=dialect in ("sqlite", "postgresql"),
            )
            out(("q", sql[i + 1 : end - 1].replace('""', '"'), None))
            return end
        if c == "`":
            end = _quote_end(sql, i, "`")
            if end < 0:
                self.note("unterminated quoted identifier")
                end = len(sql)
            self.long_token(i, end, sql[i + 1 : end - 1])
            out(("q", sql[i + 1 : end - 1].replace("``", "`"), None))
            return end
        if c == "[" and dialect == "sqlite":
            close = sql.find("]", i + 1)
            if close < 0:
                self.note("unterminated quoted identifier")
                close = len(sql) - 1
            self.long_token(i, close + 1, sql[i + 1 : close])
            out(("q", sql[i + 1 : close], None))
            return close + 1
        return -1

    def parameter(self, i: int, c: str, nxt: str) -> int:
        """A placeholder (or dollar quote, ``%``, ``:`` operator) at ``i``: its end, or -1."""
        sql = self.sql
        if c == "$":
            return self.dollar(i)
        if c == "?":
            end = _QMARK_RE.match(sql, i).end()
            self.tokens.append(("p", sql[i:end], None))
            return end
        if c == "%":
            return self.percent(i)
        if c == ":":
            return self.colon(i, nxt)
        if c == "_" and sql.startswith("__[POSTCOMPILE_", i):
            match = _POSTCOMPILE_RE.match(sql, i)
            if match is not None:
                self.tokens.append(("p", match.group(), None))
                return match.end()
        return -1

    def dollar(self, i: int) -> int:
        """A dollar-quoted string or ``$name`` parameter at ``i``: its end, or -1."""
        sql, dialect = self.sql, self.dialect
        if dialect in ("mysql", "sqlite"):
            self.note(
                "'$' outside quotes (a MySQL identifier, a SQLite parameter, "
                "a PostgreSQL dollar quote)"
            )
        match = _DOLLAR_TAG_RE.match(sql, i)
        if match is not None:
            tag = match.group()
            close = sql.find(tag, match.end())
            if dialect != "postgresql" or close < 0:
                self.note("dollar-quoted string" if close >= 0 else "unterminated quoted text")
            end = len(sql) if close < 0 else close + len(tag)
            self.long_token(i, end, sql[match.end() : max(match.end(), end - len(tag))])
            self.tokens.append(("l", sql[i:end], None))
            return end
        match = _DOLLAR_PARAM_RE.match(sql, i)
        if match is not None:
            self.tokens.append(("p", match.group(), None))
            return match.end()
        return -1

    def colon(self, i: int, nxt: str) -> int:
        """``::``, ``:=``, a ``:name`` parameter or a lone ``:`` at ``i``; returns its end."""
        out = self.tokens.append
        if nxt == ":" or nxt == "=":
            out(("o", ":" + nxt, None))
            return i + 2
        match = _COLON_PARAM_RE.match(self.sql, i)
        if match is not None:
            out(("p", match.group(), None))
            return match.end()
        out(("o", ":", None))
        return i + 1

    def word_or_number(self, i: int, c: str, nxt: str) -> int:
        """A word or a number at ``i``: its end, or -1."""
        match = _WORD_RE.match(self.sql, i)
        if match is not None:
            word = match.group()
            if self.dialect is not None and not word.isascii():
                self.note("non-ASCII character outside quotes")
            self.tokens.append(("w", word, word.upper()))
            return match.end()
        if c.isdigit() or (c == "." and nxt.isdigit()):
            return self.number(i, c)
        return -1

    def number(self, i: int, c: str) -> int:
        """A number at ``i`` (or a MySQL identifier starting with digits); returns its end."""
        sql = self.sql
        out = self.tokens.append
        if c.isdigit() and self.tokens and self.tokens[-1][0] == ".":
            # MySQL identifiers may start with a digit: db.1table
            match = _DIGITS_WORD_RE.match(sql, i)
            word = match.group()
            out(("w", word, word.upper()))
            return match.end()
        match = _NUMBER_RE.match(sql, i)
        end = match.end()
        if end < len(sql) and _IDENT_CHAR_RE.match(sql, end) and c.isdigit():
            # 1abc is an identifier in MySQL.
            match = _DIGITS_WORD_RE.match(sql, i)
            word = match.group()
            out(("w", word, word.upper()))
            return match.end()
        out(("l", match.group(), None))
        return end

    def symbol(self, i: int, c: str) -> int:
        """Punctuation or an operator at ``i`` (anything else is one); returns its end."""
        if c == "(":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise NestingTooDeep(
                    f"parentheses nest deeper than {MAX_NESTING} levels "
                    f"(at character {i})"
                )
        elif c == ")" and self.depth > 0:
            self.depth -= 1
        if c in "(),;.":
            self.tokens.append((c, c, None))
            return i + 1
        dialect = self.dialect
        if dialect is None:
            if c == "#":
                self._newline = self._next("\n", i, self._newline)
                self.zones.setdefault(self._newline, i)
            elif c == "[":
                self._bracket = self._next("]", i + 1, self._bracket)
                self.zones.setdefault(self._bracket, i)
        elif (c == "#" or c == "@") and dialect == "sqlite":
            self.note(f"{c!r} outside quotes (a SQLite parameter)")
        end = _OP_RE.match(self.sql, i).end()
        self.tokens.append(("o", self.sql[i:end], None))
        return end


def lex(
    sql: str, dialect: str | None = None, pyformat: bool | None = None
) -> tuple[tuple[Token, ...], str | None]:
    """Tokens of ``sql`` (comments dropped) and the first ambiguity found.

    ``dialect`` None notes every construct some supported backend reads
    differently; a dialect name reads the text as that backend does (see
    :class:`_Lexer`).  Raises :class:`NestingTooDeep` past :data:`MAX_NESTING`.
    Linear in ``len(sql)``.
    """
    lexer = _Lexer(sql, dialect, pyformat)
    lexer.run()
    return tuple(lexer.tokens), lexer.ambiguity


def split_statements(tokens: tuple[Token, ...]) -> list[tuple[Token, ...]]:
    """The statements of ``tokens``: split at each ``;``, empty statements dropped."""
    statements: list[tuple[Token, ...]] = []
    start = 0
    for index, token in enumerate(tokens):
        if token[0] == ";":
            if index > start:
                statements.append(tokens[start:index])
            start = index + 1
    if start < len(tokens):
        statements.append(tokens[start:])
    return statements
