"""The ci_gate question on SQLite, quick: a policy recorded from the test script, enforced.

Real recording and enforcing server processes; the counts must add up, an
operation left out of the recording must be refused on every call in both
designs, and the section must render the run's own numbers.
"""

from __future__ import annotations

from typing import Any

import pytest

from session_proxy_bench.questions.ci_gate import DESIGNS, LEFT_OUT, measure
from session_proxy_bench.report.markdown import render_markdown
from session_proxy_bench.report.sections.q_ci_gate import ci_gate_section

from .question_fixtures import quick_context, rendered, rows, seeded_sqlite

Measured = tuple[dict[str, Any], dict, dict]


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Measured:
    url = seeded_sqlite(tmp_path_factory.mktemp("ci_gate") / "bench.db")
    before = rows(url)
    raw = measure(quick_context(url))
    return raw, before, rows(url)


def test_leaves_the_database_as_found(measured: Measured) -> None:
    assert measured[2] == measured[1]


def test_every_call_is_counted_once(measured: Measured) -> None:
    raw = measured[0]
    expected = len(raw["operations"]) * len(raw["scales"]) * raw["calls_per_operation"]
    for design in DESIGNS:
        for variant in raw["designs"][design].values():
            assert variant["calls"] == expected
            assert variant["other_error_count"] == 0, variant["other_errors"]
            assert variant["refused"] == sum(variant["refused_by_operation"].values())
            assert variant["refused"] == sum(c["refused"] for c in variant["per_scale"].values())
            assert bool(variant["refused_fingerprints"]) == bool(variant["refused"])


def test_an_untested_operation_is_refused_on_every_call(measured: Measured) -> None:
    raw = measured[0]
    every_call = len(raw["scales"]) * raw["calls_per_operation"]
    for design in DESIGNS:
        full, gap = raw["designs"][design]["full"], raw["designs"][design]["gap"]
        assert gap["left_out"] == LEFT_OUT
        assert gap["script_calls"] < full["script_calls"]
        assert gap["refused_by_operation"][LEFT_OUT] == every_call
        assert LEFT_OUT not in full["refused_by_operation"]


def test_the_logical_policy_lists_exactly_the_tested_operations(measured: Measured) -> None:
    logical = measured[0]["designs"]["logical"]
    assert logical["full"]["refused"] == 0
    assert logical["gap"]["policy"]["operations"] == logical["full"]["policy"]["operations"] - 1
    assert logical["full"]["policy"]["statements"] == 0


def test_section_renders_from_the_raw_numbers(measured: Measured) -> None:
    raw = measured[0]
    text = rendered("ci_gate", raw)
    assert '"Blessed" DB calls enforced in CI' in text
    for design in DESIGNS:
        for variant in raw["designs"][design].values():
            assert f"| {variant['calls']} | {variant['refused']} (" in text
    assert "The attack suite was not run" in text
    security = {"configs": ["proxy", "proxy+policy", "logical"],
                "attacks": [{"name": "a"}, {"name": "b"}],
                "outcomes": [{"config": "proxy", "stopped": False},
                             {"config": "proxy", "stopped": True},
                             {"config": "proxy+policy", "stopped": True},
                             {"config": "proxy+policy", "stopped": True},
                             {"config": "logical", "stopped": True},
                             {"config": "logical", "stopped": False}]}
    with_attacks = render_markdown(ci_gate_section(raw, security=security))
    assert "the proxy design with its recorded policy stopped 2 of 2" in with_attacks
    assert "the logical design with its recorded policy stopped 1 of 2" in with_attacks
    assert "the proxy without a policy 1." in with_attacks
