"""Logical operations used only by the tests (``tests/integration/test_logical_api.py``).

A server started with ``--operations tests.operations_for_tests`` exposes
them.  They work on one small table of their own, ``sp_logical_note``, with
its own declarative base, so they never touch the workload schema or the
tables of the other test modules.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from session_proxy import register_exception, remote_operation

#: The id of the note :func:`returns_unencodable` inserts (and must not commit).
UNENCODABLE_NOTE_ID = 9999


class Base(DeclarativeBase):
    """Declarative base of the test operations' table only."""


class Note(Base):
    """One note; no relationships, so a detached instance is self-contained."""

    __tablename__ = "sp_logical_note"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    text: Mapped[str] = mapped_column(sa.String(100))


class CustomError(Exception):
    """Not registered: reaches a remote caller as RemoteOperationError."""


@register_exception
class RegisteredError(Exception):
    """Registered on both sides: reaches a remote caller as itself."""


@remote_operation
def add_note(id: int, text: str, *, session: Session) -> Note:
    """Insert a note and return it."""
    note = Note(id=id, text=text)
    session.add(note)
    session.flush()
    return note


@remote_operation
def get_note(id: int, *, session: Session) -> Note | None:
    """The note with ``id``, or None."""
    return session.get(Note, id)


@remote_operation
def list_notes(*, session: Session) -> list[Note]:
    """Every note, by id."""
    return list(session.scalars(sa.select(Note).order_by(Note.id)))


@remote_operation
def note_texts(notes: list[Note], *, session: Session) -> list[str]:
    """Take a list of Note instances as argument; return their texts upper-cased."""
    return [note.text.upper() for note in notes]


@remote_operation
def count_notes(*, session: Session) -> int:
    """How many notes there are."""
    return session.scalar(sa.select(sa.func.count()).select_from(Note)) or 0


@remote_operation
def write_then_fail(id: int, text: str, *, session: Session) -> None:
    """Insert a note, flush it, then fail: the insert must be rolled back."""
    session.add(Note(id=id, text=text))
    session.flush()
    raise ValueError("boom after write")


@remote_operation
def raise_custom(*, session: Session) -> None:
    """Raise an exception of a class nobody registered."""
    raise CustomError("custom detail")


@remote_operation
def raise_registered(*, session: Session) -> None:
    """Raise an exception of a registered class."""
    raise RegisteredError("registered detail")


@remote_operation
def returns_unencodable(*, session: Session) -> Any:
    """Insert a note, then return a value the wire cannot carry (must roll back)."""
    session.add(Note(id=UNENCODABLE_NOTE_ID, text="unencodable"))
    session.flush()
    return object()


@remote_operation
def echo(value: Any, *, session: Session) -> Any:
    """Return the argument unchanged (no SQL)."""
    return value


@remote_operation
def note_text(note: Note, *, session: Session) -> str:
    """Take a Note instance as argument; return its text upper-cased."""
    return note.text.upper()
