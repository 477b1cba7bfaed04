"""The layout of server/sql: one concept per module, light imports, the scanner's word rules.

Behaviour of each module is tested where it always was (test_policy.py,
test_table_rules.py, test_statement_text_guard.py, test_session_guard.py,
test_table_extraction_oracle.py, tests/server/test_writes.py); this file checks what
the split itself promises.
"""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import pytest

from session_proxy_server.sql.keywords import CLAUSE_END
from session_proxy_server.sql.lexer import lex, split_statements
from session_proxy_server.sql.scanner import _WORD_RULES, Scanner

ROOT = pathlib.Path(__file__).resolve().parents[3]
INSTALL_NAMES = {"server": "session_proxy_server", "benchmarks": "session_proxy_bench"}


OLD_MODULES = frozenset(
    f"session_proxy_server.{name}"
    for name in ("policy", "sql_tables", "statement_guard", "session_guard", "writes")
)


def _imported_modules(path: pathlib.Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts[:-1] or ("",)
    package = ".".join([INSTALL_NAMES.get(folder, folder), *rest])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = node.module or ""
            prefix = f"{base}.{module}" if node.level else module
            names.add(prefix.rstrip("."))
            names.update(f"{prefix.rstrip('.')}.{alias.name}" for alias in node.names)
    return names


def test_nothing_imports_the_old_module_paths() -> None:
    """No shim is left, so a stale import would fail at run time: find it here first."""
    stale = {
        f"{path.relative_to(ROOT)}: {name}"
        for folder in ("server", "benchmarks", "tests", "session_proxy")
        for path in (ROOT / folder).rglob("*.py")
        for name in _imported_modules(path)
        if name in OLD_MODULES
    }
    assert not stale
    assert not any(
        (ROOT / "server" / (name.split(".", 1)[1].replace(".", "/") + ".py")).exists()
        for name in OLD_MODULES
    )


def test_the_lexer_imports_neither_sqlglot_nor_the_policy() -> None:
    """The guards need only the lexer; importing it must not pull in the parser or the policy."""
    code = (
        "import sys, session_proxy_server.sql.lexer, session_proxy_server.sql.session_guard; "
        "print(sorted(m for m in sys.modules"
        " if m.startswith(('sqlglot', 'session_proxy_server.sql.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    assert "sqlglot" not in out
    assert "session_proxy_server.sql.policy" not in out
    assert "session_proxy_server.sql.lexer" in out


def test_each_word_keeps_the_rule_the_old_if_chain_gave_it() -> None:
    """INTO is also a clause end: its own rule must win, as when it was tested first."""
    assert _WORD_RULES["INTO"] is Scanner.on_into
    assert _WORD_RULES["FROM"] is Scanner.on_from
    for word in CLAUSE_END - {"INTO"}:
        assert _WORD_RULES[word] is Scanner.on_clause_end, word
    assert _WORD_RULES["REPLACE"] is Scanner.on_insert
    assert _WORD_RULES["TRUNCATE"] is Scanner.on_merge


@pytest.mark.parametrize(
    ("sql", "read", "written"),
    [
        # STRAIGHT_JOIN right after SELECT is a modifier, read as a name: no table expected.
        ("SELECT STRAIGHT_JOIN a FROM t", {"t"}, set()),
        ("SELECT a FROM t STRAIGHT_JOIN u ON t.id = u.id", {"t", "u"}, set()),
        # TABLE not at a query start is a name; at one it reads the table.
        ("TABLE t", {"t"}, set()),
        ("SELECT table_name FROM x", {"x"}, set()),
        # INSERT ( ... ) is not an insert statement; INSERT OR IGNORE INTO is.
        ("INSERT OR IGNORE INTO t (a) SELECT a FROM u", {"u"}, {"t"}),
        ("DELETE QUICK FROM t WHERE a IN (SELECT a FROM u)", {"u"}, {"t"}),
        ("SELECT a INTO newt FROM t", {"t"}, {"newt"}),
    ],
)
def test_word_rules_that_do_not_apply_fall_back_to_names(
    sql: str, read: set[str], written: set[str]
) -> None:
    (statement,) = split_statements(lex(sql)[0])
    scanner = Scanner(statement)
    scanner.run()
    assert scanner.tables_read() == frozenset(read)
    assert scanner.tables_written() == frozenset(written)
