"""``postgresql+sessionproxy://host:port/``: the psycopg 3 dialect over the proxy.

The psycopg dialect class is used as it is, minus its driver touches: JSON and
JSONB parameters are wrapped in :class:`~session_proxy.wire.codec.JSONParam` (the
server turns them into ``psycopg.types.json.Json``/``Jsonb``), JSON results
arrive as text and are parsed here with the engine's ``json_deserializer``,
and HSTORE is
handled as text on both sides (the server's engine runs with
``use_native_hstore=False``).  Range and multirange parameters need psycopg's
own classes and are not supported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy import util
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.dialects.postgresql._psycopg_common import _PGDialect_common_psycopg
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.postgresql.psycopg import _PGJSON, _PGJSONB, PGDialect_psycopg

from ..wire.codec import JSONParam
from .base import ProxyDialectMixin


class _TextJSONResult:
    """Parse JSON that the server sends as text, with the engine's deserializer."""

    def result_processor(self, dialect: Any, coltype: Any) -> Callable[[Any], Any]:
        loads = dialect._json_deserializer or json.loads

        def process(value: Any) -> Any:
            return None if value is None else loads(value)

        return process


class _ProxyJSON(_TextJSONResult, _PGJSON):
    pass


class _ProxyJSONB(_TextJSONResult, _PGJSONB):
    pass


class PGDialect_sessionproxy(ProxyDialectMixin, PGDialect_psycopg):
    """PostgreSQL through a session-proxy server running psycopg 3."""

    proxied_driver = "psycopg"
    supports_statement_cache = True
    supports_server_side_cursors = False
    _has_native_hstore = False
    # The server sends JSON/JSONB as text (see server.backends.postgresql),
    # so a custom json_deserializer given to this engine runs here.
    supports_native_json_deserialization = False
    dialect_injects_custom_json_deserializer = False
    colspecs = util.update_copy(
        PGDialect_psycopg.colspecs,
        {JSON: _ProxyJSON, sqltypes.JSON: _ProxyJSON, JSONB: _ProxyJSONB},
    )

    def __init__(self, **kwargs: Any) -> None:
        proxy_arguments = self._pop_proxy_arguments(kwargs)
        self._explicit_paramstyle = "paramstyle" in kwargs
        kwargs.setdefault("paramstyle", self.default_paramstyle)
        kwargs["use_native_hstore"] = False
        # psycopg's own __init__ builds an adapters map from the driver module.
        _PGDialect_common_psycopg.__init__(self, **kwargs)
        self._set_proxy_arguments(**proxy_arguments)

    def _json_wrapper(self, binary: bool) -> Callable[[Any], JSONParam]:
        dumps = self._json_serializer or json.dumps

        def wrap(value: Any) -> JSONParam:
            return JSONParam(dumps(value), binary)

        return wrap

    @property
    def _psycopg_Json(self) -> Callable[[Any], JSONParam]:  # type: ignore[override]
        return self._json_wrapper(False)

    @property
    def _psycopg_Jsonb(self) -> Callable[[Any], JSONParam]:  # type: ignore[override]
        return self._json_wrapper(True)

    @property
    def _isolation_lookup(self) -> dict[str, str]:  # type: ignore[override]
        return {
            level: level
            for level in (
                "READ COMMITTED",
                "READ UNCOMMITTED",
                "REPEATABLE READ",
                "SERIALIZABLE",
            )
        }

    def _backend_get_isolation_level(self, dbapi_connection: Any) -> Any:
        return PGDialect.get_isolation_level(self, dbapi_connection)

    def set_readonly(self, connection: Any, value: bool) -> None:
        connection.set_option("read_only", bool(value) or None)

    def get_readonly(self, connection: Any) -> bool:
        return bool(connection.options.get("read_only", False))

    def set_deferrable(self, connection: Any, value: bool) -> None:
        connection.set_option("deferrable", bool(value) or None)

    def get_deferrable(self, connection: Any) -> bool:
        return bool(connection.options.get("deferrable", False))

    def _type_info_fetch(self, connection: Any, name: str) -> None:
        return None


dialect = PGDialect_sessionproxy
