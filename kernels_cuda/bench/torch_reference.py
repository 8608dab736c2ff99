"""Reference measurements through PyTorch's own kernels, for checking the simulator.

Run on a machine with a CUDA GPU and PyTorch; writes one CSV per family into
``--out`` (default ``$OUT`` or ``./out``):

- ``gemm.csv``: cuBLAS matrix products (bf16, fp16, fp8 e4m3 via
  ``torch._scaled_mm``, tf32) at the linear-layer shapes of Llama-2-7B,
  Llama-3.1-8B and Llama-2-70B over a range of token counts, and square sizes.
- ``attention_prefill.csv``: ``scaled_dot_product_attention`` forward per
  backend (flash = FlashAttention-2 as vendored in PyTorch, cudnn, efficient)
  in the FlashAttention-2 paper's setting (16k tokens per batch, hidden 2048).
- ``attention_prefill_grid.csv``: the same at the grid shapes of whole steps
  (one to 16 sequences of 32 heads, 512 to 16k tokens), with Q also taken as
  the steps make it (a view of [B, S, H, D]).
- ``attention_decode.csv``: one query token per sequence over a KV cache, with
  the GQA query group packed as query rows (as FlashDecoding does).
- ``tree_verify.csv``: T draft tokens per sequence over a prefix under a
  tree mask (dense boolean mask, the generic path), versus T = 1.
- ``llama_step.csv``: whole decode and prefill steps of Llama-shaped models
  with random bf16 weights (eager PyTorch ops replayed from a CUDA graph: no
  launch gaps, elementwise ops not fused), plus ``llama_kernels.csv``, the
  per-kernel profile of a few steps. ``--only compiled`` runs the same steps
  with each layer through ``torch.compile`` (Inductor fuses the elementwise
  ops, as gpt-fast does): ``llama_step_compiled.csv``, ``llama_kernels_compiled.csv``.
- ``moe_step.csv`` (``--only moe``): whole decode and prefill steps of
  Mixtral-8x7B (16 of its 32 layers), the experts as two grouped GEMMs over
  the rows sorted by expert, with the experts each layer touched, plus
  ``moe_kernels.csv``, the per-kernel profile of two of them, and
  ``moe_gemm.csv``, the grouped GEMM alone against cuBLAS on one expert;
  ``--only moe_compiled``: the same steps with each layer through
  ``torch.compile`` (``moe_step_compiled.csv``, ``moe_kernels_compiled.csv``);
  ``--only moe_routed``: the grouped GEMM over the uneven groups of routed
  tokens against the same rows split evenly (``moe_gemm_routed.csv``).
- ``memory.csv``: device-to-device copy bandwidth; ``launch.csv``: empty-kernel
  launch and graph-replay cost.

Every row carries the device name, driver, clocks sampled right after the
timed loop, and the date. Timing: CUDA events around each call, warm-up first,
the L2 flushed (a 256 MiB write) before each timed call, the median reported
with min, max and the repeat count. Inputs are random normal (never zeros).

This file uses nothing from kernelab: the simulator reads its CSVs as data.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    import pynvml
except ImportError:  # clocks are then left empty
    pynvml = None

DEV = torch.device("cuda")
FLUSH_BYTES = 256 * 1024 * 1024


# --- environment ---------------------------------------------------------------


class Env:
    def __init__(self):
        props = torch.cuda.get_device_properties(0)
        self.fields = {
            "device_name": props.name,
            "sm_count": props.multi_processor_count,
            "l2_bytes": getattr(props, "L2_cache_size", ""),
            "memory_bytes": props.total_memory,
            "torch_version": torch.__version__,
            "cuda_runtime": torch.version.cuda,
            "cudnn_version": torch.backends.cudnn.version(),
            "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "host": platform.node(),
        }
        self.handle = None
        if pynvml is not None:
            try:
                pynvml.nvmlInit()
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
                h = self.handle
                self.fields["driver"] = _s(pynvml.nvmlSystemGetDriverVersion())
                self.fields["sm_clock_max_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)
                self.fields["mem_clock_max_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM)
                self.fields["power_limit_w"] = pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000
                self.fields["pci_bus_id"] = _s(pynvml.nvmlDeviceGetPciInfo(h).busId)
            except Exception as exc:  # noqa: BLE001 - clocks are optional
                print(f"nvml: {exc}", file=sys.stderr)
                self.handle = None

    def clocks(self) -> dict:
        """SM and memory clocks now (MHz), read right after a timed loop."""
        if self.handle is None:
            return {"sm_clock_mhz": "", "mem_clock_mhz": ""}
        return {
            "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(self.handle, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(self.handle, pynvml.NVML_CLOCK_MEM),
        }

    def row_prefix(self) -> dict:
        keys = ("device_name", "driver", "sm_clock_max_mhz", "torch_version", "cuda_runtime", "date_utc")
        return {k: self.fields.get(k, "") for k in keys}


def _s(x):
    return x.decode() if isinstance(x, bytes) else x


class Table:
    """A CSV written row by row, so an interrupted run keeps what it measured."""

    def __init__(self, path: Path, env: Env):
        self.path, self.env, self.writer, self.file = path, env, None, None
        self.rows = 0

    def add(self, **row):
        full = {**self.env.row_prefix(), **row, **self.env.clocks()}
        if self.writer is None:
            self.file = open(self.path, "w", newline="")
            self.writer = csv.DictWriter(self.file, fieldnames=list(full))
            self.writer.writeheader()
        self.writer.writerow(full)
        self.file.flush()
        self.rows += 1

    def close(self):
        if self.file:
            self.file.close()


# --- timing --------------------------------------------------------------------

_flush_buffer = None


def bench(fn, *, target_s=0.04, min_reps=5, max_reps=200, flush=True) -> dict:
    """Median time of fn() by CUDA events, L2 flushed before each call."""
    global _flush_buffer
    if flush and _flush_buffer is None:
        _flush_buffer = torch.empty(FLUSH_BYTES // 4, dtype=torch.float32, device=DEV)
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    estimate = max(time.perf_counter() - t0, 1e-6)
    reps = int(min(max_reps, max(min_reps, target_s / estimate)))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        if flush:
            _flush_buffer.fill_(float(i))
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    times = [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends)]
    return {
        "time_s": statistics.median(times),
        "time_s_min": min(times),
        "time_s_max": max(times),
        "repeats": reps,
    }


def randn(*shape, dtype=torch.bfloat16, scale=1.0):
    if dtype in (torch.bfloat16, torch.float16, torch.float32):
        return torch.randn(*shape, device=DEV, dtype=dtype).mul_(scale)
    return (torch.randn(*shape, device=DEV) * scale).to(dtype)


# --- memory and launch ---------------------------------------------------------


def measure_memory(out: Path, env: Env):
    t = Table(out / "memory.csv", env)
    for n_bytes in (64 << 20, 1 << 30, 4 << 30):
        src = torch.randn(n_bytes // 4, device=DEV)
        dst = torch.empty_like(src)
        r = bench(lambda: dst.copy_(src), flush=False)
        moved = 2 * n_bytes
        assert torch.equal(dst, src)
        t.add(op="d2d_copy", bytes_per_buffer=n_bytes, bytes_moved=moved,
              bytes_per_s=moved / r["time_s"], **r)
    t.close()


def measure_launch(out: Path, env: Env):
    t = Table(out / "launch.csv", env)
    x = torch.zeros(1, device=DEV)
    n = 2000
    # Eager: back-to-back launches of a one-element kernel, host-bound.
    for _ in range(100):
        x.add_(1)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        x.add_(1)
    torch.cuda.synchronize()
    eager = (time.perf_counter() - t0) / n
    t.add(op="eager_launch_tiny_kernel", kernels=n, time_s_per_kernel=eager)
    # Graph: the same n kernels captured once and replayed.
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            x.add_(1)
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        for _ in range(n):
            x.add_(1)
    r = bench(g.replay, flush=False, min_reps=5, max_reps=20)
    t.add(op="graph_replay_tiny_kernel", kernels=n, time_s_per_kernel=r["time_s"] / n)
    t.close()


# --- GEMM ------------------------------------------------------------------------

LINEAR_SHAPES = {
    # name: (N = out features, K = in features), TP 1
    "llama-2-7b": {"qkv": (12288, 4096), "o": (4096, 4096), "gate_up": (22016, 4096),
                   "down": (4096, 11008), "lm_head": (32000, 4096)},
    "llama-3.1-8b": {"qkv": (6144, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
                     "lm_head": (128256, 4096)},
    "llama-2-70b": {"qkv": (10240, 8192), "o": (8192, 8192), "gate_up": (57344, 8192),
                    "down": (8192, 28672)},
}
TOKENS = (1, 16, 64, 256, 1024, 4096, 16384)
SQUARE = (512, 1024, 2048, 4096, 8192, 16384)


def _gemm_fn(m, n, k, dtype):
    if dtype == "fp8_e4m3":
        a = randn(m, k).to(torch.float8_e4m3fn)
        b = randn(n, k).to(torch.float8_e4m3fn).t()  # column-major, as _scaled_mm wants
        one = torch.ones((), device=DEV)
        return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    if dtype == "tf32":
        a, b = randn(m, k, dtype=torch.float32), randn(k, n, dtype=torch.float32)
    else:
        dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        a, w = randn(m, k, dtype=dt), randn(n, k, dtype=dt)
        return lambda: F.linear(a, w)
    return lambda: a @ b


def measure_gemm(out: Path, env: Env, deadline: float):
    torch.backends.cuda.matmul.allow_tf32 = True
    t = Table(out / "gemm.csv", env)
    cases = []
    for model, layers in LINEAR_SHAPES.items():
        for layer, (n, k) in layers.items():
            for m in TOKENS:
                for dtype in ("bf16", "fp8_e4m3"):
                    if dtype == "fp8_e4m3" and m % 16:
                        continue
                    cases.append((f"{model}.{layer}", m, n, k, dtype))
    for s in SQUARE:
        for dtype in ("bf16", "fp16", "fp8_e4m3", "tf32"):
            cases.append(("square", s, s, s, dtype))
    for shape, m, n, k, dtype in cases:
        if time.time() > deadline:
            print("gemm: deadline reached", file=sys.stderr)
            break
        try:
            fn = _gemm_fn(m, n, k, dtype)
            r = bench(fn)
        except Exception as exc:  # noqa: BLE001 - record and go on
            print(f"gemm {shape} {m}x{n}x{k} {dtype}: {exc}", file=sys.stderr)
            continue
        flops = 2 * m * n * k
        elem = {"fp8_e4m3": 1, "tf32": 4}.get(dtype, 2)
        out_elem = 4 if dtype == "tf32" else 2
        min_bytes = elem * (m * k + n * k) + out_elem * m * n
        t.add(shape=shape, m=m, n=n, k=k, dtype=dtype, flops=flops, min_bytes=min_bytes,
              flops_per_s=flops / r["time_s"], bytes_per_s=min_bytes / r["time_s"], **r)
        del fn
    t.close()


# --- attention -------------------------------------------------------------------

from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION}


def _sdpa(backend, q, k, v, **kw):
    def fn():
        with sdpa_kernel(BACKENDS[backend]):
            return F.scaled_dot_product_attention(q, k, v, **kw)
    return fn


def _check_attention(fn, q, k, v, mask=None, causal=False):
    """Relative error of one output slice against a float64 reference."""
    out = fn()
    b, h = 0, 0
    qq, kk, vv = (x[b, h].double() for x in (q, k, v))
    s = (qq @ kk.T) / math.sqrt(q.shape[-1])
    if causal:
        s = s.masked_fill(torch.ones_like(s, dtype=torch.bool).triu(1), float("-inf"))
    if mask is not None:
        m = mask[b, 0] if mask.dim() == 4 else mask
        s = s.masked_fill(~m, float("-inf"))
    ref = torch.softmax(s, -1) @ vv
    got = out[b, h].double()
    return float((got - ref).norm() / ref.norm())


def measure_attention_prefill(out: Path, env: Env, deadline: float):
    t = Table(out / "attention_prefill.csv", env)
    total_tokens, hidden = 16384, 2048
    for head_dim in (64, 128):
        heads = hidden // head_dim
        for seqlen in (512, 1024, 2048, 4096, 8192, 16384):
            batch = total_tokens // seqlen
            q, k, v = (randn(batch, heads, seqlen, head_dim) for _ in range(3))
            for causal in (False, True):
                flops = 4 * batch * heads * seqlen * seqlen * head_dim // (2 if causal else 1)
                for backend in BACKENDS:
                    if time.time() > deadline:
                        break
                    _time_prefill(t, backend, q, k, v, causal, flops, batch=batch, heads=heads, seqlen=seqlen,
                                  head_dim=head_dim)
            del q, k, v
    t.close()


#: (batch, heads, seqlen) of a Llama-shaped prefill's attention (32 heads of 128) as the steps run it, and the
#: FlashAttention-2 paper's 8 x 16 heads at 2048 tokens
PREFILL_GRIDS = ((1, 32, 512), (1, 32, 2048), (2, 32, 2048), (4, 32, 2048), (16, 32, 2048), (8, 16, 2048),
                 (1, 32, 4096), (1, 32, 8192), (1, 32, 16384))


def measure_attention_prefill_grid(out: Path, env: Env, deadline: float):
    """Prefill attention at the grid shapes of whole steps (one sequence of 32 heads, a few sequences), causal
    and not, per backend; ``q_layout=bshd`` takes Q as the steps make it, a view of a [B, S, H, D] tensor."""
    t = Table(out / "attention_prefill_grid.csv", env)
    head_dim = 128
    for batch, heads, seqlen in PREFILL_GRIDS:
        k, v = (randn(batch, heads, seqlen, head_dim) for _ in range(2))
        q_bhsd = randn(batch, heads, seqlen, head_dim)
        q_bshd = randn(batch, seqlen, heads, head_dim).transpose(1, 2)
        for causal in (True, False):
            flops = 4 * batch * heads * seqlen * seqlen * head_dim // (2 if causal else 1)
            for backend in ("flash", "cudnn"):
                for layout, q in (("bhsd", q_bhsd), ("bshd", q_bshd)):
                    if time.time() > deadline or (layout == "bshd" and backend != "flash"):
                        continue
                    _time_prefill(t, backend, q, k, v, causal, flops, q_layout=layout, batch=batch, heads=heads,
                                  seqlen=seqlen, head_dim=head_dim)
    t.close()


def _time_prefill(table: Table, backend: str, q, k, v, causal: bool, flops: int, **row) -> None:
    """One SDPA forward: checked against float64, timed, and written as a row (a failure is reported, not fatal)."""
    fn = _sdpa(backend, q, k, v, is_causal=causal)
    try:
        err = _check_attention(fn, q, k, v, causal=causal)
        r = bench(fn)
    except Exception as exc:  # noqa: BLE001 - an unsupported shape or backend: record and go on
        print(f"prefill {backend} {row}: {exc}", file=sys.stderr)
        return
    table.add(backend=backend, **row, causal=int(causal), dtype="bf16", flops=flops,
              flops_per_s=flops / r["time_s"], rel_error=err, **r)


def measure_attention_decode(out: Path, env: Env, deadline: float):
    t = Table(out / "attention_decode.csv", env)
    head_dim = 128
    for hq, hkv in ((32, 32), (32, 8), (64, 8)):
        group = hq // hkv
        for batch in (1, 4, 16, 64):
            for context in (1024, 4096, 16384, 65536, 131072, 262144, 524288):
                kv_bytes = 2 * batch * hkv * context * head_dim * 2
                if kv_bytes > 24e9 or time.time() > deadline:
                    continue
                # Query group packed as rows: [B, Hkv, G, D] against [B, Hkv, L, D].
                q = randn(batch, hkv, group, head_dim)
                k = randn(batch, hkv, context, head_dim)
                v = randn(batch, hkv, context, head_dim)
                for backend in BACKENDS:
                    fn = _sdpa(backend, q, k, v)
                    try:
                        err = _check_attention(fn, q, k, v)
                        r = bench(fn)
                    except Exception as exc:  # noqa: BLE001
                        print(f"decode {backend} B={batch} L={context}: {exc}", file=sys.stderr)
                        continue
                    bytes_moved = kv_bytes + 2 * 2 * batch * hq * head_dim
                    t.add(backend=backend, batch=batch, heads=hq, kv_heads=hkv, head_dim=head_dim,
                          context=context, dtype="bf16", bytes_moved=bytes_moved,
                          bytes_per_s=bytes_moved / r["time_s"], rel_error=err, **r)
                del q, k, v
    t.close()


def tree_parents(t: int) -> list[int]:
    """A binary draft tree in breadth-first order: token i's parent is (i-1)//2."""
    return [-1] + [(i - 1) // 2 for i in range(1, t)]


def tree_mask(parents: list[int], prefix: int) -> torch.Tensor:
    t = len(parents)
    m = torch.zeros(t, prefix + t, dtype=torch.bool)
    m[:, :prefix] = True
    for i in range(t):
        j = i
        while j >= 0:
            m[i, prefix + j] = True
            j = parents[j]
    return m


def measure_tree_verify(out: Path, env: Env, deadline: float):
    t = Table(out / "tree_verify.csv", env)
    head_dim, heads = 128, 32
    for batch in (1, 8):
        for prefix in (1024, 8192):
            k_all = randn(batch, heads, prefix + 256, head_dim)
            v_all = randn(batch, heads, prefix + 256, head_dim)
            for tokens in (1, 2, 4, 8, 16, 32, 64, 128, 256):
                if time.time() > deadline:
                    break
                q = randn(batch, heads, tokens, head_dim)
                k = k_all[:, :, : prefix + tokens]
                v = v_all[:, :, : prefix + tokens]
                mask = tree_mask(tree_parents(tokens), prefix).to(DEV)
                mask4 = mask.expand(batch, 1, tokens, prefix + tokens)
                for backend, kw, label in (("efficient", {"attn_mask": mask4}, "efficient_tree_mask"),
                                           ("cudnn", {"attn_mask": mask4}, "cudnn_tree_mask"),
                                           ("flash", {}, "flash_no_mask")):
                    fn = _sdpa(backend, q, k, v, **kw)
                    try:
                        err = _check_attention(fn, q, k, v, mask=mask if kw else None)
                        r = bench(fn)
                    except Exception as exc:  # noqa: BLE001
                        print(f"tree {label} T={tokens}: {exc}", file=sys.stderr)
                        continue
                    t.add(kernel=label, batch=batch, heads=heads, kv_heads=heads, head_dim=head_dim,
                          prefix=prefix, tree_tokens=tokens, dtype="bf16", rel_error=err, **r)
            del k_all, v_all
    t.close()


# --- whole Llama steps --------------------------------------------------------------


class Llama:
    """A Llama-shaped decoder with random bf16 weights and a static KV cache."""

    def __init__(self, cfg: dict, layers: int, batch: int, max_len: int):
        self.cfg = cfg
        h = cfg["hidden_size"]
        self.hq = cfg["num_attention_heads"]
        self.hkv = cfg.get("num_key_value_heads", self.hq)
        self.d = h // self.hq
        vocab = cfg["vocab_size"]
        s = 0.02
        self.embed = randn(vocab, h, scale=s)
        self.lm_head = randn(vocab, h, scale=s)
        self.final_norm = torch.ones(h, device=DEV, dtype=torch.bfloat16)
        self.layers = []
        for _ in range(layers):
            self.layers.append({
                "wqkv": randn((self.hq + 2 * self.hkv) * self.d, h, scale=s),
                "wo": randn(h, self.hq * self.d, scale=s),
                **self.mlp_weights(cfg, s),
                "n1": torch.ones(h, device=DEV, dtype=torch.bfloat16),
                "n2": torch.ones(h, device=DEV, dtype=torch.bfloat16),
                "k": torch.empty(batch, self.hkv, max_len, self.d, device=DEV, dtype=torch.bfloat16).normal_(),
                "v": torch.empty(batch, self.hkv, max_len, self.d, device=DEV, dtype=torch.bfloat16).normal_(),
            })
        theta = cfg.get("rope_theta", 10000.0)
        inv = 1.0 / theta ** (torch.arange(0, self.d, 2, device=DEV, dtype=torch.float32) / self.d)
        ang = torch.outer(torch.arange(max_len, device=DEV, dtype=torch.float32), inv)
        self.cos = torch.cat([ang.cos(), ang.cos()], -1).to(torch.bfloat16)
        self.sin = torch.cat([ang.sin(), ang.sin()], -1).to(torch.bfloat16)
        self.eps = cfg.get("rms_norm_eps", 1e-5)

    @staticmethod
    def mlp_weights(cfg: dict, scale: float) -> dict:
        h, inter = cfg["hidden_size"], cfg["intermediate_size"]
        return {"w13": randn(2 * inter, h, scale=scale), "w2": randn(h, inter, scale=scale)}

    def _rope(self, x, cos, sin):
        half = x.shape[-1] // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rot * sin

    def layer(self, x, wqkv, wo, w13, w2, n1, n2, kcache, vcache, cos, sin, start: int):
        """One decoder layer on x [B, S, h]; writes K, V at positions start..start+S-1 of the cache."""
        x = self.attend(x, wqkv, wo, n1, kcache, vcache, cos, sin, start)
        y = F.rms_norm(x, (x.shape[-1],), n2, self.eps)
        gate, up = F.linear(y, w13).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, w2)

    def attend(self, x, wqkv, wo, n1, kcache, vcache, cos, sin, start: int):
        """The attention half of a layer, residual included."""
        b, s, _ = x.shape
        g = self.hq // self.hkv
        y = F.rms_norm(x, (x.shape[-1],), n1, self.eps)
        qkv = F.linear(y, wqkv).view(b, s, self.hq + 2 * self.hkv, self.d).transpose(1, 2)
        q, k, v = qkv.split([self.hq, self.hkv, self.hkv], dim=1)
        q = self._rope(q, cos, sin)
        k = self._rope(k, cos, sin)
        kcache[:, :, start:start + s] = k
        vcache[:, :, start:start + s] = v
        kc, vc = kcache[:, :, : start + s], vcache[:, :, : start + s]
        if s == 1:
            # GQA packed: the group's queries are rows over one KV head.
            qp = q.reshape(b, self.hkv, g, self.d)
            o = F.scaled_dot_product_attention(qp, kc, vc).reshape(b, self.hq, 1, self.d)
        else:
            o = F.scaled_dot_product_attention(q, kc, vc, is_causal=(start == 0), enable_gqa=g > 1)
        o = o.transpose(1, 2).reshape(b, s, self.hq * self.d)
        return x + F.linear(o, wo)

    def step(self, tokens: torch.Tensor, start: int, layer=None):
        """tokens [B, S] at positions start..start+S-1; returns next tokens [B].

        ``layer``: the function run per layer (default :meth:`layer`; a
        ``torch.compile`` of it for the fused variant)."""
        layer = layer or self.layer
        s = tokens.shape[1]
        x = self.embed[tokens]  # [B, S, h]
        cos = self.cos[start:start + s][None, None]
        sin = self.sin[start:start + s][None, None]
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            for L in self.layers:
                x = layer(x, L["wqkv"], L["wo"], L["w13"], L["w2"], L["n1"], L["n2"], L["k"], L["v"], cos, sin, start)
        x = F.rms_norm(x[:, -1], (x.shape[-1],), self.final_norm, self.eps)
        return F.linear(x, self.lm_head).argmax(-1)


