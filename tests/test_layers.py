"""The test suite's layers, and the server's independence from the client, read from imports.

Every test file lives in one layer folder under ``tests/``:

- ``client/``: the client package alone, no server process: it imports
  neither ``session_proxy_server`` nor ``session_proxy_bench``;
- ``server/``: server modules, and server processes hit with raw HTTP: of
  the client it imports only the shared ``session_proxy.wire`` package
  (exceptions: :data:`CLIENT_IN_SERVER_TESTS`);
- ``integration/``: client + real server + real database, end to end;
- ``bench/``: the benchmark harness (``session_proxy_bench``), the only layer
  that imports it, except the integration tests in
  :data:`BENCH_IN_INTEGRATION`, each with its reason.

The server package itself (``server/``, installed as ``session_proxy_server``)
imports nothing of the client but ``session_proxy.wire``, except the files in
:data:`CLIENT_IN_SERVER_PACKAGE`.

Imports are read with :mod:`ast` from the source (every ``import`` statement,
also those inside functions; relative imports resolved), so nothing is
imported to check it.  An allowance that is no longer needed fails too, so
the lists only shrink.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
LAYERS = ("client", "server", "integration", "bench")

#: Test files outside the layer folders: file name -> reason.
ROOT_TESTS = {
    "test_install_names.py": "repository-wide: builds the wheel and reads every folder's imports",
    "test_layers.py": "repository-wide: this file",
}

#: tests/server files that import client modules besides session_proxy.wire:
#: path -> (reason, allowed module prefixes).  None today.
CLIENT_IN_SERVER_TESTS: dict[str, tuple[str, frozenset[str]]] = {}

#: tests/integration files that import the benchmark harness:
#: path -> (reason, allowed module prefixes).
BENCH_IN_INTEGRATION: dict[str, tuple[str, frozenset[str]]] = {
    "tests/integration/test_honest_outcomes.py": (
        "fault injection: the latency relay drops the commit's answer, so only the"
        " outcome table can answer the retry",
        frozenset({"session_proxy_bench.relay"}),
    ),
    "tests/integration/test_reliability.py": (
        "fault injection: the latency relay resets, stalls and drops traffic between"
        " client and server",
        frozenset({"session_proxy_bench.relay"}),
    ),
    "tests/integration/test_client_request_path.py": (
        "the latency relay counts the TCP connections the client opens; gunicorn is a"
        " keep-alive server to count them against",
        frozenset({"session_proxy_bench.relay", "session_proxy_bench.gunicorn_process"}),
    ),
    "tests/integration/airflow/harness.py": (
        "real Airflow: the Airflow site (home, config, processes) is shared with the"
        " parse-and-sync benchmark of docs/airflow.md",
        frozenset({"session_proxy_bench.airflow_site"}),
    ),
    "tests/integration/airflow/test_dag_processor.py": (
        "real Airflow: the generated DAG files are shared with the parse-and-sync benchmark",
        frozenset({"session_proxy_bench.airflow_dags"}),
    ),
    "tests/integration/test_db_round_trips.py": (
        "the latency relay between the server and its database counts database round trips",
        frozenset({"session_proxy_bench.relay"}),
    ),
    "tests/integration/test_scaling.py": (
        "scaling: the nginx balancer in front of two server instances, configured as"
        " docs/scaling.md shows",
        frozenset({"session_proxy_bench.nginx"}),
    ),
    "tests/integration/security/test_attacks.py": (
        "the attack suite: its matrix and lab are session_proxy_bench.security (the"
        " report's security section runs the same), over the workload's script",
        frozenset({"session_proxy_bench.security", "session_proxy_bench.workload.script"}),
    ),
}

#: server/ files that import client modules besides session_proxy.wire:
#: path under server/ -> (reason, allowed module prefixes).
CLIENT_IN_SERVER_PACKAGE: dict[str, tuple[str, frozenset[str]]] = {}


def module_name(path: Path) -> str:
    """The dotted name ``path`` imports as (``server/`` installs as ``session_proxy_server``)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "server":
        parts[0] = "session_proxy_server"
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every name ``source`` (the module ``module``) imports, absolute.

    ``import a.b`` gives ``a.b``; ``from a import b`` gives ``a.b`` (``b``
    may be a module or an attribute; either way it comes from ``a``);
    relative imports are resolved against ``module``.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *([node.module] if node.module else [])])
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return names


