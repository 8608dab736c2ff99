"""Reading kernelab's TOML data files, where every number carries its source.

A data file has a ``[sources]`` table naming each source once::

    [sources]
    h100-whitepaper = { url = "https://...", kind = "datasheet", title = "..." }

and quantities written as inline tables that cite one of them::

    sm_count = { value = 132, source = "h100-whitepaper" }
    note-worthy = { value = 1.83e9, source = "h100-whitepaper", note = "TC peak clock" }

``kind`` is one of :data:`SOURCE_KINDS`. Every problem is reported as a
:class:`~hwmodels.errors.DataFileError` naming the file and the field.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from hwmodels.errors import DataFileError

SOURCE_KINDS = ("datasheet", "measured", "derived", "documentation", "user")


@dataclass(frozen=True)
class Source:
    """Where a number comes from: a URL (or file) and whether it is a datasheet or a measurement."""

    key: str
    url: str
    kind: str
    title: str = ""


@dataclass(frozen=True)
class Sourced:
    """A number together with its source and an optional note (setting, derivation)."""

    value: float
    source: Source
    note: str = ""


def load_toml(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise DataFileError(path, "<file>", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataFileError(path, "<file>", f"not valid TOML: {exc}") from None


def read_sources(doc: dict[str, Any], path: Path | str, default_kind: str | None = None) -> dict[str, Source]:
    """The ``[sources]`` table of ``doc`` as Source objects keyed by their name."""
    table = doc.get("sources", {})
    if not isinstance(table, dict):
        raise DataFileError(path, "sources", "must be a table of {url, kind}")
    out = {}
    for key, entry in table.items():
        field = f"sources.{key}"
        if isinstance(entry, str) and default_kind:
            entry = {"url": entry, "kind": default_kind}
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str) or not entry["url"]:
            raise DataFileError(path, field, "needs a non-empty 'url'")
        kind = entry.get("kind", default_kind)
        if kind not in SOURCE_KINDS:
            raise DataFileError(path, field, f"'kind' must be one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
        out[key] = Source(key=key, url=entry["url"], kind=kind, title=str(entry.get("title", "")))
    return out


def read_sourced(
    table: dict[str, Any],
    name: str,
    path: Path | str,
    sources: dict[str, Source],
    *,
    prefix: str = "",
    required: bool = True,
    integer: bool = False,
    allow_zero: bool = False,
) -> Sourced | None:
    """Read ``table[name]`` as a positive (or, with ``allow_zero``, non-negative) sourced number."""
    field = f"{prefix}{name}"
    if name not in table:
        if required:
            raise DataFileError(path, field, "missing")
        return None
    entry = table[name]
    if not isinstance(entry, dict) or "value" not in entry:
        raise DataFileError(path, field, "must be an inline table { value = ..., source = \"...\" }")
    value = entry["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataFileError(path, field, f"value must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise DataFileError(path, field, f"value must be {'non-negative' if allow_zero else 'positive'}, got {value!r}")
    if integer and float(value) != int(value):
        raise DataFileError(path, field, f"value must be an integer, got {value!r}")
    key = entry.get("source")
    if key not in sources:
        known = ", ".join(sorted(sources)) or "none defined"
        raise DataFileError(path, field, f"source {key!r} is not in [sources] ({known})")
    extra = set(entry) - {"value", "source", "note"}
    if extra:
        raise DataFileError(path, field, f"unexpected keys {sorted(extra)}")
    return Sourced(value=int(value) if integer else float(value), source=sources[key], note=str(entry.get("note", "")))