class Mixtral(Llama):
    """Llama attention with Mixtral's top-k mixture-of-experts MLP, random bf16 weights.

    The experts run as two grouped GEMMs (``torch._grouped_mm``, CUTLASS on
    sm90) over the step's token rows sorted by expert, as vLLM's fused MoE and
    torchtitan group them; routing, the sort, the gather and the weighted
    scatter-add are ordinary PyTorch kernels. Every shape is static, so the
    step replays from a CUDA graph. With random weights the router spreads
    tokens about evenly: ``routing()`` reports how many experts each layer
    touched and the largest group."""

    @staticmethod
    def mlp_weights(cfg: dict, scale: float) -> dict:
        h, inter, e = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_local_experts"]
        return {"router": randn(e, h, scale=scale),
                "w13": randn(e, 2 * inter, h, scale=scale),  # [E, out, in]: passed transposed, column-major
                "w2": randn(e, h, inter, scale=scale)}

    def __init__(self, cfg: dict, layers: int, batch: int, max_len: int):
        super().__init__(cfg, layers, batch, max_len)
        self.k = cfg["num_experts_per_tok"]
        self.experts = cfg["num_local_experts"]
        self.counts: list[torch.Tensor] | None = None  # per-layer tokens per expert, when recording

    def moe(self, y, router, w13, w2, loop=False):
        """y [T, h] -> sum over the top-k experts of weight x expert(y); ``loop``: one expert at a time (reference)."""
        k, e = self.k, self.experts
        logits = F.linear(y, router)
        top, chosen = torch.topk(logits, k, dim=-1)
        weight = torch.softmax(top.float(), dim=-1).to(y.dtype)  # Mixtral: softmax over the k chosen logits
        flat = chosen.reshape(-1)
        counts = torch.zeros(e, device=y.device, dtype=torch.int32).scatter_add_(
            0, flat, torch.ones_like(flat, dtype=torch.int32))
        if self.counts is not None:
            self.counts.append(counts.clone())
        if loop:
            out = torch.zeros_like(y, dtype=torch.float32)
            for j in range(e):
                rows, slot = (chosen == j).nonzero(as_tuple=True)
                g, u = F.linear(y[rows].float(), w13[j].float()).chunk(2, dim=-1)
                out.index_add_(0, rows, F.linear(F.silu(g) * u, w2[j].float()) * weight[rows, slot, None].float())
            return out.to(y.dtype)
        order = torch.argsort(flat, stable=True)
        token = order // k
        offs = torch.cumsum(counts, 0, dtype=torch.int32)
        g, u = torch._grouped_mm(y[token], w13.transpose(-2, -1), offs=offs).chunk(2, dim=-1)
        o = torch._grouped_mm(F.silu(g) * u, w2.transpose(-2, -1), offs=offs)
        o = o * weight.reshape(-1)[order, None]
        return torch.zeros_like(y).index_add_(0, token, o)

    def layer(self, x, L, cos, sin, start: int, loop=False):
        x = self.attend(x, L["wqkv"], L["wo"], L["n1"], L["k"], L["v"], cos, sin, start)
        y = F.rms_norm(x, (x.shape[-1],), L["n2"], self.eps)
        b, s, h = y.shape
        return x + self.moe(y.reshape(b * s, h), L["router"], L["w13"], L["w2"], loop).view(b, s, h)

    def step(self, tokens: torch.Tensor, start: int, loop=False, layer=None):
        """Logits of the last position; ``layer``: the function run per layer (a ``torch.compile`` of :meth:`layer`)."""
        layer = layer or self.layer
        s = tokens.shape[1]
        x = self.embed[tokens]
        cos = self.cos[start:start + s][None, None]
        sin = self.sin[start:start + s][None, None]
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            for L in self.layers:
                x = layer(x, L, cos, sin, start, loop)
        x = F.rms_norm(x[:, -1], (x.shape[-1],), self.final_norm, self.eps)
        return F.linear(x, self.lm_head)

    def routing(self, tokens, start) -> dict:
        """Experts touched per layer (mean) and the largest group per layer (mean), from one eager step."""
        self.counts = []
        self.step(tokens, start)
        c = torch.stack(self.counts).float()
        self.counts = None
        return {"touched_experts_mean": float((c > 0).sum(1).float().mean()),
                "max_rows_per_expert_mean": float(c.max(1).values.mean())}


