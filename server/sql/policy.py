"""The SQL firewall: per-role allowlists of statement fingerprints and table rules.

:class:`Policy` maps role names to :class:`RolePolicy` and is loaded from
JSON (see :meth:`Policy.load` for the schema).  :meth:`Policy.check_statement`
decides whether a role may run a statement without talking to the database,
from its :func:`~session_proxy_server.sql.fingerprint.fingerprint` and what
:func:`~session_proxy_server.sql.classify.classify` finds: text that dialects read
differently is refused for every role without ``allow_all``; otherwise a
listed fingerprint, or table rules every table and function of the statement
meets.  Violations raise :class:`PolicyViolation`.

The policy is one layer: the statement text guard
(:mod:`session_proxy_server.sql.text_guard`) and the isolation guard
(:mod:`session_proxy_server.sql.session_guard`) run before it on every backend, with or
without a policy, and do not depend on any role's rules.  To build a policy
from a workload, see :mod:`session_proxy_server.sql.recorder`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from .classify import classify
from .fingerprint import fingerprint
from .tables import ParseBudgetExceeded, rule_access

__all__ = [
    "ACCESS_LEVELS",
    "POLICY_VERSION",
    "SAFE_FUNCTIONS",
    "STARTUP_STATEMENTS",
    "Policy",
    "PolicyViolation",
    "RolePolicy",
]

POLICY_VERSION = 1
ACCESS_LEVELS = ("none", "read", "write")

#: The read-only statements SQLAlchemy's dialects run when an engine first
#: connects (server version, default schema, isolation level, SQL mode).
#: Every role the policy names may run them, so a hand-written policy of
#: table rules works without listing them.
STARTUP_STATEMENTS = (
    "PRAGMA read_uncommitted",
    "SELECT pg_catalog.version()",
    "SELECT current_schema()",
    "SHOW TRANSACTION ISOLATION LEVEL",
    "SHOW standard_conforming_strings",
    "SELECT VERSION()",
    "SELECT DATABASE()",
    "SELECT @@sql_mode",
    "SELECT @@tx_isolation",
    "SELECT @@transaction_isolation",
    "SELECT @@lower_case_table_names",
)

#: Functions a role may call when a statement is allowed by table rules
#: (allowlisted fingerprints may call anything they contain).  Extend per
#: role with the ``functions`` key of the policy file.
SAFE_FUNCTIONS = frozenset(
    """
    abs any_value array_agg array_length avg bool_and bool_or cardinality cast
    ceil ceiling char char_length character_length coalesce concat concat_ws
    convert count cume_dist current_date current_time current_timestamp date
    date_add date_part date_sub date_trunc datetime dense_rank every exp
    extract first_value floor format from_unixtime gen_random_uuid
    generate_series greatest group_concat hex if ifnull iif instr
    json_array json_array_length json_build_array json_build_object
    json_contains json_each json_extract json_object json_quote json_tree
    json_type json_unquote json_valid jsonb_array_elements jsonb_build_array
    jsonb_build_object jsonb_each jsonb_extract_path jsonb_extract_path_text
    jsonb_typeof julianday lag last_value lead least left length ln localtime
    localtimestamp log lower lpad ltrim max md5 min mod now nth_value ntile
    nullif octet_length overlay percent_rank position power printf random rank
    regexp_replace repeat replace reverse right round row row_number rpad rtrim
    sign sqrt strftime string_agg substr substring sum timestamp
    timestampdiff timezone to_char to_date to_number to_timestamp total trim
    trunc typeof unixepoch unnest upper utc_timestamp uuid nextval
    """.split()
)



_STARTUP_FINGERPRINTS = frozenset(fingerprint(sql) for sql in STARTUP_STATEMENTS)
# Room for the case and spacing a dialect may send them with.
_STARTUP_MAX_CHARS = 2 * max(len(sql) for sql in STARTUP_STATEMENTS)


class PolicyViolation(Exception):
    """A role tried something its policy does not allow.

    :param message: human-readable; names the role and, for statements, the
        fingerprint.
    :param fingerprint: fingerprint of the refused statement ("" for
        operations).
    :param reason: one of ``unknown_role``, ``no_permission``, ``ambiguous``,
        ``multi_statement``, ``ddl``, ``not_allowlisted``, ``table_access``,
        ``function``, ``operation``.
    """

    #: The index of the refused step (set by server.security for statements).
    step: int | None = None

    def __init__(self, message: str, fingerprint: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.fingerprint = fingerprint
        self.reason = reason

    def __str__(self) -> str:
        return self.message


_ROLE_KEYS = (
    "allow_all",
    "allow_ddl",
    "allow_multi_statement",
    "functions",
    "metrics",
    "operations",
    "statements",
    "tables",
)
_TOP_KEYS = ("roles", "version")


@dataclasses.dataclass(frozen=True)
class RolePolicy:
    """What one role may do.  See :meth:`Policy.load` for the meaning of each field."""

    statements: frozenset[str] = frozenset()
    tables: Mapping[str, str] = dataclasses.field(default_factory=dict)
    functions: frozenset[str] = frozenset()
    operations: frozenset[str] = frozenset()
    allow_ddl: bool = False
    allow_multi_statement: bool = False
    allow_all: bool = False
    #: May read ``/v1/metrics`` (``allow_all`` may too).
    metrics: bool = False

    def table_access(self, table: str) -> str:
        """``"none"``, ``"read"`` or ``"write"`` for ``table`` ("*" is the default).

        ``table`` may be qualified (``public.task``, ``db.public.task``); see
        :func:`session_proxy_server.sql.tables.rule_access` for how it meets the rules.
        """
        return rule_access(self.tables, table)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: only the keys that differ from the defaults."""
        if self.allow_all:
            return {"allow_all": True}
        data: dict[str, Any] = {
            "statements": sorted(self.statements),
            "operations": sorted(self.operations),
        }
        if self.tables:
            data["tables"] = dict(sorted(self.tables.items()))
        if self.functions:
            data["functions"] = sorted(self.functions)
        if self.allow_ddl:
            data["allow_ddl"] = True
        if self.allow_multi_statement:
            data["allow_multi_statement"] = True
        if self.metrics:
            data["metrics"] = True
        return data


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of strings, got {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{where}[{index}]: expected a non-empty string, got {item!r}")
    return value


def _parse_role(data: Any, where: str) -> RolePolicy:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_ROLE_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: unknown key {unknown[0]!r} (expected one of {', '.join(_ROLE_KEYS)})"
        )
    flags: dict[str, bool] = {}
    for key in ("allow_all", "allow_ddl", "allow_multi_statement", "metrics"):
        value = data.get(key, False)
        if not isinstance(value, bool):
            raise ValueError(f"{where}.{key}: expected true or false, got {value!r}")
        flags[key] = value
    statements = frozenset(
        fingerprint(s) for s in _string_list(data.get("statements", []), f"{where}.statements")
    )
    operations = frozenset(_string_list(data.get("operations", []), f"{where}.operations"))
    functions = frozenset(
        f.lower() for f in _string_list(data.get("functions", []), f"{where}.functions")
    )
    raw_tables = data.get("tables", {})
    if not isinstance(raw_tables, dict):
        raise ValueError(f"{where}.tables: expected an object, got {type(raw_tables).__name__}")
    tables: dict[str, str] = {}
    for table, access in raw_tables.items():
        if access not in ACCESS_LEVELS:
            raise ValueError(
                f"{where}.tables.{table}: access must be one of "
                f"{', '.join(repr(a) for a in ACCESS_LEVELS)}, not {access!r}"
            )
        key = table.lower()
        if key in tables:
            raise ValueError(f"{where}.tables: table {table!r} is listed twice")
        tables[key] = access
    return RolePolicy(
        statements=statements,
        tables=tables,
        functions=functions,
        operations=operations,
        **flags,
    )


