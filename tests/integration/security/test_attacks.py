"""The attack suite: every hostile request against proxy, proxy+policy and logical.

Real servers, real HTTP, real databases (see :mod:`session_proxy_bench.security.lab`).
Each case asserts the status, the error message (or, where the project
claims the attack gets through, what it achieved) and that a stopped attack
left every workload table exactly as it was.  The benchmark report's
security section shows the same matrix from a benchmark run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from session_proxy_bench.security.attacks import ATTACKS, Attack, run_attack
from session_proxy_bench.security.lab import CONFIGS, SecurityLab
from session_proxy_bench.workload.script import SCRIPT

pytestmark = pytest.mark.attack_suite


@pytest.fixture(scope="module")
def lab(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurityLab]:
    with SecurityLab(db_url, tmp_path_factory.mktemp("lab")) as started:
        started.baseline = started.snapshot()
        yield started


def test_the_suite_is_large_enough() -> None:
    assert len(ATTACKS) >= 40
    assert len({attack.name for attack in ATTACKS}) == len(ATTACKS)


def test_policies_were_learnt_from_the_trusted_run(lab: SecurityLab) -> None:
    proxy = json.loads(Path(lab.policies["proxy+policy"]).read_text())["roles"]
    logical = json.loads(Path(lab.policies["logical"]).read_text())["roles"]
    assert set(proxy) == set(logical) == {"worker", "triggerer", "admin", "reader", "auditor"}
    # The worker's statements include the workload's, and nothing was allowed wholesale.
    assert any(fp.startswith("SELECT connection.") for fp in proxy["worker"]["statements"])
    assert not proxy["worker"].get("allow_all") and not proxy["worker"].get("allow_ddl")
    assert set(logical["worker"]["operations"]) == {op.name for _, op, _, _ in SCRIPT}
    assert not logical["worker"]["statements"]
    heartbeat = "session_proxy_bench.workload.operations.heartbeat"
    assert logical["triggerer"]["operations"] == [heartbeat]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("attack", ATTACKS, ids=[attack.name for attack in ATTACKS])
def test_attack(lab: SecurityLab, attack: Attack, config: str) -> None:
    expect = attack.expect(lab.backend, config)
    outcome = run_attack(lab, attack, config)
    assert outcome.status == expect.status, outcome
    if expect.stopped:
        assert outcome.harm is None, outcome
        assert not outcome.changed_database, outcome
        assert expect.says(outcome.message), outcome
    else:
        assert outcome.harm is not None and expect.text in outcome.harm, outcome
    # Whatever happened, the next attack starts from the seeded data set.
    assert lab.snapshot() == lab.baseline
