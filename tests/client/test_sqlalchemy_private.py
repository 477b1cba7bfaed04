"""The private SQLAlchemy names ProxySession relies on still exist and still mean the same.

If an upgrade of SQLAlchemy renames or changes one, this fails first and
names it (see :mod:`session_proxy._sqlalchemy_private`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.session import SessionTransactionState

from session_proxy import ProxySession
from session_proxy import _sqlalchemy_private as private


def test_every_private_name_exists_in_the_installed_sqlalchemy() -> None:
    assert private.missing() == [], f"SQLAlchemy {sa.__version__} changed: {private.missing()}"


def test_the_private_names_behave_as_relied_on() -> None:
    engine = sa.create_engine("sqlite://")
    session = Session(engine)
    try:
        assert private.open_transaction(session) is None
        session.connection()
        outer = private.open_transaction(session)
        assert outer is not None and not private.is_flushing(session)
        assert list(private.transaction_chain(session)) == [outer]
        assert {c.engine for c in private.sqlalchemy_connections(outer)} == {engine}
        assert not private.reopen_if_prepared(outer)  # ACTIVE, not PREPARED
        outer._state = SessionTransactionState.PREPARED  # where a commit's flush leaves it
        assert private.reopen_if_prepared(outer) and outer.is_active
        private.roll_back_as_failed_flush(outer)
        assert not outer.is_active  # as after a failed flush: rollback() is required
        session.rollback()
    finally:
        session.close()
        engine.dispose()


def test_proxy_session_overrides_only_the_named_private_methods() -> None:
    own = {
        name for name in vars(ProxySession) if name.startswith("_") and not name.startswith("__")
    }
    overridden = {name for name in own if hasattr(Session, name)}
    assert overridden == set(private.OVERRIDDEN_METHODS)


def test_binds_are_found_without_the_private_map() -> None:
    first, second = sa.create_engine("sqlite://"), sa.create_engine("sqlite://")
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    session = ProxySession(binds={table: first})
    session.bind_table(sa.Table("u", sa.MetaData()), second)
    assert set(session._proxy_binds.values()) == {first, second}
    first.dispose()
    second.dispose()
