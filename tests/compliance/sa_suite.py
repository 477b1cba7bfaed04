"""Run SQLAlchemy's own test suites direct and through session-proxy; compare.

::

    python -m tests.compliance.sa_suite --backends sqlite,postgresql,mysql \\
        --suites dialect,orm --markdown compliance.md

For the installed SQLAlchemy version this fetches the matching source
distribution with ``pip download`` (cached in ``--workdir``), then for every
backend runs the chosen suites twice with SQLAlchemy's pytest plugin: once
with the direct URL (the baseline) and once with ``<backend>+sessionproxy``
against a live ``session-proxy-server`` in front of the same database.  It
prints passed / failed / skipped per backend, suite and mode, and lists
every test that passes direct but not through the proxy.  The exit status
is 0 when that list is empty.

``--pooling transaction,session`` runs the proxy pass once per pooling mode
against the one direct baseline: ``session`` starts the server with
``--session-pooling`` and adds ``?pooling=session`` to the proxy URL, so
every client connection of the suite holds one server connection
(PgBouncer's session pooling).  Differences of that mode are listed as
``<backend> <suite> session: <test id>``.  ``--select EXPR`` passes
``-k EXPR`` to every run, to run only some tests (CI runs the session mode
on the test classes where the modes differ).

Suites: ``dialect`` is the third-party dialect compliance suite
(``test/dialect/test_suite.py`` with the upstream requirements); ``orm`` is
``test/orm/test_unitofworkv2.py``, ``test_versioning.py``,
``test_transaction.py``, ``test_naturalpks.py`` and ``test_lazy_relations.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from session_proxy.wire.protocol import POOLING_MODES
from session_proxy_server.testing import ServerProcess

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = "tests.compliance.requirements:ProxyRequirements"

SUITES = {
    "dialect": ["test/dialect/test_suite.py"],
    "orm": [
        "test/orm/test_unitofworkv2.py",
        "test/orm/test_versioning.py",
        "test/orm/test_transaction.py",
        "test/orm/test_naturalpks.py",
        "test/orm/test_lazy_relations.py",
    ],
}

# Servers to use; the suites run in a database of their own, made afresh.
SERVER_URLS = {
    "postgresql": os.environ.get(
        "SESSION_PROXY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get(
        "SESSION_PROXY_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
    ),
}
#: The database the suites run in (dropped and made afresh): $SESSION_PROXY_SUITE_DATABASE,
#: so concurrent runs on one database server can use databases of their own.
SUITE_DATABASE = os.environ.get("SESSION_PROXY_SUITE_DATABASE", "sa_suite")

# The dialect/driver/version suffix SQLAlchemy appends to test class names.
_SUFFIX = re.compile(r"_(sqlite|postgresql|mysql|mariadb)\+[A-Za-z0-9_]+?_[\d_]+$")


def fetch_sdist(workdir: Path) -> Path:
    """The unpacked source distribution of the installed SQLAlchemy."""
    version = sa.__version__
    target = workdir / f"sqlalchemy-{version}"
    if (target / "test").is_dir():
        return target
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
         ":all:", f"sqlalchemy=={version}", "-d", str(workdir)],
        check=True,
    )
    archive = workdir / f"sqlalchemy-{version}.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(workdir, filter="data")
    return target


def use_proxy_requirements(sdist: Path) -> None:
    """Point the sdist's test configuration at :mod:`tests.compliance.requirements`.

    SQLAlchemy's plugin reads ``requirement_cls`` from ``setup.cfg`` after
    its command-line options, so the (unpacked, private) copy is edited.
    """
    config = sdist / "setup.cfg"
    text = config.read_text()
    patched = re.sub(
        r"^requirement_cls\s*=.*$",
        f"requirement_cls = {REQUIREMENTS}",
        text,
        count=1,
        flags=re.MULTILINE,
    )
    if patched != text:
        config.write_text(patched)


def prepare_backend(backend: str, workdir: Path) -> str:
    """Make a fresh database with the extra schemas the suites expect; return its URL."""
    if backend == "sqlite":
        for name in ("direct.db", "direct_test_schema.db", "proxy.db", "proxy_test_schema.db"):
            (workdir / name).unlink(missing_ok=True)
        return f"sqlite:///{workdir}/direct.db"
    server_url = sa.engine.make_url(SERVER_URLS[backend])
    admin_url = server_url
    if backend == "postgresql" and server_url.database == SUITE_DATABASE:
        admin_url = server_url.set(database="postgres")  # cannot drop the one it is in
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if backend == "postgresql":
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {SUITE_DATABASE} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {SUITE_DATABASE}")
        else:
            for name in (SUITE_DATABASE, "test_schema", "test_schema_2"):
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    suite_url = server_url.set(database=SUITE_DATABASE)
    if backend == "mysql":
        suite_url = suite_url.update_query_dict({"charset": "utf8mb4"})
    if backend == "postgresql":
        engine = sa.create_engine(suite_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            for schema in ("test_schema", "test_schema_2"):
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        engine.dispose()
    return suite_url.render_as_string(hide_password=False)


def run_suite(
    sdist: Path, files: list[str], url: str, junit: Path, select: str | None = None
) -> dict[str, str]:
    """Run ``files`` against ``url`` (only tests matching ``-k select``); return
    outcome by normalized test id."""
    junit.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get(
        "PYTHONPATH", "")]).rstrip(os.pathsep))
    subprocess.run(
        [sys.executable, "-m", "pytest", *files, "--dburi", url, "-p", "no:cacheprovider",
         "-p", "tests.compliance.proxy_provision", "-q", "--maxfail=1000000",
         f"--junitxml={junit}", "-o", "junit_family=xunit1",
         *(["-k", select] if select else [])],
        cwd=sdist, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return parse_junit(junit)


def parse_junit(path: Path) -> dict[str, str]:
    """Outcome (passed, failed, skipped) of every test case in a JUnit XML file."""
    outcomes: dict[str, str] = {}
    if not path.exists():
        return outcomes
    for case in ElementTree.parse(path).iter("testcase"):
        test_id = f"{_SUFFIX.sub('', case.get('classname', ''))}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        # A test can report twice (call and teardown error); the worst wins.
        if outcomes.get(test_id) != "failed":
            outcomes[test_id] = outcome
    return outcomes


def compare(direct: dict[str, str], proxy: dict[str, str]) -> list[str]:
    """Tests that pass direct but not through the proxy."""
    return sorted(t for t, outcome in direct.items()
                  if outcome == "passed" and proxy.get(t) != "passed")


def _counts(outcomes: dict[str, str]) -> str:
    c = Counter(outcomes.values())
    return f"{c['passed']} / {c['failed']} / {c['skipped']}"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 1 when some test passes direct but not through the proxy."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql,mysql")
    parser.add_argument("--suites", default="dialect,orm")
    parser.add_argument("--workdir", type=Path, default=REPO / ".sa-suite")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument(
        "--pooling", default="transaction",
        help="proxy pooling modes to run, comma-separated: transaction, session",
    )
    parser.add_argument("--select", help="run only the tests matching this pytest -k expression")
    parser.add_argument(
        "--known", type=Path, default=Path(__file__).with_name("known_differences.txt"),
        help="documented differences, one '<backend> <suite>[ session]: <test id>' per line; only "
        "differences not listed there fail the run",
    )
    args = parser.parse_args(argv)
    known = _read_known(args.known)
    workdir = args.workdir.resolve()
    sdist = fetch_sdist(workdir)
    use_proxy_requirements(sdist)
    poolings = args.pooling.split(",")
    unknown = sorted(set(poolings) - set(POOLING_MODES))
    if unknown:
        parser.error(f"unknown pooling modes {unknown}; expected some of {list(POOLING_MODES)}")
    rows = ["| backend | suite | pooling | direct passed / failed / skipped | "
            "proxy passed / failed / skipped | pass direct, not proxy |",
            "| --- | --- | --- | --- | --- | ---: |"]
    regressions: list[str] = []
    for backend in args.backends.split(","):
        direct_url = prepare_backend(backend, workdir)
        extra: list[str] = []
        if backend == "sqlite":
            extra = ["--sqlite-attach", f"test_schema={workdir}/proxy_test_schema.db"]
            direct_url_server = f"sqlite:///{workdir}/proxy.db"
        else:
            direct_url_server = direct_url
        if "session" in poolings:
            extra += ["--session-pooling", "--max-sessions", "200",
                      "--max-sessions-per-subject", "200"]
        with ServerProcess(direct_url_server, *extra) as server:
            proxy_url = f"{backend}+sessionproxy://:{server.token}@127.0.0.1:{server.port}/"
            for suite in args.suites.split(","):
                files = SUITES[suite]
                junit = workdir / f"{backend}-{suite}"
                direct = run_suite(sdist, files, direct_url, junit.with_suffix(".direct.xml"),
                                   args.select)
                for pooling in poolings:
                    url = proxy_url + ("?pooling=session" if pooling == "session" else "")
                    proxy = run_suite(sdist, files, url,
                                      junit.with_suffix(f".proxy-{pooling}.xml"), args.select)
                    missing = compare(direct, proxy)
                    label = f"{backend} {suite}" + (" session" if pooling == "session" else "")
                    regressions += [f"{label}: {test}" for test in missing]
                    rows.append(f"| {backend} | {suite} | {pooling} | {_counts(direct)} | "
                                f"{_counts(proxy)} | {len(missing)} |")
                    print(rows[-1], flush=True)
    table = "\n".join(rows)
    unexpected = [line for line in regressions if line not in known]
    documented = [line for line in regressions if line in known]

    def bullets(lines: list[str]) -> str:
        return "\n".join(f"- `{line}`" for line in lines) or "(none)"

    text = (f"SQLAlchemy {sa.__version__} suites, direct vs session-proxy\n\n{table}\n\n"
            f"Pass direct but not through the proxy, documented in {args.known.name}:\n\n"
            f"{bullets(documented)}\n\nPass direct but not through the proxy, "
            f"undocumented:\n\n{bullets(unexpected)}\n")
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 1 if unexpected else 0


def _read_known(path: Path) -> set[str]:
    if not path.exists():
        return set()
    lines = (line.strip() for line in path.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("#")}


if __name__ == "__main__":
    sys.exit(main())
