"""A scheduled DAG with parameters and a description, for the DAG table's columns."""

from __future__ import annotations

import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(
    dag_id="sp_daily",
    schedule="@daily",
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    description="daily work",
    params={"limit": 10},
    max_active_tasks=4,
) as dag:
    EmptyOperator(task_id="start") >> EmptyOperator(task_id="finish")