def _graph(fn):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g


STEP_PLAN = [
    # (model config file, layers run, kind, [(batch, context or prompt)])
    ("llama-2-7b", 32, "decode", [(1, 512), (1, 4096), (8, 1024), (32, 1024), (64, 512), (16, 4096)]),
    ("llama-2-7b", 32, "prefill", [(1, 128), (1, 512), (1, 2048), (1, 4096), (4, 2048)]),
    ("llama-3.1-8b", 32, "decode", [(1, 512), (1, 8192), (16, 4096), (64, 2048), (128, 1024), (256, 512)]),
    ("llama-3.1-8b", 32, "prefill", [(1, 512), (1, 2048), (1, 8192)]),
    ("llama-2-70b", 20, "decode", [(1, 512), (16, 2048), (64, 1024)]),
    ("llama-2-70b", 20, "prefill", [(1, 2048)]),
]
PROFILE = {("llama-2-7b", "decode", 1, 4096), ("llama-2-7b", "decode", 32, 1024),
           ("llama-2-7b", "prefill", 1, 2048), ("llama-3.1-8b", "decode", 64, 2048)}


COMPILED_PLAN = [
    ("llama-2-7b", 32, "decode", [(1, 512), (1, 4096), (16, 1024), (64, 512)]),
    ("llama-2-7b", 32, "prefill", [(1, 512), (1, 2048)]),
    ("llama-3.1-8b", 32, "decode", [(1, 1024), (32, 2048), (128, 1024)]),
    ("llama-3.1-8b", 32, "prefill", [(1, 2048)]),
    ("llama-2-70b", 20, "decode", [(1, 512), (32, 1024)]),
]
COMPILED_PROFILE = {("llama-2-7b", "decode", 1, 4096), ("llama-2-7b", "prefill", 1, 2048),
                    ("llama-3.1-8b", "decode", 32, 2048)}


