"""``sqlite+sessionproxy://host:port/``: the pysqlite dialect over the proxy."""

from __future__ import annotations

import types
from typing import Any

from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from .. import dbapi as shim
from .base import ProxyDialectMixin

# SQLiteDialect.__init__ reads ``dbapi.sqlite_version_info`` before any
# connection exists.  It sees a recent version here; ``initialize`` then
# applies the limits of the server's real SQLite library.
_ASSUMED_VERSION = (3, 35, 0)


def _module_for_init() -> Any:
    module = types.SimpleNamespace(**{k: getattr(shim, k) for k in shim.__all__})
    module.sqlite_version_info = _ASSUMED_VERSION
    return module


class SQLiteDialect_sessionproxy(ProxyDialectMixin, SQLiteDialect_pysqlite):
    """SQLite through a session-proxy server running the pysqlite driver."""

    proxied_driver = "pysqlite"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return _module_for_init()

    @classmethod
    def _is_url_file_db(cls, url: Any) -> bool:
        # The server always serves a database file (it refuses :memory:).
        return True

    def _get_server_version_info(self, connection: Any) -> Any:
        assert self.transport is not None
        return tuple(self.transport.handshake().server_version_info)

    def initialize(self, connection: Any) -> None:
        super().initialize(connection)
        version = self.server_version_info
        if version < (3, 35):
            self.update_returning = self.delete_returning = self.insert_returning = False
        if version < (3, 32, 0):
            self.insertmanyvalues_max_parameters = 999

    def _backend_get_isolation_level(self, dbapi_connection: Any) -> Any:
        return SQLiteDialect.get_isolation_level(self, dbapi_connection)


dialect = SQLiteDialect_sessionproxy
