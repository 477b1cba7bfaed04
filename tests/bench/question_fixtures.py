"""What the question tests share: a seeded SQLite workload database and its rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from session_proxy_bench.questions import QuestionContext
from session_proxy_bench.report.markdown import render_markdown
from session_proxy_bench.report.sections.questions import questions_section
from session_proxy_bench.workload.script import dump_tables
from session_proxy_bench.workload.seed import reset_schema, seed


def seeded_sqlite(path: Path) -> str:
    """A SQLite file with the workload seeded as a benchmark run leaves it; its URL."""
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    reset_schema(engine)
    with Session(engine) as session:
        seed(session, dags=2, runs_per_dag=3, tasks_per_dag=10)
        session.commit()
    engine.dispose()
    return url


def rows(url: str) -> dict[str, list[tuple]]:
    engine = sa.create_engine(url)
    try:
        return dump_tables(engine)
    finally:
        engine.dispose()


def quick_context(db_url: str, server_url: str = "", token: str | None = None,
                  **extra: Any) -> QuestionContext:
    return QuestionContext(db_url=db_url, server_url=server_url, token=token, rtts=(0.0,),
                           samples=2, quick=True, **extra)


def rendered(key: str, raw: dict[str, Any]) -> str:
    """The question's section as Markdown, rendered from its raw numbers alone."""
    return render_markdown(questions_section({"questions": {key: raw}}))
