"""Weight-only quantized linear layers as gpt-fast runs them, against bf16, on a CUDA GPU.

Writes ``weight_only.csv`` into ``--out``: per linear-layer shape (Llama-2-7B
and Llama-2-70B, TP 1) and token count, the time of

- ``bf16``: ``F.linear`` (cuBLAS);
- ``int8``: gpt-fast's ``WeightOnlyInt8Linear`` (``F.linear(x, w.to(x.dtype)) *
  scales``, per-channel scales) through ``torch.compile``, as gpt-fast compiles it;
- ``int4-g32`` / ``int4-g128``: gpt-fast's ``WeightOnlyInt4Linear``, the
  tinygemm kernel ``aten._weight_int4pack_mm`` (``inner_k_tiles = 8``, group
  size 32 or 128, bf16 scales and zeros).

Each is captured in a CUDA graph and replayed (no launch gaps, as gpt-fast's
``reduce-overhead`` mode does), timed with CUDA events after an L2 flush,
median of many replays. ``rel_error`` compares the output with a float64
dequantized reference. ``--ncu CASE`` instead runs one case a few times
without timing, for Nsight Compute to profile.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_reference as ref  # noqa: E402  (timing, environment and CSV helpers)

DEV = torch.device("cuda")
SHAPES = {
    "llama-2-7b.qkv": (12288, 4096), "llama-2-7b.o": (4096, 4096), "llama-2-7b.gate_up": (22016, 4096),
    "llama-2-7b.down": (4096, 11008), "llama-2-7b.lm_head": (32000, 4096),
    "llama-2-70b.gate_up": (57344, 8192), "llama-2-70b.down": (8192, 28672),
}
TOKENS = (1, 8)
KINDS = ("bf16", "int8", "int8-cdt", "int8-reduction", "int4-g32", "int4-g128")


def make_case(kind: str, m: int, n: int, k: int):
    """(fn, weight_bytes, reference) for one layer; the reference is float64 on the device."""
    x = torch.randn(m, k, device=DEV, dtype=torch.bfloat16)
    if kind == "bf16":
        w = torch.randn(n, k, device=DEV, dtype=torch.bfloat16) * 0.02
        return (lambda: F.linear(x, w)), 2 * n * k, lambda: x.double() @ w.double().T
    if kind.startswith("int8"):
        w8 = torch.randint(-128, 128, (n, k), device=DEV, dtype=torch.int8)
        scales = (torch.rand(n, device=DEV, dtype=torch.bfloat16) + 0.5) * 1e-3

        def lin8(x, w8, scales):
            return F.linear(x, w8.to(dtype=x.dtype)) * scales

        def lin8_reduction(x, w8, scales):
            # the matrix-vector product written as a reduction, which Inductor fuses with the int8 -> bf16 cast
            return (x[:, None, :] * w8.to(dtype=x.dtype)[None]).sum(-1, dtype=torch.float32).to(x.dtype) * scales

        # "int8": today's default compile; "int8-cdt": with gpt-fast's generate.py settings
        # (coordinate-descent tuning) plus Inductor's memory-bound mm decomposition
        patch = {"coordinate_descent_tuning": True, "decompose_mem_bound_mm": True} if kind == "int8-cdt" else {}
        compiled = torch.compile(lin8_reduction if kind == "int8-reduction" else lin8)
        with torch._inductor.config.patch(patch):
            compiled(x, w8, scales)  # compile now, under the settings
        return (lambda: compiled(x, w8, scales)), n * k + 2 * n, \
            lambda: (x.double() @ w8.double().T) * scales.double()
    group = int(kind.split("g")[1])
    q = torch.randint(0, 16, (n, k), device=DEV, dtype=torch.int32)
    packed = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
    wp = torch.ops.aten._convert_weight_to_int4pack(packed, 8)
    scale = (torch.rand(k // group, n, device=DEV) + 0.5) * 1e-3
    zero = torch.randn(k // group, n, device=DEV) * 1e-3
    sz = torch.stack([scale, zero], dim=-1).to(torch.bfloat16).contiguous()

    def reference():
        s = sz[..., 0].double().repeat_interleave(group, 0).T  # [n, k]
        z = sz[..., 1].double().repeat_interleave(group, 0).T
        return x.double() @ ((q.double() - 8.0) * s + z).T

    return (lambda: torch.ops.aten._weight_int4pack_mm(x, wp, group, sz)), n * k // 2 + 4 * n * k // group, reference


def measure(out: Path, env, kinds=KINDS, tokens=TOKENS) -> None:
    t = ref.Table(out / "weight_only.csv", env)
    for shape, (n, k) in SHAPES.items():
        for m in tokens:
            for kind in kinds:
                try:
                    fn, weight_bytes, reference = make_case(kind, m, n, k)
                    got = fn().double()
                    want = reference()
                    err = float((got - want).norm() / want.norm())
                    g = ref._graph(fn)
                    r = ref.bench(g.replay)
                except Exception as exc:  # noqa: BLE001 - an unsupported path is recorded, not fatal
                    print(f"{shape} m={m} {kind}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    continue
                t.add(shape=shape, m=m, n=n, k=k, kind=kind, weight_bytes=weight_bytes,
                      weight_bytes_per_s=weight_bytes / r["time_s"], rel_error=err, **r)
    t.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out")))
    ap.add_argument("--ncu", choices=KINDS, help="run one case (llama-2-7b.gate_up, m=1) for Nsight Compute")
    ap.add_argument("--kinds", nargs="*", choices=KINDS, default=list(KINDS))
    ap.add_argument("--tokens", nargs="*", type=int, default=list(TOKENS))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    if args.ncu:
        n, k = SHAPES["llama-2-7b.gate_up"]
        fn, _, _ = make_case(args.ncu, 1, n, k)
        for _ in range(4):
            fn()
        torch.cuda.synchronize()
        return
    args.out.mkdir(parents=True, exist_ok=True)
    measure(args.out, ref.Env(), args.kinds, args.tokens)


if __name__ == "__main__":
    main()
