"""Generated DAG files: a folder of small DAGs for the DAG processor to parse."""

from __future__ import annotations

from pathlib import Path

TEMPLATE = '''"""Generated DAG {index}."""
import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(
    dag_id="sp_gen_{index}",
    schedule="{schedule}",
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    description="{description}",
    tags=["generated", "batch-{batch}"],
) as dag:
    tasks = [EmptyOperator(task_id=f"step_{{i}}") for i in range({tasks})]
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream
'''


def write_dag_files(
    folder: Path, indexes: range, *, tasks: int = 5, description: str = "generated"
) -> list[Path]:
    """Write ``sp_gen_<i>.py`` for each index; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in indexes:
        path = folder / f"sp_gen_{index}.py"
        path.write_text(TEMPLATE.format(
            index=index, tasks=tasks, description=description, batch=index % 3,
            schedule="@daily" if index % 2 else "@hourly",
        ))
        paths.append(path)
    return paths
