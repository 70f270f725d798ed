"""JSON round-trip of the records: `Record.to_dict()` and `Record.from_dict(d)`, with a schema version.

The records are plain frozen dataclasses; pydantic (already an effai dependency) checks a
dict against a record's type hints on the way in, so a file that does not match the schema
is refused with one line naming the field, never half-read. Unknown keys are refused too:
they mean a newer or a foreign file.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from effai.errors import InputError

# The version of the results files (results.jsonl lines, result.json). Bump it when a field
# is renamed or removed or changes meaning, and add a step to MIGRATIONS; adding an optional
# field with a default needs neither (see docs/decisions.md, "Result records").
SCHEMA_VERSION = 1
MIGRATIONS: dict[int, Any] = {}  # version -> function(dict) -> dict of version + 1

R = TypeVar("R", bound="Record")


class Record:
    """Base of every result record: `to_dict` / `from_dict` (JSON-safe), schema-checked."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    def to_dict(self) -> dict:
        """The record as JSON-safe builtins (tuples become lists)."""
        return _adapter(type(self)).dump_python(self, mode="json")

    @classmethod
    def from_dict(cls: type[R], d: Any, where: str = "record") -> R:
        """Read a record back; an InputError naming `where` and the field if `d` does not fit."""
        try:
            return _adapter(cls).validate_python(d)
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            loc = ".".join(str(x) for x in err["loc"]) or "(top)"
            raise InputError(f"{where}: {loc}: {err['msg']} (not a {cls.__name__} of effai's results schema "
                             f"{SCHEMA_VERSION})") from None

    def replace(self: R, **changes) -> R:
        """A copy with some fields changed (records are frozen)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


_ADAPTERS: dict[type, TypeAdapter] = {}


def _adapter(cls: type) -> TypeAdapter:
    """The (cached) pydantic adapter that reads and writes records of type `cls`."""
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def versioned(d: dict) -> dict:
    """`d` with the schema version, as the first key of what is written to a file."""
    return {"schema": SCHEMA_VERSION, **d}


def unversioned(d: Any, where: str, hint: str = "") -> dict:
    """The record dict of a file's object: its schema version checked (migrated when older)
    and removed. A file of another program or a newer effai is refused with one line (ending
    with `hint`, what the user can do about it)."""
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(d).__name__}{hint}")
    version = d.get("schema")
    if version is None:
        raise InputError(f"{where}: no schema version: written by effai before results schema 1, or not by "
                         f"effai{hint}")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise InputError(f"{where}: results schema {version!r} is newer than this effai's ({SCHEMA_VERSION}); "
                         f"upgrade effai{hint}")
    d = {k: v for k, v in d.items() if k != "schema"}
    while version < SCHEMA_VERSION:
        d, version = MIGRATIONS[version](d), version + 1
    return d
