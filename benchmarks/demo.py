"""Run the README example direct and through a real session-proxy server.

``python -m session_proxy_bench.demo`` creates a SQLite database in a temporary
directory, starts ``session-proxy-server`` in front of it as a subprocess,
runs the same ORM code over a direct engine and over a proxy engine, checks
that both give the same answer, and writes ``report/demo.md`` with the
round trips, bytes and statements the proxy spent.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import session_proxy
from session_proxy import ProxySession
from session_proxy_server.testing import ServerProcess


class Base(DeclarativeBase):
    pass


class Task(Base):
    __tablename__ = "demo_task"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    state: Mapped[str] = mapped_column(sa.String(20), default="queued")
    started: Mapped[datetime.datetime | None] = mapped_column(sa.DateTime(timezone=True))


def workload(session: Session) -> list[tuple[str, str]]:
    """The example: queue tasks, start one under a row lock, report states."""
    session.add_all(Task(name=f"task-{i}") for i in range(5))
    session.commit()
    task = session.scalars(sa.select(Task).filter_by(name="task-2").with_for_update()).one()
    task.state = "running"
    task.started = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    session.commit()
    return session.execute(sa.select(Task.name, Task.state).order_by(Task.id)).all()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the demo and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="report", help="report directory (default %(default)s)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{os.path.join(tmp, 'demo.db')}"
        direct = sa.create_engine(db_url)
        Base.metadata.create_all(direct)
        server = ServerProcess(db_url)
        try:
            proxy = session_proxy.create_engine(server.url, token=server.token)
            with sessionmaker(bind=direct)() as session:
                direct_rows = workload(session)
            with direct.begin() as conn:
                conn.execute(sa.delete(Task))
            with proxy.connect():
                pass  # first connect: dialect initialize, not part of the workload
            before = session_proxy.stats(proxy).snapshot()
            with sessionmaker(class_=ProxySession, bind=proxy)() as session:
                proxy_rows = workload(session)
            spent = session_proxy.stats(proxy).snapshot() - before
            proxy.dispose()
        finally:
            server.stop()
        direct.dispose()

    same = [tuple(r) for r in direct_rows] == [tuple(r) for r in proxy_rows]
    lines = [
        "# session-proxy demo",
        "",
        f"Backend: SQLite {'.'.join(map(str, direct.dialect.server_version_info))}"
        f", SQLAlchemy {sa.__version__}, Python {sys.version.split()[0]}",
        "",
        f"Direct and proxy results identical: **{'yes' if same else 'NO'}**",
        "",
        "| measure | proxy |",
        "| --- | ---: |",
        f"| round trips | {spent.round_trips} |",
        f"| statements | {spent.statements} |",
        f"| request bytes | {spent.request_bytes} |",
        f"| response bytes | {spent.response_bytes} |",
        "",
        "Rows: " + ", ".join(f"{name}={state}" for name, state in proxy_rows),
        "",
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"report written to {out / 'demo.md'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
