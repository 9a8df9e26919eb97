"""One small registry type: decorator registration, duplicate-name errors, did-you-mean on a miss."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, Sequence, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps unique names to entries (factories, specs) of one kind.

    >>> METHODS = Registry[object]("method")
    >>> @METHODS.register("bicubic")
    ... def make(): ...
    """

    def __init__(self, kind: str, members: Sequence[str] = ()) -> None:
        """``members``: modules whose import registers built-in entries (each registers itself), imported on
        the first lookup, so that the registry's module imports none of them."""
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._members = tuple(members)

    def _load(self) -> None:
        if self._members:
            import importlib

            pending, self._members = self._members, ()
            for module in pending:
                importlib.import_module(module)

    def alias(self, name: str, target: str) -> None:
        """Another name for ``target`` (e.g. ``gfpgan`` -> ``gfpgan-v1.3``): accepted everywhere a
        name is, resolved to ``target``, never listed or run twice."""
        if name in self._entries or name in self._aliases:
            raise ValueError(f"duplicate {self.kind} name {name!r}: already registered")
        self._aliases[name] = target

    def canonical(self, name: str) -> str:
        """``name`` with an alias resolved (unknown names are returned unchanged)."""
        return self._aliases.get(name, name)

    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """Register ``entry`` under ``name``; without ``entry`` returns a decorator."""
        if entry is not None:
            self._add(name, entry)
            return entry

        def decorator(obj: T) -> T:
            self._add(name, obj)
            return obj

        return decorator

    def replace(self, name: str, entry: T) -> None:
        """Point an existing name at a new entry (entries made at run time, e.g. ``dir:`` methods)."""
        if name not in self._entries:
            raise KeyError(name)
        self._entries[name] = entry

    def _add(self, name: str, entry: T) -> None:
        if not name or name != name.strip() or "," in name:
            raise ValueError(f"invalid {self.kind} name {name!r}: no commas or surrounding spaces")
        if name in self._entries or name in self._aliases:
            raise ValueError(f"duplicate {self.kind} name {name!r}: already registered")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        """Return the entry for ``name`` or raise :class:`UnknownNameError` with suggestions."""
        self._load()
        try:
            return self._entries[self._aliases.get(name, name)]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        self._load()
        close = difflib.get_close_matches(name, list(self._entries) + list(self._aliases), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Allowed: {', '.join(sorted(self._entries))}."

    def resolve_list(self, spec: str | list[str]) -> list[str]:
        """Parse ``'a,b'`` or ``'all'`` into validated names, keeping order and dropping repeats."""
        self._load()
        names = spec.split(",") if isinstance(spec, str) else list(spec)
        names = [n.strip() for n in names if n.strip()]
        if not names:
            raise UnknownNameError(f"no {self.kind} given. Allowed: {', '.join(sorted(self))}.")
        if names == ["all"]:
            return sorted(self._entries)
        for n in names:
            self.get(n)
        return list(dict.fromkeys(self.canonical(n) for n in names))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return sorted(self._entries.items())
