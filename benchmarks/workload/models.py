"""An Airflow-like metadata schema, written for this project.

Tables: ``dag``, ``dag_task`` and ``task_edge`` (the DAG structure),
``dag_run``, ``task_instance``, ``job``, ``variable``, ``connection``,
``xcom`` and ``log``.  All timestamps are timezone-aware columns.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

Timestamp = sa.DateTime(timezone=True)
# Identifiers; short enough for MySQL's 3,072-byte index key limit in utf8mb4.
ID = sa.String(100)


class Base(DeclarativeBase):
    """Declarative base of the workload schema."""


class Dag(Base):
    __tablename__ = "dag"

    dag_id: Mapped[str] = mapped_column(ID, primary_key=True)
    description: Mapped[str | None] = mapped_column(sa.String(500))
    is_paused: Mapped[bool] = mapped_column(default=False)
    fileloc: Mapped[str] = mapped_column(sa.String(500))
    last_parsed: Mapped[datetime.datetime | None] = mapped_column(Timestamp)


class DagTask(Base):
    """One task of a DAG's structure."""

    __tablename__ = "dag_task"

    dag_id: Mapped[str] = mapped_column(sa.ForeignKey("dag.dag_id"), primary_key=True)
    task_id: Mapped[str] = mapped_column(ID, primary_key=True)
    operator: Mapped[str] = mapped_column(sa.String(100))
    trigger_rule: Mapped[str] = mapped_column(sa.String(50), default="all_success")
    priority_weight: Mapped[int] = mapped_column(default=1)


class TaskEdge(Base):
    """``upstream_task_id >> downstream_task_id`` in one DAG."""

    __tablename__ = "task_edge"

    dag_id: Mapped[str] = mapped_column(sa.ForeignKey("dag.dag_id"), primary_key=True)
    upstream_task_id: Mapped[str] = mapped_column(ID, primary_key=True)
    downstream_task_id: Mapped[str] = mapped_column(ID, primary_key=True)


class DagRun(Base):
    __tablename__ = "dag_run"
    __table_args__ = (sa.UniqueConstraint("dag_id", "run_id", name="dag_run_dag_id_run_id_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dag_id: Mapped[str] = mapped_column(sa.ForeignKey("dag.dag_id"))
    run_id: Mapped[str] = mapped_column(ID)
    state: Mapped[str] = mapped_column(sa.String(50), index=True)
    run_type: Mapped[str] = mapped_column(sa.String(50))
    logical_date: Mapped[datetime.datetime] = mapped_column(Timestamp)
    queued_at: Mapped[datetime.datetime | None] = mapped_column(Timestamp)
    start_date: Mapped[datetime.datetime | None] = mapped_column(Timestamp)
    end_date: Mapped[datetime.datetime | None] = mapped_column(Timestamp)

    task_instances: Mapped[list[TaskInstance]] = relationship(
        back_populates="dag_run", viewonly=False
    )


class Job(Base):
    __tablename__ = "job"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_type: Mapped[str] = mapped_column(sa.String(30))
    state: Mapped[str] = mapped_column(sa.String(20))
    hostname: Mapped[str] = mapped_column(sa.String(500))
    start_date: Mapped[datetime.datetime | None] = mapped_column(Timestamp)
    latest_heartbeat: Mapped[datetime.datetime | None] = mapped_column(Timestamp)


class TaskInstance(Base):
    __tablename__ = "task_instance"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["dag_id", "run_id"], ["dag_run.dag_id", "dag_run.run_id"], ondelete="CASCADE"
        ),
        sa.Index("ti_state", "state"),
    )

    dag_id: Mapped[str] = mapped_column(ID, primary_key=True)
    task_id: Mapped[str] = mapped_column(ID, primary_key=True)
    run_id: Mapped[str] = mapped_column(ID, primary_key=True)
    map_index: Mapped[int] = mapped_column(primary_key=True, default=-1, autoincrement=False)
    state: Mapped[str | None] = mapped_column(sa.String(20))
    try_number: Mapped[int] = mapped_column(default=0)
    max_tries: Mapped[int] = mapped_column(default=1)
    hostname: Mapped[str | None] = mapped_column(sa.String(500))
    pid: Mapped[int | None]
    job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("job.id"))
    queued_dttm: Mapped[datetime.datetime | None] = mapped_column(Timestamp)
    start_date: Mapped[datetime.datetime | None] = mapped_column(Timestamp)
    end_date: Mapped[datetime.datetime | None] = mapped_column(Timestamp)
    duration: Mapped[float | None]
    last_heartbeat: Mapped[datetime.datetime | None] = mapped_column(Timestamp)

    dag_run: Mapped[DagRun] = relationship(back_populates="task_instances")

    @property
    def key(self) -> tuple[str, str, str, int]:
        """``(dag_id, task_id, run_id, map_index)``."""
        return (self.dag_id, self.task_id, self.run_id, self.map_index)


class Variable(Base):
    __tablename__ = "variable"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(ID, unique=True)
    val: Mapped[str | None] = mapped_column(sa.Text)
    description: Mapped[str | None] = mapped_column(sa.Text)


class Connection(Base):
    __tablename__ = "connection"

    id: Mapped[int] = mapped_column(primary_key=True)
    conn_id: Mapped[str] = mapped_column(ID, unique=True)
    conn_type: Mapped[str] = mapped_column(sa.String(500))
    host: Mapped[str | None] = mapped_column(sa.String(500))
    login: Mapped[str | None] = mapped_column(sa.String(500))
    password: Mapped[str | None] = mapped_column(sa.String(5000))
    port: Mapped[int | None]
    extra: Mapped[str | None] = mapped_column(sa.Text)


class XCom(Base):
    __tablename__ = "xcom"

    dag_id: Mapped[str] = mapped_column(ID, primary_key=True)
    run_id: Mapped[str] = mapped_column(ID, primary_key=True)
    task_id: Mapped[str] = mapped_column(ID, primary_key=True)
    map_index: Mapped[int] = mapped_column(primary_key=True, default=-1, autoincrement=False)
    key: Mapped[str] = mapped_column(ID, primary_key=True)
    value: Mapped[Any] = mapped_column(sa.JSON)
    timestamp: Mapped[datetime.datetime] = mapped_column(Timestamp)


class Log(Base):
    __tablename__ = "log"

    id: Mapped[int] = mapped_column(primary_key=True)
    dttm: Mapped[datetime.datetime] = mapped_column(Timestamp)
    dag_id: Mapped[str | None] = mapped_column(ID)
    task_id: Mapped[str | None] = mapped_column(ID)
    run_id: Mapped[str | None] = mapped_column(ID)
    event: Mapped[str] = mapped_column(sa.String(60))
    extra: Mapped[str | None] = mapped_column(sa.Text)
