"""Which statements cannot leave session state behind them, by their text.

The server resets a pooled connection's session after a transaction
(``reset_session`` of the backend profiles) so that nothing one client set
reaches the next.  That reset is a database round trip; it is skipped when
every statement of the transaction was a plain query that cannot change the
session, and the database, asked in the commit's own round trip, reports no
session state either (PostgreSQL: :data:`session_proxy_server.backends.postgresql.SESSION_PROBE`).

The text rule errs towards "may leave state": a statement qualifies only
when it is a single ``SELECT`` (``WITH`` and ``VALUES`` included; not
``SELECT ... INTO``, which creates a table), ``INSERT``, ``UPDATE`` or
``DELETE`` that names no variable (``@``: MySQL user variables) and calls
only functions of :data:`PURE_FUNCTIONS`, builtins that read their
arguments and nothing of the session.  What the text does not show (a
view, a trigger, a policy or a column default calling a function that
changes the session, a sequence advanced by a default) is what the
database's answer and the commit's ``DISCARD SEQUENCES`` cover.
"""

from __future__ import annotations

from .classify import classify

#: Builtin functions that change no session state (aggregates, arithmetic,
#: strings, dates, casts, and readers of the session such as
#: ``current_setting``).  Anything else may: ``set_config``,
#: ``pg_advisory_lock``, ``nextval``, ``GET_LOCK``, any user function.
PURE_FUNCTIONS = frozenset(
    """
    abs avg bool_and bool_or cast ceil ceiling char_length character_length
    coalesce concat count current_date current_time current_timestamp
    date_trunc every exists extract floor greatest least length localtime
    localtimestamp lower ltrim max min mod now nullif octet_length position
    power replace round rtrim sign sqrt stddev string_agg substr substring
    sum trim trunc upper variance array_agg json_agg jsonb_agg row_number
    rank dense_rank lag lead first_value last_value ifnull if isnull
    date_format group_concat current_setting pg_backend_pid version
    current_database current_schema database connection_id
    """.split()
)


def leaves_no_state(sql: str, dialect: str | None = None) -> bool:
    """Whether ``sql`` certainly changes no session state, by its text."""
    if "@" in sql:
        return False
    info = classify(sql, dialect, tables=True)
    if info.is_multi_statement or not info.functions <= PURE_FUNCTIONS:
        return False
    if info.kind == "select":
        return not info.tables_written
    return info.kind in ("insert", "update", "delete")


def may_take_session_lock(sql: str, dialect: str | None = None) -> bool:
    """Whether ``sql`` calls a function that may take a lock outliving the
    transaction (``pg_advisory_lock``, ``GET_LOCK``...): any name with ``lock``.

    Such a lock is visible to every other session at once, so the server
    releases it before answering rather than after (see
    :meth:`session_proxy_server.leases.LeaseRegistry.end`).
    """
    return any("lock" in name for name in classify(sql, dialect, tables=True).functions)
