"""The installed distribution takes no generic top-level name.

``pip install session-proxy`` must not put ``server`` or ``benchmarks`` on an
application's ``sys.path``: the repository folders install as
``session_proxy_server`` and ``session_proxy_bench`` (see ``setup.py``).  The
first test builds a real wheel and reads its top-level names; the second makes
sure no source file still imports the folders by their repository names,
which would work from a checkout and break in an installed copy.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALLOWED_TOP_LEVEL = {"session_proxy", "session_proxy_server", "session_proxy_bench"}
FOLDER_NAMES = {"server", "benchmarks"}


def test_wheel_installs_only_names_derived_from_session_proxy(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=600,
    )
    (wheel,) = tmp_path.glob("session_proxy-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top_level = {name.split("/", 1)[0] for name in names if "/" in name}
    packages = {name for name in top_level if not name.endswith((".dist-info", ".data"))}
    assert packages == ALLOWED_TOP_LEVEL
    # the server and the harness really are in it, under their install names
    assert "session_proxy_server/cli.py" in names
    assert "session_proxy_server/sql/lexer.py" in names
    assert "session_proxy_bench/cli.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        scripts = archive.read(entry_points).decode()
    assert "session-proxy-server = session_proxy_server.cli:main" in scripts
    assert "session-proxy-bench = session_proxy_bench.cli:main" in scripts


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_source_imports_a_folder_by_its_repository_name() -> None:
    offenders = []
    for folder in ("session_proxy", "server", "benchmarks", "tests"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for module in _imported_modules(path):
                if module.split(".", 1)[0] in FOLDER_NAMES:
                    offenders.append(f"{path.relative_to(REPO)}: {module}")
    assert offenders == []


def test_every_installed_module_imports() -> None:
    """A stale import (a moved module, a relative import of a renamed one) fails here."""
    import importlib
    import pkgutil

    # module -> why importing it needs more than the package
    needs_configuration = {"session_proxy_server.wsgi": "builds the app from SESSION_PROXY_*"}
    failures = {}
    for top in sorted(ALLOWED_TOP_LEVEL):
        package = importlib.import_module(top)
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{top}."):
            if module.name in needs_configuration:
                continue
            try:
                importlib.import_module(module.name)
            except Exception as exc:  # noqa: BLE001 - report every broken module
                failures[module.name] = f"{type(exc).__name__}: {exc}"
    assert failures == {}
