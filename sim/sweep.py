"""Sweeps: step costs over grids of models, devices, step kinds, layouts, precisions and shapes.

The grid is the cartesian product of the *discrete* axes (model, device, step
kind, parallel layout: tensor- and expert-parallel sizes, precision) and,
inside each discrete combination,
of the *numeric* axes (batch, context, tokens). The numeric axes are never
looped over in Python: each combination is one vectorized
:func:`sim.cost.step_cost` call over ``batch x context x tokens`` broadcast
(split into blocks of at most ``chunk_size`` points, so memory stays bounded
on large grids). The step of a block is built once and shared by every
combination of its kind::

    from sim.sweep import sweep
    res = sweep(["Llama-2-7B"], ["H100-SXM", "A100-SXM-80GB"], batch=[1, 8, 64],
                context=[1024, 4096], tp=[1, 2, 8], output="runs.parquet")
    res.table            # a pyarrow Table, one row per point
    res.columns()        # the same as a dict of numpy arrays
    res.skipped          # invalid combinations and why

What the numeric columns mean, whatever the kind:

- ``batch``: sequences in the step;
- ``context``: tokens each sequence already has cached before the step;
- ``tokens``: new tokens per sequence in the step.

So ``decode`` always has ``tokens = 1`` (the tokens axis does not apply);
``verify`` checks ``tokens`` draft tokens (8 when no tokens are given) over
``context``; ``prefill`` adds a chunk of ``tokens`` over a cached prefix of
``context`` tokens, and with no tokens given each context value is a whole
prompt: the rows then read ``context = 0`` (nothing cached) and ``tokens`` =
the prompt length (a context of 0, an empty prompt, is left out of prefill).

Each row also has the discrete settings (``model, device, kind, attention,
cuda_graphs, tp, ep, weight_bits, activation_bits, kv_bits``) and the results
(``time_s, tokens_per_s, mfu, mbu``, the step time split into ``compute_s,
memory_s, overhead_s, communication_s`` as :meth:`StepCost.time_by_bound`
splits it, and ``bound``, the largest of the four).

Output and interruption. With ``output`` (``.csv`` or ``.parquet``), rows are
written as each block finishes: a CSV is appended to and flushed; a Parquet
output is written as part files in ``<output>.parts/`` (each complete on disk
before the next starts) that are merged into the single ``<output>`` file
when the sweep ends, normally or by an exception. A sweep killed outright
leaves the part files. ``resume=True`` keeps what the file (and any parts)
already hold and computes only the points that are missing, so an interrupted
sweep loses nothing it had written and a resumed one writes no duplicate; a
half-written last CSV line (a kill mid-write) is dropped first. Without
``resume`` an existing output is replaced.

Invalid combinations (a TP size that does not split the heads, expert
parallelism of a dense model, a dtype the device has no peak for, an
unbuildable node, an impossible precision) are
skipped, each with its reason, in :attr:`SweepResult.skipped`.

Dask. ``scheduler`` picks where blocks run: ``None`` (the default) runs
in-process unless the sweep is large, estimated at more than
:data:`AUTO_CLUSTER_WORK` evaluation-equivalents (each point counts one and
each block :data:`BLOCK_OVERHEAD_EVALS` for its set-up: about 20 s of one
core), and the machine has at least :data:`AUTO_CLUSTER_MIN_CORES` cores; then
a local cluster is started. Its start-up costs a second or more, which small
sweeps should not pay, and on two cores the driver (which receives and writes
every row, ~1 us a row) and two workers share the cores: measured there, a
local cluster ran an 8M-point sweep no faster than in-process. ``"local"``
always starts a :class:`distributed.LocalCluster` (one single-threaded worker
process per core); an address (``"tcp://host:8786"``) connects to a running
scheduler, whose workers must have kernelab installed; a ``distributed.Client``
is used as it is; ``"in-process"`` never uses Dask. Each task evaluates
several blocks (about :data:`TASK_POINTS` points, fewer on small sweeps so
every worker gets some), a few tasks per worker are in flight, results come
back ``as_completed`` and the driver streams them to the file; the rows
returned are in the in-process order. A cluster the sweep started is shut
down when it ends.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

import hwmodels as hw
from hwmodels.device import Device
from hwmodels.errors import InvalidValueError, KernelabError
from sim.attention import default_kernel, get_attention_kernel
from sim.cost import step_cost
from sim.model import ModelConfig, get_model
from sim.precision import Precision
from sim import step as steps

SWEEP_KINDS = ("decode", "prefill", "verify")
BOUNDS = ("compute", "memory", "overhead", "communication")
#: columns naming a discrete combination, then a point of its numeric grid
COMBO_COLUMNS = ("model", "device", "kind", "attention", "cuda_graphs", "tp", "ep", "weight_bits", "activation_bits", "kv_bits")
POINT_COLUMNS = ("batch", "context", "tokens")
RESULT_COLUMNS = ("time_s", "tokens_per_s", "mfu", "mbu", "compute_s", "memory_s", "overhead_s", "communication_s")
SCHEMA = pa.schema(
    [(c, pa.string()) for c in ("model", "device", "kind", "attention")]
    + [("cuda_graphs", pa.bool_())]
    + [(c, pa.int64()) for c in ("tp", "ep", "weight_bits", "activation_bits", "kv_bits")]
    + [(c, pa.int64()) for c in POINT_COLUMNS]
    + [(c, pa.float64()) for c in RESULT_COLUMNS]
    + [("bound", pa.string())]
)

#: most points one vectorized call evaluates (a block); bounds the memory of a call
DEFAULT_CHUNK_SIZE = 65_536
#: a progress bar is drawn for sweeps of more blocks than this
PROGRESS_MIN_BLOCKS = 8
#: with no scheduler given, sweeps estimated above this many evaluation-equivalents
#: (points + BLOCK_OVERHEAD_EVALS per block; ~20 s of one core) start a local cluster
AUTO_CLUSTER_WORK = 40_000_000
#: ... on machines of at least this many cores
AUTO_CLUSTER_MIN_CORES = 4
#: a block's fixed cost (graph building, calibration, collectives) in evaluations:
#: ~1 ms per block against ~2M evaluations/s inside a large block
BLOCK_OVERHEAD_EVALS = 2_000
#: most values one numeric axis may have
MAX_AXIS_VALUES = 100_000
#: Dask tasks in flight per worker thread
TASKS_PER_WORKER = 4
#: points one Dask task evaluates, made of as many blocks as it takes (at most TASK_MAX_BLOCKS)
TASK_POINTS = 200_000
TASK_MAX_BLOCKS = 512
#: how long to wait for a Dask scheduler given by address
SCHEDULER_TIMEOUT = "20s"
#: glibc allocator settings of the local cluster's workers. Dask's default
#: MALLOC_TRIM_THRESHOLD_=65536 turns off glibc's adaptive mmap threshold, so every
#: array over 128 KiB is mmap-ed and faulted in afresh: sweeps ran 2-3x slower in
#: its workers. Workers of a cluster of your own want the same pre-spawn-environ.
WORKER_MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(64 << 20), "MALLOC_MMAP_THRESHOLD_": str(64 << 20)}
#: worker processes of the local cluster (None: one per core)
LOCAL_CLUSTER_WORKERS: int | None = None


# ----------------------------------------------------------------------------- inputs


_RANGE = re.compile(r"^\s*([^:]+):([^:]+)(?::\s*([x*+]?)\s*([^:]+))?\s*$")


def _number(text: str, what: str, item: str, whole: bool = True) -> float:
    try:
        value = float(text.strip().replace("_", ""))
    except ValueError:
        raise InvalidValueError(f"cannot read {item!r}: {text.strip()!r} is not a number ({what})") from None
    if not math.isfinite(value) or (whole and value != round(value)):
        raise InvalidValueError(f"cannot read {item!r}: {what} must be a whole number, got {text.strip()!r}")
    return value


def parse_values(text: str) -> list[int]:
    """Integers from a comma-separated list of values and inclusive ranges.

    ``1,8,64``; ``1:256:x2`` (geometric: 1, 2, 4, ..., 256); ``1024:32768:+1024``
    (arithmetic); ``1:8`` (step 1). Items mix: ``1,2,4:64:x4``. A geometric
    factor may be fractional (``16:1024:x1.5``; values are rounded). Duplicates
    are dropped, the order kept.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidValueError(f"expected values like 1,8,64 or a range like 1:256:x2, got {text!r}")
    out: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise InvalidValueError(f"empty item in {text!r}; separate values by single commas")
        m = _RANGE.match(item)
        if m is None:
            out.append(int(_number(item, "a value", item)))
        else:
            start, stop = _number(m[1], "range start", item), _number(m[2], "range stop", item)
            op, step_text = m[3] or "+", m[4]
            if start > stop:
                raise InvalidValueError(f"cannot read {item!r}: the range runs from {m[1].strip()} down to {m[2].strip()}")
            if op in "x*" and step_text is not None:
                factor = _number(step_text, "geometric factor", item, whole=False)
                if factor <= 1 or start < 1:
                    raise InvalidValueError(f"cannot read {item!r}: a geometric range needs a start >= 1 and a factor > 1")
                n = int(math.floor(math.log(stop / start) / math.log(factor) + 1e-9)) + 1
            else:
                step = 1.0 if step_text is None else _number(step_text, "range step", item)
                if step < 1:
                    raise InvalidValueError(f"cannot read {item!r}: the step must be at least 1")
                n = int((stop - start) // step) + 1
            if n > MAX_AXIS_VALUES:
                raise InvalidValueError(f"{item!r} has {n} values; at most {MAX_AXIS_VALUES} per axis")
            if op in "x*" and step_text is not None:
                values = np.round(start * factor ** np.arange(n))
            else:
                values = start + step * np.arange(n)
            out.extend(int(v) for v in values)
        if len(out) > MAX_AXIS_VALUES:
            raise InvalidValueError(f"{text!r} has more than {MAX_AXIS_VALUES} values")
    return list(dict.fromkeys(out))


def _axis(name: str, value, minimum: int) -> np.ndarray:
    """A numeric axis: text (see :func:`parse_values`), one number or a sequence of whole numbers."""
    if isinstance(value, str):
        value = parse_values(value)
    arr = np.atleast_1d(np.asarray(value))
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidValueError(f"{name} must be a non-empty list of whole numbers, got {value!r}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
        raise InvalidValueError(f"{name} must be whole numbers, got {value!r}")
    if np.any(arr < minimum):
        raise InvalidValueError(f"{name} must be at least {minimum}, got {value!r}")
    if arr.size > MAX_AXIS_VALUES:
        raise InvalidValueError(f"{name} has {arr.size} values; at most {MAX_AXIS_VALUES}")
    return np.asarray(list(dict.fromkeys(arr.astype(np.int64).tolist())), dtype=np.int64)


def _listed(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, Path, ModelConfig, Device, Precision)) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _precisions(precision, weight_bits, activation_bits, kv_bits) -> tuple[list[Precision], list[dict]]:
    """The precision axis, and the skipped entries of impossible bit combinations."""
    bits_given = any(v is not None for v in (weight_bits, activation_bits, kv_bits))
    if precision is not None and bits_given:
        raise InvalidValueError("give either precision=[...] or weight_bits/activation_bits/kv_bits lists, not both")
    if precision is not None:
        out = []
        for p in _listed(precision):
            if isinstance(p, Precision):
                out.append(p)
            elif isinstance(p, (tuple, list)) and len(p) == 3:
                out.append(Precision(*p))
            else:
                raise InvalidValueError(f"precision items must be Precision or (weight, activation, kv) bits, got {p!r}")
        if not out:
            raise InvalidValueError("precision must name at least one Precision")
        return list(dict.fromkeys(out)), []
    lists = [_axis(n, 16 if v is None else v, 1) for n, v in
             (("weight_bits", weight_bits), ("activation_bits", activation_bits), ("kv_bits", kv_bits))]
    out, skipped = [], []
    for w, a, kv in itertools.product(*lists):
        try:
            out.append(Precision(int(w), int(a), int(kv)))
        except KernelabError as exc:
            skipped.append({"model": None, "device": None, "kind": None, "tp": None, "ep": None,
                            "weight_bits": int(w), "activation_bits": int(a), "kv_bits": int(kv), "reason": str(exc)})
    return out, skipped


# ----------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class _Combo:
    """One discrete combination: one vectorized call per block of its numeric grid."""

    index: int
    model: ModelConfig
    device: Device
    kind: str
    tp: int
    ep: int
    precision: Precision
    attention: str
    cuda_graphs: bool

    @property
    def key(self) -> tuple:
        p = self.precision
        return (self.model.name, self.device.name, self.kind, self.attention, self.cuda_graphs, self.tp, self.ep,
                p.weight_bits, p.activation_bits, p.kv_bits)

    def skipped(self, reason: str) -> dict:
        p = self.precision
        return {"model": self.model.name, "device": self.device.name, "kind": self.kind, "tp": self.tp, "ep": self.ep,
                "weight_bits": p.weight_bits, "activation_bits": p.activation_bits, "kv_bits": p.kv_bits, "reason": reason}


@dataclass(frozen=True)
class _KindGrid:
    """A kind's numeric axes (batch, context, tokens as the rows report them) cut into blocks."""

    kind: str
    batch: np.ndarray
    context: np.ndarray
    tokens: np.ndarray
    blocks: tuple[tuple[slice, slice, slice], ...]

    @classmethod
    def build(cls, kind: str, batch: np.ndarray, context: np.ndarray, tokens: np.ndarray | None, chunk: int) -> "_KindGrid":
        if kind == "decode":
            tokens = np.array([1], dtype=np.int64)
        elif kind == "prefill" and tokens is None:  # whole prompts: nothing cached, the prompt is new
            context, tokens = np.array([0], dtype=np.int64), context[context > 0]
            if tokens.size == 0:
                raise InvalidValueError("a prefill of whole prompts needs a context (prompt length) of at least 1")
        elif kind == "verify" and tokens is None:
            tokens = np.array([8], dtype=np.int64)
        shape = (len(batch), len(context), len(tokens))
        st = min(shape[2], chunk)
        sc = min(shape[1], max(1, chunk // st))
        sb = min(shape[0], max(1, chunk // (sc * st)))
        blocks = tuple(
            (slice(i, i + sb), slice(j, j + sc), slice(k, k + st))
            for i in range(0, shape[0], sb) for j in range(0, shape[1], sc) for k in range(0, shape[2], st)
        )
        return cls(kind, batch, context, tokens, blocks)

    def values(self, block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.batch[block[0]], self.context[block[1]], self.tokens[block[2]]

    def points(self, block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The block's (batch, context, tokens) per point, in C order."""
        b, c, t = np.meshgrid(*self.values(block), indexing="ij")
        return b.ravel(), c.ravel(), t.ravel()

    def size(self, block) -> int:
        return math.prod(len(range(*s.indices(n))) for s, n in zip(block, (len(self.batch), len(self.context), len(self.tokens))))

    def step(self, block) -> steps.Step:
        b, c, t = self.values(block)
        b, c, t = b[:, None, None], c[None, :, None], t[None, None, :]
        if self.kind == "decode":
            return steps.decode(b, c)
        if self.kind == "prefill":
            return steps.prefill(b, t, c)
        return steps.verify(b, c, t)


@dataclass(frozen=True)
class _Block:
    order: tuple[int, int]  # (combination, block): the order of the returned rows
    combo: _Combo
    grid: _KindGrid
    block: tuple[slice, slice, slice]


# ----------------------------------------------------------------------------- evaluation


def _evaluate(model: ModelConfig, device, step: steps.Step, shape: tuple[int, ...], precision: Precision, tp: int,
              ep: int, attention: str, cuda_graphs: bool):
    """One vectorized evaluation: the result columns over ``shape`` (C order), or the reason it is invalid."""
    try:
        cost = step_cost(model, device, step, precision, tp=tp, attention=attention, cuda_graphs=cuda_graphs, ep=ep)
        parts = cost.time_by_bound()
        values = {"time_s": cost.time_s, "tokens_per_s": cost.tokens_per_s, "mfu": cost.mfu, "mbu": cost.mbu,
                  **{f"{k}_s": parts[k] for k in BOUNDS}}
    except KernelabError as exc:
        return str(exc)
    out = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), shape).ravel() for k, v in values.items()}
    out["bound"] = np.argmax(np.stack([out[f"{k}_s"] for k in BOUNDS]), axis=0).astype(np.int8)
    return out


def _evaluate_many(jobs: list[tuple], devices: dict[str, Device]) -> list:
    """A Dask task: several blocks (``_evaluate`` arguments, the device by name), so that
    the per-task cost of the scheduler is shared by many small blocks."""
    out = []
    for model, device, *rest in jobs:
        out.append(_evaluate(model, devices[device], *rest))
    return out


_BOUND_NAMES = pa.array(BOUNDS, type=pa.string())


def _rows(unit: _Block, result: dict, keep: np.ndarray | None) -> pa.Table:
    b, c, t = unit.grid.points(unit.block)
    if keep is not None:
        b, c, t = b[keep], c[keep], t[keep]
        result = {k: v[keep] for k, v in result.items()}
    n = len(b)
    cols = {name: pa.repeat(pa.scalar(value, SCHEMA.field(name).type), n) for name, value in zip(COMBO_COLUMNS, unit.combo.key)}
    cols.update(batch=b, context=c, tokens=t)
    cols.update({k: result[k] for k in RESULT_COLUMNS})
    cols["bound"] = pa.DictionaryArray.from_arrays(result["bound"], _BOUND_NAMES).cast(pa.string())
    return pa.table(cols, schema=SCHEMA)


# ----------------------------------------------------------------------------- output files


def _done_points(table: pa.Table) -> dict[tuple, set[tuple[int, int, int]]]:
    done: dict[tuple, set] = {}
    cols = [table.column(c).to_pylist() for c in COMBO_COLUMNS + POINT_COLUMNS]
    k = len(COMBO_COLUMNS)
    for row in zip(*cols):
        done.setdefault(row[:k], set()).add(row[k:])
    return done


def _check_schema(path: Path, schema: pa.Schema) -> None:
    if schema.names != SCHEMA.names:
        raise InvalidValueError(
            f"{path} does not hold sweep rows (columns {', '.join(schema.names)}); "
            "resume into the file a sweep wrote, or drop resume to replace it"
        )


class _CsvSink:
    """Appends each block's rows to a CSV and flushes."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.existing = SCHEMA.empty_table()
        fresh = not (resume and path.exists() and path.stat().st_size > 0)
        if not fresh:
            self._drop_torn_line()
            try:
                self.existing = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=SCHEMA))
            except pa.ArrowInvalid as exc:
                raise InvalidValueError(f"cannot resume from {path}: {exc}") from None
            _check_schema(path, self.existing.schema)
            self.existing = self.existing.cast(SCHEMA)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = path.open("wb" if fresh else "ab")
        if fresh:
            pacsv.write_csv(SCHEMA.empty_table(), self.fh)
            self.fh.flush()

    def _drop_torn_line(self) -> None:
        with self.path.open("rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 1))
            if size == 0 or fh.read(1) == b"\n":
                return
            # A kill mid-write: keep everything up to the last complete line.
            pos = size
            while pos > 0:
                step = min(pos, 1 << 16)
                fh.seek(pos - step)
                chunk = fh.read(step)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    fh.truncate(pos - step + cut + 1)
                    return
                pos -= step
            fh.truncate(0)

    def write(self, table: pa.Table) -> None:
        pacsv.write_csv(table, self.fh, write_options=pacsv.WriteOptions(include_header=False))
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


# Dictionary-encode the columns of few distinct values; the results are floats that seldom repeat.
_DICTIONARY_COLUMNS = [name for name in SCHEMA.names if name not in RESULT_COLUMNS]


class _ParquetSink:
    """Part files in ``<output>.parts/`` while running, merged into ``<output>`` at the end."""

    ROWS_PER_GROUP = 1 << 20

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.parts = path.with_name(path.name + ".parts")
        self.existing = SCHEMA.empty_table()
        if not resume:
            for p in (path, self.parts):
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        tables = []
        if path.exists():
            try:
                tables.append(pq.read_table(path))
            except (pa.ArrowInvalid, OSError) as exc:
                raise InvalidValueError(f"cannot resume from {path}: {exc}") from None
            _check_schema(path, tables[-1].schema)
        self.parts.mkdir(parents=True, exist_ok=True)
        for part in sorted(self.parts.glob("part-*.parquet")):
            tables.append(pq.read_table(part))  # written whole, then renamed: never torn
            _check_schema(part, tables[-1].schema)
        for tmp in self.parts.glob("*.tmp"):
            tmp.unlink()
        if tables:
            self.existing = pa.concat_tables([t.cast(SCHEMA) for t in tables])
        self.count = len(list(self.parts.glob("part-*.parquet")))

    def write(self, table: pa.Table) -> None:
        part = self.parts / f"part-{self.count:06d}.parquet"
        tmp = part.with_name(part.name + ".tmp")
        pq.write_table(table, tmp, use_dictionary=_DICTIONARY_COLUMNS)
        os.replace(tmp, part)
        self.count += 1

    def close(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        sources = ([self.path] if self.path.exists() else []) + sorted(self.parts.glob("part-*.parquet"))
        with pq.ParquetWriter(tmp, SCHEMA, use_dictionary=_DICTIONARY_COLUMNS) as writer:
            pending, rows = [], 0
            for src in sources:
                for batch in pq.ParquetFile(src).iter_batches(batch_size=self.ROWS_PER_GROUP):
                    pending.append(batch)
                    rows += batch.num_rows
                    if rows >= self.ROWS_PER_GROUP:
                        writer.write_table(pa.Table.from_batches(pending, SCHEMA))
                        pending, rows = [], 0
            if pending or not sources:
                writer.write_table(pa.Table.from_batches(pending, SCHEMA) if pending else SCHEMA.empty_table())
        os.replace(tmp, self.path)
        shutil.rmtree(self.parts)


def _sink(output: Path, resume: bool):
    suffix = output.suffix.lower()
    if suffix == ".csv":
        return _CsvSink(output, resume)
    if suffix == ".parquet":
        return _ParquetSink(output, resume)
    raise InvalidValueError(f"cannot write sweep rows to {output}: name a .csv or .parquet file")


# ----------------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    """What a sweep computed: rows (this call's), what it skipped and why, and its speed."""

    table: pa.Table | None
    skipped: list[dict]
    output: Path | None = None
    #: points evaluated by this call
    evals: int = 0
    #: rows this call wrote to ``output``
    rows_written: int = 0
    #: rows found already in ``output`` (``resume=True``) and not recomputed
    resumed_rows: int = 0
    elapsed_s: float = 0.0
    scheduler: str = "in-process"
    combinations: int = 0
    blocks: int = 0

    @property
    def evals_per_s(self) -> float:
        return self.evals / self.elapsed_s if self.elapsed_s > 0 else float("nan")

    def columns(self) -> dict[str, np.ndarray]:
        """The rows as numpy columns (strings as object arrays)."""
        if self.table is None:
            raise InvalidValueError("this sweep kept no rows (collect=False); read them from its output file")
        return {name: self.table.column(name).to_numpy(zero_copy_only=False) for name in self.table.column_names}

    def __len__(self) -> int:
        return 0 if self.table is None else self.table.num_rows


def _client(scheduler):
    """(client, cluster we started or None, client we own?, description)."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, None, False, f"dask {scheduler.scheduler.address}"
    if scheduler == "local":
        import dask

        n = max(1, LOCAL_CLUSTER_WORKERS or os.cpu_count() or 1)
        # The nanny sets these in our environment before spawning its workers; put ours back after.
        saved = {k: os.environ.get(k) for k in WORKER_MALLOC_ENV}
        try:
            with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC_ENV.items()}):
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
        return client, cluster, True, f"dask local cluster ({n} workers)"
    try:
        client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InvalidValueError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None
    return client, None, True, f"dask {scheduler}"


def sweep(
    models=("Llama-2-7B",),
    devices=("H100-SXM",),
    kinds: Sequence[str] | str = ("decode",),
    batch=(1,),
    context=(4096,),
    tokens=None,
    tp=(1,),
    precision=None,
    *,
    ep=(1,),
    weight_bits=None,
    activation_bits=None,
    kv_bits=None,
    attention: str | None = None,
    cuda_graphs: bool = True,
    output: str | Path | None = None,
    resume: bool = False,
    scheduler=None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    collect: bool = True,
) -> SweepResult:
    """Step costs over the grid ``models x devices x kinds x tp x ep x precision x batch x context x tokens``.

    ``models``/``devices`` take names (case-insensitive), config/TOML paths or
    objects, one or a list; an unknown name raises with the closest matches.
    Numeric axes take whole numbers or text (``"1:256:x2"``, see
    :func:`parse_values`). The precision axis is ``precision`` (a list of
    :class:`Precision` or (weight, activation, kv) bits) or the product of
    the ``weight_bits``, ``activation_bits``, ``kv_bits`` lists (16 when not
    given). ``ep`` lists expert-parallel sizes (mixture-of-experts models; a
    dense model with ``ep > 1`` is skipped). ``attention`` names the attention
    kernel model (default by kind).
    ``collect=False`` keeps no rows in memory (they are only written).
    See the module docstring for the columns, output, resume and scheduler.
    """
    start = time.perf_counter()
    kinds = [k.strip().lower() for k in _listed(kinds)]
    for k in kinds:
        if k not in SWEEP_KINDS:
            raise InvalidValueError(f"cannot sweep step kind {k!r}; choose from {', '.join(SWEEP_KINDS)}")
    kinds = list(dict.fromkeys(kinds))
    model_objs = list({m.name: m for m in (x if isinstance(x, ModelConfig) else get_model(x) for x in _listed(models))}.values())
    device_objs = list({d.name: d for d in (hw.get_device(x) for x in _listed(devices))}.values())
    if not kinds or not model_objs or not device_objs:
        raise InvalidValueError("a sweep needs at least one model, one device and one step kind")
    b_axis, c_axis = _axis("batch", batch, 1), _axis("context", context, 0)
    t_axis = None if tokens is None else _axis("tokens", tokens, 1)
    tp_axis, ep_axis = _axis("tp", tp, 1), _axis("ep", ep, 1)
    precisions, skipped = _precisions(precision, weight_bits, activation_bits, kv_bits)
    if attention is not None:
        get_attention_kernel(attention)
        attention = attention.strip().lower()
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise InvalidValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    grids = {k: _KindGrid.build(k, b_axis, c_axis, t_axis, int(chunk_size)) for k in kinds}

    combos = [
        _Combo(i, m, d, k, int(t), int(e), p, attention or default_kernel(k), bool(cuda_graphs))
        for i, (m, d, k, t, e, p) in enumerate(
            itertools.product(model_objs, device_objs, kinds, tp_axis.tolist(), ep_axis.tolist(), precisions))
    ]
    # Execution order: by kind and block, then combination, so one step serves a block's combinations.
    units = [
        _Block((c.index, j), c, grids[k], blk)
        for k in kinds for j, blk in enumerate(grids[k].blocks) for c in combos if c.kind == k
    ]
    total_points = sum(u.grid.size(u.block) for u in units)

    sink = _sink(Path(output), resume) if output is not None else None
    done = _done_points(sink.existing) if sink is not None and sink.existing.num_rows else {}
    res = SweepResult(table=None, skipped=skipped, output=Path(output) if output is not None else None,
                      combinations=len(combos), blocks=len(units))
    if isinstance(scheduler, str) and scheduler.strip().lower() in ("local", "in-process"):
        scheduler = scheduler.strip().lower()
    if scheduler is None:
        work = total_points + BLOCK_OVERHEAD_EVALS * len(units)
        scheduler = "local" if work > AUTO_CLUSTER_WORK and (os.cpu_count() or 1) >= AUTO_CLUSTER_MIN_CORES else "in-process"
    pieces: dict[tuple[int, int], pa.Table] = {}
    skipped_combos: dict[int, str] = {}

    bar = None
    if progress and len(units) > PROGRESS_MIN_BLOCKS:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("evaluations"),
                       TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
        task = bar.add_task("sweep", total=total_points)

    def todo(unit: _Block) -> np.ndarray | None | bool:
        """False when every point is in the file already; else a mask of the missing points (None: all)."""
        have = done.get(unit.combo.key)
        if not have:
            return None
        b, c, t = unit.grid.points(unit.block)
        keep = np.fromiter(((p not in have) for p in zip(b.tolist(), c.tolist(), t.tolist())), dtype=bool, count=len(b))
        if keep.all():
            return None
        if not keep.any():
            res.resumed_rows += len(keep)
            return False
        res.resumed_rows += int((~keep).sum())
        return keep

    def finish(unit: _Block, out, keep) -> None:
        if isinstance(out, str):
            if unit.combo.index not in skipped_combos:
                skipped_combos[unit.combo.index] = out
                res.skipped.append(unit.combo.skipped(out))
        else:
            rows = _rows(unit, out, keep)
            res.evals += len(out["time_s"])
            if sink is not None:
                sink.write(rows)
                res.rows_written += rows.num_rows
            if collect:
                pieces[unit.order] = rows
        if bar is not None:
            bar.advance(task, unit.grid.size(unit.block))

    def pending_units() -> Iterator[tuple[_Block, np.ndarray | None]]:
        for unit in units:
            keep = todo(unit) if done else None
            if keep is False or unit.combo.index in skipped_combos:
                if bar is not None:
                    bar.advance(task, unit.grid.size(unit.block))
                continue
            yield unit, keep

    step_cache: dict = {}

    def step_of(unit: _Block) -> steps.Step:
        key = (unit.grid.kind, unit.order[1])
        if key not in step_cache:
            step_cache.clear()
            step_cache[key] = unit.grid.step(unit.block)
        return step_cache[key]

    def shape_of(unit: _Block) -> tuple[int, int, int]:
        return tuple(len(v) for v in unit.grid.values(unit.block))

    client = cluster = None
    own_client = False
    try:
        if bar is not None:
            bar.start()
        if scheduler == "in-process":
            for unit, keep in pending_units():
                c = unit.combo
                out = _evaluate(c.model, c.device, step_of(unit), shape_of(unit), c.precision, c.tp, c.ep, c.attention, c.cuda_graphs)
                finish(unit, out, keep)
        else:
            from distributed import as_completed

            client, cluster, own_client, res.scheduler = _client(scheduler)
            threads = max(1, sum(client.nthreads().values()))
            [devices_state] = client.scatter([{d.name: d for d in device_objs}], broadcast=True)
            # Tasks of several blocks, down to a few tasks per worker on a small sweep.
            task_points = max(1, min(TASK_POINTS, total_points // (TASKS_PER_WORKER * threads)))
            stream = pending_units()
            in_flight: dict[str, list[tuple[_Block, np.ndarray | None]]] = {}
            token, serial = uuid.uuid4().hex[:12], itertools.count()
            futures = as_completed()

            def submit() -> bool:
                group, points = [], 0
                for unit, keep in stream:
                    group.append((unit, keep))
                    points += unit.grid.size(unit.block)
                    if points >= task_points or len(group) >= TASK_MAX_BLOCKS:
                        break
                if not group:
                    return False
                jobs = [(u.combo.model, u.combo.device.name, step_of(u), shape_of(u), u.combo.precision, u.combo.tp, u.combo.ep,
                         u.combo.attention, u.combo.cuda_graphs) for u, _ in group]
                fut = client.submit(_evaluate_many, jobs, devices_state, key=f"kernelab-sweep-{token}-{next(serial)}", pure=False)
                in_flight[fut.key] = group
                futures.add(fut)
                return True

            for _ in range(TASKS_PER_WORKER * threads):
                if not submit():
                    break
            for fut in futures:
                group = in_flight.pop(fut.key)
                for (unit, keep), out in zip(group, fut.result()):
                    finish(unit, out, keep)
                fut.release()
                submit()
    finally:
        if bar is not None:
            bar.stop()
        try:
            if sink is not None:
                sink.close()
        finally:
            if own_client:
                client.close()
            if cluster is not None:
                cluster.close()
    if collect:
        res.table = pa.concat_tables([pieces[k] for k in sorted(pieces)]) if pieces else SCHEMA.empty_table()
    res.elapsed_s = time.perf_counter() - start
    return res
