"""One client configuration object: every entry point takes or builds a ClientConfig.

The pure parts, without a server: coercion, the dialect URL options, the
entry points' signatures.  The entry points against the real server of each
backend are in ``tests/integration/test_client_config_entry_points.py``.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from sqlalchemy.engine import make_url

import session_proxy
from session_proxy import errors
from session_proxy.config import ClientConfig
from session_proxy.logical import RemoteClient, configure_remote
from session_proxy.retry import RetryPolicy
from session_proxy.transport import HTTPTransport

POLICY = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.1, deadline=5.0)


# -- the object itself -------------------------------------------------------------------


def test_coerce_builds_from_a_url_and_lets_keywords_override_a_config() -> None:
    built = ClientConfig.coerce("http://h:1/", token="t", timeout=5, retry=POLICY)
    assert built == ClientConfig("http://h:1", token="t", timeout=5.0, retry=POLICY)
    assert built.url == "http://h:1" and built.verify is True
    assert ClientConfig.coerce(built) is built
    assert ClientConfig.coerce(built, verify="ca.pem").verify == "ca.pem"
    assert ClientConfig.coerce(built, verify=False).verify is False
    assert ClientConfig("http://h:1").retry == RetryPolicy()


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"url": "ftp://h:1"}, ValueError, "http://host:port"),
        ({"url": "h:1"}, ValueError, "http://host:port"),
        ({"url": "http://h:1", "timeout": 0}, ValueError, "timeout must be positive"),
        ({"url": "http://h:1", "timeout": "5"}, TypeError, "timeout"),
        ({"url": "http://h:1", "verify": 1}, TypeError, "verify"),
        ({"url": "http://h:1", "token": 5}, TypeError, "token"),
        ({"url": "http://h:1", "retry": 3}, TypeError, "RetryPolicy"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(
    arguments: dict, error: type, words: str
) -> None:
    with pytest.raises(error, match=words):
        ClientConfig(**arguments)


def test_env_token_is_used_only_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_PROXY_TOKEN", "from-env")
    assert ClientConfig("http://h:1").with_env_token().token == "from-env"
    assert ClientConfig("http://h:1", token="given").with_env_token().token == "given"
    monkeypatch.setenv("SESSION_PROXY_TOKEN", "")
    assert ClientConfig("http://h:1").with_env_token().token is None


def test_the_readme_url_options_are_read() -> None:
    url = make_url(
        "postgresql+sessionproxy://:secret@db.example:9000/?ca=/etc/ca.pem&timeout=7&retries=2"
    )
    config = ClientConfig.from_dialect_url(url)
    assert config == ClientConfig(
        "https://db.example:9000",
        token="secret",
        timeout=7.0,
        verify="/etc/ca.pem",
        retry=RetryPolicy(attempts=2),
    )
    plain = ClientConfig.from_dialect_url(make_url("sqlite+sessionproxy://"))
    assert plain.url == "http://127.0.0.1:8765" and plain.token is None
    assert ClientConfig.from_dialect_url(make_url("mysql+sessionproxy://h/?tls=true")).tls


def test_url_options_win_over_keywords_and_keywords_over_the_password() -> None:
    url = make_url("sqlite+sessionproxy://:pw@h:1/?timeout=9&retries=4")
    base = ClientConfig("http://elsewhere:2", token="base", timeout=3, retry=POLICY)
    config = ClientConfig.from_dialect_url(url, base, timeout=1)
    assert config.url == "http://h:1"  # the engine URL names the server
    assert config.timeout == 9.0
    assert config.retry == dataclasses.replace(POLICY, attempts=4)  # the rest of base's policy
    assert config.token == "base"
    assert ClientConfig.from_dialect_url(url, token="kw").token == "kw"
    assert ClientConfig.from_dialect_url(url).token == "pw"


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("?verify=no", "unknown session-proxy URL options"),
        ("?timeout=soon", "timeout='soon' is not valid"),
        ("?retries=two", "retries='two' is not valid"),
        ("?tls=perhaps", "tls='perhaps' is not valid"),
        ("?retries=0", "RetryPolicy.attempts"),
    ],
)
def test_bad_url_options_are_refused_naming_the_option(query: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ClientConfig.from_dialect_url(make_url("sqlite+sessionproxy://h:1/" + query))


def test_dialect_round_trips_its_url() -> None:
    for url in ("http://h:1", "https://h:2"):
        config = ClientConfig(url)
        assert ClientConfig.from_dialect_url(config.dialect_url("sqlite")).url == url


# -- every entry point ---------------------------------------------------------------------


def test_every_entry_point_takes_the_config_and_the_shared_keywords() -> None:
    """The seven signatures name the same settings, so they cannot drift apart again."""
    from session_proxy import settings
    from session_proxy.dialects.base import ProxyDialectMixin

    shared = {"token", "timeout", "verify", "retry"}
    for function in (
        session_proxy.create_engine,
        RemoteClient.__init__,
        configure_remote,
        HTTPTransport.__init__,
        settings.configure_orm,
        settings.install,
    ):
        parameters = set(inspect.signature(function).parameters)
        assert shared <= parameters, (function.__qualname__, shared - parameters)
    dialect = set(inspect.signature(ProxyDialectMixin.__init__).parameters)
    assert {"proxy_config"} | {f"proxy_{name}" for name in shared} <= dialect


# -- public API ----------------------------------------------------------------------------


def test_public_api_exports_the_errors_and_the_retry_policy() -> None:
    for name in session_proxy.__all__:
        assert hasattr(session_proxy, name), name
    exported = {getattr(session_proxy, name) for name in session_proxy.__all__}
    proxy_errors = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.ProxyError)
    }
    assert proxy_errors <= exported, proxy_errors - exported
    assert {RetryPolicy, ClientConfig, errors.Error} <= exported
    assert "Warning" not in session_proxy.__all__  # would shadow the builtin on import *
