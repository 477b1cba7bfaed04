"""The load run's transfer workload and its invariant check.

Accounts (``sp_load_accounts``) start with equal balances; a transfer moves
an amount from one account to another and writes one ledger row
(``sp_load_transfers``) under a key the client chose.  The ledger's key is
deliberately *not* unique, so a write applied twice (a retried request the
server had already committed) stays visible instead of being refused.

The same code runs two ways:

- :func:`transfer_orm` on any session: the load run calls it on a
  :class:`~session_proxy.ProxySession`, statement by statement over HTTP;
- :func:`transfer`, the logical operation ``load.transfer``, which a server
  started with ``--operations session_proxy_bench.load.transfer`` runs on its own
  session in one transaction.

:func:`check_invariants` then reads the tables directly and checks that the
sum of balances is unchanged, that every acknowledged transfer is in the
ledger exactly once, that no key is there twice, and that every balance
equals its initial value plus incoming minus outgoing ledger amounts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from session_proxy import remote_operation

#: How many keys, accounts or mismatches the check lists (it counts them all).
LIST_CAP = 20


class Base(DeclarativeBase):
    """Declarative base of the load tables, on their own MetaData."""


class LoadAccount(Base):
    """An account; the sum of balances never changes."""

    __tablename__ = "sp_load_accounts"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    balance: Mapped[int] = mapped_column(sa.Integer, nullable=False)


class LoadTransfer(Base):
    """One ledger row per applied transfer; ``transfer_key`` is not unique on purpose."""

    __tablename__ = "sp_load_transfers"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    transfer_key: Mapped[str] = mapped_column(sa.String(64), nullable=False, index=True)
    src: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    dst: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    amount: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    client: Mapped[str | None] = mapped_column(sa.String(32))


def setup(engine: sa.Engine, accounts: int = 100, initial: int = 1000) -> None:
    """Drop and recreate the load tables; accounts ``1..accounts`` hold ``initial`` each."""
    if accounts < 2:
        raise ValueError(f"a transfer needs at least 2 accounts, got {accounts}")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(LoadAccount),
                     [{"id": i, "balance": initial} for i in range(1, accounts + 1)])


def transfer_orm(session: Session, key: str, src: int, dst: int, amount: int,
                 client: str | None = None) -> LoadTransfer:
    """Move ``amount`` from ``src`` to ``dst`` and record it under ``key`` (no commit).

    Both accounts are locked with ``SELECT ... FOR UPDATE`` in id order, so
    concurrent transfers cannot deadlock on each other.
    """
    if src == dst:
        raise ValueError("a transfer needs two different accounts")
    rows = session.scalars(
        sa.select(LoadAccount).where(LoadAccount.id.in_(sorted((src, dst))))
        .order_by(LoadAccount.id).with_for_update()
    ).all()
    accounts = {account.id: account for account in rows}
    missing = {src, dst} - accounts.keys()
    if missing:
        raise LookupError(f"no account {sorted(missing)}")
    accounts[src].balance -= amount
    accounts[dst].balance += amount
    row = LoadTransfer(transfer_key=key, src=src, dst=dst, amount=amount, client=client)
    session.add(row)
    return row


@remote_operation(name="load.transfer")
def transfer(key: str, src: int, dst: int, amount: int, client: str | None = None, *,
             session: Session) -> int:
    """:func:`transfer_orm` as a logical operation; returns the ledger row's id."""
    row = transfer_orm(session, key, src, dst, amount, client)
    session.flush()
    return row.id


def _consistent_read(engine: sa.Engine) -> sa.Connection:
    if engine.dialect.name in ("postgresql", "mysql", "mariadb"):
        return engine.connect().execution_options(isolation_level="REPEATABLE READ")
    return engine.connect()


def _pairs(conn: sa.Connection, statement: sa.Select) -> dict[Any, Any]:
    return {row[0]: row[1] for row in conn.execute(statement)}


def check_invariants(
    engine: sa.Engine,
    acknowledged_keys: Iterable[str],
    attempted_keys: Iterable[str],
    accounts: int,
    initial: int,
) -> dict[str, Any]:
    """Check the tables against what the clients were told; read directly through ``engine``.

    :param acknowledged_keys: keys of transfers whose commit (or logical
        call) returned normally: each must be in the ledger exactly once.
    :param attempted_keys: keys of every transfer tried, acknowledged or
        not.  One that raised may or may not have been applied (its response
        may have been lost after the commit): both outcomes are counted, and
        neither is a violation, but being applied twice is.

    ``violations`` counts: acknowledged keys missing, keys present more than
    once, keys present that no client tried, accounts whose balance differs
    from the ledger, missing accounts, and a changed sum of balances (1).
    """
    acknowledged = set(acknowledged_keys)
    attempted = set(attempted_keys) | acknowledged
    with _consistent_read(engine) as conn:
        balances: dict[int, int] = _pairs(conn, sa.select(LoadAccount.id, LoadAccount.balance))
        counts: dict[str, int] = _pairs(conn, sa.select(
            LoadTransfer.transfer_key, sa.func.count()).group_by(LoadTransfer.transfer_key))
        outgoing: dict[int, int] = _pairs(conn, sa.select(
            LoadTransfer.src, sa.func.sum(LoadTransfer.amount)).group_by(LoadTransfer.src))
        incoming: dict[int, int] = _pairs(conn, sa.select(
            LoadTransfer.dst, sa.func.sum(LoadTransfer.amount)).group_by(LoadTransfer.dst))
        ledger_rows = sum(counts.values())
        conn.rollback()

    total_expected = accounts * initial
    total_actual = sum(balances.values())
    missing_accounts = sorted(set(range(1, accounts + 1)) - balances.keys())
    mismatches = []
    for account, balance in sorted(balances.items()):
        expected = initial + int(incoming.get(account, 0)) - int(outgoing.get(account, 0))
        if balance != expected:
            mismatches.append({"account": account, "balance": balance, "expected": expected})
    ack_missing = sorted(key for key in acknowledged if key not in counts)
    duplicated = sorted((key, n) for key, n in counts.items() if n > 1)
    unknown = sorted(key for key in counts if key not in attempted)
    unacknowledged = attempted - acknowledged
    unack_present = sum(1 for key in unacknowledged if key in counts)
    sum_ok = total_actual == total_expected
    violations = (len(ack_missing) + len(duplicated) + len(unknown) + len(mismatches)
                  + len(missing_accounts) + (0 if sum_ok else 1))
    return {
        "accounts": accounts,
        "initial": initial,
        "total_expected": total_expected,
        "total_actual": total_actual,
        "sum_ok": sum_ok,
        "accounts_missing": missing_accounts[:LIST_CAP],
        "ledger_rows": ledger_rows,
        "ledger_keys": len(counts),
        "attempted": len(attempted),
        "acknowledged": len(acknowledged),
        "acknowledged_present": len(acknowledged) - len(ack_missing),
        "acknowledged_missing_count": len(ack_missing),
        "acknowledged_missing": ack_missing[:LIST_CAP],
        "duplicated_count": len(duplicated),
        "duplicated_keys": [[key, n] for key, n in duplicated[:LIST_CAP]],
        "unknown_present_count": len(unknown),
        "unknown_keys": unknown[:LIST_CAP],
        "unacknowledged": len(unacknowledged),
        "unacknowledged_present": unack_present,
        "unacknowledged_absent": len(unacknowledged) - unack_present,
        "ledger_consistent": not mismatches,
        "ledger_mismatch_count": len(mismatches),
        "ledger_mismatches": mismatches[:LIST_CAP],
        "violations": violations,
    }