def measure_llama_steps(out: Path, env: Env, deadline: float, models_dir: Path, compiled=False):
    suffix = "_compiled" if compiled else ""
    t = Table(out / f"llama_step{suffix}.csv", env)
    kt = Table(out / f"llama_kernels{suffix}.csv", env)
    profile = COMPILED_PROFILE if compiled else PROFILE
    if compiled:
        torch._dynamo.config.cache_size_limit = 256
    _run_plan(COMPILED_PLAN if compiled else STEP_PLAN, models_dir, deadline, "step",
              lambda *shape: _step_case(t, kt, *shape, compiled=compiled, profile=profile))
    t.close()
    kt.close()


def _run_plan(plan, models_dir: Path, deadline: float, label: str, case):
    """``case(cfg, name, layers, kind, batch, length)`` for every shape of ``plan`` until the deadline; a shape
    that fails (out of memory, an unsupported path) is reported and skipped, and its memory freed."""
    for name, layers, kind, shapes in plan:
        cfg = json.loads((models_dir / f"{name}.json").read_text())
        for batch, length in shapes:
            if time.time() > deadline:
                return
            try:
                case(cfg, name, layers, kind, batch, length)
            except Exception as exc:  # noqa: BLE001 - OOM or an unsupported path: record and go on
                print(f"{label} {name} {kind} B={batch} L={length}: {type(exc).__name__}: {exc}", file=sys.stderr)
            torch.cuda.empty_cache()


