"""``mysql+sessionproxy://host:port/``: the PyMySQL dialect over the proxy.

Works for MySQL and MariaDB servers alike: the MySQL dialect learns which one
it talks to from ``SELECT VERSION()``, sent through the proxy at first
connect.  The connection character set comes from the handshake.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.mysql.base import MySQLDialect
from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql

from .base import ProxyDialectMixin


class MySQLDialect_sessionproxy(ProxyDialectMixin, MySQLDialect_pymysql):
    """MySQL / MariaDB through a session-proxy server running PyMySQL."""

    proxied_driver = "pymysql"
    supports_statement_cache = True
    supports_server_side_cursors = False  # type: ignore[assignment]

    def _backend_get_isolation_level(self, dbapi_connection: Any) -> Any:
        return MySQLDialect.get_isolation_level(self, dbapi_connection)

    def _detect_charset(self, connection: Any) -> str:
        return connection.connection.character_set_name() or "utf8mb4"


dialect = MySQLDialect_sessionproxy
