"""A small chain of empty tasks: the scheduler's own code runs it to success."""

from __future__ import annotations

import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(
    dag_id="sp_chain",
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    tags=["session-proxy"],
) as dag:
    extract = EmptyOperator(task_id="extract")
    transforms = [EmptyOperator(task_id=f"transform_{i}") for i in range(3)]
    load = EmptyOperator(task_id="load")
    extract >> transforms >> load