def _step_case(t, kt, cfg, name, layers, kind, batch, length, compiled=False, profile=frozenset()):
    """One step shape; its model, cache and graph are freed on return.

    ``compiled``: each layer through ``torch.compile`` (Inductor fuses the
    norms, RoPE, SiLU-mul and residual adds into a few Triton kernels; the
    GEMMs stay cuBLAS and attention FlashAttention-2), as gpt-fast does."""
    if kind == "decode":
        model = Llama(cfg, layers, batch, length + 1)
        tokens = torch.randint(0, cfg["vocab_size"], (batch, 1), device=DEV)
        start, ctx, new = length, length, 1
    else:
        model = Llama(cfg, layers, batch, length)
        tokens = torch.randint(0, cfg["vocab_size"], (batch, length), device=DEV)
        start, ctx, new = 0, 0, length

    layer = torch.compile(model.layer, dynamic=False) if compiled else None

    def fn():
        return model.step(tokens, start, layer)

    compile_s, r = _time_step(fn)
    t.add(model=name, layers=layers, kind=kind, batch=batch, context=ctx, new_tokens=new,
          weight_dtype="bf16", kv_dtype="bf16", attention="flash",
          ops="torch.compile per layer (Inductor)" if compiled else "eager", first_call_s=compile_s, **r)
    if (name, kind, batch, length) in profile:
        _profile(kt, fn, name, layers, kind, batch, length)


