"""The registry of kernel schedules: name -> builder ``build(problem, device) -> Schedule``.

A schedule module registers its builders with :func:`register`; the package's
``__init__`` imports the modules (one import line per module), so that merely
importing :mod:`sim.kernel.schedules` fills :data:`SCHEDULES`::

    from sim.kernel.schedules.registry import Schedule, register

    @register("lean")
    def build(problem, device) -> Schedule:
        ...

A builder returns a :class:`Schedule`: the :class:`~sim.kernel.program.Program`
and the per-CTA bytes in flight (its pipeline stages' tile bytes) that the
engine's Little's-law load cap needs (``None``: uncapped), plus a free-form
``info`` dict (grid, splits, L2-hit fractions, ...) for reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from hwmodels.errors import InvalidValueError, UnknownNameError
from sim.kernel.program import Program


@dataclass(frozen=True, eq=False)
class Schedule:
    """A built schedule: the program, the bytes each CTA keeps in flight, and what was chosen."""

    program: Program
    load_bytes_in_flight: float | None = None
    info: dict = field(default_factory=dict)


Builder = Callable[..., Schedule]
SCHEDULES: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: file ``fn`` under ``name`` (lower case) in :data:`SCHEDULES`; a name is taken once."""
    key = name.strip().lower()
    if not key:
        raise InvalidValueError("a schedule needs a non-empty name")

    def deco(fn: Builder) -> Builder:
        if key in SCHEDULES and SCHEDULES[key] is not fn:
            raise InvalidValueError(f"schedule {key!r} is already registered (by {SCHEDULES[key].__module__})")
        SCHEDULES[key] = fn
        return fn

    return deco


def get_schedule(name: str) -> Builder:
    key = name.strip().lower()
    if key not in SCHEDULES:
        raise UnknownNameError("kernel schedule", name, SCHEDULES)
    return SCHEDULES[key]
