"""Run Debian's nginx as a plain round-robin load balancer in front of servers.

``NginxBalancer([port_a, port_b])`` writes a configuration into a temporary
directory and starts ``nginx`` in the foreground on a free loopback port,
spreading requests over the upstream ports in turn, which is how a user
puts several session-proxy instances behind one address.  The generated
configuration is the one ``docs/scaling.md`` documents.  nginx itself is
Debian's package (``apt-get install nginx-light``); :func:`nginx_binary`
finds it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from session_proxy_server.testing import free_port, stop_process

CONFIG = """\
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;

    upstream session_proxy {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 32m;
        location / {{
            proxy_pass http://session_proxy;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 600s;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    """The nginx executable, or None when the package is not installed."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )


def render_config(upstream_ports: Sequence[int], port: int, directory: str) -> str:
    """The nginx configuration for a round-robin balancer on ``port``."""
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstream_ports)
    return CONFIG.format(directory=directory, servers=servers, port=port)


class NginxBalancer:
    """nginx on a free loopback port, round-robin over ``upstream_ports``."""

    def __init__(self, upstream_ports: Sequence[int], start_timeout: float = 15.0) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (Debian package nginx-light)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = tempfile.mkdtemp(prefix="session-proxy-nginx-")
        self.config_path = Path(self.directory) / "nginx.conf"
        self.config_path.write_text(render_config(upstream_ports, self.port, self.directory))
        self.process = subprocess.Popen(
            [binary, "-p", self.directory, "-c", str(self.config_path), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nginx exited: {self.process.stderr.read().decode(errors='replace')}"
                    f"{self.error_log()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not start in {start_timeout:g} s: {self.error_log()}")

    def error_log(self) -> str:
        """nginx's error log so far."""
        path = Path(self.directory) / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop nginx and wait for it."""
        stop_process(self.process)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> NginxBalancer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
