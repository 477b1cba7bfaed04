"""ServerConfig is declared once: the CLI flags and the environment variables derive from it.

Checks that every field has a flag and a ``SESSION_PROXY_<FIELD>`` variable,
that both parse back to the same config, that the flags and variables that
existed before keep their names and defaults, and that the README's flag
table names every flag.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from session_proxy_server import cli
from session_proxy_server.config import (
    ZERO_MEANS_DERIVED,
    ServerConfig,
    env_variable,
    flag,
    value_parser,
)
from tests.conftest import REPO

FIELDS = dataclasses.fields(ServerConfig)

#: The flags, fields and defaults as they were when the CLI copied them by hand.
HISTORICAL_FLAGS = {
    "--lease-seconds": ("lease_seconds", 60.0),
    "--max-transactions": ("max_transactions", 64),
    "--page-size": ("page_size", 5000),
    "--max-body-bytes": ("max_body_bytes", 32 * 1024 * 1024),
    "--statement-timeout": ("statement_timeout_seconds", 300.0),
    "--max-transaction-seconds": ("max_transaction_seconds", 900.0),
    "--max-transactions-per-subject": ("max_transactions_per_subject", 32),
    "--outcome-window": ("outcome_window_seconds", 3600.0),
    "--outcome-memory-bytes": ("outcome_memory_bytes", 64 * 1024 * 1024),
    "--drain-seconds": ("drain_seconds", 30.0),
    "--instance": ("instance", ""),
    "--advertise-url": ("advertise_url", ""),
}


def _other_value(field: dataclasses.Field) -> str:
    """A valid value for ``field`` that is not its default, as text."""
    if field.name == "advertise_url":
        return "https://instance-7.example:8765"
    if field.type == "str":
        return f"{field.name}-value"
    if field.type == "bool":
        return "true"
    return str(field.default * 2 + 1) if field.type == "int" else str(field.default * 2 + 0.5)


def _switch(field: dataclasses.Field, text: str) -> list[str]:
    """The command-line words setting ``field`` to ``text`` (a switch takes no value)."""
    if field.type == "bool":
        return [flag(field)] if value_parser(field)(text) else []
    return [flag(field), text]


def _parse(*flags: str):
    return cli.build_parser().parse_args(["--db-url", "sqlite:///x.db", *flags])


def test_every_field_has_a_flag_and_an_env_variable() -> None:
    parser = cli.build_parser()
    known = {option: action for action in parser._actions for option in action.option_strings}
    for field in FIELDS:
        assert flag(field) in known, field.name
        assert known[flag(field)].dest == field.name
        assert known[flag(field)].default == field.default
        assert env_variable(field) == "SESSION_PROXY_" + field.name.upper()
    assert len({flag(field) for field in FIELDS}) == len(FIELDS)


def test_historical_flags_keep_their_names_fields_and_defaults() -> None:
    args = _parse()
    for option, (name, default) in HISTORICAL_FLAGS.items():
        field = next(field for field in FIELDS if field.name == name)
        assert flag(field) == option
        assert getattr(args, name) == default
        assert getattr(ServerConfig(), name) == default


def test_flags_and_environment_round_trip_to_the_same_config() -> None:
    flags: list[str] = []
    environ: dict[str, str] = {}
    for field in FIELDS:
        text = _other_value(field)
        flags += _switch(field, text)
        environ[env_variable(field)] = text
    from_flags = ServerConfig.from_args(_parse(*flags))
    from_env = ServerConfig.from_env(environ)
    assert from_flags == from_env
    for field in FIELDS:
        value = getattr(from_flags, field.name)
        assert value != field.default, field.name
        assert value == value_parser(field)(_other_value(field))
    # And back: the config's values, written out, parse to the same config.
    again = [part for f in FIELDS for part in _switch(f, str(getattr(from_flags, f.name)))]
    assert ServerConfig.from_args(_parse(*again)) == from_flags
    assert ServerConfig.from_env({}) == ServerConfig() == ServerConfig.from_args(_parse())


@pytest.mark.parametrize(
    "field", [f for f in FIELDS if f.type not in ("str", "bool")], ids=lambda f: f.name
)
def test_a_bad_number_is_refused_by_both_naming_it(field: dataclasses.Field, capsys) -> None:
    with pytest.raises(ValueError, match=env_variable(field)):
        ServerConfig.from_env({env_variable(field): "lots"})
    with pytest.raises(SystemExit):
        _parse(flag(field), "lots")
    assert flag(field) in capsys.readouterr().err
    # 0 is refused, except where it means "derived" (then a negative value is).
    bad = "-1" if field.name in ZERO_MEANS_DERIVED else "0"
    with pytest.raises(ValueError, match=f"{field.name} must be positive"):
        ServerConfig.from_env({env_variable(field): bad})


def test_a_switch_is_a_flag_without_value_and_a_boolean_variable() -> None:
    assert ServerConfig.from_args(_parse("--session-pooling")).session_pooling is True
    assert ServerConfig.from_args(_parse()).session_pooling is False
    for text, value in (("1", True), ("yes", True), ("off", False), ("false", False)):
        assert ServerConfig.from_env({"SESSION_PROXY_SESSION_POOLING": text}).session_pooling \
            is value
    with pytest.raises(ValueError, match="SESSION_PROXY_SESSION_POOLING"):
        ServerConfig.from_env({"SESSION_PROXY_SESSION_POOLING": "maybe"})


def test_cli_refuses_a_non_positive_setting_with_exit_2(capsys) -> None:
    assert cli.main(["--db-url", "sqlite:///x.db", "--lock-wait-seconds", "-1"]) == 2
    assert "lock_wait_seconds must be positive" in capsys.readouterr().err


def test_the_readme_flag_table_names_every_flag() -> None:
    readme = (REPO / "README.md").read_text()
    table = "\n".join(line for line in readme.splitlines() if line.startswith("| `--"))
    documented = set(re.findall(r"`(--[a-z-]+)", table))
    missing = {flag(field) for field in FIELDS} - documented
    assert not missing, f"README flag table lacks {sorted(missing)}"
