"""Which statements may wait, and how their late failures are reported.

The proxy dialects ask :func:`defer_if_possible` before every statement.
A statement is *queued* on the DBAPI shim (see :mod:`session_proxy.dbapi`)
instead of sent when nothing needs its result before the next round trip:

- inside the flush of any ORM session on a proxy engine (the shim
  connection knows its session: :mod:`session_proxy.session_events`), the unit of
  work's own INSERTs that need no generated key back (no RETURNING, no
  ``lastrowid``), its UPDATEs, and its unversioned DELETEs.  SQLAlchemy reads
  their rowcount at once to detect stale rows, so the cursor reports the
  count the unit of work expects and the server checks the real one: a
  mismatch fails the request, and :func:`stale_data_error` raises the
  ``StaleDataError`` SQLAlchemy would have raised, with the same text.
  A DELETE mismatch that SQLAlchemy only warns about is warned about when
  the result arrives.
- outside a flush, INSERT/UPDATE/DELETE statements without RETURNING when
  the engine was created with ``proxy_pipeline_dml=True`` or the statement
  carries the execution option ``proxy_pipeline=True``.  Their rowcount is
  fetched (sending the queue) only if someone reads it.

A queued statement runs in front of the next statement that needs a
result, or with the commit.  When it fails there, the error raised is the
one SQLAlchemy would have raised for that statement, carrying its SQL and
parameters, and raised from the shim error it replaces
(:func:`is_deferred_failure`) so the session can
treat it as a failed flush (:mod:`session_proxy.session_events`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc

from . import _sqlalchemy_private as private
from . import dbapi as shim
from .errors import RowcountMismatch

#: Execution option that queues one Core DML statement (or, set to False,
#: keeps it from being queued on a ``proxy_pipeline_dml`` engine).
PIPELINE_OPTION = "proxy_pipeline"


def defer_if_possible(
    dialect: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> bool:
    """Queue the statement on ``cursor`` if nothing needs its result now."""
    if context is None or not isinstance(cursor, shim.Cursor):
        return False
    if not (context.isinsert or context.isupdate or context.isdelete):
        return False
    if statement != getattr(context, "statement", None):
        # A statement SQLAlchemy runs for this one with its context, such as
        # a sequence's nextval() fired before the INSERT (its statement is
        # not set yet then): its row is read at once.
        return False
    compiled = context.compiled
    if compiled is None or getattr(compiled, "effective_returning", True):
        return False
    if context.isinsert and compiled.postfetch_lastrowid and not many:
        return False
    options = context.execution_options
    if "compiled_cache" in options and _flushing(cursor.connection):
        return _defer_flush_statement(dialect, cursor, statement, parameters, context, many)
    wanted = options.get(PIPELINE_OPTION, getattr(dialect, "proxy_pipeline_dml", False))
    if not wanted:
        return False
    cursor.defer(statement, parameters, many=many, rowcount=-1,
                 on_failure=_wrapper(dialect, statement, parameters, many))
    context._proxy_lazy_rowcount = True
    return True


def _flushing(connection: shim.Connection) -> bool:
    """Whether the session whose transaction uses ``connection`` is flushing."""
    ref = connection.orm_session
    session = ref() if ref is not None else None
    return session is not None and private.is_flushing(session)


def _defer_flush_statement(
    dialect: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> bool:
    count = len(parameters) if many else 1
    wrap = _wrapper(dialect, statement, parameters, many)
    if context.isinsert:
        cursor.defer(statement, parameters, many=many, rowcount=count, on_failure=wrap)
        return True
    table = context.compiled.statement.table
    if context.isupdate:
        checked = dialect.supports_sane_rowcount and (
            not many or count == 1 or dialect.supports_sane_multi_rowcount
        )
        if not checked:
            cursor.defer(statement, parameters, many=many, rowcount=-1, on_failure=wrap)
            return True
        cursor.defer(
            statement,
            parameters,
            many=many,
            rowcount=count,
            expect_rowcount=count,
            check_key=("update", table.description, statement),
            on_failure=_stale_update(wrap, table.description),
        )
        return True
    # DELETE: SQLAlchemy raises on a mismatch only for versioned rows; those
    # run at once.  Unversioned mismatches are a warning, given on arrival.
    mapper = _base_mapper(context.execution_options.get("compiled_cache"))
    if mapper is None or _is_versioned(mapper, table):
        return False
    warn = mapper.confirm_deleted_rows and (
        dialect.supports_sane_multi_rowcount or count == 1
    )

    def check(result: dict) -> None:
        matched = result.get("rowcount", -1)
        if warn and matched > -1 and matched != count:
            warnings.warn(
                sa_exc.SAWarning(
                    f"DELETE statement on table '{table.description}' expected to "
                    f"delete {count} row(s); {matched} were matched.  Please set "
                    "confirm_deleted_rows=False within the mapper "
                    "configuration to prevent this warning."
                ),
                stacklevel=2,
            )

    cursor.defer(statement, parameters, many=many, rowcount=count,
                 on_failure=wrap, on_result=check)
    return True


def _wrapper(dialect: Any, statement: str, parameters: Any, many: bool) -> Any:
    """The SQLAlchemy exception for a failure of this statement, as SQLAlchemy builds it."""

    def wrap(exc: Exception) -> BaseException:
        wrapped = sa_exc.DBAPIError.instance(
            statement,
            parameters,
            exc,
            shim.Error,
            dialect=dialect,
            ismulti=many,
        )
        return wrapped

    return wrap


def _stale_update(wrap: Any, table: str) -> Any:
    """On a failed rowcount check, SQLAlchemy's ``StaleDataError``; otherwise ``wrap``."""

    def on_failure(exc: Exception) -> BaseException:
        if not isinstance(exc, RowcountMismatch):
            return wrap(exc)
        error = orm_exc.StaleDataError(
            f"UPDATE statement on table '{table}' expected to update "
            f"{exc.expected} row(s); {exc.actual} were matched."
        )
        return error

    return on_failure


@contextlib.contextmanager
def sqlalchemy_errors() -> Iterator[None]:
    """Turn a shim error from a queued statement into SQLAlchemy's error for it.

    ``with sqlalchemy_errors(): cursor.execute(...)`` raises, for a queued
    statement that failed in that request, the exception SQLAlchemy would
    have raised running it (its SQL, parameters and class), or the
    ``StaleDataError`` of a failed rowcount check.
    """
    try:
        yield
    except Exception as exc:
        replacement = exc.replacement if isinstance(exc, shim.Error) else None
        if replacement is None:
            raise
        raise replacement from exc


def is_deferred_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the error of a queued statement, raised late by
    :func:`sqlalchemy_errors` (its cause is the shim error it replaced)."""
    cause = exc.__cause__
    return isinstance(cause, shim.Error) and cause.replacement is exc


def _base_mapper(cache: Any) -> Any:
    """The mapper whose unit-of-work statements use ``cache`` as compiled cache."""
    if cache is None:
        return None
    from sqlalchemy.orm import mapperlib

    for registry in list(mapperlib._all_registries()):
        for mapper in list(registry.mappers):
            if mapper.base_mapper._compiled_cache is cache:
                return mapper.base_mapper
    return None


def _is_versioned(mapper: Any, table: Any) -> bool:
    version = mapper.version_id_col
    return version is not None and version in mapper._cols_by_table.get(table, ())
