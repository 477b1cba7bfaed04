"""The application's own session helpers (Airflow's utils/session.py shape)."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from typing import Any, cast

from sqlalchemy.orm import Session as SASession

from . import settings

NEW_SESSION: SASession = cast(SASession, None)


@contextlib.contextmanager
def create_session() -> Iterator[SASession]:
    session = settings.Session()
    try:
        yield session
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


def provide_session(func: Any) -> Any:
    position = list(inspect.signature(func).parameters).index("session")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "session" in kwargs or position < len(args):
            return func(*args, **kwargs)
        with create_session() as session:
            return func(*args, session=session, **kwargs)

    return wrapper