def within(name: str, prefixes: Iterable[str]) -> bool:
    """``name`` is one of ``prefixes`` or inside one of them."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def file_imports(path: Path) -> set[str]:
    """:func:`imported_names` of the file at ``path``."""
    return imported_names(path.read_text(), module_name(path), path.name == "__init__.py")


def offenders(
    files: Iterable[Path],
    forbidden: Iterable[str],
    allowed: Iterable[str] = (),
    exceptions: dict[str, tuple[str, frozenset[str]]] | None = None,
    key=lambda path: str(path.relative_to(REPO)),
) -> dict[str, list[str]]:
    """Per file, the imports inside ``forbidden`` that are neither ``allowed`` nor excepted."""
    found: dict[str, list[str]] = {}
    for path in files:
        excepted = (exceptions or {}).get(key(path), ("", frozenset()))[1]
        bad = sorted(
            name for name in file_imports(path)
            if within(name, forbidden) and not within(name, allowed)
            and not within(name, excepted)
        )
        if bad:
            found[key(path)] = bad
    return found


def layer_files(layer: str) -> list[Path]:
    return sorted((TESTS / layer).rglob("*.py"))


def server_package_key(path: Path) -> str:
    return str(path.relative_to(REPO / "server"))


def test_every_test_file_is_in_a_layer() -> None:
    stray = sorted(
        str(path.relative_to(REPO)) for path in TESTS.rglob("test_*.py")
        if path.relative_to(TESTS).parts[0] not in LAYERS
        and not (path.parent == TESTS and path.name in ROOT_TESTS)
    )
    assert stray == [], "move these into tests/{client,server,integration,bench}/"
    for layer in LAYERS:
        assert list((TESTS / layer).glob("test_*.py")), f"tests/{layer}/ has no tests"


def test_client_tests_import_neither_the_server_nor_the_bench() -> None:
    bad = offenders(layer_files("client"), ["session_proxy_server", "session_proxy_bench"])
    assert bad == {}


def test_server_tests_import_only_the_wire_package_of_the_client() -> None:
    bad = offenders(layer_files("server"), ["session_proxy"], ["session_proxy.wire"],
                    CLIENT_IN_SERVER_TESTS)
    assert bad == {}


def test_only_bench_tests_and_the_declared_exceptions_import_the_bench() -> None:
    others = [path for layer in ("client", "server", "integration")
              for path in layer_files(layer)]
    others += [path for path in TESTS.glob("*.py")]
    bad = offenders(others, ["session_proxy_bench"], exceptions=BENCH_IN_INTEGRATION)
    assert bad == {}


def test_server_package_imports_only_the_wire_package_of_the_client() -> None:
    bad = offenders(sorted((REPO / "server").rglob("*.py")), ["session_proxy"],
                    ["session_proxy.wire"], CLIENT_IN_SERVER_PACKAGE, key=server_package_key)
    assert bad == {}


def test_every_exception_is_still_needed() -> None:
    """An entry whose file no longer imports what it excuses must be removed."""
    lists = [
        (CLIENT_IN_SERVER_TESTS, REPO),
        (BENCH_IN_INTEGRATION, REPO),
        (CLIENT_IN_SERVER_PACKAGE, REPO / "server"),
    ]
    stale = []
    for exceptions, root in lists:
        for name, (reason, prefixes) in exceptions.items():
            assert reason, f"{name}: an exception needs its reason"
            path = root / name
            imports = file_imports(path) if path.exists() else set()
            stale += [f"{name}: {prefix}" for prefix in sorted(prefixes)
                      if not any(within(found, [prefix]) for found in imports)]
    assert stale == []


def test_imports_are_read_inside_functions_and_relative_ones_resolved() -> None:
    source = (
        "import session_proxy\n"
        "from . import sibling\n"
        "from ..conftest import ServerProcess\n"
        "def test():\n"
        "    from session_proxy_bench.relay import Relay\n"
    )
    names = imported_names(source, "tests.server.security.test_x")
    assert names == {
        "session_proxy",
        "tests.server.security.sibling",
        "tests.server.conftest.ServerProcess",
        "session_proxy_bench.relay.Relay",
    }
    assert imported_names("from .base import B\n", "session_proxy_server.backends",
                          is_package=True) == {"session_proxy_server.backends.base.B"}
    assert not within("session_proxy_server.app", ["session_proxy"])
    assert within("session_proxy.wire.codec.dumps", ["session_proxy.wire"])
