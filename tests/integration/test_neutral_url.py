"""``sessionproxy://`` picks the backend's proxy dialect from the server's handshake.

Real server processes on SQLite, PostgreSQL and MariaDB: the engine made from
the backend-neutral URL gets the same dialect class as the explicit
``<backend>+sessionproxy://`` URL, runs the same ORM work in the same number
of round trips, and the server sees the same requests (the one handshake
moves from the first connect to ``create_engine``, and is fetched once per URL).
"""

from __future__ import annotations

from collections import Counter

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import session_proxy
from session_proxy.dialects import DIALECTS, neutral
from session_proxy.errors import AuthenticationFailed, ServerUnreachable
from session_proxy.wire import protocol
from session_proxy_server.testing import ServerProcess, free_port


class Base(DeclarativeBase):
    pass


class Parcel(Base):
    __tablename__ = "sp_neutral_parcel"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(sa.String(20))


def neutral_url(server: ServerProcess, token: str | None = None, query: str = "") -> str:
    secret = token if token is not None else server.token
    return f"sessionproxy://:{secret}@127.0.0.1:{server.port}/{query}"


def requests_by_endpoint(server: ServerProcess) -> Counter[str]:
    """``session_proxy_requests_total`` summed per endpoint (status ignored)."""
    text = requests.get(server.url + protocol.METRICS_PATH, headers=server.headers,
                        timeout=30).text
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("session_proxy_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            endpoint = labels.split('endpoint="', 1)[1].split('"', 1)[0]
            counts[endpoint] += int(float(value))
    return counts


def orm_work(engine: sa.Engine) -> int:
    """Create, fill, read and change a table; return the rows left."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Parcel(id=i, state="new") for i in range(20)])
        session.commit()
        parcel = session.get(Parcel, 7)
        assert parcel is not None
        parcel.state = "sent"
        session.commit()
        session.execute(sa.delete(Parcel).where(Parcel.id >= 15))
        session.commit()
        assert session.scalar(sa.select(Parcel.state).where(Parcel.id == 7)) == "sent"
        return session.scalar(sa.select(sa.func.count()).select_from(Parcel)) or 0


def test_the_neutral_url_gets_the_backend_dialect_and_runs_the_same_requests(
    db_url: str, server: ServerProcess, direct_engine: sa.Engine
) -> None:
    backend_name = server_backend(server)
    neutral.forget_handshakes()  # the neutral engine below fetches it again
    explicit_url = f"{backend_name}+sessionproxy://:{server.token}@127.0.0.1:{server.port}/"

    spent: dict[str, tuple[Counter[str], int]] = {}
    for label, url in (("explicit", explicit_url), ("neutral", neutral_url(server))):
        Base.metadata.drop_all(direct_engine)  # both start from the same state
        before = requests_by_endpoint(server)
        engine = sa.create_engine(url)
        try:
            assert orm_work(engine) == 15
            if label == "neutral":
                assert engine.dialect.name == make_url(db_url).get_backend_name()
                module, name = DIALECTS[backend_name]
                assert type(engine.dialect).__name__ == name
                assert type(engine.dialect).__module__ == module
                assert not str(engine.url).startswith(make_url(db_url).get_backend_name())
            round_trips = session_proxy.stats(engine).round_trips
        finally:
            engine.dispose()
        after = requests_by_endpoint(server)
        spent[label] = (after - before, round_trips)
    # One metrics scrape per measurement is in each delta alike.
    assert spent["neutral"] == spent["explicit"]
    assert spent["neutral"][0]["health"] == 1
    assert spent["neutral"][1] > 5


def test_the_handshake_is_fetched_once_per_url(server: ServerProcess) -> None:
    neutral.forget_handshakes()
    url = neutral_url(server)
    before = requests_by_endpoint(server)
    engines = [sa.create_engine(url) for _ in range(3)]
    try:
        for engine in engines:
            with engine.connect() as connection:
                assert connection.scalar(sa.text("SELECT 1")) == 1
    finally:
        for engine in engines:
            engine.dispose()
    assert (requests_by_endpoint(server) - before)["health"] == 1


def server_backend(server: ServerProcess) -> str:
    """The backend name the server's handshake gives (``mysql`` for MariaDB too)."""
    return neutral.handshake_for(make_url(neutral_url(server))).dialect


def test_an_unreachable_server_is_named_in_the_error() -> None:
    port = free_port()
    url = f"sessionproxy://:secret-token@127.0.0.1:{port}/?retries=1&timeout=2"
    with pytest.raises(ServerUnreachable) as caught:
        sa.create_engine(url)
    message = str(caught.value)
    assert f"sessionproxy://:***@127.0.0.1:{port}/" in message
    assert "secret-token" not in message


def test_the_token_must_be_known_when_the_engine_is_made(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    neutral.forget_handshakes()
    monkeypatch.delenv("SESSION_PROXY_TOKEN", raising=False)
    bare = f"sessionproxy://127.0.0.1:{server.port}/?retries=1"
    with pytest.raises(AuthenticationFailed, match="SESSION_PROXY_TOKEN"):
        sa.create_engine(bare)
    monkeypatch.setenv("SESSION_PROXY_TOKEN", server.token or "")
    engine = sa.create_engine(bare)
    try:
        with engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT 2")) == 2
    finally:
        engine.dispose()


def test_an_async_engine_is_made_but_refuses_to_connect(server: ServerProcess) -> None:
    """Airflow builds an async engine from the same URL at import: that must not fail."""
    url = make_url(neutral_url(server))
    dialect_cls = url.get_dialect(_is_async=True)  # what create_async_engine asks
    assert dialect_cls.is_async
    dialect = dialect_cls()
    with pytest.raises(session_proxy.errors.ProxyError, match="no asyncio engine") as caught:
        dialect.connect()
    assert f"127.0.0.1:{server.port}" in str(caught.value)
    assert str(server.token) not in str(caught.value)
