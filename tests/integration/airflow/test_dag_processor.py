"""``airflow dag-processor`` for real, with only a proxy URL and a role token.

The DAG processor runs user code and still talks to the database directly
in Airflow 3 (apache/airflow issue 61802).  Here it gets no database
credentials at all: ``sql_alchemy_conn = sessionproxy://:TOKEN@host:port/``
with a ``dag-processor`` token.  Its statement policy is learnt from the
component itself: one server records what the DAG processor sends
(``--policy-record``) while it parses a first folder of DAGs; a second
server enforces the file (``--policy``) while it parses new and changed DAGs,
and refuses that token anything else.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from session_proxy.errors import AccessDenied
from session_proxy_bench.airflow_dags import write_dag_files
from session_proxy_server.testing import ServerProcess, issue

from .conftest import MISSING, databases, proxy_url
from .harness import AirflowSite

ROLE = "dag-processor"

if MISSING:
    pytest.skip(MISSING, allow_module_level=True)


def synced_dags(db: str) -> dict[str, tuple[bool, str | None]]:
    """dag_id -> (is_stale, description) for every DAG row, read directly."""
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT dag.dag_id, dag.is_stale, dag.description FROM dag "
                "JOIN serialized_dag ON serialized_dag.dag_id = dag.dag_id"
            ))
            synced = {row[0]: (bool(row[1]), row[2]) for row in rows}
            errors = connection.scalar(sa.text("SELECT count(*) FROM import_error"))
        assert errors == 0
        return synced
    finally:
        engine.dispose()


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def migrated_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> str:
    """An Airflow database migrated directly (the migration job is not the DAG processor)."""
    tmp = tmp_path_factory.mktemp(f"dag-processor-{request.param}")
    db, _ = databases(request.param, tmp)
    AirflowSite(tmp / "home-migrate", db).airflow("db", "migrate")
    return db


def test_the_dag_processor_runs_on_a_policy_recorded_from_itself(
    migrated_db: str, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    write_dag_files(dags, range(0, 4))
    token = issue(role=ROLE, subject="dag-processor-1")
    policy = tmp_path / "policy.json"

    def parse_once(server: ServerProcess) -> None:
        site = AirflowSite(tmp_path / "home", proxy_url(server, token),
                           {"AIRFLOW__CORE__DAGS_FOLDER": str(dags)})
        site.airflow("dag-processor", "--num-runs", "1")

    # 1. learn: new DAGs; then one changed, one added and one deleted; then a
    # pass with a stale DAG in the table.  Without the last two the policy lacks
    # "SELECT dag.dag_id FROM dag WHERE dag.is_stale" and the DELETEs of a stale
    # DAG's asset references, and step 2 is refused: a recorded policy covers
    # what was seen, no more.
    with ServerProcess(migrated_db, "--policy-record", str(policy)) as recorder:
        parse_once(recorder)
        write_dag_files(dags, range(0, 1), description="changed once")
        write_dag_files(dags, range(4, 5))
        (dags / "sp_gen_2.py").unlink()
        parse_once(recorder)
        # a stale DAG's references are removed on a later pass: record that too
        parse_once(recorder)
    learnt = json.loads(policy.read_text())["roles"][ROLE]
    assert len(learnt["statements"]) > 10
    assert set(synced_dags(migrated_db)) == {f"sp_gen_{i}" for i in range(5)}

    # 2. enforce: more new DAGs, a changed one, a deleted one
    write_dag_files(dags, range(5, 9))
    write_dag_files(dags, range(1, 2), description="changed under the policy")
    (dags / "sp_gen_3.py").unlink()
    with ServerProcess(migrated_db, "--policy", str(policy)) as enforcer:
        parse_once(enforcer)
        synced = synced_dags(migrated_db)
        assert {d for d, (stale, _) in synced.items() if not stale} == {
            f"sp_gen_{i}" for i in (0, 1, 4, 5, 6, 7, 8)
        }
        assert synced["sp_gen_2"][0] and synced["sp_gen_3"][0]  # files gone: stale
        assert synced["sp_gen_1"][1] == "changed under the policy"

        # the same token may do nothing the DAG processor did not do
        engine = sa.create_engine(proxy_url(enforcer, token))
        try:
            with pytest.raises(sa.exc.ProgrammingError) as caught, engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM variable"))
            assert isinstance(caught.value.orig, AccessDenied)
        finally:
            engine.dispose()