MOE_PLAN = [
    # Mixtral-8x7B, 16 of its 32 layers (47 GB of weights: fits an H100 too)
    ("mixtral-8x7b", 16, "decode", [(1, 1024), (4, 1024), (16, 1024), (64, 1024), (256, 1024)]),
    ("mixtral-8x7b", 16, "prefill", [(1, 512), (1, 2048), (4, 2048)]),
]
MOE_PROFILE = {("mixtral-8x7b", "decode", 16, 1024), ("mixtral-8x7b", "prefill", 1, 2048)}


#: Mixtral-8x7B's expert matrices: (name, N = out features, K = in features), 8 experts
MOE_GEMMS = (("w13", 28672, 4096), ("w2", 4096, 14336))
MOE_ROWS_PER_EXPERT = (1, 4, 16, 64, 256, 1024, 4096)


def measure_moe_gemm(out: Path, env: Env, deadline: float, experts: int = 8):
    """``torch._grouped_mm`` over 8 experts with m rows each, against cuBLAS (``F.linear``) on one expert's m rows."""
    t = Table(out / "moe_gemm.csv", env)
    for name, n, k in MOE_GEMMS:
        w = randn(experts, n, k, scale=0.02)
        for m in MOE_ROWS_PER_EXPERT:
            if time.time() > deadline:
                break
            a = randn(experts * m, k)
            offs = torch.arange(1, experts + 1, device=DEV, dtype=torch.int32) * m
            grouped = lambda: torch._grouped_mm(a, w.transpose(-2, -1), offs=offs)  # noqa: E731
            got = grouped()[:m].double()
            ref = a[:m].double() @ w[0].double().T
            rel_error = float((got - ref).norm() / ref.norm())
            for impl, fn, groups in (("grouped", grouped, experts), ("cublas_one_expert", lambda: F.linear(a[:m], w[0]), 1)):
                r = bench(fn)
                flops = 2 * groups * m * n * k
                weight_bytes = 2 * groups * n * k
                t.add(shape=f"mixtral-8x7b.{name}", impl=impl, experts=groups, rows_per_expert=m, n=n, k=k,
                      dtype="bf16", flops=flops, weight_bytes=weight_bytes, flops_per_s=flops / r["time_s"],
                      weight_bytes_per_s=weight_bytes / r["time_s"], rel_error=rel_error if impl == "grouped" else "", **r)
    t.close()


