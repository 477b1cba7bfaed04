"""``session-proxy-server``: run the remote executor with Werkzeug's threaded server.

Example::

    session-proxy-server --db-url postgresql+psycopg://user@db/app --port 8765

For production, run the same app under gunicorn (see :mod:`server.wsgi`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from .app import create_app
from .config import ServerConfig


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(
        prog="session-proxy-server",
        description="Serve a database to session-proxy clients over HTTP.",
    )
    parser.add_argument(
        "--db-url",
        required=True,
        help="SQLAlchemy URL of the database, e.g. sqlite:///app.db, "
        "postgresql+psycopg://user@host/db, mysql+pymysql://user@host/db",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind (default %(default)s)")
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=defaults.lease_seconds,
        help="roll back a transaction idle this long (default %(default)s)",
    )
    parser.add_argument(
        "--max-transactions",
        type=int,
        default=defaults.max_transactions,
        help="open transactions at most; more get 503 (default %(default)s)",
    )
    parser.add_argument(
        "--page-size",
        type=int,
        default=defaults.page_size,
        help="rows per response page (default %(default)s)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=defaults.max_body_bytes,
        help="largest request body accepted (default %(default)s)",
    )
    parser.add_argument(
        "--operations",
        action="append",
        default=[],
        metavar="MODULE",
        help="expose the @remote_operation functions of MODULE (repeatable, or "
        "comma-separated)",
    )
    parser.add_argument(
        "--sqlite-attach",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="attach the SQLite file PATH as schema NAME on every connection (repeatable)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    return parser


def _name_and_path(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--sqlite-attach wants NAME=PATH, got {text!r}")
    return name, path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``session-proxy-server``."""
    args = build_parser().parse_args(argv)
    level = args.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Werkzeug's access log follows the chosen level too.
    logging.getLogger("werkzeug").setLevel(level)
    try:
        config = ServerConfig(
            lease_seconds=args.lease_seconds,
            max_transactions=args.max_transactions,
            page_size=args.page_size,
            max_body_bytes=args.max_body_bytes,
        )
        modules = [name for item in args.operations for name in item.split(",") if name]
        attach = dict(_name_and_path(item) for item in args.sqlite_attach)
        app = create_app(args.db_url, config, operations=modules, sqlite_attach=attach)
    except (ValueError, ImportError) as exc:
        print(f"session-proxy-server: {exc}", file=sys.stderr)
        return 2

    from werkzeug.serving import make_server

    server = make_server(args.host, args.port, app, threaded=True)

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for the serve loop, so it must not run on the
        # main thread that the loop runs on.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    logging.getLogger("session_proxy.server").info(
        "serving %s %s on http://%s:%d",
        app.handshake.dialect,
        ".".join(map(str, app.handshake.server_version_info)),
        args.host,
        server.server_port,
    )
    print(f"session-proxy-server listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
