"""Name registries: find an entry by name or alias, case-insensitively, and list close matches."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from hwmodels.errors import KernelabError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A read-only map from canonical names (and aliases) to entries.

    Entries are produced lazily by ``loader`` the first time the registry is
    used, so importing a module costs no file I/O.
    """

    def __init__(self, kind: str, loader: Callable[[], Mapping[str, tuple[T, tuple[str, ...]]]]):
        self.kind = kind
        self._loader = loader
        self._entries: dict[str, T] | None = None
        self._index: dict[str, str] = {}

    def _load(self) -> dict[str, T]:
        if self._entries is None:
            entries: dict[str, T] = {}
            index: dict[str, str] = {}
            for name, (entry, aliases) in self._loader().items():
                for key in (name, *aliases):
                    if index.get(key.lower(), name) != name:
                        raise KernelabError(
                            f"{self.kind} name {key!r} is used twice "
                            f"({index[key.lower()]!r} and {name!r})"
                        )
                    index[key.lower()] = name
                entries[name] = entry
            self._entries, self._index = entries, index
        return self._entries

    def names(self) -> list[str]:
        """Canonical names, in catalog order."""
        return list(self._load())

    def get(self, name: str) -> T:
        entries = self._load()
        canonical = self._index.get(name.strip().lower())
        if canonical is None:
            raise UnknownNameError(self.kind, name, entries)
        return entries[canonical]

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and name.strip().lower() in self._index

    def __iter__(self) -> Iterator[T]:
        return iter(self._load().values())

    def __len__(self) -> int:
        return len(self._load())