MOE_COMPILED_PLAN = [
    ("mixtral-8x7b", 16, "decode", [(1, 1024), (16, 1024), (64, 1024)]),
    ("mixtral-8x7b", 16, "prefill", [(1, 512), (1, 2048)]),
]


MOE_ROUTED_TOKENS = (128, 512, 2048, 8192)


def measure_moe_gemm_routed(out: Path, env: Env, deadline: float, experts: int = 8, k: int = 2):
    """The grouped GEMM over the uneven groups that routing T tokens to their top-k of 8 experts gives
    (``impl=routed``: each token's k experts drawn uniformly without replacement, as random router weights
    do), against the same rows split evenly (``impl=even``), as ``moe_gemm_routed.csv``."""
    t = Table(out / "moe_gemm_routed.csv", env)
    gen = torch.Generator(device="cpu").manual_seed(1)
    for name, n, kk in MOE_GEMMS:
        w = randn(experts, n, kk, scale=0.02)
        for tokens in MOE_ROUTED_TOKENS:
            if time.time() > deadline:
                break
            chosen = torch.rand(tokens, experts, generator=gen).argsort(dim=1)[:, :k]
            routed = torch.bincount(chosen.reshape(-1), minlength=experts)
            even = torch.full((experts,), tokens * k // experts, dtype=torch.long)
            a = randn(tokens * k, kk)
            for impl, counts in (("routed", routed), ("even", even)):
                offs = torch.cumsum(counts, 0).to(device=DEV, dtype=torch.int32)
                fn = lambda: torch._grouped_mm(a, w.transpose(-2, -1), offs=offs)  # noqa: E731
                r = bench(fn)
                flops = 2 * tokens * k * n * kk
                t.add(shape=f"mixtral-8x7b.{name}", impl=impl, experts=experts, tokens=tokens, experts_per_token=k,
                      rows=tokens * k, max_rows_per_expert=int(counts.max()), min_rows_per_expert=int(counts.min()),
                      counts=" ".join(str(int(c)) for c in counts), n=n, k=kk, dtype="bf16", flops=flops,
                      flops_per_s=flops / r["time_s"], **r)
    t.close()


def measure_moe_steps(out: Path, env: Env, deadline: float, models_dir: Path, compiled=False):
    """Whole decode and prefill steps of a mixture-of-experts model (:class:`Mixtral`), graph-replayed, after the
    grouped-GEMM sweep (:func:`measure_moe_gemm`, under the same deadline); ``compiled``: each layer through
    ``torch.compile`` (``moe_step_compiled.csv``), without the sweep."""
    suffix = "_compiled" if compiled else ""
    if compiled:
        torch._dynamo.config.cache_size_limit = 256
    else:
        measure_moe_gemm(out, env, deadline)
    t = Table(out / f"moe_step{suffix}.csv", env)
    kt = Table(out / f"moe_kernels{suffix}.csv", env)
    _run_plan(MOE_COMPILED_PLAN if compiled else MOE_PLAN, models_dir, deadline, "moe",
              lambda *shape: _moe_case(t, kt, *shape, compiled=compiled))
    t.close()
    kt.close()


def _moe_case(t, kt, cfg, name, layers, kind, batch, length, compiled=False):
    decode = kind == "decode"
    model = Mixtral(cfg, layers, batch, length + 1 if decode else length)
    new = 1 if decode else length
    tokens = torch.randint(0, cfg["vocab_size"], (batch, new), device=DEV)
    start = length if decode else 0
    # The grouped experts against one-expert-at-a-time in float32, on fresh rows of this step's size.
    y = randn(batch * new, cfg["hidden_size"])
    L = model.layers[0]
    ref = model.moe(y, L["router"], L["w13"], L["w2"], loop=True).double()
    got = model.moe(y, L["router"], L["w13"], L["w2"]).double()
    rel_error = float((got - ref).norm() / ref.norm())
    routing = model.routing(tokens, start)

    layer = torch.compile(model.layer, dynamic=False) if compiled else None

    def fn():
        return model.step(tokens, start, layer=layer).argmax(-1)

    compile_s, r = _time_step(fn)
    t.add(model=name, layers=layers, kind=kind, batch=batch, context=length if decode else 0, new_tokens=new,
          weight_dtype="bf16", kv_dtype="bf16", attention="flash", experts="torch._grouped_mm",
          experts_total=model.experts, experts_per_token=model.k, rel_error=rel_error,
          ops="torch.compile per layer (Inductor)" if compiled else "eager", first_call_s=compile_s, **routing, **r)
    if (name, kind, batch, length) in MOE_PROFILE:
        _profile(kt, fn, name, layers, kind, batch, length)


def _time_step(fn) -> tuple[float, dict]:
    """A whole step: its first call's seconds (the compile, when compiled), then its CUDA-graph replays timed."""
    t0 = time.time()
    fn()
    torch.cuda.synchronize()
    compile_s = time.time() - t0
    return compile_s, bench(_graph(fn).replay, target_s=0.1, min_reps=5, max_reps=50)


def _profile(table: Table, fn, name, layers, kind, batch, length):
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    agg: dict[str, list[float]] = {}
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            agg.setdefault(ev.name, []).append(ev.device_time_total * 1e-6)
    for kernel, times in sorted(agg.items(), key=lambda kv: -sum(kv[1])):
        table.add(model=name, layers=layers, kind=kind, batch=batch, length=length,
                  kernel=kernel[:200], count=len(times), total_time_s=sum(times))


# --- main ------------------------------------------------------------------------

SECTIONS = ("memory", "launch", "gemm", "prefill", "prefill_grid", "decode", "tree", "steps", "moe", "moe_routed",
            "moe_compiled", "compiled")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out")))
    ap.add_argument("--models", type=Path, default=Path(__file__).resolve().parents[2] / "sim" / "models",
                    help="folder of Hugging Face config.json files named <model>.json")
    ap.add_argument("--only", nargs="*", choices=SECTIONS, default=[s for s in SECTIONS if not s.startswith("moe") and s != "compiled"],
                    help="sections to run (default: all but the MoE and compiled ones, each a call of its own)")
    ap.add_argument("--budget-s", type=float, default=300, help="stop starting new cases after this")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    env = Env()
    (args.out / "environment.json").write_text(json.dumps(env.fields, indent=2, default=str))
    print(json.dumps(env.fields, default=str))
    start = time.time()
    shares = {"memory": 0.03, "launch": 0.03, "gemm": 0.22, "prefill": 0.12, "prefill_grid": 0.05, "decode": 0.15,
              "tree": 0.1, "steps": 0.3, "moe": 1.0, "moe_routed": 1.0, "moe_compiled": 1.0,
              "compiled": 1.0}
    used = 0.0
    for section in SECTIONS:
        if section not in args.only:
            continue
        used += shares[section]
        deadline = start + args.budget_s * used
        t0 = time.time()
        try:
            if section == "memory":
                measure_memory(args.out, env)
            elif section == "launch":
                measure_launch(args.out, env)
            elif section == "gemm":
                measure_gemm(args.out, env, deadline)
            elif section == "prefill":
                measure_attention_prefill(args.out, env, deadline)
            elif section == "prefill_grid":
                measure_attention_prefill_grid(args.out, env, deadline)
            elif section == "decode":
                measure_attention_decode(args.out, env, deadline)
            elif section == "tree":
                measure_tree_verify(args.out, env, deadline)
            elif section == "steps":
                measure_llama_steps(args.out, env, deadline, args.models)
            elif section == "moe":
                measure_moe_steps(args.out, env, deadline, args.models)
            elif section == "moe_routed":
                measure_moe_gemm_routed(args.out, env, deadline)
            elif section == "moe_compiled":
                measure_moe_steps(args.out, env, deadline, args.models, compiled=True)
            elif section == "compiled":
                measure_llama_steps(args.out, env, deadline, args.models, compiled=True)
        except Exception:  # noqa: BLE001 - one section's failure must not lose the others
            traceback.print_exc()
        torch.cuda.empty_cache()
        print(f"[{section}] {time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
