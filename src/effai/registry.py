"""One registry for every extension point: quantize handlers, prune methods, the layer handlers of
structured pruning, the study's variants and the zoo's models.

A `Registry` maps a key (a type or a name) to what was registered for it, with one set of rules:

- `register(key)` / `add(key, value)` refuse a key that is already there (`DuplicateRegistration`,
  a bug in the code that registers, so it keeps its traceback);
- `find(key)` looks a type up through its class hierarchy (the nearest registered base class
  wins, so a subclass of `nn.Conv2d` is handled as a conv) and a name up exactly; `None` if absent;
- `lookup(key)` is `find` that raises `InputError` naming the argument and the known keys (with
  close-match suggestions for names): the one-line message the CLI prints for exit code 2.

It is also a mutable mapping, so `registry[key] = value` deliberately replaces an entry and
`del registry[key]` removes one (tests, monkeypatching).

>>> handlers = Registry("handler", argument="config")
>>> @handlers.register(int)
... def double(x):
...     return 2 * x
>>> handlers.lookup(bool)(21)  # bool is a subclass of int
42
>>> handlers.add(int, abs)
Traceback (most recent call last):
...
effai.registry.DuplicateRegistration: handler int is already registered (effai.registry.double)
>>> handlers.lookup(str)
Traceback (most recent call last):
...
effai.errors.InputError: config: no handler for str; known: int
>>> variants = Registry("variant")
>>> _ = variants.add("int8", "..."), variants.add("int4", "...")
>>> variants.lookup("int9")
Traceback (most recent call last):
...
effai.errors.InputError: unknown variant 'int9'; did you mean: int8, int4?
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from effai.errors import InputError, suggest

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
F = TypeVar("F")


class DuplicateRegistration(ValueError):
    """Two registrations for one key: a programming error, never bad user input."""


def label(key: Hashable) -> str:
    """How a key is named in messages: a type by its name, anything else by its string."""
    return key.__name__ if isinstance(key, type) else str(key)


def _origin(value: object) -> str:
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    return f"{getattr(value, '__module__', None) or type(value).__module__}.{name}"


class Registry(MutableMapping[K, V], Generic[K, V]):
    """Keys (types or names) to registered values; `what` names an entry in messages, `argument`
    the public argument a failed type lookup blames."""

    def __init__(self, what: str, argument: str = "name"):
        self.what = what
        self.argument = argument
        self._entries: dict[K, V] = {}

    # ---------------------------------------------------------------- registering
    def add(self, key: K, value: V) -> V:
        """Register `value` under `key`; a key registered before raises `DuplicateRegistration`."""
        if key in self._entries:
            raise DuplicateRegistration(
                f"{self.what} {label(key)} is already registered ({_origin(self._entries[key])})")
        self._entries[key] = value
        return value

    def register(self, *keys: K) -> Callable[[F], F]:
        """Decorator registering the decorated object under each of `keys`; returns it unchanged."""

        def deco(obj: F) -> F:
            for key in keys:
                self.add(key, obj)  # type: ignore[arg-type]  # F is V by the caller's contract
            return obj

        return deco

    # ---------------------------------------------------------------- looking up
    def find(self, key: Any) -> V | None:
        """The entry for `key`: for a type, the one of its nearest registered base class."""
        if isinstance(key, type):
            for cls in key.__mro__:
                if cls in self._entries:
                    return self._entries[cls]
            return None
        return self._entries.get(key)

    def lookup(self, key: Any) -> V:
        """`find`, raising `InputError` (one line: what was asked, what is known) when absent."""
        found = self.find(key)
        if found is not None:
            return found
        if isinstance(key, type):
            known = ", ".join(sorted(label(k) for k in self._entries))
            raise InputError(f"{self.argument}: no {self.what} for {key.__name__}; known: {known}")
        raise suggest(str(key), [label(k) for k in self._entries], self.what)

    # ---------------------------------------------------------------- the mapping protocol
    def __getitem__(self, key: K) -> V:
        return self._entries[key]

    def __setitem__(self, key: K, value: V) -> None:
        self._entries[key] = value

    def __delitem__(self, key: K) -> None:
        del self._entries[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(label(k) for k in self._entries)})"
