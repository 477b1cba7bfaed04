"""``mysql+sessionproxy://host:port/``: the PyMySQL dialect over the proxy.

Works for MySQL and MariaDB servers alike: the MySQL dialect learns which one
it talks to from ``SELECT VERSION()``, sent through the proxy at first
connect.  The connection character set comes from the handshake.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.mysql.base import MySQLDialect
from sqlalchemy.dialects.mysql.mariadb import MariaDBDialect
from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql

from .base import ProxyDialectMixin


class _PyMySQLProxy(ProxyDialectMixin):
    """What both the ``mysql`` and ``mariadb`` names need over the proxy."""

    proxied_driver = "pymysql"
    supports_statement_cache = True
    supports_server_side_cursors = False

    def _backend_get_isolation_level(self, dbapi_connection: Any) -> Any:
        return MySQLDialect.get_isolation_level(self, dbapi_connection)  # type: ignore[arg-type]

    def _detect_charset(self, connection: Any) -> str:
        return connection.connection.character_set_name() or "utf8mb4"


class MySQLDialect_sessionproxy(_PyMySQLProxy, MySQLDialect_pymysql):
    """MySQL / MariaDB through a session-proxy server running PyMySQL."""

    supports_statement_cache = True


class MariaDBDialect_sessionproxy(_PyMySQLProxy, MariaDBDialect, MySQLDialect_pymysql):
    """``mariadb+sessionproxy://``: the MariaDB-named dialect over the proxy."""

    supports_statement_cache = True


dialect = MySQLDialect_sessionproxy
