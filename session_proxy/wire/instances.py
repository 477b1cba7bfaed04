"""Mapped classes as the logical API's wire sees them: found once, then reused.

:mod:`.values` sends an ORM instance as its class name and its loaded column
values, and rebuilds a detached instance from them.  What that needs of a
mapped class (the class a name stands for, its column attribute keys, how to
make a new instance) is worked out once per class and kept in a
:class:`MappedClass`, as SQLAlchemy's own ``loading.py`` keeps its
populators per query rather than per row:

- a name is looked up among the mapped classes this process has already
  imported, once; a name never causes an import, and a name not found is
  looked up again next time (its module may have been imported since);
- a kept entry is checked on each use, cheaply: it is dropped when its class
  is no longer mapped (``registry.dispose()``, ``clear_mappers()``) and its
  keys are recomputed when the mapper's properties changed.

A detached instance is built the way loading builds one from a row: a new
instance from the class manager, its column values put into its ``__dict__``
in one step, then :func:`~sqlalchemy.orm.make_transient_to_detached` gives
it its identity key, commits the values and marks every other attribute
unloaded, so touching an unloaded relationship raises
:class:`~sqlalchemy.orm.exc.DetachedInstanceError` rather than returning an
empty list.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy.orm.exc as orm_exc
from sqlalchemy import inspect
from sqlalchemy.orm import Mapper, make_transient_to_detached
from sqlalchemy.orm.base import instance_state

__all__ = ["MappedClass", "class_named", "mapped_class_of", "type_name"]


def type_name(cls: type) -> str:
    """``module:Qualname``, how the wire names a class."""
    return f"{cls.__module__}:{cls.__qualname__}"


class MappedClass:
    """What the wire needs of one mapped class, worked out once."""

    __slots__ = ("cls", "name", "mapper", "column_keys", "known_keys", "_column_attrs",
                 "_new_instance")

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.cls: type = mapper.class_
        self.name = type_name(self.cls)
        self.mapper = mapper
        self._new_instance = mapper.class_manager.new_instance
        self._column_attrs: Any = None
        self.column_keys: tuple[str, ...] = ()
        self.known_keys: frozenset[str] = frozenset()
        self.refresh()

    def refresh(self) -> MappedClass:
        """Recompute the column keys if the mapper's properties changed."""
        column_attrs = self.mapper.column_attrs  # memoized until properties change
        if column_attrs is not self._column_attrs:
            self._column_attrs = column_attrs
            self.column_keys = tuple(prop.key for prop in column_attrs)
            self.known_keys = frozenset(self.column_keys)
        return self

    def still_mapped(self) -> bool:
        """Whether the class is still mapped by this entry's mapper."""
        return inspect(self.cls, raiseerr=False) is self.mapper

    def loaded_columns(self, instance: Any) -> dict[str, Any]:
        """The instance's loaded column attributes, in mapper order."""
        loaded = instance_state(instance).dict
        return {key: loaded[key] for key in self.column_keys if key in loaded}

    def detached(self, columns: dict[str, Any]) -> Any:
        """A new detached instance whose committed column values are ``columns``.

        The keys must be column attribute keys (:attr:`known_keys`); the
        caller checks them.
        """
        instance = self._new_instance()
        instance_state(instance).dict.update(columns)
        make_transient_to_detached(instance)
        return instance


# Plain dicts: a get or set is atomic, and two threads building the same
# entry at once build equal ones.
_by_name: dict[str, MappedClass] = {}
_by_type: dict[type, MappedClass] = {}


def _kept(table: dict[Any, MappedClass], key: Any) -> MappedClass | None:
    entry = table.get(key)
    if entry is None:
        return None
    if entry.still_mapped():
        return entry.refresh()
    table.pop(key, None)
    return None


def class_named(name: str) -> MappedClass:
    """The mapped class named ``module:Qualname`` among those already imported.

    Raises :class:`ValueError` when no mapped class has that name.
    """
    entry = _kept(_by_name, name)
    if entry is not None:
        return entry
    from sqlalchemy.orm import mapperlib

    for registry in list(mapperlib._mapper_registries):
        for mapper in registry.mappers:
            if type_name(mapper.class_) == name:
                entry = _by_name[name] = MappedClass(mapper)
                return entry
    raise ValueError(
        f"no mapped class {name!r} in this process; import the module that defines it"
    )


def mapped_class_of(value: Any) -> MappedClass | None:
    """The mapped class of ``value`` if it is an instance of one, else None."""
    kind = type(value)
    entry = _kept(_by_type, kind)
    if entry is not None:
        return entry
    try:
        mapper = instance_state(value).mapper
    except (AttributeError, orm_exc.UnmappedInstanceError):
        return None
    if mapper is None:
        return None
    entry = MappedClass(mapper)
    if mapper.class_ is kind:
        _by_type[kind] = entry
    return entry
