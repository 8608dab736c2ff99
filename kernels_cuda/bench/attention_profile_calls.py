"""A few attention calls for Nsight Compute (the kernels the benchmark found
slowest against their bound), fp16, one call each (Nsight Compute replays
each profiled kernel, so no warm-up is needed):

    ncu --section SpeedOfLight --section Occupancy --section WarpStateStats \
        -k regex:"tree_kernel|block_kernel|lean_kernel" -c 3 \
        python kernels_cuda/bench/attention_profile_calls.py

- tree: T = 64 binary tree over a 32k prefix, B 1, 32 heads (MHA), d 128;
- block: 4096 x 4096, 32 query / 8 KV heads, non-causal (a ring step);
- lean: one sequence of 32k, 8 query heads / 1 KV head (one output, so the
  host CTA merges every other CTA's partial).
"""

from __future__ import annotations


def main() -> None:
    import torch

    import kernels_cuda
    from kernels_cuda import _attention as att

    h = torch.float16
    dev = "cuda"
    t = 64
    parents = [-1] + [(i - 1) // 2 for i in range(1, t)]
    q = torch.randn(1, t, 32, 128, device=dev, dtype=h)
    k = torch.randn(1, 32768 + t, 32, 128, device=dev, dtype=h)
    v = torch.randn_like(k)
    qb = torch.randn(1, 4096, 32, 128, device=dev, dtype=h)
    kb = torch.randn(1, 4096, 8, 128, device=dev, dtype=h)
    vb = torch.randn_like(kb)
    ql = torch.randn(1, 8, 128, device=dev, dtype=h)
    kl = torch.randn(1, 32768, 1, 128, device=dev, dtype=h)
    vl = torch.randn_like(kl)
    kernels_cuda.tree_attention(q, k, v, parents)
    kernels_cuda.block_attention(qb, kb, vb)
    att._lean_attention_cuda(ql, kl, vl)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
