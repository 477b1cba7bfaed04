"""ORM models used by the behaviour tests (tables prefixed ``sp_``)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


parent_tag = sa.Table(
    "sp_parent_tag",
    Base.metadata,
    sa.Column("parent_id", sa.ForeignKey("sp_parent.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag_id", sa.ForeignKey("sp_tag.id", ondelete="CASCADE"), primary_key=True),
)


class Parent(Base):
    __tablename__ = "sp_parent"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50), unique=True)
    status: Mapped[str] = mapped_column(sa.String(20), server_default=sa.text("'new'"))
    counter: Mapped[int] = mapped_column(server_default=sa.text("0"))
    children: Mapped[list[Child]] = relationship(
        back_populates="parent", cascade="all, delete-orphan", order_by="Child.id"
    )
    tags: Mapped[list[Tag]] = relationship(secondary=parent_tag, order_by="Tag.id")


class Child(Base):
    __tablename__ = "sp_child"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(sa.ForeignKey("sp_parent.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(50))
    parent: Mapped[Parent] = relationship(back_populates="children")


class Tag(Base):
    __tablename__ = "sp_tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(50))


class Versioned(Base):
    __tablename__ = "sp_versioned"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    value: Mapped[str] = mapped_column(sa.String(50))
    version: Mapped[int] = mapped_column(nullable=False)
    __mapper_args__ = {"version_id_col": version}


class Item(Base):
    """Rows with client-assigned keys, for bulk and locking tests."""

    __tablename__ = "sp_item"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    value: Mapped[int]
    label: Mapped[str] = mapped_column(sa.String(50), default="")


digits = sa.Table(
    "sp_digits", Base.metadata, sa.Column("d", sa.Integer, primary_key=True, autoincrement=False)
)
big = sa.Table(
    "sp_big", Base.metadata, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False)
)
