"""The request-level serving simulator: replicas as simpy processes.

Each replica loops: ask its scheduler (:mod:`sim.serving.schedulers`) for a
batch, hold the simulated clock for the batch's time (:mod:`sim.serving.iteration_cost`,
the step model), then commit the tokens it produced. Arrivals are a simpy
process that hands each request to the router. Request state lives in numpy
arrays indexed by request, so that an iteration over hundreds of decodes is a
few vector operations.

Token accounting: a prefill that completes a prompt emits the request's first
token (or, after a preemption by recompute, its next one); each decode emits one
token and writes one token of KV. A request that generated ``g`` tokens holds
``prompt + g - 1`` tokens of KV.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import simpy

from hwmodels.errors import InvalidValueError, UnknownNameError
from hwmodels.interconnect import pcie_link, transfer_time_s
from sim.memory import DoesNotFitError, activation_bytes, weights_per_gpu
from sim.serving.iteration_cost import IterationCost
from sim.serving.kv_cache import BlockManager
from sim.serving.schedulers import POLICIES, SCHEDULERS, Batch, batchllm_rank
from sim.serving.workload import Workload
from sim import step as steps

ROUTERS = ("round_robin", "least_loaded", "prefix_affinity")
PREEMPTION = ("recompute", "swap")
#: Sarathi-Serve's token budget under a strict TBT SLO (arXiv:2403.02310, sec. 5)
SARATHI_TOKEN_BUDGET = 512


@dataclass(frozen=True)
class ServingConfig:
    """How a replica serves. ``None`` picks the scheduler's own default.

    Defaults follow vLLM v0: 16-token blocks, 90% of GPU memory for weights,
    activations and KV, at most 256 running sequences, recompute on preemption
    (vLLM docs, "Engine arguments"; ``vllm/config.py``).
    """

    scheduler: str = "vllm"
    max_num_seqs: int | None = None
    token_budget: int | None = None
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    preemption: str = "recompute"
    prefix_caching: bool | None = None
    shared_prefix_attention: bool | None = None
    replicas: int = 1
    router: str = "round_robin"

    def __post_init__(self) -> None:
        key = self.scheduler.strip().lower()
        if key not in SCHEDULERS:
            raise UnknownNameError("scheduler", self.scheduler, SCHEDULERS)
        object.__setattr__(self, "scheduler", key)
        object.__setattr__(self, "router", self.router.strip().lower())
        if self.router not in ROUTERS:
            raise UnknownNameError("router", self.router, ROUTERS)
        if self.preemption not in PREEMPTION:
            raise UnknownNameError("preemption mode", self.preemption, PREEMPTION)
        for name in ("max_num_seqs", "token_budget", "block_size", "replicas"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise InvalidValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise InvalidValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization!r}")
        batchllm = key == "batchllm"
        defaults = {
            # BatchLLM bounds its batches by KV memory, not by a sequence count, and batches more tokens per
            # iteration than a latency-bound engine ("memory-centric token batching", arXiv:2412.03594, abstract);
            # the paper gives no single budget, so 4096 (Sarathi-Serve's 512 is for a strict TBT SLO) is ours
            "max_num_seqs": 1 << 30 if batchllm else 256,
            "token_budget": SARATHI_TOKEN_BUDGET if key == "sarathi" else (4096 if batchllm else None),
            "prefix_caching": batchllm,
            "shared_prefix_attention": batchllm,
        }
        for name, v in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, v)


class State:
    """Per-request arrays, shared by the replicas."""

    def __init__(self, w: Workload):
        n = len(w)
        self.arrival, self.prompt, self.output = w.arrival_s, w.prompt_tokens, w.output_tokens
        self.pid, self.plen = w.prefix_id, w.prefix_tokens
        self.target = w.prompt_tokens.copy()  # tokens to have in KV before the next token can be emitted
        self.ctx = np.zeros(n, dtype=np.int64)  # tokens in KV (shared prefix included)
        self.shared = np.zeros(n, dtype=np.int64)  # of those, held by the prefix cache
        self.blocks = np.zeros(n, dtype=np.int64)  # blocks held by the request itself
        self.gen = np.zeros(n, dtype=np.int64)
        self.holds_ref = np.zeros(n, dtype=bool)
        self.first = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.last = np.full(n, np.nan)
        self.scheduled = np.full(n, np.nan)
        self.preemptions = np.zeros(n, dtype=np.int64)
        self.replica = np.full(n, -1, dtype=np.int64)
        self.rejected = np.zeros(n, dtype=bool)
        #: token gaps as values and how many tokens had each: a run of decode iterations adds one value per iteration
        self.tbt_values: list[np.ndarray] = []
        self.tbt_counts: list[int] = []

    def add_gaps(self, values: np.ndarray, tokens_each: int = 1) -> None:
        self.tbt_values.append(values)
        self.tbt_counts.append(tokens_each)

    def gaps(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.tbt_values:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        sizes = np.fromiter((v.size for v in self.tbt_values), dtype=np.int64, count=len(self.tbt_values))
        return np.concatenate(self.tbt_values), np.repeat(np.asarray(self.tbt_counts, dtype=np.int64), sizes)


@dataclass
class Totals:
    """Busy seconds by bound, and counters, of one replica."""

    busy: dict = field(default_factory=lambda: {k: 0.0 for k in ("compute", "memory", "overhead", "communication", "swap")})
    iterations: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    swapped_bytes: float = 0.0
    decode_only_s: float = 0.0
    decode_only_tokens: int = 0
    kv_time_s: list = field(default_factory=list)
    kv_used_blocks: list = field(default_factory=list)
    running_seqs: list = field(default_factory=list)


class RankedQueue:
    """Waiting requests in a fixed order of rank (BatchLLM's), requests preempted by recompute first.

    The deque-like surface the schedulers use: ``[0]``, ``popleft``, ``appendleft``, ``append``."""

    def __init__(self, rank: np.ndarray):
        self.rank = rank
        self.front: deque[int] = deque()
        self.heap: list[tuple[int, int]] = []

    def append(self, r: int) -> None:
        heapq.heappush(self.heap, (int(self.rank[r]), r))

    def appendleft(self, r: int) -> None:
        self.front.appendleft(r)

    def popleft(self) -> int:
        return self.front.popleft() if self.front else heapq.heappop(self.heap)[1]

    def __getitem__(self, i: int) -> int:
        if i != 0:
            raise IndexError("a ranked queue shows its head only")
        return self.front[0] if self.front else self.heap[0][1]

    def __len__(self) -> int:
        return len(self.front) + len(self.heap)


class Replica:
    def __init__(self, sim: "Simulation", index: int):
        self.sim, self.index, self.env = sim, index, sim.env
        self.state: State = sim.state
        self.config: ServingConfig = sim.config
        self.cost: IterationCost = sim.cost
        self.kv = BlockManager(sim.kv_blocks, self.config.block_size)
        self.token_budget = self.config.token_budget or max(2048, int(self.state.target.max()))
        self.waiting: deque[int] | RankedQueue = RankedQueue(sim.batchllm_rank) if self.config.scheduler == "batchllm" else deque()
        self.running: list[int] = []
        self._prefilling: list[int] = []  # running requests whose prompt is not all in KV yet, in admission order
        self.swapped: deque[int] = deque()
        self.pending_prefix: dict[int, int] = {}  # prefix -> the running request computing it for the cache
        self.static_batch: dict | None = None
        self.totals = Totals()
        self.policy = POLICIES[self.config.scheduler]
        self._wake: simpy.Event | None = None
        self.process = self.env.process(self.loop())

    # -- queue entry ----------------------------------------------------------------------
    def submit(self, r: int) -> None:
        self.state.replica[r] = self.index
        self.waiting.append(r)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    @property
    def load(self) -> int:
        return len(self.waiting) + len(self.running) + len(self.swapped)

    # -- memory ---------------------------------------------------------------------------
    def prompt_left(self, r: int) -> int:
        return int(self.state.target[r] - self.state.ctx[r])

    def admit(self, r: int) -> bool:
        """Move ``r`` to running if the blocks for its prompt fit (vLLM allocates the whole prompt)."""
        s, kv, cfg = self.state, self.kv, self.config
        pid = int(s.pid[r])
        cached = 0
        if cfg.prefix_caching and pid >= 0 and s.plen[r] > 0:
            if pid in self.pending_prefix and cfg.scheduler == "batchllm":
                return False  # the group waits for its prefix, computed once
            cached = kv.lookup(pid)
        need = kv.blocks_for(s.target[r] - cached)
        if not kv.can_admit(need):
            if cached:
                kv.unref(pid)
            return False
        kv.allocate(need)
        s.blocks[r], s.ctx[r], s.shared[r], s.holds_ref[r] = need, cached, cached, cached > 0
        if cfg.prefix_caching and pid >= 0 and not cached and s.plen[r] >= cfg.block_size:
            self.pending_prefix.setdefault(pid, r)
        if np.isnan(s.scheduled[r]):
            s.scheduled[r] = self.env.now
        self.running.append(r)
        self._prefilling.append(r)
        return True

    def _free(self, r: int) -> None:
        s = self.state
        self.kv.release(int(s.blocks[r]))
        s.blocks[r] = 0
        if s.holds_ref[r]:
            self.kv.unref(int(s.pid[r]))
            s.holds_ref[r] = False
        if self.pending_prefix.get(int(s.pid[r])) == r:  # it leaves before its prefix reached the cache
            del self.pending_prefix[int(s.pid[r])]
        s.shared[r] = 0

    def preempt_last(self) -> int:
        """Preempt the most recently admitted running request (vLLM's victim)."""
        s = self.state
        v = self.running.pop()
        if s.ctx[v] < s.target[v]:
            self._prefilling.remove(v)
        s.preemptions[v] += 1
        if self.config.preemption == "swap" and s.ctx[v] >= s.target[v]:
            self.totals.swapped_bytes += s.blocks[v] * self.kv.block_size * self.cost.kv_bytes_per_token()
            self._swap_s += self._swap_time(int(s.blocks[v]))
            self.kv.release(int(s.blocks[v]))
            self.swapped.append(v)
        else:  # recompute: drop its KV and prefill prompt and generated tokens again
            self._free(v)
            s.ctx[v] = 0
            s.target[v] = s.prompt[v] + s.gen[v]
            self.waiting.appendleft(v)
        return v

    def _swap_time(self, blocks: int) -> float:
        """Each GPU of the replica moves its shard of the blocks over its own PCIe link."""
        nbytes = blocks * self.kv.block_size * self.cost.kv_bytes_per_token()
        return float(transfer_time_s(self.sim.pcie, nbytes))

    def swap_in(self) -> None:
        s = self.state
        while self.swapped and self.kv.can_admit(int(s.blocks[self.swapped[0]])):
            v = self.swapped.popleft()
            self.kv.allocate(int(s.blocks[v]))
            self._swap_s += self._swap_time(int(s.blocks[v]))
            self.running.append(v)

    def prefilling(self) -> list[int]:
        return self._prefilling

    def grow_decodes(self) -> np.ndarray:
        """The running requests past their prefill, each with room for one more token of KV,
        preempting the most recently admitted ones until that room exists."""
        s, B = self.state, self.kv.block_size
        while True:
            run = np.fromiter(self.running, dtype=np.int64, count=len(self.running))
            ids = run[s.ctx[run] >= s.target[run]]
            grow = s.ctx[ids] - s.shared[ids] + 1 > s.blocks[ids] * B
            need = int(grow.sum())
            if self.kv.allocate(need):
                s.blocks[ids[grow]] += 1
                return ids
            self.preempt_last()

    # -- static batching ------------------------------------------------------------------
    def static_form(self) -> Batch | None:
        s, kv = self.state, self.kv
        take: list[int] = []
        for r in self.waiting:
            if len(take) == self.config.max_num_seqs:
                break
            trial = take + [r]
            length = int(s.prompt[trial].max() + s.output[trial].max())
            if kv.blocks_for(length) * len(trial) > kv.total:
                break
            take = trial
        if not take:
            return None
        for _ in take:
            self.waiting.popleft()
        ids = np.asarray(take, dtype=np.int64)
        prompt, output = int(s.prompt[ids].max()), int(s.output[ids].max())
        blocks = kv.blocks_for(prompt + output)
        kv.allocate(blocks * len(ids))
        s.blocks[ids] = blocks
        s.scheduled[ids] = self.env.now
        self.running = list(take)
        self.static_batch = {"ids": ids, "prompt": prompt, "output": output, "step": 0}
        return Batch(chunks=[(int(r), prompt) for r in ids], padded=(len(ids), prompt))

    def static_decode(self) -> Batch:
        b = self.static_batch
        return Batch(decodes=b["ids"], padded=(len(b["ids"]), b["prompt"] + b["step"]))

    # -- the loop -------------------------------------------------------------------------
    def loop(self):
        while True:
            if not (self.waiting or self.running or self.swapped):
                self._wake = self.env.event()
                yield self._wake
                self._wake = None
            self._swap_s = 0.0
            batch = self.policy(self)
            if batch is None:
                raise RuntimeError(f"replica {self.index}: {self.config.scheduler} scheduled nothing with "
                                   f"{len(self.waiting)} waiting and {len(self.running)} running (a scheduler bug)")
            if batch.padded is None and self._swap_s == 0.0 and not self.swapped:
                chunk = self._steady_chunk(batch)
                if chunk is not None:
                    steps = self._run_length(batch.decodes, chunk)
                    if steps > 1:
                        yield from self._run(batch.decodes, steps, chunk)
                        continue
            parts = self.iteration_time(batch)
            parts["swap"] = self._swap_s
            time_s = sum(parts.values())
            decoded = 0 if batch.chunks else int((self.state.gen[batch.decodes] < self.state.output[batch.decodes]).sum())
            self._account(parts, time_s, 1, decoded)
            yield self.env.timeout(time_s)
            self.commit(batch)

    def _account(self, parts: dict, time_s: float, iterations: int, decode_only_tokens: int) -> None:
        t = self.totals
        for k, v in parts.items():
            t.busy[k] += v
        t.iterations += iterations
        if decode_only_tokens:
            t.decode_only_s += time_s
            t.decode_only_tokens += decode_only_tokens

    # -- runs of decode-only iterations ---------------------------------------------------
    def _steady_chunk(self, batch: Batch) -> tuple | None:
        """``()`` for a decode-only batch, ``(request, tokens)`` for decodes plus one prefill chunk that
        takes the whole token budget without finishing its prompt; ``None`` otherwise. Such a batch
        repeats, one token longer each time, until something changes (see :meth:`_run_length`)."""
        if not batch.chunks:
            return ()
        if len(batch.chunks) == 1 and self.config.token_budget:
            r, t = batch.chunks[0]
            if t + batch.decodes.size == self.token_budget and self.prompt_left(r) > t:
                return batch.chunks[0]
        return None

    def _run_length(self, d: np.ndarray, chunk: tuple) -> int:
        """How many iterations of the same batch can run before anything changes: the first
        request to finish, the chunked prompt's last full chunk, the KV blocks left, and (checked
        in the run, for decode-only batches) the next arrival. Until then the scheduler would
        admit nobody (it just declined to, or the chunk takes the whole budget) and preempt nobody."""
        s, B = self.state, self.kv.block_size
        steps = int((s.output[d] - s.gen[d]).min()) if d.size else 1 << 30
        if chunk:
            r, t = chunk
            steps = min(steps, -(-self.prompt_left(r) // t) - 1)
        if steps < 2:
            return 1
        own = s.ctx[d] - s.shared[d] + 1  # tokens of KV each holds once this iteration wrote its token

        def extra(k: int) -> int:
            return int(np.maximum(0, -(-(own + k - 1) // B) - s.blocks[d]).sum())

        # each request grows by at most steps // B + 1 blocks: only count exactly when that could run out
        if (steps // B + 1) * d.size > self.kv.free and extra(steps) > self.kv.free:
            lo, hi = 1, steps  # extra(lo) == 0 <= free: grow_decodes made room for the first step
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if extra(mid) <= self.kv.free else (lo, mid - 1)
            steps = lo
        return steps

    def _run(self, d: np.ndarray, steps: int, chunk: tuple):
        s, B, now = self.state, self.kv.block_size, self.env.now
        seqs, kv, longest, groups = self._decode_args(d) if d.size else (0, 0.0, 0.0, ())
        prefill = (chunk[1], float(s.ctx[chunk[0]])) if chunk else None
        run = self.cost.run(steps, seqs, kv, longest, groups, prefill)
        times = run.times
        cum = np.cumsum(times)
        horizon = self.sim.next_arrival_s - now
        if not chunk and cum[-1] > horizon:  # stop at the first iteration boundary after the next arrival
            steps = int(np.searchsorted(cum, horizon)) + 1
            cum, times = cum[:steps], times[:steps]
        parts = run.parts(steps)
        parts["swap"] = 0.0
        self._account(parts, float(cum[-1]), steps, 0 if chunk else steps * int(d.size))
        yield self.env.timeout(float(cum[-1]))
        if chunk:
            s.ctx[chunk[0]] += steps * chunk[1]
            self.totals.prefill_tokens += steps * chunk[1]
            self._maybe_donate(chunk[0])
        if not d.size:
            self._record_kv(self.env.now)
            return
        end = self.env.now
        ctx = s.ctx[d] + steps
        blocks = s.blocks[d]
        need = np.maximum(-(-(ctx - s.shared[d]) // B), blocks)
        if not self.kv.allocate(int(need.sum() - blocks.sum())):
            raise RuntimeError("a decode run outgrew the KV blocks it was sized for (a simulator bug)")
        s.blocks[d] = need
        s.ctx[d] = ctx
        gen = s.gen[d] + steps
        s.gen[d] = gen
        self.totals.decode_tokens += steps * int(d.size)
        s.add_gaps(now + times[0] - s.last[d])
        if steps > 1:
            s.add_gaps(times[1:], int(d.size))
        s.last[d] = end
        self._finish(d[gen >= s.output[d]], end)
        self._record_kv(end)

    def _decode_args(self, d: np.ndarray) -> tuple[int, float, float, tuple]:
        """Sequences, KV tokens read, longest context, and shared-prefix groups of a decode batch."""
        s = self.state
        ctx = s.ctx[d]
        groups = ()
        if self.config.shared_prefix_attention:
            shared = s.shared[d]
            has = shared > 0
            if has.any():
                pids, first, counts = np.unique(s.pid[d[has]], return_index=True, return_counts=True)
                groups = tuple((int(c), int(t)) for c, t in zip(counts, shared[has][first]))
                ctx = ctx - shared
        return int(d.size), float(ctx.sum() + d.size), float(ctx.max() + 1), groups

    def iteration_time(self, batch: Batch) -> dict[str, float]:
        s, cost = self.state, self.cost
        if batch.padded is not None:
            b, length = batch.padded
            if batch.chunks:
                step = steps.prefill(b, length)
                return cost.iteration(b * length, b, prefill_seqs=b, prefill_tokens=b * length,
                                      prefill_pairs=float(step.attention_pairs), prefill_kv_tokens=b * length)
            return cost.iteration(b, b, decode_seqs=b, decode_kv_tokens=b * (length + 1), decode_longest=length + 1)
        d = batch.decodes
        chunks = batch.chunks
        args: dict = {}
        if d.size:
            seqs, kv, longest, groups = self._decode_args(d)
            args.update(decode_seqs=seqs, decode_kv_tokens=kv, decode_longest=longest, shared_groups=groups)
        if chunks:
            tokens = np.array([t for _, t in chunks], dtype=float)
            cached = np.array([s.ctx[r] for r, _ in chunks], dtype=float)  # each chunk causal over itself, after these
            args.update(prefill_seqs=len(chunks), prefill_chunks=(tokens, cached))
        new = d.size + sum(c[1] for c in chunks)
        return cost.iteration(new, d.size + len(chunks), **args)

    def _record_kv(self, now: float) -> None:
        self.totals.kv_time_s.append(now)
        self.totals.kv_used_blocks.append(self.kv.used)
        self.totals.running_seqs.append(len(self.running))

    def commit(self, batch: Batch) -> None:
        s, now = self.state, self.env.now
        if batch.padded is not None:
            self._commit_static(batch, now)
            return
        done: list[int] = []
        for r, t in batch.chunks:
            s.ctx[r] += t
            self.totals.prefill_tokens += t
            self._maybe_donate(r)
            if s.ctx[r] >= s.target[r]:
                done.append(r)
                self._prefilling.remove(r)
        d = batch.decodes
        if d.size:
            s.ctx[d] += 1
            self.totals.decode_tokens += int(d.size)
        emitted = np.concatenate([d, np.asarray(done, dtype=np.int64)]) if done else d
        if emitted.size:
            self._emit(emitted, now)
        self._record_kv(now)

    def _maybe_donate(self, r: int) -> None:
        """Once a request has computed a prefix nobody has cached, its blocks become the cache's."""
        s = self.state
        pid = int(s.pid[r])
        if self.pending_prefix.get(pid) == r and s.ctx[r] >= s.plen[r]:
            shared = self.kv.donate(pid, int(s.plen[r]))
            del self.pending_prefix[pid]
            if shared:
                s.shared[r], s.holds_ref[r] = shared, True
                s.blocks[r] -= shared // self.kv.block_size

    def _emit(self, ids: np.ndarray, now: float) -> None:
        self._tokens(ids, now)
        self._finish(ids[self.state.gen[ids] >= self.state.output[ids]], now)

    def _tokens(self, ids: np.ndarray, now: float) -> None:
        """One token each for ``ids`` at ``now``: their first, or a gap since their last."""
        s = self.state
        s.gen[ids] += 1
        later = s.gen[ids] > 1
        if later.any():
            s.add_gaps(now - s.last[ids[later]])
        s.first[ids[~later]] = now
        s.last[ids] = now

    def _finish(self, fin: np.ndarray, now: float) -> None:
        if fin.size:
            self.state.finish[fin] = now
            for r in fin:
                self._free(int(r))
            gone = set(fin.tolist())
            self.running = [r for r in self.running if r not in gone]

    def _commit_static(self, batch: Batch, now: float) -> None:
        s, b = self.state, self.static_batch
        ids = b["ids"]
        if batch.chunks:
            s.ctx[ids] = b["prompt"]
            self.totals.prefill_tokens += int(s.prompt[ids].sum())
        else:
            b["step"] += 1
            self.totals.decode_tokens += int((s.gen[ids] < s.output[ids]).sum())
        self._tokens(ids[s.gen[ids] < s.output[ids]], now)
        self._record_kv(now)
        if np.all(s.gen[ids] >= s.output[ids]):  # the batch returns when its longest output is done
            s.finish[ids] = now
            self.kv.release(int(s.blocks[ids].sum()))
            s.blocks[ids] = 0
            self.running = []
            self.static_batch = None


class Simulation:
    """One experiment: a workload on ``config.replicas`` replicas of ``tp x pp`` GPUs each."""

    def __init__(self, workload: Workload, cost: IterationCost, config: ServingConfig = ServingConfig()):
        self.workload, self.cost, self.config = workload, cost, config
        self.state = State(workload)
        self.env = simpy.Environment()
        self.kv_blocks = kv_capacity_blocks(cost, config, int(workload.prompt_tokens.max()))
        self.pcie = pcie_link(cost.device.pcie_gen) if cost.device.pcie_gen else None
        if config.preemption == "swap" and self.pcie is None:
            raise InvalidValueError(f"{cost.device.name} has no PCIe generation in the catalog: swap preemption cannot be timed")
        self.batchllm_rank = batchllm_rank(workload) if config.scheduler == "batchllm" else None
        self.replicas = [Replica(self, i) for i in range(config.replicas)]
        self._rr = 0
        self.next_arrival_s = float(workload.arrival_s[0])
        self.env.process(self._arrivals())

    def describe(self) -> dict:
        c, cost = self.config, self.cost
        return {
            "device": cost.device.name, "model": cost.model.name, "tp": cost.tp, "pp": cost.pp,
            "weight_bits": cost.precision.weight_bits, "kv_bits": cost.precision.kv_bits,
            "scheduler": c.scheduler, "replicas": c.replicas, "router": c.router, "max_num_seqs": c.max_num_seqs,
            "token_budget": self.replicas[0].token_budget, "block_size": c.block_size, "kv_blocks_per_replica": self.kv_blocks,
            "preemption": c.preemption, "prefix_caching": c.prefix_caching, "shared_prefix_attention": c.shared_prefix_attention,
            "workload": self.workload.name,
        }

    def _route(self, r: int) -> Replica:
        reps = self.replicas
        if len(reps) == 1:
            return reps[0]
        if self.config.router == "prefix_affinity" and self.state.pid[r] >= 0:
            return reps[int(self.state.pid[r]) % len(reps)]
        if self.config.router in ("least_loaded", "prefix_affinity"):
            return min(reps, key=lambda rep: rep.load)
        rep = reps[self._rr]
        self._rr = (self._rr + 1) % len(reps)
        return rep

    def _arrivals(self):
        s, B = self.state, self.config.block_size
        too_long = -(-(s.prompt + s.output) // B) > self.kv_blocks * (1 - 0.01)
        s.rejected[:] = too_long
        t, n = 0.0, len(s.arrival)
        for r in range(n):
            if s.arrival[r] > t:
                yield self.env.timeout(s.arrival[r] - t)
                t = s.arrival[r]
            self.next_arrival_s = float(s.arrival[r + 1]) if r + 1 < n else math.inf
            if not too_long[r]:
                self._route(r).submit(r)

    def run(self):
        from sim.serving.metrics import ServingResult

        self.env.run()
        return ServingResult.collect(self)


def kv_capacity_blocks(cost: IterationCost, config: ServingConfig, longest_prompt: int) -> int:
    """KV blocks per replica: what is left of ``gpu_memory_utilization`` of each GPU after the
    weights and the activations of the largest iteration, in blocks of ``block_size`` tokens.

    As vLLM sizes its cache: it profiles a forward pass of ``max_num_batched_tokens`` and
    gives the rest of ``gpu_memory_utilization`` to KV blocks (``vllm/worker/worker.py``)."""
    m, d, p = cost.model, cost.device, cost.precision
    usable = d.memory_bytes * config.gpu_memory_utilization
    weights = weights_per_gpu(m, p, cost.tp, cost.pp)
    tokens = config.token_budget or max(2048, longest_prompt)
    act = float(activation_bytes(m, steps.prefill(1, tokens), p, cost.tp))
    free = usable - weights - act
    per_block = config.block_size * cost.kv_bytes_per_token()
    blocks = int(free // per_block)
    if blocks < 1:
        raise DoesNotFitError(
            f"{m.name} does not fit on {cost.tp * cost.pp}x {d.name} (tp={cost.tp}, pp={cost.pp}) for serving: weights "
            f"{weights / 1e9:.1f} GB + activations {act / 1e9:.2f} GB + one KV block {per_block / 1e9:.3g} GB per GPU > "
            f"{usable / 1e9:.1f} GB usable ({config.gpu_memory_utilization:.0%} of {d.memory_bytes / 1e9:.0f} GB); short by "
            f"{(per_block - free) / 1e9:.2f} GB: more GPUs (tp, pp) or fewer weight bits would fit")
    return blocks
