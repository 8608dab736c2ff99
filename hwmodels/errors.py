"""Errors raised on bad input: each says what was wrong and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class KernelabError(Exception):
    """Base class: every error kernelab raises on bad input derives from it."""


class UnknownNameError(KernelabError, KeyError):
    """A name (device, model, link, ...) that no registry entry matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        self.suggestions = close_matches(name, self.known)
        msg = f"unknown {kind} {name!r}"
        if self.suggestions:
            msg += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        msg += f" (known: {', '.join(self.known)})" if len(self.known) <= 40 else ""
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class DataFileError(KernelabError, ValueError):
    """A data file (device, calibration, link, config) with a missing or bad field."""

    def __init__(self, path: Path | str, field: str, problem: str):
        self.path = str(path)
        self.field = field
        self.problem = problem
        super().__init__(f"{self.path}: field {field!r}: {problem}")


class InvalidValueError(KernelabError, ValueError):
    """A parameter passed through the Python API or the CLI that cannot be used."""


class ExportError(KernelabError, RuntimeError):
    """A figure could not be written: unknown format, no browser or no kaleido for an image."""


def close_matches(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Known names closest to ``name``, case-insensitively, best first.

    Prefix and substring matches come first (``H100`` suggests every H100
    variant), then difflib's ratio matches for typos (``H100-SX`` -> ``H100-SXM``).
    """
    known = list(known)
    by_lower = {k.lower(): k for k in known}
    needle = name.lower()
    contains = [k for k in known if needle and (needle in k.lower() or k.lower() in needle)]
    fuzzy = [by_lower[m] for m in difflib.get_close_matches(needle, by_lower, n=n, cutoff=0.5)]
    out: list[str] = []
    for k in sorted(contains, key=lambda k: (abs(len(k) - len(name)), k)) + fuzzy:
        if k not in out:
            out.append(k)
    return out[:n]
