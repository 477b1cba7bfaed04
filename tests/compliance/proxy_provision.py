"""pytest plugin for SQLAlchemy's suites run through a session-proxy engine.

SQLAlchemy's SQLite test provisioning attaches ``test_schema`` on every new
DBAPI connection with ``dbapi_connection.execute("ATTACH ...")``.  A proxy
connection has no SQLite connection of its own: the session-proxy server
attaches the schema on every pooled connection instead (started with
``--sqlite-attach test_schema=PATH``), so this plugin skips the client-side
attach for ``sqlite+sessionproxy`` engines and leaves every other backend and
driver to SQLAlchemy's own provisioning.
"""

from __future__ import annotations

from typing import Any


def pytest_configure(config: Any) -> None:
    import sqlalchemy.dialects.sqlite.provision  # noqa: F401 - registers the original
    from sqlalchemy.testing.provision import post_configure_engine

    original = post_configure_engine.fns.get("sqlite")
    if original is None:
        return

    def post_configure(url: Any, engine: Any, follower_ident: Any) -> None:
        if engine.driver != "sessionproxy":
            original(url, engine, follower_ident)

    post_configure_engine.fns["sqlite"] = post_configure
