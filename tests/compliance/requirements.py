"""SQLAlchemy's upstream test requirements, taught the ``sessionproxy`` driver.

A few upstream requirements list drivers by name; a proxy engine runs the
same driver on the server, so it qualifies wherever that driver does.  Every
other requirement is upstream's own.  Used by :mod:`tests.compliance.sa_suite`
for both the direct and the proxy runs.
"""

from __future__ import annotations

from sqlalchemy.testing.exclusions import fails_on, fails_on_everything_except, only_on, skip_if
from test.requirements import DefaultRequirements  # the SQLAlchemy sdist's


class ProxyRequirements(DefaultRequirements):
    @property
    def dbapi_lastrowid(self):  # noqa: ANN201 - upstream signature
        """The cursor has ``lastrowid`` (pysqlite does, so its proxy does)."""
        return skip_if("mssql+pymssql", "crashes on pymssql") + only_on(
            [
                "mysql",
                "mariadb",
                "sqlite+pysqlite",
                "sqlite+aiosqlite",
                "sqlite+pysqlcipher",
                "sqlite+sessionproxy",
                "mssql",
            ]
        )

    @property
    def infinity_floats(self):  # noqa: ANN201 - upstream signature
        """inf/-inf in float columns (psycopg has them, so its proxy does)."""
        return fails_on_everything_except(
            "sqlite",
            "postgresql+psycopg2",
            "postgresql+asyncpg",
            "postgresql+psycopg",
            "postgresql+sessionproxy",
        ) + skip_if("postgresql+pg8000", "seems to work on pg14 only, not earlier?")

    # Upstream expects PyMySQL to bind date/time values as plain strings; the
    # proxy binds through PyMySQL on the server, so the same expectation holds.
    @property
    def date_implicit_bound(self):  # noqa: ANN201 - upstream signature
        return super().date_implicit_bound + _PYMYSQL_PROXY_BINDS_AS_STRING

    @property
    def time_implicit_bound(self):  # noqa: ANN201 - upstream signature
        return super().time_implicit_bound + _PYMYSQL_PROXY_BINDS_AS_STRING

    @property
    def datetime_implicit_bound(self):  # noqa: ANN201 - upstream signature
        return super().datetime_implicit_bound + _PYMYSQL_PROXY_BINDS_AS_STRING


_PYMYSQL_PROXY_BINDS_AS_STRING = fails_on(["mysql+sessionproxy", "mariadb+sessionproxy"])
