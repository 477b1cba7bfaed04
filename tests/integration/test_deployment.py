"""The server as users deploy it: the CLI and gunicorn, over real HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

import session_proxy
from session_proxy_server.testing import issue, signing_key
from tests.conftest import REPO, ServerProcess, free_port


def test_cli_rejects_bad_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "session_proxy_server.cli", "--db-url", f"sqlite:///{tmp_path}/x.db"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "authentication is on by default" in result.stderr
    assert "--public-key" in result.stderr and "--insecure-no-auth" in result.stderr

    result = subprocess.run(
        [sys.executable, "-m", "session_proxy_server.cli", "--db-url", "sqlite:///:memory:",
         "--insecure-no-auth"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "in-memory database is not supported" in result.stderr

    result = subprocess.run(
        [sys.executable, "-m", "session_proxy_server.cli", "--db-url", f"sqlite:///{tmp_path}/x.db",
         "--page-size", "0", "--insecure-no-auth"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "page_size must be positive" in result.stderr

    result = subprocess.run(
        [sys.executable, "-m", "session_proxy_server.cli", "--db-url", "postgresql+psycopg2://u@h/d",
         "--insecure-no-auth"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "'psycopg' driver, not 'psycopg2'" in result.stderr


def test_console_script_serves_sqlite(tmp_path: Path) -> None:
    """The README's path: keys generate, token issue, serve with the public key."""
    script = Path(sys.executable).with_name("session-proxy-server")
    if not script.exists():
        pytest.skip("package not installed with its console script")

    def run(*args: str) -> str:
        done = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    keys = tmp_path / "keys"
    run("keys", "generate", "--dir", str(keys))
    private, public = keys / "session-proxy-private.pem", keys / "session-proxy-public.pem"
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    token = run(
        "token", "issue", "--private-key", str(private), "--role", "worker",
        "--subject", "host-1", "--ttl", "10m",
    ).strip()
    port = free_port()
    process = subprocess.Popen(
        [str(script), "--db-url", f"sqlite:///{tmp_path}/cli.db", "--port", str(port),
         "--public-key", str(public)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = [process.stdout.readline() for _ in range(2)]
        assert any("listening on http://127.0.0.1:" in line for line in lines), lines
        # Without a token the handshake itself is refused: health tells
        # anonymous callers nothing but that the server is up.
        with pytest.raises(session_proxy.errors.AuthenticationFailed, match="requires a token"):
            session_proxy.create_engine(f"http://127.0.0.1:{port}")
        engine = session_proxy.create_engine(f"http://127.0.0.1:{port}", token=token)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1), (2)"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT sum(x) FROM t")).scalar_one() == 3
        engine.dispose()
    finally:
        process.terminate()
        assert process.wait(15) == 0  # SIGTERM shuts down cleanly


def _gunicorn() -> str:
    path = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    if path is None:
        pytest.skip("gunicorn is not installed (extra 'gunicorn')")
    return path


def test_gunicorn_serves_postgresql_transactions(sqlite_path: Path) -> None:
    from tests.conftest import backend_url

    db_url = backend_url("postgresql", sqlite_path)
    port = free_port()
    env = dict(
        os.environ,
        SESSION_PROXY_DB_URL=db_url,
        SESSION_PROXY_LEASE_SECONDS="30",
        SESSION_PROXY_PUBLIC_KEY=str(signing_key()[1]),
        SESSION_PROXY_MAX_TOKEN_LIFETIME="2h",
        SESSION_PROXY_METRICS_ROLES="ops,monitor",
    )
    process = subprocess.Popen(
        [_gunicorn(), "--workers", "1", "--threads", "8", "--bind", f"127.0.0.1:{port}",
         "session_proxy_server.wsgi:app"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                anonymous = requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                break
            except requests.RequestException:
                assert process.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        # Without a token: up, nothing more; with one: the handshake.
        assert anonymous.json() == {"status": "ok", "protocol": 1}
        health = requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=5,
                              headers={"Authorization": f"Bearer {issue(ttl_seconds=3600)}"}).json()
        # The environment's limits: a 3 h token is refused, metrics are for ops/monitor.
        long_lived = requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=5, headers={
            "Authorization": f"Bearer {issue(ttl_seconds=3 * 3600)}"})
        assert long_lived.status_code == 401
        assert "lifetime too long" in long_lived.json()["error"]["message"]
        metrics = f"http://127.0.0.1:{port}/v1/metrics"
        admin = {"Authorization": f"Bearer {issue(ttl_seconds=3600)}"}
        assert requests.get(metrics, timeout=5, headers=admin).status_code == 403
        ops = {"Authorization": f"Bearer {issue('ops', ttl_seconds=3600)}"}
        assert requests.get(metrics, timeout=5, headers=ops).status_code == 200
        assert (health["dialect"], health["driver"], health["lease_seconds"]) == (
            "postgresql",
            "psycopg",
            30.0,
        )
        engine = session_proxy.create_engine(
            f"http://127.0.0.1:{port}", token=issue(ttl_seconds=3600)
        )
        column = sa.Column("id", sa.Integer, primary_key=True)
        table = sa.Table("sp_gunicorn", sa.MetaData(), column)
        table.drop(engine, checkfirst=True)
        table.create(engine)
        with engine.connect() as conn:
            conn.execute(table.insert(), [{"id": 1}, {"id": 2}])
            conn.rollback()
            conn.execute(table.insert(), [{"id": 3}])
            conn.commit()
        with engine.connect() as conn:
            assert conn.execute(sa.select(table.c.id)).scalars().all() == [3]
        table.drop(engine)
        engine.dispose()
    finally:
        process.terminate()
        process.wait(15)


def test_wsgi_module_requires_database_url() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SESSION_PROXY_DB_URL"}
    result = subprocess.run(
        [sys.executable, "-c", "import session_proxy_server.wsgi"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "set SESSION_PROXY_DB_URL" in result.stderr


def test_server_process_fixture_reports_backend(server: ServerProcess, backend: str) -> None:
    health = requests.get(server.url + "/v1/health", headers=server.headers, timeout=5).json()
    assert health["dialect"] == backend
    assert health["protocol"] == 1
