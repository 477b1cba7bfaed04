"""Every private SQLAlchemy name session-proxy's ORM pipelining relies on, in one place.

:mod:`session_proxy.session_events` (pipelining for every ``Session``) and
:mod:`session_proxy.session` (``ProxySession``) use public hooks where
SQLAlchemy has one: ``SessionEvents`` registered on the ``Session`` class
(``after_begin``, ``before_commit``, ``after_flush``,
``after_flush_postexec``, ...) and the engine's ``handle_error``; the
session's binds are recorded from ``Session(bind=, binds=)``,
:meth:`~sqlalchemy.orm.Session.bind_mapper` and
:meth:`~sqlalchemy.orm.Session.bind_table`; a commit is recognised by the
``before_commit`` event; flushes are wrapped through the public
:meth:`~sqlalchemy.orm.Session.flush`.  What is left has no public
equivalent, and is named here, each with why it is needed:

- ``Session._autoflush`` and ``SessionTransaction._prepare_impl``: only an
  autoflush may let its writes ride with the statement that triggered it,
  and only the flush a commit runs may COMMIT with its writes (not a flush
  that a ``before_commit`` listener calls); no event says which flush is
  which.  :func:`flush_caller` names the caller of ``flush`` on the call
  stack (``ProxySession`` used to override ``_autoflush``).
- ``Session._flushing``: whether a flush is running (a late failure during a
  flush is the flush's own to handle).
- ``Session._transaction``, ``SessionTransaction._parent`` and
  ``SessionTransaction._connections``: the DBAPI connections of the session's
  open transactions, whose queued writes a flush sends, and whether the
  session commits each (``should_commit``: not a joined outside
  transaction), which decides whether a commit's flush may COMMIT early; the public
  :meth:`~sqlalchemy.orm.Session.connection` would open connections that
  are not open yet.
- ``SessionTransaction._state`` and ``SessionTransactionState``: a commit
  whose flush failed late has already marked its transaction PREPARED; it is
  put back to ACTIVE so it fails as a flush does.
- ``SessionTransaction._begin().rollback(_capture_exception=True)``: what
  ``Session._flush`` itself does when a flush fails.

``tests/client/test_sqlalchemy_private.py`` checks every name against the installed
SQLAlchemy, so an upgrade that renames one fails loudly there rather than
quietly in a session.  setup.cfg allows the SQLAlchemy versions CI tests
(2.0 and 2.1).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.session import SessionTransaction, SessionTransactionState

#: Private ``Session`` methods that ProxySession overrides (none: every
#: session gets the same behaviour from events).
OVERRIDDEN_METHODS: tuple[str, ...] = ()

#: Private attributes read or written, by the class that holds them.
ATTRIBUTES = {
    Session: ("_flushing", "_transaction"),
    SessionTransaction: ("_parent", "_connections", "_state", "_begin"),
}


def open_transaction(session: Session) -> SessionTransaction | None:
    """The session's innermost transaction, or None."""
    return session._transaction


def is_flushing(session: Session) -> bool:
    """Whether ``session`` is inside a flush."""
    return bool(session._flushing)


def transaction_chain(session: Session) -> Iterator[SessionTransaction]:
    """The session's transaction and its parents, innermost first."""
    transaction = session._transaction
    while transaction is not None:
        yield transaction
        transaction = transaction._parent


def sqlalchemy_connections(transaction: SessionTransaction) -> list[Any]:
    """The Core connections a session transaction holds."""
    return [entry[0] for entry in transaction._connections.values()]


def connection_entries(transaction: SessionTransaction) -> list[tuple[Any, Any, bool]]:
    """(Core connection, Core transaction, whether the session commits it), once each.

    ``_connections`` maps both the bind and the connection to one entry.
    """
    seen: dict[int, tuple[Any, Any, bool]] = {}
    for entry in transaction._connections.values():
        seen[id(entry[0])] = (entry[0], entry[1], bool(entry[2]))
    return list(seen.values())


def flush_caller(session: Session) -> str:
    """The name of the function that called the running flush of ``session``.

    Walks up the call stack from inside the flush, past the frames of
    ``flush`` on this session (``Session.flush`` and any subclass override
    calling it): ``"_autoflush"`` for an autoflush, ``"_prepare_impl"`` for
    the flush a commit runs, ``"_take_snapshot"`` for ``begin_nested()``'s,
    anything else for an explicit flush ("" when not found).
    """
    frame = sys._getframe(1)
    in_flush = False
    for _ in range(64):
        if frame is None:
            return ""
        name = frame.f_code.co_name
        if name == "flush" and frame.f_locals.get("self") is session:
            in_flush = True
        elif in_flush:
            return name
        frame = frame.f_back
    return ""


def reopen_if_prepared(transaction: SessionTransaction | None) -> bool:
    """Put a PREPARED transaction back to ACTIVE; whether it was PREPARED."""
    if transaction is None or transaction._state is not SessionTransactionState.PREPARED:
        return False
    transaction._state = SessionTransactionState.ACTIVE
    return True


def roll_back_as_failed_flush(transaction: SessionTransaction) -> None:
    """Roll back as ``Session._flush`` does when its unit of work raises."""
    transaction._begin().rollback(_capture_exception=True)


def missing() -> list[str]:
    """The private names above that the installed SQLAlchemy lacks (empty: all there)."""
    gone = [
        f"Session.{name}"
        for name in (*OVERRIDDEN_METHODS, "_autoflush")
        if not inspect.isfunction(getattr(Session, name, None))
    ]
    probe = Session()
    try:
        for name in ATTRIBUTES[Session]:
            if not hasattr(probe, name):
                gone.append(f"Session.{name}")
        with probe.begin() as transaction:
            for name in ATTRIBUTES[SessionTransaction]:
                if not hasattr(transaction, name):
                    gone.append(f"SessionTransaction.{name}")
            if getattr(transaction, "_state", None) is not SessionTransactionState.ACTIVE:
                gone.append("SessionTransactionState.ACTIVE as SessionTransaction._state")
    finally:
        probe.close()
    for owner, caller, call in (
        (Session, "_autoflush", "self.flush()"),
        (SessionTransaction, "_prepare_impl", "self.session.flush()"),
    ):
        source = inspect.getsource(inspect.unwrap(getattr(owner, caller)))
        if call not in source:
            gone.append(f"{owner.__name__}.{caller} calling {call}")
    if "_capture_exception" not in inspect.signature(SessionTransaction.rollback).parameters:
        gone.append("SessionTransaction.rollback(_capture_exception=)")
    return gone
