"""A tiny list scheduler for streams of tasks: how overlap is computed, not assumed.

A :class:`Timeline` holds tasks, each on a *stream* (``"compute"`` and
``"comm"`` by default: the SMs and the copy/network engines of one GPU), with a
duration -- a numpy array over the sweep axes, so one schedule is evaluated for
every sweep point at once -- and the tasks it waits for. Each stream runs its
tasks one at a time in the order they were added (an in-order queue, like a
CUDA stream), so the schedule is

    start[i] = max(end[previous task on i's stream], max(end[d] for d in deps[i]))
    end[i]   = start[i] + duration[i]
    makespan = max(end[i])

evaluated elementwise. Dependencies must name tasks added earlier, so the
insertion order is a topological order and one pass is exact (no search, no
heuristics: with in-order streams the list schedule *is* the schedule).

Properties (tested in ``tests/test_parallel.py``): the makespan is at least each
stream's busy time (a stream runs its tasks one after another) and at most the
sum of all durations (every task starts no later than the sum of the durations
added before it); with no dependency across streams it equals the largest
busy time. The communication left on the critical path is

    exposed(comm) = makespan - makespan with every comm duration set to 0

i.e. the step time minus the compute-only critical path; what the schedule hid
behind compute is ``busy(comm) - exposed(comm)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels.errors import InvalidValueError

STREAMS = ("compute", "comm")


@dataclass(frozen=True, eq=False)
class Task:
    name: str
    stream: str
    duration: np.ndarray
    after: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Schedule:
    """Start and end of every task (arrays over the sweep axes), and the makespan."""

    tasks: tuple[Task, ...]
    start: dict[str, np.ndarray]
    end: dict[str, np.ndarray]

    @property
    def makespan(self) -> np.ndarray:
        ends = [self.end[t.name] for t in self.tasks]
        return np.maximum.reduce(np.broadcast_arrays(np.float64(0.0), *ends)) if ends else np.float64(0.0)

    def busy(self, stream: str) -> np.ndarray:
        """Sum of the durations of ``stream``'s tasks."""
        return sum((t.duration for t in self.tasks if t.stream == stream), np.float64(0.0))


class Timeline:
    """Tasks on in-order streams with dependencies; see the module docstring for the rules."""

    def __init__(self, streams: tuple[str, ...] = STREAMS):
        if not streams or len(set(streams)) != len(streams):
            raise InvalidValueError(f"streams must be distinct names, got {streams!r}")
        self.streams = tuple(streams)
        self.tasks: list[Task] = []
        self._names: set[str] = set()

    def add(self, name: str, stream: str, duration, after=()) -> str:
        """Append a task; it runs after the previous task of ``stream`` and after every task in ``after``."""
        if name in self._names:
            raise InvalidValueError(f"a task named {name!r} is already on the timeline")
        if stream not in self.streams:
            raise InvalidValueError(f"unknown stream {stream!r}; this timeline has {', '.join(self.streams)}")
        d = np.asarray(duration, dtype=float)
        if not np.all(np.isfinite(d)) or np.any(d < 0):
            raise InvalidValueError(f"task {name!r}: durations must be finite and non-negative, got {duration!r}")
        after = (after,) if isinstance(after, str) else tuple(a for a in after if a is not None)
        for a in after:
            if a not in self._names:
                raise InvalidValueError(f"task {name!r} waits for {a!r}, which was not added before it")
        self.tasks.append(Task(name, stream, d, after))
        self._names.add(name)
        return name

    def schedule(self, zero: tuple[str, ...] = ()) -> Schedule:
        """The list schedule; tasks on the streams in ``zero`` take no time (for critical paths)."""
        start: dict[str, np.ndarray] = {}
        end: dict[str, np.ndarray] = {}
        free = {s: np.float64(0.0) for s in self.streams}
        for t in self.tasks:
            s = free[t.stream]
            for a in t.after:
                s = np.maximum(s, end[a])
            start[t.name] = s
            end[t.name] = s + (np.zeros_like(t.duration) if t.stream in zero else t.duration)
            free[t.stream] = end[t.name]
        return Schedule(tuple(self.tasks), start, end)

    @property
    def makespan(self) -> np.ndarray:
        return self.schedule().makespan

    def busy(self, stream: str) -> np.ndarray:
        return self.schedule().busy(stream)

    def critical_path(self, stream: str = "compute") -> np.ndarray:
        """Makespan when only ``stream``'s tasks take time (the others' durations set to 0)."""
        return self.schedule(zero=tuple(s for s in self.streams if s != stream)).makespan

    def exposed(self, stream: str = "comm") -> np.ndarray:
        """How much of ``stream``'s time lies on the critical path: makespan minus the makespan without it."""
        return self.makespan - self.schedule(zero=(stream,)).makespan
