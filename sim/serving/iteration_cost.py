"""The time of one serving iteration, from the step model, memoized so a run of
thousands of iterations costs table lookups.

An iteration of a continuous-batching engine runs some prefill chunks and some
decodes through the layers at once (Yu et al., Orca, OSDI 2022; Agrawal et al.,
Sarathi-Serve, arXiv:2403.02310). Its time is

    time_s = dense_s(new_tokens) + head_s(logit_rows)
           + decode_attention_s(seqs_d, kv_tokens_d, longest_d)
           + prefill_attention_s(seqs_p, new_tokens_p, pairs_p, kv_tokens_p)      (evaluated, not tabulated)
           [+ shared-prefix attention, one FlashAttention call per prefix group]

with every term the step model's own (:func:`sim.cost.time_op`,
:func:`sim.parallel.tensor_parallel_comms`): the projections, MLP, norms and
tensor-parallel all-reduces depend only on the tokens in the batch, the LM
head and sampling only on the rows that produce logits, and attention runs
as a varlen prefill kernel (FlashAttention-2) beside a paged decode kernel
(split-KV), as vLLM runs a mixed batch.

Why the decode tables are exact, not approximations: for a fixed grid
(sequences and the longest context's key blocks), the decode kernel model's
compute time is linear in the (query, key) pairs and its memory time affine in
the KV tokens read; its split count and SM fill depend only on the grid. So
two evaluations per grid point give both lines, and any iteration's decode
attention is ``max(compute line, memory line) + overhead``. Prefill attention
is evaluated for each iteration instead, by the step model's own compiled
:func:`sim.attention.flash_one` (inside the run loop for a run's iterations):
FlashAttention-2's list-scheduled grid (:func:`sim.attention.fa2_grid`)
depends on how the keys fall into its CTAs, not on their total alone.
``tests/test_serving_cost.py`` checks tables against direct step-model calls.
The dense part is tabulated at every token count up to ``EXACT_LIMIT`` (131,072; built
lazily, a power of two at a time) and interpolated on a geometric grid beyond, where
GEMMs run hundreds of waves and their time is linear in the rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numba import njit

import hwmodels as hw
from hwmodels.errors import InvalidValueError
from sim.attention import flash_chunks, flash_constants, flash_one
from sim.cost import split_by_bound, time_op
from sim.graph import LOGIT_OPS, Sharding, step_graph
from sim.model import ModelConfig
from sim.parallel import pipeline_p2p, tensor_parallel_comms
from sim.precision import Precision
from sim.step import Step

#: token counts read from Python lists (the common iterations); the table holds every count up to EXACT_LIMIT
EXACT_TOKENS = 8192
EXACT_LIMIT = 1 << 17
#: geometric grid above EXACT_LIMIT, interpolated: there a GEMM spans hundreds of waves of 128-row tiles, so its
#: tile and wave quantization moves its time by < 0.3% and the time is linear in the rows between grid points
POINTS_PER_DOUBLING = 64
BOUNDS = ("compute", "memory", "overhead", "communication")


def _step(seqs, new_tokens, kv_read_tokens, attention_pairs, max_kv_tokens) -> Step:
    """A step of given aggregates (one row of logits per sequence), for tabulating the step model."""
    s, n, k, p, m = np.broadcast_arrays(*(np.asarray(x, dtype=float)
                                          for x in (seqs, new_tokens, kv_read_tokens, attention_pairs, max_kv_tokens)))
    return Step("mixed", s, n, k, p, s, m, "serving table")


_NO_ROWS = np.zeros((1, 5))


# Not cached on disk: it calls sim.attention.flash_one, and numba's cache would keep a stale copy of that
# function across an edit of its file.
@njit
def _run_lines(steps, seqs, kv_tokens, longest, key_block, rows, chunk, cached, prefill, constants):  # pragma: no cover
    """Per-iteration attention seconds of a run (see :meth:`IterationCost.run`), by bound.

    Iteration ``j``: the decodes read ``kv_tokens + j*seqs`` tokens, the longest ``longest + j``
    (its key-block count picks the split-KV row), each line ``max(c0 + c1*pairs, m0 + m1*kv) +
    overhead``; the chunk attends causally over itself and ``cached + j*chunk`` earlier tokens,
    timed by :func:`sim.attention.flash_one` with ``prefill`` = (FLOPs per pair, bytes per new token,
    bytes per KV token, heads, layers, launch seconds) and the kernel's ``constants``.
    """
    compute = np.zeros(steps)
    memory = np.zeros(steps)
    overhead = np.zeros(steps)
    for j in range(steps):
        if seqs > 0:
            r = rows[int(math.ceil((longest + j) / key_block)) - 1]
            kv = kv_tokens + j * seqs
            c, m = r[0] + r[1] * kv, r[2] + r[3] * kv
            if c >= m:
                compute[j] += c
            else:
                memory[j] += m
            overhead[j] += r[4]
        if chunk > 0:
            before = cached + j * chunk
            pairs = chunk * before + chunk * (chunk + 1) / 2
            c, m, _ = flash_one(prefill[0] * pairs, prefill[1] * chunk + prefill[2] * (before + chunk), 1.0, chunk,
                                before + chunk, pairs, before + chunk, True, prefill[3], constants)
            if c >= m:
                compute[j] += prefill[4] * c
            else:
                memory[j] += prefill[4] * m
            overhead[j] += prefill[4] * prefill[5]
    return compute, memory, overhead


@dataclass(frozen=True, eq=False)
class Run:
    """Iterations of a repeated batch: a constant part per iteration plus attention per iteration."""

    const: dict
    compute_s: np.ndarray
    memory_s: np.ndarray
    overhead_s: np.ndarray

    @property
    def times(self) -> np.ndarray:
        return self.compute_s + self.memory_s + self.overhead_s + sum(self.const.values())

    def parts(self, steps: int) -> dict[str, float]:
        """The breakdown of the first ``steps`` iterations."""
        out = {k: v * steps for k, v in self.const.items()}
        out["compute"] += float(self.compute_s[:steps].sum())
        out["memory"] += float(self.memory_s[:steps].sum())
        out["overhead"] += float(self.overhead_s[:steps].sum())
        return out


@dataclass
class IterationCost:
    """Memoized iteration times of one replica (``tp`` GPUs per stage, ``pp`` stages)."""

    model: ModelConfig
    device: hw.Device
    precision: Precision = Precision()
    tp: int = 1
    pp: int = 1
    cuda_graphs: bool = True
    #: the decode attention kernel model: split-kv (FlashDecoding, FlashInfer) or paged (vLLM's PagedAttention)
    decode_kernel: str = "split-kv"
    _dense: dict = field(default_factory=dict, repr=False)
    _decode: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.decode_kernel not in ("split-kv", "paged"):
            raise InvalidValueError(f"decode_kernel must be split-kv or paged, got {self.decode_kernel!r}")
        if self.pp < 1 or self.pp > self.model.num_layers:
            raise InvalidValueError(f"{self.model.name} has {self.model.num_layers} layers: pp must be 1..{self.model.num_layers}, got {self.pp}")
        self.sharding = Sharding(tp=self.tp)
        self.cal = hw.calibration(self.device)
        launch = self.cal.graph_launch_s if self.cuda_graphs else self.cal.kernel_launch_s
        self.launch_s = launch or 0.0
        self.heads = self.model.num_heads // self.tp
        from sim.kernel.schedules.split_kv import block_n

        self.key_block = block_n(self.model.head_dim)
        self._build_dense(EXACT_TOKENS)

    # -- the layers without attention -------------------------------------------------
    def _build_dense(self, top: int) -> None:
        exact = np.arange(1, min(top, EXACT_LIMIT) + 1, dtype=float)
        if top > EXACT_LIMIT:
            doublings = math.log2(top / EXACT_LIMIT)
            geo = EXACT_LIMIT * 2.0 ** (np.arange(1, math.ceil(doublings * POINTS_PER_DOUBLING) + 1) / POINTS_PER_DOUBLING)
            grid = np.concatenate([exact, np.ceil(geo)])
        else:
            grid = exact
        step = _step(grid, grid, grid, grid, 1.0)
        ops = [time_op(op, step, self.model, self.sharding, self.device, self.cal, self.launch_s, "flash")
               for op in step_graph(self.model, step, self.precision, self.sharding) if op.kind != "attention"]
        tokens = split_by_bound((o, o.op.repeat) for o in ops if o.op.name not in LOGIT_OPS)
        heads = split_by_bound((o, o.op.repeat) for o in ops if o.op.name in LOGIT_OPS)
        comm = sum((c.total_s for c in tensor_parallel_comms(self.model, self.device, step, self.precision, self.tp)),
                   np.zeros_like(grid))
        if self.pp > 1:  # one batch in flight through the stages: every boundary's send lies on its path
            comm = comm + (self.pp - 1) * pipeline_p2p(self.model, self.device, step, self.precision).time_s
        tokens["communication"] = comm
        heads["communication"] = np.zeros_like(grid)
        # rows of (compute, memory, overhead, communication) seconds; Python lists, as one iteration reads one row
        table = {part: np.stack([np.broadcast_to(d[k], grid.shape) for k in BOUNDS], axis=1)
                 for part, d in (("tokens", tokens), ("heads", heads))}
        self._dense = {"grid": grid, **table, "rows": {part: t[:EXACT_TOKENS].tolist() for part, t in table.items()}}

    def _lookup(self, part: str, n: float) -> list[float]:
        if n <= EXACT_TOKENS:
            return self._dense["rows"][part][int(n) - 1]
        grid = self._dense["grid"]
        if n > grid[-1]:
            self._build_dense(int(2 ** math.ceil(math.log2(n))))
            grid = self._dense["grid"]
        table = self._dense[part]
        if n <= EXACT_LIMIT:
            return table[int(n) - 1].tolist()
        return [float(np.interp(n, grid, table[:, i])) for i in range(len(BOUNDS))]

    # -- attention ------------------------------------------------------------------------
    def _attention_line(self, kernel: str, seqs, new_tokens, max_kv) -> np.ndarray:
        """Rows ``(c0, c1, m0, m1, overhead)`` per grid point, all layers together: the attention of
        an iteration there takes ``max(c0 + c1*pairs, m0 + m1*kv_tokens) + overhead``. Two
        step-model evaluations give both lines (see the module docstring)."""
        times = []
        for scale in (1.0, 2.0):
            pairs = np.maximum(new_tokens, 1.0) * 64.0 * scale
            kv = 64.0 * scale * np.maximum(seqs, 1.0)
            step = _step(seqs, new_tokens, kv, pairs, max_kv)
            op = next(o for o in step_graph(self.model, step, self.precision, self.sharding) if o.kind == "attention")
            times.append((pairs, kv, time_op(op, step, self.model, self.sharding, self.device, self.cal, self.launch_s, kernel)))
        (x1, y1, t1), (x2, y2, t2) = times
        c1 = (t2.compute_s - t1.compute_s) / (x2 - x1)
        m1 = (t2.memory_s - t1.memory_s) / (y2 - y1)
        columns = (t1.compute_s - c1 * x1, c1, t1.memory_s - m1 * y1, m1, t1.overhead_s)
        shape = np.broadcast(*columns).shape
        return self.model.num_layers * np.stack([np.broadcast_to(c, shape) for c in columns], axis=1)

    def _decode_rows(self, seqs: int, blocks: int, queries: int = 1) -> np.ndarray:
        """The split-KV lines of ``seqs`` sequences of ``queries`` query rows each, per key-block
        count of the longest context (1, 2, ...)."""
        rows = self._decode.get((seqs, queries))
        if rows is None or blocks > len(rows):
            top = max(64, 2 ** math.ceil(math.log2(blocks)))
            nb = np.arange(1, top + 1, dtype=float)
            # a shared prefix's queries (queries > 1) are one matrix product: split-KV whatever the decode kernel
            kernel = self.decode_kernel if queries == 1 else "split-kv"
            rows = self._attention_line(kernel, float(seqs), float(seqs * queries), nb * self.key_block)
            self._decode[(seqs, queries)] = rows
        return rows

    def _decode_line(self, seqs: int, blocks: int, queries: int = 1) -> list[float]:
        return self._decode_rows(seqs, blocks, queries)[blocks - 1].tolist()

    @cached_property
    def _prefill_constants(self) -> tuple[np.ndarray, tuple]:
        """What :func:`sim.attention.flash_one` needs for this replica's prefill attention: FLOPs per pair, bytes
        per new token and per KV token read (off the step graph's attention op, which is linear in them), heads,
        layers, launch seconds and the kernel's constants."""
        def op(rows, kv, pairs):
            step = _step(1.0, rows, kv, pairs, kv)
            return next(o for o in step_graph(self.model, step, self.precision, self.sharding) if o.kind == "attention")

        a, b, c = op(1.0, 1.0, 1.0), op(1.0, 2.0, 2.0), op(2.0, 2.0, 2.0)
        per_pair, per_row, per_kv = float(b.flops - a.flops), float(c.bytes - b.bytes), float(b.bytes - a.bytes)
        if not math.isclose(float(a.flops), per_pair) or not math.isclose(float(a.bytes), per_row + per_kv):
            raise AssertionError("the attention op is no longer linear in the step's aggregates without intercept")
        constants, _ = flash_constants(self.model.head_dim, a.dtype, self.device, self.cal)
        return np.array([per_pair, per_row, per_kv, self.heads, self.model.num_layers, self.launch_s]), constants

    @staticmethod
    def _apply(line, pairs: float, kv: float, out: dict) -> None:
        c0, c1, m0, m1, ov = line
        compute, memory = c0 + c1 * pairs, m0 + m1 * kv
        out["compute" if compute >= memory else "memory"] += max(compute, memory)
        out["overhead"] += ov

    def decode_attention(self, seqs: int, kv_tokens: float, longest: float, out: dict) -> None:
        """Split-KV over ``seqs`` decoding rows reading ``kv_tokens`` in all (the longest ``longest``)."""
        blocks = max(1, math.ceil(longest / self.key_block))
        self._apply(self._decode_line(seqs, blocks), kv_tokens, kv_tokens, out)

    def prefill_attention(self, seqs: int, new_tokens: float, pairs: float, kv_tokens: float, out: dict) -> None:
        """FlashAttention-2 over ``seqs`` equal prefill chunks of ``new_tokens`` rows in all, as the step model's
        own :func:`sim.attention.flash_one`."""
        k, constants = self._prefill_constants
        compute, memory, _ = flash_one(k[0] * pairs, k[1] * new_tokens + k[2] * kv_tokens, float(seqs),
                                       float(new_tokens), float(kv_tokens), float(pairs), float(kv_tokens / seqs),
                                       True, k[3], constants)
        self._add_layers(compute, memory, out)

    def chunks_attention(self, tokens: np.ndarray, prefixes: np.ndarray, out: dict) -> None:
        """FlashAttention-2 over prefill chunks known one by one (``tokens[j]`` over ``prefixes[j]`` cached
        tokens): :func:`sim.attention.flash_chunks`, each chunk's tiles and CTAs counted on their own."""
        k, constants = self._prefill_constants
        compute, memory = flash_chunks(tokens, prefixes, k[3], k[0], k[1], k[2], constants)
        self._add_layers(compute, memory, out)

    def _add_layers(self, compute: float, memory: float, out: dict) -> None:
        k, _ = self._prefill_constants
        out["compute" if compute >= memory else "memory"] += k[4] * max(compute, memory)
        out["overhead"] += k[4] * k[5]

    def iteration(self, new_tokens: float, logit_rows: float, decode_seqs: int = 0, decode_kv_tokens: float = 0.0,
                  decode_longest: float = 0.0, prefill_seqs: int = 0, prefill_tokens: float = 0.0,
                  prefill_pairs: float = 0.0, prefill_kv_tokens: float = 0.0, shared_groups=(),
                  prefill_chunks=None) -> dict[str, float]:
        """Seconds of one iteration split by bound (``compute``, ``memory``, ``overhead``, ``communication``).

        ``prefill_chunks``: ``(tokens, cached)`` arrays, each prefill chunk's new tokens and the tokens cached
        before it; given, the prefill attention counts each chunk's tiles (:meth:`chunks_attention`), else it
        takes ``prefill_seqs`` equal chunks of the aggregates (:meth:`prefill_attention`).

        ``shared_groups``: ``(queries, prefix_tokens)`` per group whose shared
        prefix is attended once for all its queries (Hydragen's inter-sequence
        batched prefix attention, Juravsky et al., arXiv:2402.05099), on top of the
        decode kernel over the suffixes.
        """
        out = dict(zip(BOUNDS, map(float.__add__, self._lookup("tokens", new_tokens), self._lookup("heads", logit_rows))))
        if decode_seqs:
            self.decode_attention(decode_seqs, decode_kv_tokens, decode_longest, out)
        if prefill_seqs:
            if prefill_chunks is not None:
                self.chunks_attention(*prefill_chunks, out)
            else:
                self.prefill_attention(prefill_seqs, prefill_tokens, prefill_pairs, prefill_kv_tokens, out)
        for queries, prefix in shared_groups:
            # all the group's queries against the prefix's keys, read once: split-KV fills the SMs
            # when the group's query tiles alone would not (FlashDecoding's split, as Hydragen's prefix pass)
            blocks = max(1, math.ceil(prefix / self.key_block))
            self._apply(self._decode_line(1, blocks, queries), queries * prefix, prefix, out)
        return out

    def run(self, steps: int, seqs: int, kv_tokens: float, longest: float, shared_groups=(),
            chunk: tuple[int, float] | None = None) -> "Run":
        """``steps`` back-to-back iterations of the same batch: ``seqs`` decodes, each one token
        longer than in the iteration before (the first reads ``kv_tokens`` in all, its longest
        ``longest``), plus optionally one prefill ``chunk = (tokens, cached)`` of the same request,
        its prefix ``tokens`` longer each time. The same numbers as ``steps`` calls of
        :meth:`iteration`, vectorized."""
        c = chunk[0] if chunk else 0
        const = self.iteration(seqs + c, seqs + (1 if chunk else 0), shared_groups=shared_groups)
        if seqs:
            top = math.ceil((longest + steps - 1) / self.key_block)
            rows = self._decode_rows(seqs, top)
        else:
            rows = _NO_ROWS
        compute_s, memory_s, overhead_s = _run_lines(steps, seqs, float(kv_tokens), float(longest), self.key_block, rows,
                                                     float(c), float(chunk[1]) if chunk else 0.0,
                                                     *self._prefill_constants)
        return Run(const, compute_s, memory_s, overhead_s)

    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token takes on each GPU of the replica."""
        from sim.memory import kv_bytes_per_sequence_token

        return kv_bytes_per_sequence_token(self.model, self.precision, self.tp, self.pp)
