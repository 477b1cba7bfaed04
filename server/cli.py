"""``session-proxy-server``: run the remote executor on a production HTTP server.

Example::

    session-proxy-server keys generate --dir keys
    session-proxy-server token issue --private-key keys/session-proxy-private.pem \
        --role worker --subject host-1 --ttl 1h
    session-proxy-server --db-url postgresql+psycopg://user@db/app --port 8765 \
        --public-key keys/session-proxy-public.pem --tls-self-signed tls

``keys`` and ``token`` are subcommands; anything else serves, on waitress
(HTTPS: cheroot; see :mod:`.serving`), with ``--workers N`` in N processes
(see :mod:`.workers`).  The same app also runs under gunicorn (see
:mod:`session_proxy_server.wsgi`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from .app import ProxyServer, create_app
from .auth import (
    DEFAULT_AUDIENCE,
    DEFAULT_MAX_TOKEN_LIFETIME,
    ROLES,
    KeyFileError,
    generate_keypair,
    issue_token,
    load_private_key,
    parse_ttl,
)
from .config import ServerConfig, add_arguments
from .security import DEFAULT_METRICS_ROLES, gate_from_options
from .serving import (
    MAX_CONNECTIONS,
    SOCKET_TIMEOUT,
    THREADS,
    Server,
    ServingOptions,
    listen_socket,
    make_server,
)
from .tls import CERT_FILE, KEY_FILE, TLSConfigError, generate_self_signed, server_ssl_context
from .workers import CONFIG_ERROR, check_port_free, supervise, worker_sockets


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
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
    # One flag per ServerConfig field, declared with the field.
    add_arguments(parser)
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
    serving = parser.add_argument_group("serving")
    serving.add_argument(
        "--socket-timeout",
        type=float,
        default=SOCKET_TIMEOUT,
        metavar="SECONDS",
        help="close a connection with no activity this long: a request, its headers "
        "or body not arriving, or a keep-alive connection left idle (default %(default)s)",
    )
    serving.add_argument(
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        help="connections held open at once, per worker; at the limit new ones wait "
        "in the listen queue to be accepted (default %(default)s)",
    )
    serving.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="requests run at once, per worker; more queue (default %(default)s)",
    )
    serving.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes: each serves its own transactions on its own port "
        "and all share --port (default %(default)s)",
    )
    serving.add_argument(
        "--worker-port-base",
        type=int,
        metavar="PORT",
        help="with --workers, worker i listens privately on PORT+i and advertises "
        "it (default --port + 1; 0: a free port each)",
    )
    serving.add_argument(
        "--dev-server",
        action="store_true",
        help="serve with Werkzeug's development server (one thread per connection, "
        "no keep-alive) instead of waitress/cheroot",
    )
    security = parser.add_argument_group("security")
    security.add_argument(
        "--public-key",
        metavar="PEM",
        help="Ed25519 public key that verifies clients' tokens (required unless "
        "--insecure-no-auth)",
    )
    security.add_argument(
        "--audience",
        default=DEFAULT_AUDIENCE,
        help="the 'aud' tokens must carry (default %(default)s)",
    )
    security.add_argument(
        "--token-leeway",
        type=int,
        default=30,
        metavar="SECONDS",
        help="clock skew tolerated on token issue and expiry times (default %(default)s)",
    )
    security.add_argument(
        "--max-token-lifetime",
        type=_lifetime,
        default=DEFAULT_MAX_TOKEN_LIFETIME,
        metavar="TTL",
        help="refuse tokens whose lifetime (exp - iat) is longer, or that expire "
        "further from now: 45m, 24h, 2d or seconds (default 24h)",
    )
    security.add_argument(
        "--metrics-role",
        action="append",
        metavar="ROLE",
        help="a role that may read /v1/metrics (repeatable; default admin); a "
        "policy may allow more roles with \"metrics\": true",
    )
    security.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="accept requests without tokens: anyone who reaches the port runs SQL",
    )
    security.add_argument(
        "--policy", metavar="FILE", help="enforce this per-role statement and operation policy"
    )
    security.add_argument(
        "--policy-record",
        metavar="FILE",
        help="allow everything and write what each role runs to FILE as a policy",
    )
    security.add_argument(
        "--trusted-clients",
        action="store_true",
        help="accept pickled (dill) values in logical calls: gives every client "
        "code execution on this server",
    )
    security.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    security.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    security.add_argument(
        "--tls-self-signed",
        metavar="DIR",
        help="serve HTTPS with DIR/cert.pem and DIR/key.pem, generating a "
        "self-signed pair there first if missing; clients verify with DIR/cert.pem",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    return parser


def _lifetime(text: str) -> int:
    """argparse type of a lifetime such as ``24h`` (see :func:`~.auth.parse_ttl`)."""
    try:
        return parse_ttl(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_keys_parser() -> argparse.ArgumentParser:
    """``session-proxy-server keys generate``."""
    parser = argparse.ArgumentParser(
        prog="session-proxy-server keys",
        description="Manage the Ed25519 key pair that signs and verifies tokens.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="write a new key pair")
    generate.add_argument("--dir", default=".", help="directory for the files (default .)")
    generate.add_argument(
        "--name", default="session-proxy", help="file name prefix (default %(default)s)"
    )
    generate.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def build_token_parser() -> argparse.ArgumentParser:
    """``session-proxy-server token issue``."""
    parser = argparse.ArgumentParser(
        prog="session-proxy-server token", description="Issue bearer tokens."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    issue = commands.add_parser("issue", help="print a signed token")
    issue.add_argument("--private-key", required=True, metavar="PEM", help="the signing key")
    issue.add_argument(
        "--role", required=True, help=f"the caller's role, e.g. {', '.join(ROLES)}"
    )
    issue.add_argument("--subject", required=True, help="who the token is for")
    issue.add_argument("--ttl", default="1h", help="lifetime: 45s, 30m, 1h, 2d (default 1h)")
    issue.add_argument(
        "--max-token-lifetime",
        type=_lifetime,
        default=DEFAULT_MAX_TOKEN_LIFETIME,
        metavar="TTL",
        help="refuse a --ttl longer than this, the servers' --max-token-lifetime "
        "(default 24h)",
    )
    issue.add_argument("--audience", default=DEFAULT_AUDIENCE, help="(default %(default)s)")
    return parser


def keys_main(argv: Sequence[str]) -> int:
    """``session-proxy-server keys ...``."""
    args = build_keys_parser().parse_args(argv)
    try:
        private, public = generate_keypair(args.dir, args.name, overwrite=args.force)
    except FileExistsError as exc:
        print(
            f"session-proxy-server keys: {getattr(exc, 'path', exc)} already exists; "
            "pass --force to replace the key pair",
            file=sys.stderr,
        )
        return 2
    except (KeyFileError, OSError) as exc:
        print(f"session-proxy-server keys: {exc}", file=sys.stderr)
        return 2
    print(f"private key (keep it with the token issuer): {private}")
    print(f"public key (give it to the server: --public-key): {public}")
    return 0


def token_main(argv: Sequence[str]) -> int:
    """``session-proxy-server token ...``."""
    args = build_token_parser().parse_args(argv)
    try:
        ttl = parse_ttl(args.ttl)
        if ttl > args.max_token_lifetime:
            raise ValueError(
                f"--ttl {args.ttl} ({ttl} s) is longer than the maximum token lifetime "
                f"of {args.max_token_lifetime} s: servers would refuse the token.  Issue "
                "a shorter-lived one, or, if your servers run with a larger "
                "--max-token-lifetime, pass the same value here"
            )
        token = issue_token(
            load_private_key(args.private_key),
            subject=args.subject,
            role=args.role,
            ttl_seconds=ttl,
            audience=args.audience,
        )
    except (KeyFileError, ValueError) as exc:
        print(f"session-proxy-server token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _tls(args: argparse.Namespace) -> tuple[Path, Path, ssl.SSLContext] | None:
    """(certificate, key, checked context) from the TLS flags, or ``None``."""
    if args.tls_self_signed and (args.tls_cert or args.tls_key):
        raise ValueError("--tls-self-signed excludes --tls-cert and --tls-key")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.tls_self_signed:
        directory = Path(args.tls_self_signed)
        cert, key = directory / CERT_FILE, directory / KEY_FILE
        if not (cert.exists() and key.exists()):
            cert, key = generate_self_signed(directory, (args.host, "localhost", "127.0.0.1"))
        return cert, key, server_ssl_context(cert, key)
    if args.tls_cert:
        cert, key = Path(args.tls_cert), Path(args.tls_key)
        return cert, key, server_ssl_context(cert, key)
    return None


def _name_and_path(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--sqlite-attach wants NAME=PATH, got {text!r}")
    return name, path


def _check_serving(args: argparse.Namespace) -> None:
    if args.socket_timeout <= 0 or args.max_connections <= 0 or args.threads <= 0:
        raise ValueError("--socket-timeout, --max-connections and --threads must be positive")
    if args.workers <= 0:
        raise ValueError("--workers must be positive")
    if args.workers > 1 and args.dev_server:
        raise ValueError("--dev-server serves one process; leave out --workers")


def _app_factory(args: argparse.Namespace) -> tuple[Callable[[ServerConfig], ProxyServer],
                                                      ServerConfig, ServingOptions]:
    """Check every option; return what builds the app (in the serving process)."""
    config = ServerConfig.from_args(
        args, instance=args.instance or f"{socket.gethostname()}:{args.port}"
    )
    _check_serving(args)
    gate = gate_from_options(
        public_key=args.public_key,
        insecure_no_auth=args.insecure_no_auth,
        audience=args.audience,
        leeway_seconds=args.token_leeway,
        policy=args.policy,
        policy_record=args.policy_record,
        max_token_lifetime=args.max_token_lifetime,
        metrics_roles=args.metrics_role or DEFAULT_METRICS_ROLES,
    )
    options = ServingOptions(
        threads=args.threads,
        socket_timeout=args.socket_timeout,
        max_connections=args.max_connections,
        tls=_tls(args),
        dev_server=args.dev_server,
    )
    modules = [name for item in args.operations for name in item.split(",") if name]
    attach = dict(_name_and_path(item) for item in args.sqlite_attach)
    if args.trusted_clients:
        logging.getLogger("session_proxy.server").warning(
            "--trusted-clients: logical calls may carry pickles; every client "
            "can run code on this server"
        )

    def build(worker_config: ServerConfig) -> ProxyServer:
        app = create_app(
            args.db_url,
            gate,
            worker_config,
            operations=modules,
            sqlite_attach=attach,
            trusted_clients=args.trusted_clients,
        )
        # The development server runs a thread per connection: no pool to starve.
        app.admission.limit(None if options.dev_server else options.threads)
        return app

    return build, config, options


def _worker_config(args: argparse.Namespace, config: ServerConfig, scheme: str,
                   private_port: int) -> ServerConfig:
    """``config`` for the worker on ``private_port``: its own name and advertised URL."""
    advertised = urlsplit(config.advertise_url) if config.advertise_url else None
    host = advertised.hostname if advertised else args.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    if host and ":" in host:
        host = f"[{host}]"
    scheme = advertised.scheme if advertised else scheme
    return dataclasses.replace(
        config,
        instance=f"{config.instance_name}/{private_port}",
        advertise_url=f"{scheme}://{host}:{private_port}",
    )


def serve(app: ProxyServer, server: Server, banner: str) -> int:
    """Serve until SIGTERM (graceful drain) or Ctrl-C; then roll back and close."""
    log = logging.getLogger("session_proxy.server")

    def drain_then_stop() -> None:
        log.info("draining: up to %g s for open transactions to end", app.config.drain_seconds)
        app.drain()
        server.stop()

    def stop(signum: int, frame: object) -> None:
        # Graceful: new transactions are refused at once (503, and health
        # says so to load balancers); requests on open transactions still
        # run, so they can commit, until none is open or the drain time is
        # over.  Then the server stops accepting and exits.  stop() must
        # not run on the serving loop's thread.
        if not app.draining:
            app.draining = True
            threading.Thread(target=drain_then_stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    log.info(
        "serving %s %s: %s",
        app.handshake.dialect,
        ".".join(map(str, app.handshake.server_version_info)),
        banner,
    )
    print(f"session-proxy-server listening on {banner}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if app.draining and len(app.registry):
            log.warning(
                "drain time over with %d transaction(s) open; rolling them back",
                len(app.registry),
            )
        app.close()
        log.info("stopped")
    return 0


def _count_connection(app: ProxyServer) -> Callable[[], None]:
    def count() -> None:
        app.http_connections += 1

    return count


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``session-proxy-server``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "keys":
        return keys_main(argv[1:])
    if argv and argv[0] == "token":
        return token_main(argv[1:])
    args = build_parser().parse_args(argv)
    level = args.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Werkzeug's access log follows the chosen level too.
    logging.getLogger("werkzeug").setLevel(level)
    try:
        build, config, options = _app_factory(args)
        scheme = "https" if options.tls else "http"
        if args.workers == 1:
            sockets = [listen_socket(args.host, args.port)]
            app = build(config)
        else:
            check_port_free(args.host, args.port)
    except (ValueError, ImportError, TLSConfigError, OSError) as exc:
        print(f"session-proxy-server: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    if args.workers == 1:
        server = make_server(app, sockets, options, _count_connection(app))
        return serve(app, server, f"{scheme}://{args.host}:{sockets[0].getsockname()[1]}")

    base = args.port + 1 if args.worker_port_base is None else args.worker_port_base

    def start(index: int) -> int:
        try:
            sockets = worker_sockets(args.host, args.port, base + index if base else 0)
            private_port = sockets[1].getsockname()[1]
            app = build(_worker_config(args, config, scheme, private_port))
        except (ValueError, ImportError, OSError) as exc:
            print(f"session-proxy-server worker {index}: {exc}", file=sys.stderr)
            return CONFIG_ERROR
        server = make_server(app, sockets, options, _count_connection(app))
        return serve(app, server, f"{scheme}://{args.host}:{args.port} (worker {index}, pid "
                     f"{os.getpid()}, own port {private_port})")

    return supervise(args.workers, start)


if __name__ == "__main__":
    sys.exit(main())
