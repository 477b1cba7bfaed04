"""session_proxy_server.testing: the server subprocess imports what its caller imports.

The helper no longer assumes a source checkout (no repository-relative
``PYTHONPATH`` or working directory): the child inherits the caller's working
directory and gets the caller's extra ``sys.path`` directories
(:func:`~session_proxy_server.testing.child_pythonpath`), so ``--operations``
can name a module only the caller can import, from any working directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from session_proxy_server.testing import ServerProcess, child_pythonpath

MODULE = "sp_caller_only_operations"


@pytest.fixture
def caller_only_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module importable only through this process's ``sys.path``; cwd elsewhere."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"{MODULE}.py").write_text('"""Nothing to serve; importing it is the test."""\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    return modules


def test_child_pythonpath_names_the_callers_directories_not_the_interpreters(
    caller_only_module: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(caller_only_module))
    paths = child_pythonpath().split(os.pathsep)
    assert str(caller_only_module.resolve()) in paths
    interpreter = Path(sys.prefix).resolve()
    assert not [p for p in paths if Path(p) == interpreter or interpreter in Path(p).parents]


def test_a_server_started_elsewhere_imports_the_callers_operations_module(
    caller_only_module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path / 'helper.db'}"
    # Not on this process's sys.path: the server refuses to start, naming the module.
    with pytest.raises(RuntimeError, match=MODULE):
        ServerProcess(db_url, "--operations", MODULE, auth=False)
    monkeypatch.syspath_prepend(str(caller_only_module))
    with ServerProcess(db_url, "--operations", MODULE, auth=False) as server:
        assert server.process.poll() is None
