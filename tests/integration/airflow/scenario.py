"""Airflow's own scheduling code against whatever ``sql_alchemy_conn`` says.

Run in a subprocess by :mod:`tests.integration.airflow.test_airflow_db` (Airflow reads its
configuration at import, so one process per database):

    export AIRFLOW_HOME=... AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=...
    python -m tests.integration.airflow.scenario OUT.json

It syncs the DAG folder (DagBag parse + ``sync_bag_to_db``, what the DAG
processor does per bundle), creates a run of ``sp_chain`` with
``create_dagrun``, drives it to success with ``DagRun.update_state`` and
``DagRun.schedule_tis`` (the scheduler loop's calls: empty tasks need no
executor), and sets and reads a Variable and a Connection.  What it saw goes
to OUT.json; the test compares the tables themselves.
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

RUN_AT = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)


def sync_dags() -> list[str]:
    """Parse every bundle and write the DAGs to the database; return the DAG ids."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    dag_ids: list[str] = []
    for bundle in manager.get_all_dag_bundles():
        bundle.initialize()
        dagbag = BundleDagBag(
            dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name
        )
        if dagbag.import_errors:
            raise RuntimeError(f"import errors: {dagbag.import_errors}")
        sync_bag_to_db(dagbag, bundle.name, bundle.version)
        dag_ids.extend(sorted(dagbag.dags))
    return dag_ids


def run_to_success() -> dict[str, Any]:
    """create_dagrun, then update_state + schedule_tis until the run finishes."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag("sp_chain", session=session)
        assert dag is not None, "sp_chain was not synced"
        dag.create_dagrun(
            run_id="sp_chain_run",
            logical_date=RUN_AT,
            data_interval=(RUN_AT, RUN_AT + datetime.timedelta(days=1)),
            run_after=RUN_AT,
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING,
            session=session,
        )
    loops = 0
    state = DagRunState.RUNNING
    while state == DagRunState.RUNNING and loops < 10:
        # One scheduler loop: a fresh session, as SchedulerJobRunner._schedule_dag_run has.
        loops += 1
        with create_session() as session:
            run = session.query(DagRun).filter(DagRun.run_id == "sp_chain_run").one()
            run.dag = DBDagBag().get_dag_for_run(dag_run=run, session=session)
            schedulable, _ = run.update_state(session=session, execute_callbacks=False)
            run.schedule_tis(schedulable, session=session)
            state = run.state
    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.run_id == "sp_chain_run").one()
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}
        return {"run_state": str(run.state), "loops": loops, "task_states": states}


def variables_and_connections() -> dict[str, Any]:
    """Set, update and read Variables and a Connection through Airflow's models."""
    from airflow.models.connection import Connection
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    Variable.set("sp_greeting", "hello")
    Variable.set("sp_settings", {"retries": 3, "pool": "default"}, serialize_json=True)
    Variable.set("sp_greeting", "hello again")
    Variable.delete("sp_missing")
    with create_session() as session:
        session.add(Connection(
            conn_id="sp_warehouse", conn_type="postgres", host="db.example", login="etl",
            password="s3cret", schema="dw", port=5432, extra=json.dumps({"sslmode": "require"}),
        ))
    with create_session() as session:
        conn = session.query(Connection).filter(Connection.conn_id == "sp_warehouse").one()
        uri = conn.get_uri()
    return {
        "greeting": Variable.get("sp_greeting"),
        "settings": Variable.get("sp_settings", deserialize_json=True),
        "connection_uri": uri,
    }


def main(out: str) -> None:
    result = {"dag_ids": sync_dags(), **run_to_success(), **variables_and_connections()}
    with open(out, "w") as handle:
        json.dump(result, handle, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1])
