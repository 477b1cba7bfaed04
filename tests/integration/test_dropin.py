"""An Airflow-style application runs its own checks direct, then through the proxy."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import scoped_session

import session_proxy
from session_proxy import settings as proxy_settings
from tests.airflowish import api, checks, settings
from tests.conftest import ServerProcess


@pytest.fixture
def app_settings(db_url: str):
    settings.configure_orm(db_url)
    yield settings
    proxy_settings.uninstall(settings)
    settings.dispose_orm()


def test_application_checks_pass_direct_then_through_the_proxy(
    app_settings, server: ServerProcess
) -> None:
    original_engine = settings.engine
    assert checks.run_all() == len(checks.ALL_CHECKS)

    proxy_engine = proxy_settings.install(settings, server.url, token=server.token)
    assert settings.engine is proxy_engine and settings.engine is not original_engine
    assert isinstance(settings.Session, scoped_session)
    options = settings.Session.session_factory.kw
    assert (options["autoflush"], options["expire_on_commit"]) == (False, False)
    assert issubclass(settings.Session.session_factory.class_, session_proxy.ProxySession)

    before = session_proxy.stats(proxy_engine).snapshot()
    assert checks.run_all() == len(checks.ALL_CHECKS)
    spent = session_proxy.stats(proxy_engine).snapshot() - before
    assert spent.statements > 20  # the application's statements went through the server

    proxy_settings.uninstall(settings)
    assert settings.engine is original_engine
    assert api.get_variable("greeting") == "hello again"  # written through the proxy


def test_install_refuses_a_plain_session_factory() -> None:
    import types

    module = types.ModuleType("not_scoped")
    module.Session = sa.orm.sessionmaker()
    with pytest.raises(TypeError, match="must be a scoped_session"):
        proxy_settings.install(module, "http://127.0.0.1:1")


def test_our_own_helpers_have_the_same_contract(db_url: str, server: ServerProcess) -> None:
    registry = proxy_settings.configure_orm(
        server.url, token=server.token, autoflush=False, expire_on_commit=False
    )
    assert issubclass(registry.session_factory.class_, session_proxy.ProxySession)
    table = sa.Table("sp_dropin", sa.MetaData(),
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False))
    table.drop(proxy_settings.engine, checkfirst=True)
    table.create(proxy_settings.engine)

    @proxy_settings.provide_session
    def insert(i: int, session=proxy_settings.NEW_SESSION) -> None:
        session.execute(table.insert().values(id=i))

    @proxy_settings.provide_session
    def count(session=proxy_settings.NEW_SESSION) -> int:
        return session.scalar(sa.select(sa.func.count()).select_from(table))

    insert(1)
    with pytest.raises(sa.exc.IntegrityError):
        insert(1)
    with proxy_settings.create_session() as session:
        insert(2, session=session)
        assert count(session=session) == 2
    assert count() == 2
    table.drop(proxy_settings.engine)
    proxy_settings.Session.remove()
    proxy_settings.engine.dispose()


def test_install_keeps_the_applications_session_class(server: ServerProcess) -> None:
    import types

    class AppSession(sa.orm.Session):
        def describe(self) -> str:
            return "app session"

    module = types.ModuleType("custom_settings")
    module.engine = None
    module.Session = scoped_session(sa.orm.sessionmaker(class_=AppSession, autoflush=False))
    engine = proxy_settings.install(module, server.url, token=server.token)
    try:
        session = module.Session()
        assert isinstance(session, session_proxy.ProxySession)
        assert isinstance(session, AppSession) and session.describe() == "app session"
        assert session.autoflush is False
        assert session.execute(sa.text("SELECT 1")).scalar_one() == 1
        module.Session.remove()
    finally:
        proxy_settings.uninstall(module)
    assert module.engine is None and module.Session.session_factory.class_.__bases__ == (
        AppSession,)
    assert engine is not None
