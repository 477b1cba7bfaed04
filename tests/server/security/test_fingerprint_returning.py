"""A final RETURNING list of the target's columns is order-free in fingerprints.

Airflow's DAG processor deletes ``dag_schedule_asset_reference`` rows with
``RETURNING`` columns in an order that changes with the process's hash seed,
so a policy recorded in one process refused the same statement from the next
(found running ``airflow dag-processor`` on a recorded policy).  Lists that
could mean something else in another order keep their order.
"""

from __future__ import annotations

import pytest

from session_proxy_server.sql.fingerprint import fingerprint
from session_proxy_server.sql.policy import Policy


def test_the_order_of_returned_columns_does_not_change_the_fingerprint() -> None:
    one = ("DELETE FROM ref WHERE ref.dag_id IN (%(a)s, %(b)s) "
           "RETURNING ref.asset_id, ref.dag_id")
    other = ("DELETE FROM ref WHERE ref.dag_id IN (%(a)s) "
             "RETURNING ref.dag_id, ref.asset_id")
    assert fingerprint(one) == fingerprint(other)
    assert fingerprint(fingerprint(other)) == fingerprint(other)
    assert fingerprint("UPDATE t SET a=1 RETURNING t.b, t.a") == fingerprint(
        "UPDATE t SET a=2 RETURNING t.a, t.b")
    # SQLite's compiler leaves the names bare
    assert fingerprint("DELETE FROM r WHERE r.dag_id IN (?) RETURNING uri, dag_id") == (
        fingerprint("DELETE FROM r WHERE r.dag_id IN (?, ?) RETURNING dag_id, uri"))


@pytest.mark.parametrize("first, second", [
    # FROM/USING lists after a table called "returning": order is meaning
    ("SELECT x FROM returning b, a", "SELECT x FROM returning a, b"),
    ("DELETE FROM t USING returning b, a", "DELETE FROM t USING returning a, b"),
    ("UPDATE t SET a = 1 FROM returning b, a", "UPDATE t SET a = 1 FROM returning a, b"),
    ("DELETE FROM t USING x, returning b, a", "DELETE FROM t USING x, returning a, b"),
    # columns of another table, or a mix: left as written
    ("DELETE FROM t RETURNING u.b, u.a", "DELETE FROM t RETURNING u.a, u.b"),
    ("DELETE FROM t RETURNING t.b, a", "DELETE FROM t RETURNING a, t.b"),
    # not the last clause
    ("WITH x AS (DELETE FROM t RETURNING t.b, t.a) SELECT * FROM x",
     "WITH x AS (DELETE FROM t RETURNING t.a, t.b) SELECT * FROM x"),
])
def test_other_lists_keep_their_order(first: str, second: str) -> None:
    assert fingerprint(first) != fingerprint(second)


def test_a_recorded_statement_matches_its_reordered_twin() -> None:
    policy = Policy.from_dict({"version": 1, "roles": {"dag-processor": {"statements": [
        "DELETE FROM ref WHERE ref.dag_id IN (?) RETURNING ref.dag_id, ref.asset_id"
    ]}}})
    allowed = policy.roles["dag-processor"].statements
    assert fingerprint(
        "DELETE FROM ref WHERE ref.dag_id IN (%(x)s) RETURNING ref.asset_id, ref.dag_id"
    ) in allowed
