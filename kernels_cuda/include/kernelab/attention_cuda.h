// Host launchers of the CUDA attention kernels of issue 5 (definitions in
// src/attention_cuda.cu; in a build without CUDA, src/cuda_disabled.cpp
// defines them to throw CudaUnavailable). Plain C++ with no CUDA headers, so
// the bindings compile the same in both builds: device pointers are
// `const void*`, the stream is a cudaStream_t passed as `void*` (nullptr: the
// legacy default stream).
//
// Layouts, GQA and results are those of attention_cpu.h (C-contiguous device
// arrays; out in the input dtype, lse float32 natural log). The work
// partition is attention_schedule.h's, as in the CPU twins. Every launcher:
//  - checks sizes like the CPU twin (std::invalid_argument),
//  - makes `device` current for the call (and restores the previous one),
//  - fills out and lse with NaN bits on the stream first when `poison`
//    (tests: every element must then be written by the kernels),
//  - allocates its workspace stream-ordered (cudaMallocAsync / FreeAsync),
//  - enqueues on `stream` and returns without synchronizing,
//  - throws CudaError naming the failed call on any CUDA error (every
//    runtime call is checked, and cudaGetLastError after each launch).
// seqlens and parents are HOST int64 arrays (small; the launcher derives the
// schedule from them and copies what the kernels need).
#pragma once

#include <cstdint>

#include "kernelab/attention_cpu.h"

namespace kernelab::attention {

enum class CudaDtype { f32 = 0, f16 = 1, bf16 = 2 };

// The device holding `ptr` (cudaPointerGetAttributes); throws
// std::invalid_argument if it is not device (or managed) memory.
int cuda_pointer_device(const void* ptr);

// Which per-CTA core ran: "mma" (tensor cores, fp16/bf16 on sm_80+) or
// "scalar" (CUDA cores: float32, KERNELAB_ATTENTION_SCALAR=1, pre-sm_80, or
// an input not 16-byte aligned).
struct SplitKvLaunch {
  int splits;    // used (heuristic or num_splits)
  int sm_count;  // of the device, fed to the heuristic
  const char* core;
};

// FlashDecoding: num_splits 0 = FA2's heuristic with the device's SM count.
SplitKvLaunch split_kv_attention_cuda(const void* q, const void* k, const void* v,
                                      const std::int64_t* seqlens_host, const DecodeShape& shape,
                                      CudaDtype dtype, float scale, int num_splits, void* out,
                                      float* lse, int device, void* stream, bool poison);

struct LeanLaunch {
  std::int64_t grid;     // CTAs
  int ctas_per_sm;       // occupancy answer
  int sm_count;
  bool two_kernel;       // partials kernel + merge kernel (no inter-CTA waiting)
  const char* core;      // as SplitKvLaunch::core
};

// LeanAttention. grid 0: one wave (SMs x ctas-per-SM from the occupancy
// query); a grid over one wave, or two_kernel, uses the two-kernel form.
LeanLaunch lean_attention_cuda(const void* q, const void* k, const void* v,
                               const std::int64_t* seqlens_host, const DecodeShape& shape,
                               CudaDtype dtype, float scale, std::int64_t grid, bool two_kernel,
                               void* out, float* lse, int device, void* stream, bool poison);

// Tree attention; parents_host [T] or [B, T] (parents_per_batch), checked.
// The KV range is split (FA2's heuristic over the grid of row blocks) when
// the grid alone would leave SMs idle; returns the splits used.
int tree_attention_cuda(const void* q, const void* k, const void* v,
                         const std::int64_t* parents_host, bool parents_per_batch,
                         std::int64_t batch, std::int64_t tree_tokens, std::int64_t prefix,
                         std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim,
                         CudaDtype dtype, float scale, void* out, float* lse, int device,
                         void* stream, bool poison);

void block_attention_cuda(const void* q, const void* k, const void* v, std::int64_t batch,
                          std::int64_t q_len, std::int64_t kv_len, std::int64_t heads,
                          std::int64_t kv_heads, std::int64_t head_dim, bool causal,
                          CudaDtype dtype, float scale, void* out, float* lse, int device,
                          void* stream, bool poison);

// out/lse may alias out_a/lse_a or out_b/lse_b (row by row); no poisoning
// then (poison is ignored when they alias).
void merge_attention_cuda(const void* out_a, const float* lse_a, const void* out_b,
                          const float* lse_b, std::int64_t rows, std::int64_t head_dim,
                          CudaDtype dtype, void* out, float* lse, int device, void* stream,
                          bool poison);

// Ring attention over `world` virtual ranks on one GPU: per-rank local
// blocks (zigzag when causal), KV blocks passed around the ring through
// double buffers by device-to-device copies on a second stream ordered with
// events, per-step block partials merged in fp32 (ring_step's plan).
void ring_attention_cuda(const void* q, const void* k, const void* v, std::int64_t batch,
                         std::int64_t seq, std::int64_t heads, std::int64_t kv_heads,
                         std::int64_t head_dim, std::int64_t world, bool causal, CudaDtype dtype,
                         float scale, void* out, float* lse, int device, void* stream,
                         bool poison);

}  // namespace kernelab::attention
