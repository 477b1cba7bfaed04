"""A client process needs neither database credentials nor database drivers."""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa

from tests.conftest import REPO, ServerProcess

CLIENT = r"""
import sys
# Make every database driver unimportable in this process.
for name in ("psycopg", "psycopg2", "pymysql", "MySQLdb", "sqlite3", "_sqlite3"):
    sys.modules[name] = None

import datetime, decimal, json
import sqlalchemy as sa
import session_proxy

engine = session_proxy.create_engine(sys.argv[1])
meta = sa.MetaData()
t = sa.Table(
    "sp_nodriver", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("doc", sa.JSON),
    sa.Column("amount", sa.Numeric(10, 2)),
    sa.Column("at", sa.DateTime(timezone=True)),
)
meta.drop_all(engine)
meta.create_all(engine)
at = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
with engine.begin() as conn:
    conn.execute(t.insert(), [{"id": 1, "doc": {"a": [1, 2]}, "amount": decimal.Decimal("1.25"),
                               "at": at}])
with engine.connect() as conn:
    row = conn.execute(sa.select(t)).one()
meta.drop_all(engine)
print(json.dumps({"id": row.id, "doc": row.doc, "amount": str(row.amount),
                  "loaded": sorted(m for m in ("psycopg", "pymysql", "sqlite3")
                                   if sys.modules.get(m) is not None)}))
"""


def test_client_runs_without_any_database_driver(server: ServerProcess, db_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, server.url],
        cwd=REPO,
        # The token reaches create_engine() through its environment variable.
        env=dict(os.environ, SESSION_PROXY_TOKEN=server.token),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    import json

    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"id": 1, "doc": {"a": [1, 2]}, "amount": "1.25", "loaded": []}
    # The table was dropped through the proxy.
    assert not sa.inspect(sa.create_engine(db_url)).has_table("sp_nodriver")
