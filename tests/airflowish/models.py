"""The application's models."""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Variable(Base):
    __tablename__ = "af_variable"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(100), unique=True)
    val: Mapped[str] = mapped_column(sa.Text)


class DagRun(Base):
    __tablename__ = "af_dag_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    dag_id: Mapped[str] = mapped_column(sa.String(100))
    run_id: Mapped[str] = mapped_column(sa.String(100))
    state: Mapped[str] = mapped_column(sa.String(20), default="queued")
    logical_date: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
    task_instances: Mapped[list[TaskInstance]] = relationship(
        back_populates="dag_run", cascade="all, delete-orphan", order_by="TaskInstance.task_id"
    )
    __table_args__ = (sa.UniqueConstraint("dag_id", "run_id"),)


class TaskInstance(Base):
    __tablename__ = "af_task_instance"

    id: Mapped[int] = mapped_column(primary_key=True)
    dag_run_id: Mapped[int] = mapped_column(sa.ForeignKey("af_dag_run.id"))
    task_id: Mapped[str] = mapped_column(sa.String(100))
    state: Mapped[str | None] = mapped_column(sa.String(20))
    try_number: Mapped[int] = mapped_column(default=0)
    dag_run: Mapped[DagRun] = relationship(back_populates="task_instances")
