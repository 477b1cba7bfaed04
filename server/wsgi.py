"""The WSGI app for gunicorn, configured by environment variables.

::

    SESSION_PROXY_DB_URL=postgresql+psycopg://postgres@127.0.0.1/test \\
        gunicorn --workers 1 --threads 16 --bind 127.0.0.1:8765 'server.wsgi:app'

``SESSION_PROXY_DB_URL`` is required; ``SESSION_PROXY_LEASE_SECONDS``,
``SESSION_PROXY_MAX_TRANSACTIONS``, ``SESSION_PROXY_PAGE_SIZE`` and
``SESSION_PROXY_MAX_BODY_BYTES`` are optional, and
``SESSION_PROXY_OPERATIONS`` names (comma-separated) the modules whose
logical operations the server exposes.  A transaction lives in one
process, so run one worker process with threads.
"""

from __future__ import annotations

import os

from .app import create_app
from .config import ServerConfig


def _from_env():  # noqa: ANN202 - returns ProxyServer
    db_url = os.environ.get("SESSION_PROXY_DB_URL")
    if not db_url:
        raise RuntimeError("set SESSION_PROXY_DB_URL to the database's SQLAlchemy URL")
    modules = [m for m in os.environ.get("SESSION_PROXY_OPERATIONS", "").split(",") if m]
    return create_app(db_url, ServerConfig.from_env(), operations=modules)


app = _from_env()
