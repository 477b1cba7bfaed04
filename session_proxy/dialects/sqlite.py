"""``sqlite+sessionproxy://host:port/``: the pysqlite dialect over the proxy.

Its DBAPI connections have sqlite3's ``execute``, ``executemany`` and
``executescript`` shortcuts (connect hooks use them: SQLAlchemy's own SQLite
test provisioning runs ``dbapi_connection.execute("PRAGMA foreign_keys=ON")``).
They also take ``create_function``, which sqlite3 connect
hooks call (Airflow registers ``uuid4``): a Python function cannot run in the
server's SQLite, so the call is recorded and warned about once per name, and
SQL that calls the function fails on the server with "no such function".
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from .. import dbapi as shim
from ..wire.messages import Commit, ExecuteScript
from .base import ProxyDialectMixin

# SQLiteDialect.__init__ reads ``dbapi.sqlite_version_info`` before any
# connection exists.  It sees a recent version here; ``initialize`` then
# applies the limits of the server's real SQLite library.
_ASSUMED_VERSION = (3, 35, 0)


_warned_functions: set[str] = set()


class FunctionNotShipped(UserWarning):
    """A connect hook registered a Python SQL function the server cannot run."""


class SQLiteShimCursor(shim.Cursor):
    """The shim cursor plus sqlite3's ``executescript``."""

    def executescript(self, sql_script: str) -> SQLiteShimCursor:
        """Commit any open transaction, then run every statement of ``sql_script``.

        As sqlite3 does: the script runs outside the caller's transaction and
        what it did is committed (the script's own ``BEGIN``/``COMMIT``
        statements act as written).  The server splits the script where
        SQLite would and checks each statement like any other; script and
        commit travel in one request.  If a statement fails, the statements
        before it stay in the open transaction, for the caller to commit or
        roll back.
        """
        if not isinstance(sql_script, str):
            raise ValueError("script argument must be unicode")
        connection = self.connection
        connection.commit()
        self._check_open()
        self._release_server_cursor()
        self._executions += 1
        self._pending = False
        result, _ = connection.request([ExecuteScript(sql_script), Commit()])
        connection._end_transaction()
        self._generation = connection._generation
        self._load(result)
        return self


class SQLiteShimConnection(shim.Connection):
    """The shim connection plus the sqlite3 calls connect hooks make.

    ``execute``, ``executemany`` and ``executescript`` are sqlite3's
    shortcuts: each opens a cursor, runs, and returns the cursor.
    """

    def __init__(self, transport: Any, pooling: str = "transaction") -> None:
        super().__init__(transport, pooling)
        #: Functions a hook asked for: name -> number of arguments.
        self.functions: dict[str, int] = {}

    def cursor(self) -> SQLiteShimCursor:
        """A new cursor on this connection."""
        self._check_open()
        return SQLiteShimCursor(self)

    def execute(self, sql: str, parameters: Any = None) -> SQLiteShimCursor:
        """sqlite3's ``Connection.execute``: a new cursor's ``execute``."""
        cursor = self.cursor()
        cursor.execute(sql, parameters or None)
        return cursor

    def executemany(self, sql: str, seq_of_parameters: Any) -> SQLiteShimCursor:
        """sqlite3's ``Connection.executemany``: a new cursor's ``executemany``."""
        cursor = self.cursor()
        cursor.executemany(sql, list(seq_of_parameters))
        return cursor

    def executescript(self, sql_script: str) -> SQLiteShimCursor:
        """sqlite3's ``Connection.executescript`` (see :meth:`SQLiteShimCursor.executescript`)."""
        cursor = self.cursor()
        cursor.executescript(sql_script)
        return cursor

    def create_function(
        self, name: str, narg: int, func: Callable[..., Any] | None, *,
        deterministic: bool = False,
    ) -> None:
        """Record ``name``: the server's SQLite cannot call client Python."""
        self.functions[name] = narg
        if name not in _warned_functions:
            _warned_functions.add(name)
            warnings.warn(
                f"sqlite3 create_function({name!r}) through session-proxy: the function "
                "cannot run in the server's SQLite; SQL calling it fails there with "
                "'no such function'",
                FunctionNotShipped,
                stacklevel=2,
            )


def _connect(
    transport: Any, backend: str | None = None, pooling: str = "transaction", **ignored: Any
) -> SQLiteShimConnection:
    shim.check_backend(transport, backend)
    return SQLiteShimConnection(transport, pooling)


def _module_for_init() -> Any:
    module = types.SimpleNamespace(**{k: getattr(shim, k) for k in shim.__all__})
    module.sqlite_version_info = _ASSUMED_VERSION
    module.connect = _connect
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
