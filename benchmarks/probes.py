"""Micro-probes behind the proxy's performance targets.

Each probe times one thing the workload's operations mix together, on a
table of its own (``bench_probe``), direct and through the proxy:

- ``flush``: add N objects with client-side keys and commit, one
  :class:`~session_proxy.ProxySession` (round trips counted);
- ``select_rows``: read N rows with one SELECT (the per-row cost).

The one-row SELECT through the proxy is measured with the floors
(:meth:`session_proxy_bench.runner.Benchmark._floors`), interleaved with the HTTP echo
it is compared to.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import session_proxy

FLUSH_SIZES = (1, 100, 10_000)
SELECT_ROWS = 10_000


class _Base(DeclarativeBase):
    pass


class ProbeRow(_Base):
    """A plain row with a client-side key."""

    __tablename__ = "bench_probe"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(40))
    n: Mapped[int]


def reset_probe_table(direct: sa.Engine) -> None:
    """Create ``bench_probe`` empty."""
    _Base.metadata.drop_all(direct)
    _Base.metadata.create_all(direct)


def _rows(start: int, count: int) -> list[dict[str, Any]]:
    return [{"id": start + i, "name": f"row {start + i}", "n": i} for i in range(count)]


def run_probes(direct: sa.Engine, engines: dict[str, sa.Engine], rtt: float,
               samples: int) -> list[dict[str, Any]]:
    """Every probe in every mode of ``engines`` (``direct`` and/or ``proxy``)."""
    found: list[dict[str, Any]] = []
    reset_probe_table(direct)
    for mode, engine in engines.items():
        with engine.connect():
            pass  # first-connect queries are not part of any sample
        session_class = session_proxy.ProxySession if mode == "proxy" else sa.orm.Session
        factory = sessionmaker(bind=engine, class_=session_class)
        for size in FLUSH_SIZES:
            for _ in range(samples):
                before = _snapshot(engine, mode)
                started = time.perf_counter()
                with factory() as session:
                    session.add_all(ProbeRow(**row) for row in _rows(0, size))
                    session.commit()
                latency = time.perf_counter() - started
                found.append(_sample("flush", mode, rtt, size, latency, engine, before))
                with direct.begin() as conn:
                    conn.execute(sa.delete(ProbeRow))
        with direct.begin() as conn:
            conn.execute(sa.insert(ProbeRow), _rows(0, SELECT_ROWS))
        for _ in range(samples):
            before = _snapshot(engine, mode)
            started = time.perf_counter()
            with engine.connect() as conn:
                rows = conn.execute(sa.select(ProbeRow.__table__)).all()
            latency = time.perf_counter() - started
            if len(rows) != SELECT_ROWS:
                raise RuntimeError(f"{mode}: read {len(rows)} rows, expected {SELECT_ROWS}")
            found.append(_sample("select_rows", mode, rtt, SELECT_ROWS, latency, engine, before))
        with direct.begin() as conn:
            conn.execute(sa.delete(ProbeRow))
    return found


def _snapshot(engine: sa.Engine, mode: str) -> Any:
    return session_proxy.stats(engine).snapshot() if mode == "proxy" else None


def _sample(probe: str, mode: str, rtt: float, n: int, latency: float, engine: sa.Engine,
            before: Any) -> dict[str, Any]:
    spent = _snapshot(engine, mode) - before if before is not None else None
    return {
        "probe": probe,
        "mode": mode,
        "rtt_ms": rtt * 1000,
        "n": n,
        "latency_s": latency,
        "round_trips": spent.round_trips if spent is not None else None,
        "statements": spent.statements if spent is not None else None,
    }
