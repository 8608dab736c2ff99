"""One small call of every CUDA attention kernel, for compute-sanitizer.

    compute-sanitizer --tool memcheck --error-exitcode 9 python kernels_cuda/bench/attention_sanitize.py

Lean (one-kernel with flags, two-kernel, a grid of 3), split-KV (heuristic
and forced splits), tree, block (causal), merge and ring (causal, 3 virtual
ranks), fp16 and bf16, odd sizes, ragged seqlens with an empty sequence.
Exits 1 if an output holds NaN (an element no kernel wrote). Needs PyTorch
with CUDA.
"""

from __future__ import annotations

import sys


def main() -> int:
    import torch

    import kernels_cuda
    from kernels_cuda import _attention as att
    from kernels_cuda import _attention_gpu

    _attention_gpu.POISON = True  # an element no kernel writes stays NaN

    torch.manual_seed(0)
    bad = []

    def ok(name, out, lse):
        torch.cuda.synchronize()
        if torch.isnan(out.float()).any() or torch.isnan(lse).any():
            bad.append(name)

    for dtype in (torch.float16, torch.bfloat16):
        for d, (hq, hkv) in ((64, (8, 2)), (128, (4, 4))):
            q = torch.randn(3, hq, d, device="cuda", dtype=dtype)
            k = torch.randn(3, 777, hkv, d, device="cuda", dtype=dtype)
            v = torch.randn_like(k)
            lens = [777, 300, 0]
            ok("lean", *att._lean_attention_cuda(q, k, v, lens)[:2])
            ok("lean two-kernel", *att._lean_attention_cuda(q, k, v, lens, two_kernel=True)[:2])
            ok("lean grid 3", *att._lean_attention_cuda(q, k, v, lens, grid=3)[:2])
            ok("split-kv", *att._split_kv_attention_cuda(q, k, v, lens)[:2])
            ok("split-kv 5", *att._split_kv_attention_cuda(q, k, v, lens, num_splits=5)[:2])
            qt = torch.randn(2, 13, hq, d, device="cuda", dtype=dtype)
            kt = torch.randn(2, 50 + 13, hkv, d, device="cuda", dtype=dtype)
            ok("tree", *kernels_cuda.tree_attention(qt, kt, torch.randn_like(kt), [-1, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, -1, 11]))
            qb = torch.randn(2, 37, hq, d, device="cuda", dtype=dtype)
            kb = torch.randn(2, 41, hkv, d, device="cuda", dtype=dtype)
            a = kernels_cuda.block_attention(qb, kb, torch.randn_like(kb), causal=True)
            ok("block", *a)
            ok("merge", *kernels_cuda.merge_attention(a[0], a[1], a[0], a[1]))
            qr = torch.randn(2, 36, hq, d, device="cuda", dtype=dtype)
            kr = torch.randn(2, 36, hkv, d, device="cuda", dtype=dtype)
            ok("ring", *kernels_cuda.ring_attention(qr, kr, torch.randn_like(kr), world_size=3, causal=True))
    torch.cuda.synchronize()
    print("attention_sanitize:", "NaN in " + ", ".join(bad) if bad else "all outputs written")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
