"""Application settings: the engine and the scoped Session (Airflow's shape)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import scoped_session, sessionmaker

engine: sa.Engine | None = None
Session: scoped_session | None = None


def configure_orm(sql_alchemy_conn: str) -> None:
    global engine, Session
    engine = sa.create_engine(sql_alchemy_conn)
    Session = scoped_session(
        sessionmaker(autoflush=False, bind=engine, expire_on_commit=False)
    )


def dispose_orm() -> None:
    global engine, Session
    if Session is not None:
        Session.remove()
        Session = None
    if engine is not None:
        engine.dispose()
        engine = None