class Policy:
    """Per-role SQL firewall rules.

    Build one with :meth:`load` / :meth:`from_dict`; ask it with
    :meth:`check_statement` and :meth:`check_operation`.
    """

    def __init__(self, roles: Mapping[str, RolePolicy]) -> None:
        self._roles = dict(roles)

    @property
    def roles(self) -> Mapping[str, RolePolicy]:
        """Role name -> :class:`RolePolicy`."""
        return dict(self._roles)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self._roles == other._roles

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Policy(roles={sorted(self._roles)!r})"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        """Read a policy file.  Any problem raises :class:`ValueError` naming the file.

        Schema::

            {"version": 1,
             "roles": {
               "<role>": {
                 "statements": ["<SQL or fingerprint>", ...],
                 "tables": {"<table or schema.table>": "none|read|write",
                            "*": "<default for unlisted tables>"},
                 "functions": ["<extra function allowed with table rules>"],
                 "operations": ["<logical operation name>", ...],
                 "allow_ddl": false,
                 "allow_multi_statement": false,
                 "metrics": false,
                 "allow_all": false}}}

        Every role key is optional.  ``metrics`` lets the role read
        ``/v1/metrics`` (so does ``allow_all``; see :class:`session_proxy_server.security.Gate`).
        ``statements`` are normalized with :func:`fingerprint`, so plain SQL
        works as well as fingerprints.
        Table names are compared lower-cased.
        """
        source = os.fspath(path)
        try:
            with open(source, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ValueError(f"{source}: cannot read policy file: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<policy>") -> Policy:
        """Build a policy from its parsed JSON; errors name ``source``."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_TOP_KEYS))
        if unknown:
            raise ValueError(
                f"{source}: unknown key {unknown[0]!r} (expected one of {', '.join(_TOP_KEYS)})"
            )
        version = data.get("version")
        if version != POLICY_VERSION or isinstance(version, bool):
            raise ValueError(
                f"{source}: unsupported policy version {version!r} (expected {POLICY_VERSION})"
            )
        roles = data.get("roles")
        if not isinstance(roles, dict):
            raise ValueError(f"{source}: 'roles' must be an object of role name -> rules")
        return cls(
            {name: _parse_role(rules, f"{source}: roles.{name}") for name, rules in roles.items()}
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form, with sorted lists (accepted by :meth:`from_dict`)."""
        return {
            "version": POLICY_VERSION,
            "roles": {name: self._roles[name].to_dict() for name in sorted(self._roles)},
        }

    def to_json(self) -> str:
        """Deterministic JSON text of :meth:`to_dict` (sorted keys, trailing newline)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def _role(self, role: str, fp: str) -> RolePolicy:
        rules = self._roles.get(role)
        if rules is None:
            raise PolicyViolation(f"role {role!r} is not in the policy", fp, "unknown_role")
        return rules

    def check_caller(self, role: str, sql: str) -> None:
        """The checks that come before any work on ``sql``: no lexing, no fingerprint.

        An unknown role is refused; so is a statement longer than the
        longest :data:`STARTUP_STATEMENTS` from a role that may run nothing
        else (no ``statements``, no table it may read, no ``allow_all``).
        """
        rules = self._role(role, "")
        if rules.allow_all or rules.statements or len(sql) <= _STARTUP_MAX_CHARS:
            return
        if any(access != "none" for access in rules.tables.values()):
            return
        raise PolicyViolation(
            f"statement not in the allowlist for role {role!r}: the role may run no "
            "statement but the connection start-up queries",
            "",
            "no_permission",
        )

    def check_statement(self, role: str, sql: str, dialect: str | None = None) -> None:
        """Raise :class:`PolicyViolation` unless ``role`` may run ``sql``.

        In order: an unknown role is refused; ``allow_all`` and
        :data:`STARTUP_STATEMENTS` are allowed;
        text that dialects read differently is refused; several statements
        need ``allow_multi_statement``; transaction control (BEGIN, COMMIT,
        SAVEPOINT, ...) is allowed; DDL needs ``allow_ddl``; a fingerprint in
        ``statements`` is allowed; other kinds (PRAGMA, SET, ...) and
        multi-statement text must be listed; finally, with ``tables`` rules,
        a SELECT/INSERT/UPDATE/DELETE is allowed when every table read is
        ``read`` or ``write``, every table written is ``write``, and every
        function called is in :data:`SAFE_FUNCTIONS` or ``functions``.

        ``dialect`` is the backend the statement runs on: the text is read
        exactly as that backend reads it.
        """
        fp = fingerprint(sql, dialect)
        rules = self._role(role, fp)
        if rules.allow_all or fp in _STARTUP_FINGERPRINTS:
            return
        # Without the second table extractor: only table rules need it, and
        # a role that has none must not make the server pay for it.
        info = classify(sql, dialect, tables=False)
        if info.ambiguity is not None:
            raise PolicyViolation(
                f"statement reads differently across SQL dialects ({info.ambiguity}); "
                f"refused for role {role!r}: {fp}",
                fp,
                "ambiguous",
            )
        if info.is_multi_statement and not rules.allow_multi_statement:
            raise PolicyViolation(
                f"role {role!r} may not run several statements in one request: {fp}",
                fp,
                "multi_statement",
            )
        if info.kind == "transaction":
            return
        if info.kind == "ddl" and not rules.allow_ddl:
            raise PolicyViolation(f"role {role!r} may not run DDL: {fp}", fp, "ddl")
        if fp in rules.statements:
            return
        not_listed = PolicyViolation(
            f"statement not in the allowlist for role {role!r}: {fp}", fp, "not_allowlisted"
        )
        if (
            not rules.tables
            or info.is_multi_statement
            or info.kind not in ("select", "insert", "update", "delete")
        ):
            raise not_listed
        self._check_tables(role, rules, sql, dialect, fp)

    def _check_tables(
        self, role: str, rules: RolePolicy, sql: str, dialect: str | None, fp: str
    ) -> None:
        """The table rules' verdict on ``sql``, read by both table extractors."""
        try:
            info = classify(sql, dialect)
        except ParseBudgetExceeded as exc:
            raise PolicyViolation(f"{exc}; refused for role {role!r}: {fp}", fp,
                                  "table_access") from None
        if info.table_doubt is not None:
            raise PolicyViolation(
                f"cannot tell every table the statement touches ({info.table_doubt}); "
                f"refused for role {role!r}: {fp}",
                fp,
                "table_access",
            )
        for table in sorted(info.tables_written):
            if rules.table_access(table) != "write":
                raise PolicyViolation(
                    f"role {role!r} may not write table {table!r}: {fp}", fp, "table_access"
                )
        for table in sorted(info.tables_read):
            if rules.table_access(table) not in ("read", "write"):
                raise PolicyViolation(
                    f"role {role!r} may not read table {table!r}: {fp}", fp, "table_access"
                )
        for function in sorted(info.functions):
            if function not in SAFE_FUNCTIONS and function not in rules.functions:
                raise PolicyViolation(
                    f"role {role!r} may not call function {function!r}: {fp}", fp, "function"
                )

    def check_operation(self, role: str, name: str) -> None:
        """Raise :class:`PolicyViolation` unless ``role`` may call logical operation ``name``."""
        rules = self._role(role, "")
        if rules.allow_all or name in rules.operations:
            return
        raise PolicyViolation(f"role {role!r} may not call operation {name!r}", "", "operation")

    def allows_metrics(self, role: str) -> bool:
        """Whether ``role`` may read ``/v1/metrics`` (``metrics: true`` or ``allow_all``)."""
        rules = self._roles.get(role)
        return rules is not None and (rules.allow_all or rules.metrics)


