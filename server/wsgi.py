"""The WSGI app for gunicorn, configured by environment variables.

::

    SESSION_PROXY_DB_URL=postgresql+psycopg://postgres@127.0.0.1/test \\
    SESSION_PROXY_PUBLIC_KEY=keys/session-proxy-public.pem \\
        gunicorn --workers 1 --threads 16 --bind 127.0.0.1:8765 'session_proxy_server.wsgi:app'

``SESSION_PROXY_DB_URL`` is required, and so is ``SESSION_PROXY_PUBLIC_KEY``
unless ``SESSION_PROXY_INSECURE_NO_AUTH=1``.  Optional:
``SESSION_PROXY_AUDIENCE``, ``SESSION_PROXY_POLICY`` (a policy file to
enforce), ``SESSION_PROXY_POLICY_RECORD`` (a file to record into),
``SESSION_PROXY_MAX_TOKEN_LIFETIME`` (longest token lifetime accepted,
e.g. ``24h``, the default), ``SESSION_PROXY_METRICS_ROLES`` (comma-separated
roles that may read the metrics, default ``admin``),
``SESSION_PROXY_TRUSTED_CLIENTS=1`` (accept pickles: code execution for
every client), ``SESSION_PROXY_OPERATIONS`` (comma-separated modules whose
logical operations the server exposes) and every
:class:`~session_proxy_server.config.ServerConfig` field as ``SESSION_PROXY_<FIELD>``.
TLS is gunicorn's own (``--certfile``/``--keyfile``).  A transaction lives
in one process and gunicorn's workers share one socket, so run one worker
process with threads (for several processes on one machine use
``session-proxy-server --workers N``), and scale out with more instances,
each with its own ``SESSION_PROXY_INSTANCE`` and
``SESSION_PROXY_ADVERTISE_URL`` (see ``docs/scaling.md``).  When the worker
exits (gunicorn's graceful SIGTERM finishes requests in flight first), the
transactions still open are rolled back.
"""

from __future__ import annotations

import atexit
import os

from .app import ProxyServer, create_app
from .auth import DEFAULT_AUDIENCE, DEFAULT_MAX_TOKEN_LIFETIME, parse_ttl
from .config import ServerConfig
from .security import DEFAULT_METRICS_ROLES, gate_from_options


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def _from_env() -> ProxyServer:
    db_url = os.environ.get("SESSION_PROXY_DB_URL")
    if not db_url:
        raise RuntimeError("set SESSION_PROXY_DB_URL to the database's SQLAlchemy URL")
    gate = gate_from_options(
        public_key=os.environ.get("SESSION_PROXY_PUBLIC_KEY") or None,
        insecure_no_auth=_flag("SESSION_PROXY_INSECURE_NO_AUTH"),
        audience=os.environ.get("SESSION_PROXY_AUDIENCE") or DEFAULT_AUDIENCE,
        policy=os.environ.get("SESSION_PROXY_POLICY") or None,
        policy_record=os.environ.get("SESSION_PROXY_POLICY_RECORD") or None,
        max_token_lifetime=parse_ttl(
            os.environ.get("SESSION_PROXY_MAX_TOKEN_LIFETIME") or str(DEFAULT_MAX_TOKEN_LIFETIME)
        ),
        metrics_roles=[
            role for role in os.environ.get("SESSION_PROXY_METRICS_ROLES", "").split(",") if role
        ] or DEFAULT_METRICS_ROLES,
    )
    modules = [m for m in os.environ.get("SESSION_PROXY_OPERATIONS", "").split(",") if m]
    return create_app(
        db_url,
        gate,
        ServerConfig.from_env(),
        operations=modules,
        trusted_clients=_flag("SESSION_PROXY_TRUSTED_CLIENTS"),
    )


app = _from_env()
atexit.register(app.close)
