"""``airflow db migrate`` and Airflow's scheduling code through the proxy.

Each backend (SQLite, PostgreSQL) gets two empty Airflow databases: one
migrated and driven by Airflow directly, one through a session-proxy server
with only ``sql_alchemy_conn = sessionproxy://:TOKEN@host:port/``.  The
schemas Alembic leaves behind, and the table contents Airflow's own
scheduling code writes, must be the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import MISSING, AirflowPair
from .harness import dump, schema_shape

if MISSING:
    pytest.skip(MISSING, allow_module_level=True)


def test_db_migrate_through_the_proxy_builds_the_same_schema(pair: AirflowPair) -> None:
    direct = schema_shape(pair.direct_db)
    assert len(direct) > 40 and direct["alembic_version"]
    assert schema_shape(pair.proxied_db) == direct


def test_alembic_downgrade_and_upgrade_run_through_the_proxy(pair: AirflowPair) -> None:
    """A fresh database is built from the ORM and stamped; real migrations run here.

    Both sides go down to 3.2.0 and back up (migrations add columns at the end,
    so the result differs from the ORM-built schema: compare like with like).
    """
    head = schema_shape(pair.proxied_db)
    shapes = {}
    for name, site, db in (("direct", pair.direct, pair.direct_db),
                           ("proxied", pair.proxied, pair.proxied_db)):
        site.airflow("db", "downgrade", "-n", "3.2.0", "-y")
        older = schema_shape(db)
        assert older["alembic_version"] != head["alembic_version"]
        assert older != head
        site.airflow("db", "migrate")
        shapes[name] = (older, schema_shape(db))
    assert shapes["proxied"] == shapes["direct"]
    assert shapes["proxied"][1]["alembic_version"] == head["alembic_version"]


def test_scheduling_code_writes_the_same_rows_through_the_proxy(
    pair: AirflowPair, tmp_path: Path
) -> None:
    before = pair.server.metric("session_proxy_statements_total")
    seen = {}
    for name, site in (("direct", pair.direct), ("proxied", pair.proxied)):
        site.python("tests.integration.airflow.scenario", str(tmp_path / f"{name}.json"))
        seen[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert seen["direct"]["run_state"] == "success"
    assert set(seen["direct"]["task_states"].values()) == {"success"}
    assert seen["proxied"] == seen["direct"]
    assert pair.server.metric("session_proxy_statements_total") > before + 30
    assert dump(pair.proxied_db) == dump(pair.direct_db)
