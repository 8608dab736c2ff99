// CUDA kernels of issue 5: split-KV (FlashDecoding) + combine, LeanAttention
// (one-kernel with inter-CTA flags, and the two-kernel form), tree attention
// (split over the KV range when the grid is small), block attention, merge,
// and the ring driver over virtual ranks.
//
// Every kernel is a thin wrapper (which rows, which keys, where the result
// goes) around a per-CTA core that attends a pass of query rows over a key
// range [k0, k1), then hands each row's normalised (out, lse) to the wrapper:
//
//  - MmaCore (fp16 / bf16, sm_80+): FlashAttention-2's structure with
//    mma.sync m16n8k16 tensor-core instructions and fp32 accumulation. A CTA
//    of 4 warps takes up to 64 rows per pass (16 per row tile); K/V tiles of
//    64 keys are copied to shared memory with cp.async, two stages, so the
//    next tile loads while this one is used. When a pass has fewer than 4 row
//    tiles (decode: the GQA group is one tile), the warps split each K/V tile
//    between them instead and their online-softmax states are merged at the
//    end of the pass (FlashDecoding's split inside the CTA).
//  - ScalarCore (float32, or KERNELAB_ATTENTION_SCALAR=1, or pre-sm_80 or
//    misaligned inputs): CUDA cores, 16 rows per pass, 32-key chunks loaded
//    once into shared memory as fp32; lane j scores key j.
//
// Partials are fp32, merged with attention_math.h. The work partition (which
// CTA takes which tiles) is attention_schedule.h's, exactly as in the CPU
// twins (src/attention_cpu.cpp).
#include "kernelab/attention_cuda.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernelab/attention_checks.h"
#include "kernelab/attention_math.h"
#include "kernelab/attention_schedule.h"
#include "kernelab/cuda_check.h"

namespace kernelab::attention {
namespace {

using i64 = std::int64_t;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr unsigned kFullMask = 0xffffffffu;

// --- element conversion --------------------------------------------------------------

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, o));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}

__device__ __forceinline__ int load_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Masks are given per row: visible(r) returns a functor of the key position,
// built once per row so the per-score test is a compare (no division).
struct AllVisible {
  struct Row {
    __device__ bool operator()(i64) const { return true; }
  };
  __device__ Row operator()(int) const { return {}; }
};

template <typename T, int D>
__device__ __forceinline__ void store_row(T* dst, float* lse_dst, const float (&o)[D / 32], float lse) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int e = 0; e < D / 32; ++e) dst[lane + 32 * e] = from_f<T>(o[e]);
  if (lane == 0) *lse_dst = lse;
}

// --- the scalar core (CUDA cores) -------------------------------------------------------

template <typename T, int D>
struct ScalarCore {
  static constexpr int kRowsPerWarp = 4;
  static constexpr int kRows = kWarps * kRowsPerWarp;  // query rows per pass
  static constexpr int kKeyChunk = 32;                  // keys per shared-memory chunk
  static constexpr int kDynamicSmemBytes = 0;

  struct Smem {
    float q[kRows][D];           // scaled queries of the pass
    float k[kKeyChunk][D + 1];   // +1: lane j reads row j, no bank conflicts
    float v[kKeyChunk][D];       // lanes read consecutive dimensions
  };
  struct State {  // one warp's rows, in registers
    float m[kRowsPerWarp];
    float l[kRowsPerWarp];
    float acc[kRowsPerWarp][D / 32];
  };

  __device__ static Smem& smem() {
    __shared__ Smem s;
    return s;
  }

  // One pass of nrows (<= kRows) query rows over keys [k0, k1). qrow(r)
  // points at row r's D elements; key p's K row is at kbase + p * stride (V
  // likewise); visible(r)(p) masks.
  template <typename QRow, typename Visible>
  __device__ static void attend(Smem& sm, State& st, int nrows, QRow qrow, float scale,
                                const T* kbase, const T* vbase, i64 stride, i64 k0, i64 k1,
                                Visible visible) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      st.m[rr] = -INFINITY;
      st.l[rr] = 0.0f;
#pragma unroll
      for (int e = 0; e < D / 32; ++e) st.acc[rr][e] = 0.0f;
    }
    __syncthreads();  // the previous pass is done with sm
    for (int x = tid; x < kRows * D; x += kThreads) {
      const int r = x / D, i = x % D;
      sm.q[r][i] = r < nrows ? to_f(qrow(r)[i]) * scale : 0.0f;
    }
    for (i64 c0 = k0; c0 < k1; c0 += kKeyChunk) {
      const int n = static_cast<int>(k1 - c0 < kKeyChunk ? k1 - c0 : kKeyChunk);
      __syncthreads();  // everyone is done with the previous chunk
      for (int x = tid; x < kKeyChunk * D; x += kThreads) {
        const int j = x / D, i = x % D;
        float kx = 0.0f, vx = 0.0f;
        if (j < n) {
          const i64 off = (c0 + j) * stride + i;
          kx = to_f(kbase[off]);
          vx = to_f(vbase[off]);
        }
        sm.k[j][i] = kx;
        sm.v[j][i] = vx;
      }
      __syncthreads();
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        const int r = warp * kRowsPerWarp + rr;
        if (r >= nrows) break;  // warp-uniform
        const bool ok = lane < n && visible(r)(c0 + lane);
        float s = -INFINITY;
        if (ok) {
          float dot = 0.0f;
#pragma unroll 16
          for (int i = 0; i < D; ++i) dot += sm.q[r][i] * sm.k[lane][i];
          s = dot;
        }
        const float cmax = warp_max(s);
        if (cmax == -INFINITY) continue;  // nothing visible in this chunk (warp-uniform)
        const float m_new = fmaxf(st.m[rr], cmax);
        const float f = rescale_factor(st.m[rr], m_new);
        const float p = ok ? expf(s - m_new) : 0.0f;
        st.l[rr] = st.l[rr] * f + warp_sum(p);
        st.m[rr] = m_new;
#pragma unroll
        for (int e = 0; e < D / 32; ++e) st.acc[rr][e] *= f;
        for (int j = 0; j < n; ++j) {
          const float pj = __shfl_sync(kFullMask, p, j);
#pragma unroll
          for (int e = 0; e < D / 32; ++e) st.acc[rr][e] += pj * sm.v[j][lane + 32 * e];
        }
      }
    }
  }

  // The pass's rows: write(r, o, lse) with o this lane's D/32 values
  // (dimensions lane + 32 e) of row r, called by one warp per row.
  template <typename Write>
  __device__ static void finish(Smem&, const State& st, int nrows, Write write) {
    const int warp = threadIdx.x >> 5;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int r = warp * kRowsPerWarp + rr;
      if (r >= nrows) break;
      const float inv = finish_scale(st.l[rr]);
      float o[D / 32];
#pragma unroll
      for (int e = 0; e < D / 32; ++e) o[e] = st.acc[rr][e] * inv;
      write(r, o, finish_lse(st.m[rr], st.l[rr]));
    }
  }
};

// --- the tensor-core core (mma.sync m16n8k16, sm_80+) ----------------------------------------

template <typename T>
__device__ __forceinline__ std::uint32_t pack2(float a, float b) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<const std::uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const std::uint32_t*>(&h);
  }
}

// d += a (16x16, row) * b (16x8, col); fp32 accumulators. Fragment layout
// (PTX ISA, "Matrix Fragments for mma.m16n8k16"): g = lane / 4, t = lane % 4;
// a0: (g, 2t..2t+1), a1: (g+8, 2t..), a2: (g, 2t+8..), a3: (g+8, 2t+8..);
// b0: (k 2t..2t+1, n g), b1: (k 2t+8.., n g); c0,c1: (g, 2t..), c2,c3: (g+8, 2t..).
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                          std::uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
#else
  __trap();  // the host never picks MmaCore below sm_80
#endif
}

// Four transposed 8x8 b16 matrices from shared memory; lane l gives the
// address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* smem_row) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
#else
  __trap();
#endif
}

// 16 bytes global -> shared, asynchronously; src_bytes 0 writes zeros.
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src, int src_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(addr), "l"(gmem_src), "r"(src_bytes)
               : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#endif
}

template <typename T, int D>
struct MmaCore {
  static constexpr int kRowTile = 16;                 // rows of one mma tile (one warp)
  static constexpr int kRows = kWarps * kRowTile;     // query rows per pass
  static constexpr int kTileKeys = 64;                // keys per K/V tile in shared memory
  static constexpr int kChunk = 16;                   // keys per mma step
  static constexpr int kStages = 2;
  static constexpr int kPitch = D + 8;                // +16 B per row: conflict-free fragment reads
  static constexpr int kStageElems = kTileKeys * kPitch;
  // K and V stages; after the key loop the same bytes hold each warp's fp32
  // partial of its 16 rows for the cross-warp merge.
  static constexpr int kTileBytes = 2 * kStages * kStageElems * static_cast<int>(sizeof(T));
  static constexpr int kMergeBytes = kWarps * kRowTile * D * static_cast<int>(sizeof(float));
  static constexpr int kDynamicSmemBytes = kTileBytes > kMergeBytes ? kTileBytes : kMergeBytes;
  static_assert(D % 16 == 0, "head_dim must be a multiple of 16");
  static_assert(!std::is_same_v<T, float>, "MmaCore runs fp16 and bf16");

  struct Smem {
    T* k;          // [kStages][kTileKeys][kPitch]
    T* v;
    float* part;   // [kWarps][kRowTile][D], aliases k / v after the key loop
    float* m;      // [kWarps][kRowTile]
    float* l;
  };
  struct State {
    float m[2];             // rows g and g + 8 of the warp's tile
    float l[2];
    float acc[D / 8][4];    // O: D/8 n-tiles of 16 x 8
    int row_tiles;          // of this pass: 1, 2 or 4
  };

  __device__ static Smem smem() {
    extern __shared__ __align__(16) unsigned char dynamic_smem[];
    __shared__ float ml[2][kWarps * kRowTile];
    Smem s;
    s.k = reinterpret_cast<T*>(dynamic_smem);
    s.v = s.k + kStages * kStageElems;
    s.part = reinterpret_cast<float*>(dynamic_smem);
    s.m = ml[0];
    s.l = ml[1];
    return s;
  }

  __device__ static int row_tiles_of(int nrows) { return nrows <= 16 ? 1 : nrows <= 32 ? 2 : 4; }

  struct Step {
    const T* ks;     // this stage's K tile [kTileKeys][kPitch]
    const T* vs;
    int key_begin;   // the warp's first key in the tile
    i64 c0, k1;      // the tile's first key; the end of the key range
    bool lo_ok, hi_ok;  // this thread's two rows (g, g + 8 of the tile) exist
    float scale;
  };

  // One warp: its 16 rows against KC x 16 keys of the tile, from key_begin.
  // S for all KC chunks first (independent mma chains), one online-softmax
  // update per tile (not per 16 keys), then O += P V.
  template <int KC, typename RowVisible>
  __device__ static void tile_step(State& st, const std::uint32_t (&qa)[D / 16][4], const Step& w,
                                   const RowVisible& vis_lo, const RowVisible& vis_hi) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    float s[2 * KC][4];
#pragma unroll
    for (int nt = 0; nt < 2 * KC; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
    for (int kd = 0; kd < D / 16; ++kd) {
#pragma unroll
      for (int nt = 0; nt < 2 * KC; ++nt) {
        const T* krow = w.ks + (w.key_begin + nt * 8 + g) * kPitch + kd * 16 + 2 * t4;
        mma_16816<T>(s[nt], qa[kd], *reinterpret_cast<const std::uint32_t*>(krow),
                     *reinterpret_cast<const std::uint32_t*>(krow + 8));
      }
    }
    // Scale, mask, online softmax for rows lo (h = 0) and hi (h = 1).
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const bool row_ok = h ? w.hi_ok : w.lo_ok;
      const RowVisible& vis = h ? vis_hi : vis_lo;
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < 2 * KC; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const i64 pos = w.c0 + w.key_begin + nt * 8 + 2 * t4 + e;
          const bool ok = row_ok && pos < w.k1 && vis(pos);
          float& x = s[nt][2 * h + e];
          x = ok ? x * w.scale : -INFINITY;
          mx = fmaxf(mx, x);
        }
      }
      mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 2));
      const float m_new = fmaxf(st.m[h], mx);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // all masked so far: p = 0
      const float f = rescale_factor(st.m[h], m_new);
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < 2 * KC; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = s[nt][2 * h + e];
          x = __expf(x - m_use);
          sum += x;
        }
      }
      sum += __shfl_xor_sync(kFullMask, sum, 1);
      sum += __shfl_xor_sync(kFullMask, sum, 2);
      st.l[h] = st.l[h] * f + sum;
      st.m[h] = m_new;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        st.acc[n][2 * h] *= f;
        st.acc[n][2 * h + 1] *= f;
      }
    }
    // O += P V: P (16 rows x 16 keys per chunk) from the S accumulators, V
    // by ldmatrix.trans (lane l: key l % 16 of the chunk, dimension block l / 16).
#pragma unroll
    for (int kc = 0; kc < KC; ++kc) {
      const std::uint32_t pa[4] = {pack2<T>(s[2 * kc][0], s[2 * kc][1]), pack2<T>(s[2 * kc][2], s[2 * kc][3]),
                                   pack2<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                   pack2<T>(s[2 * kc + 1][2], s[2 * kc + 1][3])};
      const T* vrow = w.vs + (w.key_begin + kc * kChunk + (lane & 15)) * kPitch + (lane >> 4) * 8;
#pragma unroll
      for (int n = 0; n < D / 8; n += 2) {
        std::uint32_t vb[4];
        ldmatrix_x4_trans(vb, vrow + n * 8);
        mma_16816<T>(st.acc[n], pa, vb[0], vb[1]);
        mma_16816<T>(st.acc[n + 1], pa, vb[2], vb[3]);
      }
    }
  }

  template <typename QRow, typename Visible>
  __device__ static void attend(Smem& sm, State& st, int nrows, QRow qrow, float scale,
                                const T* kbase, const T* vbase, i64 stride, i64 k0, i64 k1,
                                Visible visible) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t4 = lane & 3;
    const int rt_count = row_tiles_of(nrows);
    const int parts = kWarps / rt_count;  // warps sharing a row tile split the keys
    const int rt = warp % rt_count, part = warp / rt_count;
    st.row_tiles = rt_count;
    st.m[0] = st.m[1] = -INFINITY;
    st.l[0] = st.l[1] = 0.0f;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) st.acc[n][0] = st.acc[n][1] = st.acc[n][2] = st.acc[n][3] = 0.0f;

    // Q fragments of rows rt*16 + g and + 8, straight from global memory.
    std::uint32_t qa[D / 16][4];
    const int r_lo = rt * kRowTile + g, r_hi = r_lo + 8;
    const T* q_lo = r_lo < nrows ? qrow(r_lo) : nullptr;
    const T* q_hi = r_hi < nrows ? qrow(r_hi) : nullptr;
    const auto vis_lo = visible(r_lo < nrows ? r_lo : 0);
    const auto vis_hi = visible(r_hi < nrows ? r_hi : 0);
#pragma unroll
    for (int kd = 0; kd < D / 16; ++kd) {
      const int c = kd * 16 + 2 * t4;
      qa[kd][0] = q_lo ? *reinterpret_cast<const std::uint32_t*>(q_lo + c) : 0u;
      qa[kd][1] = q_hi ? *reinterpret_cast<const std::uint32_t*>(q_hi + c) : 0u;
      qa[kd][2] = q_lo ? *reinterpret_cast<const std::uint32_t*>(q_lo + c + 8) : 0u;
      qa[kd][3] = q_hi ? *reinterpret_cast<const std::uint32_t*>(q_hi + c + 8) : 0u;
    }

    const i64 n_tiles = k1 > k0 ? (k1 - k0 + kTileKeys - 1) / kTileKeys : 0;
    auto load_tile = [&](i64 j) {
      const i64 c0 = k0 + j * kTileKeys;
      T* ks = sm.k + (j % kStages) * kStageElems;
      T* vs = sm.v + (j % kStages) * kStageElems;
      constexpr int kVecs = D / 8;  // 16-byte vectors per row
      for (int x = tid; x < kTileKeys * kVecs; x += kThreads) {
        const int key = x / kVecs, c = (x % kVecs) * 8;
        const i64 pos = c0 + key;
        const bool ok = pos < k1;
        const i64 off = (ok ? pos : k0) * stride + c;
        cp_async_16(ks + key * kPitch + c, kbase + off, ok ? 16 : 0);
        cp_async_16(vs + key * kPitch + c, vbase + off, ok ? 16 : 0);
      }
      cp_async_commit();
    };

    __syncthreads();  // the previous pass is done with the shared memory
    if (n_tiles > 0) load_tile(0);
    for (i64 j = 0; j < n_tiles; ++j) {
      if (j + 1 < n_tiles) {
        load_tile(j + 1);
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();  // tile j is in shared memory for every warp
      const T* ks = sm.k + (j % kStages) * kStageElems;
      const T* vs = sm.v + (j % kStages) * kStageElems;
      const i64 c0 = k0 + j * kTileKeys;
      // The warps sharing a row tile take contiguous key ranges of the tile.
      const int keys_per_part = kTileKeys / parts, key_begin = part * keys_per_part;
      if (c0 + key_begin < k1) {  // warp-uniform
        const Step step{ks, vs, key_begin, c0, k1, r_lo < nrows, r_hi < nrows, scale};
        if (parts == 1) {
          tile_step<kTileKeys / kChunk>(st, qa, step, vis_lo, vis_hi);
        } else if (parts == 2) {
          tile_step<kTileKeys / kChunk / 2>(st, qa, step, vis_lo, vis_hi);
        } else {
          tile_step<kTileKeys / kChunk / 4>(st, qa, step, vis_lo, vis_hi);
        }
      }
      __syncthreads();  // done with tile j's stage before tile j + 2 overwrites it
    }
  }

  // Merge the warps that split a row tile's keys, then one warp per row:
  // write(r, o, lse), o this lane's dimensions lane + 32 e.
  template <typename Write>
  __device__ static void finish(Smem& sm, const State& st, int nrows, Write write) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t4 = lane & 3;
    const int rt_count = st.row_tiles, parts = kWarps / rt_count;
    __syncthreads();  // (attend ends with one; kept so finish stands alone)
    float* mine = sm.part + warp * kRowTile * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const int c = n * 8 + 2 * t4;
      mine[g * D + c] = st.acc[n][0];
      mine[g * D + c + 1] = st.acc[n][1];
      mine[(g + 8) * D + c] = st.acc[n][2];
      mine[(g + 8) * D + c + 1] = st.acc[n][3];
    }
    if (t4 == 0) {
      sm.m[warp * kRowTile + g] = st.m[0];
      sm.m[warp * kRowTile + g + 8] = st.m[1];
      sm.l[warp * kRowTile + g] = st.l[0];
      sm.l[warp * kRowTile + g + 8] = st.l[1];
    }
    __syncthreads();
    for (int r = warp; r < nrows; r += kWarps) {
      const int rt = r / kRowTile, rr = r % kRowTile;
      float m = -INFINITY;
      for (int p = 0; p < parts; ++p) m = fmaxf(m, sm.m[(p * rt_count + rt) * kRowTile + rr]);
      float l = 0.0f, o[D / 32];
#pragma unroll
      for (int e = 0; e < D / 32; ++e) o[e] = 0.0f;
      if (m != -INFINITY) {
        for (int p = 0; p < parts; ++p) {
          const int w = p * rt_count + rt;
          const float wp = rescale_factor(sm.m[w * kRowTile + rr], m);
          l += wp * sm.l[w * kRowTile + rr];
#pragma unroll
          for (int e = 0; e < D / 32; ++e) o[e] += wp * sm.part[(w * kRowTile + rr) * D + lane + 32 * e];
        }
      }
      const float inv = finish_scale(l);
#pragma unroll
      for (int e = 0; e < D / 32; ++e) o[e] *= inv;
      write(r, o, finish_lse(m, l));
    }
  }
};

// --- split-KV ----------------------------------------------------------------------

// Grid (splits, kv_heads, batch): split z of (b, h) takes keys
// [z keys_per_split, (z + 1) keys_per_split) clipped to the sequence, for all
// group rows (passes of Core::kRows).
template <typename Core, typename T, int D>
__global__ void __launch_bounds__(kThreads)
split_kv_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                const i64* __restrict__ seqlens, int heads, int kv_heads, i64 max_seqlen,
                float scale, int splits, i64 keys_per_split, i64 rows_total, T* __restrict__ out,
                float* __restrict__ lse, float* __restrict__ ws_out, float* __restrict__ ws_lse) {
  auto&& sm = Core::smem();
  typename Core::State st;
  const i64 z = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int group = heads / kv_heads;
  const i64 len = seqlens ? seqlens[b] : max_seqlen;
  const i64 k0 = min(z * keys_per_split, len), k1 = min((z + 1) * keys_per_split, len);
  const i64 base = (b * max_seqlen * kv_heads + h) * D, stride = static_cast<i64>(kv_heads) * D;
  for (int r0 = 0; r0 < group; r0 += Core::kRows) {
    const int nrows = min(Core::kRows, group - r0);
    const i64 row0 = b * heads + h * group + r0;
    Core::attend(sm, st, nrows, [&](int r) { return q + (row0 + r) * D; }, scale, k + base,
                 v + base, stride, k0, k1, AllVisible{});
    Core::finish(sm, st, nrows, [&](int r, const float (&o)[D / 32], float l) {
      const i64 row = row0 + r;
      if (splits == 1) {
        store_row<T, D>(out + row * D, lse + row, o, l);
      } else {
        store_row<float, D>(ws_out + (z * rows_total + row) * D, ws_lse + z * rows_total + row, o, l);
      }
    });
  }
}

// FA2's combine: one CTA of D threads per output row.
template <typename T, int D>
__global__ void __launch_bounds__(D)
split_kv_combine_kernel(const float* __restrict__ ws_out, const float* __restrict__ ws_lse,
                        int splits, i64 rows_total, T* __restrict__ out, float* __restrict__ lse) {
  const i64 row = blockIdx.x;
  const int i = threadIdx.x;
  const float l = combine_lse(ws_lse + row, splits, rows_total);
  float acc = 0.0f;
  for (int z = 0; z < splits; ++z) {
    const float w = combine_weight(ws_lse[z * rows_total + row], l);
    if (w != 0.0f) acc += w * ws_out[(z * rows_total + row) * D + i];
  }
  out[row * D + i] = from_f<T>(acc);
  if (i == 0) lse[row] = l;
}

// --- LeanAttention -----------------------------------------------------------------

struct LeanParams {
  const i64* seqlens;  // may be null
  const i64* offsets;  // n_out + 1
  i64 n_out, total, grid, max_seqlen;
  int tile, heads, kv_heads;
  float scale;
  float* part_out;  // [grid, group, D]: a CTA's contributor partial
  float* part_lse;  // [grid, group]
  float* host_out;  // [grid, group, D]: a CTA's host partial
  float* host_lse;
  int* flags;       // [n_out]: contributors done
};

// The host's partial and those of CTAs host+1..last combined as
// FlashAttention-2 combines splits (lse = m + log sum exp(lse_c - m), weights
// exp(lse_c - lse)), written to out / lse; the CTA's threads share the
// group x D elements. The loads of different contributors are independent,
// so hundreds of contributors (a long sequence over a one-wave grid) cost a
// few passes over their partials, not a chain of dependent loads.
template <typename T, int D>
__device__ void lean_merge_output(const LeanParams& p, i64 o, i64 host, i64 last, T* out,
                                  float* lse) {
  const int group = p.heads / p.kv_heads;
  const i64 b = o / p.kv_heads, h = o % p.kv_heads;
  // Each thread: 4 consecutive dimensions of one row (16-byte loads, so more
  // bytes are in flight while the chain of contributors is read).
  for (int x = threadIdx.x; x < group * D / 4; x += blockDim.x) {
    const int g = x / (D / 4), i = (x % (D / 4)) * 4;
    const float host_lse = __ldcg(&p.host_lse[host * group + g]);
    float m = host_lse;
#pragma unroll 8
    for (i64 c = host + 1; c <= last; ++c) m = fmaxf(m, __ldcg(&p.part_lse[c * group + g]));
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float sum = 0.0f;
    if (m != -INFINITY) {  // else every partial is empty: out 0, lse -inf
      sum = __expf(host_lse - m);
      const float4 a = __ldcg(reinterpret_cast<const float4*>(&p.host_out[(host * group + g) * D + i]));
      acc = make_float4(sum * a.x, sum * a.y, sum * a.z, sum * a.w);
#pragma unroll 8
      for (i64 c = host + 1; c <= last; ++c) {
        const float w = __expf(__ldcg(&p.part_lse[c * group + g]) - m);
        const float4 v = __ldcg(reinterpret_cast<const float4*>(&p.part_out[(c * group + g) * D + i]));
        sum += w;
        acc.x += w * v.x;
        acc.y += w * v.y;
        acc.z += w * v.z;
        acc.w += w * v.w;
      }
    }
    const float inv = finish_scale(sum);
    const i64 row = b * p.heads + h * group + g;
    out[row * D + i] = from_f<T>(acc.x * inv);
    out[row * D + i + 1] = from_f<T>(acc.y * inv);
    out[row * D + i + 2] = from_f<T>(acc.z * inv);
    out[row * D + i + 3] = from_f<T>(acc.w * inv);
    if (i == 0) lse[row] = finish_lse(m, sum);
  }
}

// One CTA per blockIdx.x = c of the grid: walk [lean_cta_begin, lean_cta_end)
// segment by segment. A contributor segment (always the first) writes the
// CTA's partial and signals its output's flag; a whole output is written
// directly; a host segment (always the last when not whole) writes the host
// partial, then, when wait_and_merge, waits for last - c contributors and
// merges. Empty outputs are written by their lean_host_cta.
template <typename Core, typename T, int D>
__global__ void __launch_bounds__(kThreads)
lean_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
            LeanParams p, bool wait_and_merge, T* __restrict__ out, float* __restrict__ lse) {
  auto&& sm = Core::smem();
  typename Core::State st;
  const i64 c = blockIdx.x;
  const int group = p.heads / p.kv_heads;
  const i64 begin = lean_cta_begin(p.total, p.grid, c), end = lean_cta_end(p.total, p.grid, c);
  const i64 stride = static_cast<i64>(p.kv_heads) * D;
  i64 host_output = -1;
  for (i64 t = begin; t < end;) {
    const LeanSegment seg = lean_segment_at(p.offsets, p.n_out, end, t);
    const i64 b = seg.output / p.kv_heads, h = seg.output % p.kv_heads;
    const i64 len = p.seqlens ? p.seqlens[b] : p.max_seqlen;
    const i64 k0 = seg.tile_begin * p.tile, k1 = min(seg.tile_end * p.tile, len);
    const i64 base = (b * p.max_seqlen * p.kv_heads + h) * D;
    for (int r0 = 0; r0 < group; r0 += Core::kRows) {
      const int nrows = min(Core::kRows, group - r0);
      const i64 row0 = b * p.heads + h * group + r0;
      Core::attend(sm, st, nrows, [&](int r) { return q + (row0 + r) * D; }, p.scale,
                   k + base, v + base, stride, k0, k1, AllVisible{});
      Core::finish(sm, st, nrows, [&](int r, const float (&o)[D / 32], float l) {
        const i64 slot = c * group + r0 + r;
        if (seg.is_whole) {
          store_row<T, D>(out + (row0 + r) * D, lse + row0 + r, o, l);
        } else if (seg.is_host) {
          store_row<float, D>(p.host_out + slot * D, p.host_lse + slot, o, l);
        } else {
          store_row<float, D>(p.part_out + slot * D, p.part_lse + slot, o, l);
        }
      });
    }
    if (!seg.is_host) {  // contributor: publish the partial, then count it
      __threadfence();
      __syncthreads();
      if (threadIdx.x == 0) atomicAdd(&p.flags[seg.output], 1);
    } else if (!seg.is_whole) {
      host_output = seg.output;
    }
    t += seg.tile_end - seg.tile_begin;
  }
  if (wait_and_merge && host_output >= 0) {
    const i64 last = lean_last_cta(p.offsets, p.n_out, p.grid, host_output);
    const int need = static_cast<int>(last - c);
    __syncthreads();  // the host partial is written
    if (threadIdx.x == 0) {
      while (load_acquire(&p.flags[host_output]) < need) __nanosleep(64);
      __threadfence();
    }
    __syncthreads();
    lean_merge_output<T, D>(p, host_output, c, last, out, lse);
  }
  // Empty outputs (seqlen 0) hosted here: out 0, lse -inf.
  for (i64 o = threadIdx.x; o < p.n_out; o += blockDim.x) {
    if (p.offsets[o + 1] > p.offsets[o] || lean_host_cta(p.offsets, p.n_out, p.grid, o) != c) continue;
    const i64 b = o / p.kv_heads, h = o % p.kv_heads;
    for (int g = 0; g < group; ++g) {
      const i64 row = b * p.heads + h * group + g;
      for (int i = 0; i < D; ++i) out[row * D + i] = from_f<T>(0.0f);
      lse[row] = -INFINITY;
    }
  }
}

// The two-kernel form's second kernel: one CTA per output that several CTAs
// share.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
lean_merge_kernel(LeanParams p, T* __restrict__ out, float* __restrict__ lse) {
  const i64 o = blockIdx.x;
  if (p.offsets[o + 1] <= p.offsets[o]) return;  // empty: written by the first kernel
  const i64 host = lean_host_cta(p.offsets, p.n_out, p.grid, o);
  const i64 last = lean_last_cta(p.offsets, p.n_out, p.grid, o);
  if (last == host) return;  // whole: written by the first kernel
  lean_merge_output<T, D>(p, o, host, last, out, lse);
}

// --- tree --------------------------------------------------------------------------

// Grid (row blocks of Core::kRows over T x group rows, times splits; kv_heads;
// batch). Row r of (b, h): tree token r / group, query head h group + r %
// group. Keys: the prefix (all visible) and the tree tokens up to the block's
// last token, masked by masks[tree][token][8] (bit j: tree token j is an
// ancestor or self); split z takes keys [z keys_per_split, (z + 1)
// keys_per_split) of those. One split: out / lse; several: fp32 partials
// (rows b, t, hq), combined by split_kv_combine_kernel.
template <typename Core, typename T, int D>
__global__ void __launch_bounds__(kThreads)
tree_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
            const unsigned* __restrict__ masks, bool per_batch, int tokens, i64 prefix,
            int heads, int kv_heads, float scale, int splits, i64 keys_per_split, T* __restrict__ out,
            float* __restrict__ lse, float* __restrict__ ws_out, float* __restrict__ ws_lse) {
  auto&& sm = Core::smem();
  typename Core::State st;
  const i64 h = blockIdx.y, b = blockIdx.z;
  const int z = static_cast<int>(blockIdx.x % splits);
  const int group = heads / kv_heads;
  const int r0 = static_cast<int>(blockIdx.x / splits) * Core::kRows;
  const int nrows = min(Core::kRows, tokens * group - r0);
  const int t_last = (r0 + nrows - 1) / group;
  const i64 n_keys = prefix + tokens, visible_end = prefix + t_last + 1;
  const i64 k0 = min(z * keys_per_split, visible_end), k1 = min((z + 1) * keys_per_split, visible_end);
  const i64 base = (b * n_keys * kv_heads + h) * D, stride = static_cast<i64>(kv_heads) * D;
  const i64 rows_total = static_cast<i64>(gridDim.z) * tokens * heads;
  const unsigned* mask = masks + (per_batch ? b : 0) * tokens * 8;
  auto row_of = [&](int r) {
    const int x = r0 + r;
    return ((b * tokens + x / group) * heads + h * group + x % group);
  };
  Core::attend(
      sm, st, nrows, [&](int r) { return q + row_of(r) * D; }, scale, k + base, v + base, stride,
      k0, k1, [&](int r) {
        const unsigned* bits = mask + ((r0 + r) / group) * 8;  // the row's tree token
        return [bits, prefix](i64 pos) {
          if (pos < prefix) return true;
          const int j = static_cast<int>(pos - prefix);
          return ((__ldg(&bits[j >> 5]) >> (j & 31)) & 1u) != 0u;
        };
      });
  Core::finish(sm, st, nrows, [&](int r, const float (&o)[D / 32], float l) {
    const i64 row = row_of(r);
    if (splits == 1) {
      store_row<T, D>(out + row * D, lse + row, o, l);
    } else {
      store_row<float, D>(ws_out + (z * rows_total + row) * D, ws_lse + z * rows_total + row, o, l);
    }
  });
}

// --- block (and the ring's per-step partial) ------------------------------------------

// Grid (row blocks of Core::kRows over (q_end - q_begin) x group rows,
// kv_heads, batch): query rows [q_begin, q_end) of q [B, q_seq, H, D] against
// keys [kv_begin, kv_end) of k, v [B, kv_seq, Hkv, D], causal bottom-right
// within those ranges. Writes out (T) or, when out32 is set, out32 (fp32); lse.
template <typename Core, typename T, int D>
__global__ void __launch_bounds__(kThreads)
block_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
             i64 q_seq, i64 q_begin, i64 q_end, i64 kv_seq, i64 kv_begin, i64 kv_end, int heads,
             int kv_heads, bool causal, float scale, T* __restrict__ out, float* __restrict__ out32,
             float* __restrict__ lse) {
  auto&& sm = Core::smem();
  typename Core::State st;
  const i64 h = blockIdx.y, b = blockIdx.z;
  const int group = heads / kv_heads;
  const i64 nq = q_end - q_begin;
  const i64 r0 = static_cast<i64>(blockIdx.x) * Core::kRows;
  const int nrows = static_cast<int>(min(static_cast<i64>(Core::kRows), nq * group - r0));
  const i64 shift = (kv_end - kv_begin) - nq;  // bottom-right
  const i64 i_last = q_begin + (r0 + nrows - 1) / group;
  i64 k1 = kv_end;
  if (causal) k1 = max(kv_begin, min(kv_end, kv_begin + (i_last - q_begin) + shift + 1));
  const i64 base = (b * kv_seq * kv_heads + h) * D, stride = static_cast<i64>(kv_heads) * D;
  auto row_of = [&](int r) {
    const i64 x = r0 + r;
    return (b * q_seq + q_begin + x / group) * heads + h * group + x % group;
  };
  Core::attend(
      sm, st, nrows, [&](int r) { return q + row_of(r) * D; }, scale, k + base, v + base, stride,
      kv_begin, k1, [&](int r) {
        // Causal: key pos is visible to query i iff pos - kv_begin <= i - q_begin + shift.
        const i64 last = causal ? kv_begin + (r0 + r) / group + shift : LLONG_MAX;
        return [last](i64 pos) { return pos <= last; };
      });
  Core::finish(sm, st, nrows, [&](int r, const float (&o)[D / 32], float l) {
    const i64 row = row_of(r);
    if (out32) {
      store_row<float, D>(out32 + row * D, lse + row, o, l);
    } else {
      store_row<T, D>(out + row * D, lse + row, o, l);
    }
  });
}

// --- merge, ring helpers ---------------------------------------------------------------

// Public merge: one CTA of D threads per row; out / lse may alias an input.
template <typename T, int D>
__global__ void __launch_bounds__(D)
merge_kernel(const T* out_a, const float* lse_a, const T* out_b, const float* lse_b, T* out,
             float* lse) {
  const i64 row = blockIdx.x;
  const int i = threadIdx.x;
  const MergeWeights w = merge_weights(lse_a[row], lse_b[row]);
  const float a = to_f(out_a[row * D + i]), bv = to_f(out_b[row * D + i]);
  __syncthreads();  // every thread read the lses before one overwrites them
  out[row * D + i] = from_f<T>(w.a * a + w.b * bv);
  if (i == 0) lse[row] = w.lse;
}

// Ring: acc <- merge(acc, part) for local rows [q_begin, q_begin + nq) of a
// rank's [B, rows, H, D] block; one CTA of D threads per row.
template <int D>
__global__ void __launch_bounds__(D)
ring_accumulate_kernel(float* acc, float* acc_lse, const float* part, const float* part_lse,
                       i64 rows, i64 q_begin, i64 nq, int heads) {
  const i64 x = blockIdx.x;
  const int i = threadIdx.x;
  const i64 hq = x % heads, li = q_begin + (x / heads) % nq, b = x / (heads * nq);
  const i64 row = (b * rows + li) * heads + hq;
  const MergeWeights w = merge_weights(acc_lse[row], part_lse[row]);
  __syncthreads();
  acc[row * D + i] = w.a * acc[row * D + i] + w.b * part[row * D + i];
  if (i == 0) acc_lse[row] = w.lse;
}

// Ring: a rank's fp32 result to the global out (T) and lse.
template <typename T, int D>
__global__ void __launch_bounds__(D)
ring_scatter_kernel(const float* acc, const float* acc_lse, i64 rank, i64 world, i64 seq,
                    bool causal, i64 rows, int heads, T* out, float* lse) {
  const i64 x = blockIdx.x;
  const int i = threadIdx.x;
  const i64 hq = x % heads, li = (x / heads) % rows, b = x / (heads * rows);
  const i64 g = ring_global_row(li, rank, world, seq, causal);
  const i64 src = (b * rows + li) * heads + hq, dst = (b * seq + g) * heads + hq;
  out[dst * D + i] = from_f<T>(acc[src * D + i]);
  if (i == 0) lse[dst] = acc_lse[src];
}

__global__ void fill_kernel(float* p, i64 n, float value) {
  for (i64 x = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; x < n;
       x += static_cast<i64>(gridDim.x) * blockDim.x) {
    p[x] = value;
  }
}

// --- host helpers ------------------------------------------------------------------------

using checks::check_scale;
using checks::require;

// cudaGetLastError after every launch, naming the kernel.
void launch_check(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw CudaError(static_cast<int>(err), std::string("launch of ") + kernel + " failed: " +
                                               detail::cuda_error_text(err));
  }
}

#define KERNELAB_LAUNCH_CHECK(what) launch_check(what)

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    KERNELAB_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) KERNELAB_CUDA_CHECK(cudaSetDevice(device));
    device_ = device;
  }
  ~DeviceGuard() {
    if (previous_ != device_) (void)cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  int device_ = 0;
};

// kernelab's own stream-ordered memory pool on the current device, which
// keeps freed memory for the next call (release threshold: never). The
// default pool hands freed memory back to the driver at every
// synchronisation, so each call would map its workspace afresh: hundreds of
// microseconds, more than a whole small decode. The pool holds at most the
// largest workspace a call has needed.
cudaMemPool_t workspace_pool() {
  static std::mutex mutex;
  static std::vector<cudaMemPool_t> pools;
  int device = 0;
  KERNELAB_CUDA_CHECK(cudaGetDevice(&device));
  const std::lock_guard<std::mutex> lock(mutex);
  if (pools.size() <= static_cast<std::size_t>(device)) pools.resize(device + 1, nullptr);
  if (pools[device] == nullptr) {
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    KERNELAB_CUDA_CHECK(cudaMemPoolCreate(&pools[device], &props));
    std::uint64_t keep = UINT64_MAX;
    KERNELAB_CUDA_CHECK(cudaMemPoolSetAttribute(pools[device], cudaMemPoolAttrReleaseThreshold, &keep));
  }
  return pools[device];
}

// Stream-ordered device workspace: allocated on the stream from
// workspace_pool(), freed on it.
class Workspace {
 public:
  Workspace(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes > 0) KERNELAB_CUDA_CHECK(cudaMallocFromPoolAsync(&ptr_, bytes, workspace_pool(), stream));
  }
  ~Workspace() {
    if (ptr_ != nullptr) (void)cudaFreeAsync(ptr_, stream_);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  template <typename U>
  U* as() const { return static_cast<U*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

class Event {
 public:
  Event() { KERNELAB_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  ~Event() {
    if (event_ != nullptr) (void)cudaEventDestroy(event_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

class OwnedStream {
 public:
  OwnedStream() { KERNELAB_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~OwnedStream() {
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  }
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

template <typename T_, int D_>
struct KernelTag {
  using T = T_;
  static constexpr int D = D_;
};

template <typename T, typename F>
void dispatch_dim(std::int64_t head_dim, F&& f) {
  if (head_dim == 64) {
    f(KernelTag<T, 64>{});
  } else if (head_dim == 128) {
    f(KernelTag<T, 128>{});
  } else {
    throw std::invalid_argument("the CUDA attention kernels support head_dim 64 and 128, got " +
                                std::to_string(head_dim));
  }
}

template <typename F>
void dispatch(CudaDtype dtype, std::int64_t head_dim, F&& f) {
  switch (dtype) {
    case CudaDtype::f32: dispatch_dim<float>(head_dim, f); return;
    case CudaDtype::f16: dispatch_dim<__half>(head_dim, f); return;
    case CudaDtype::bf16: dispatch_dim<__nv_bfloat16>(head_dim, f); return;
  }
  throw std::invalid_argument("dtype must be float32, float16 or bfloat16");
}

std::size_t element_size(CudaDtype dtype) { return dtype == CudaDtype::f32 ? 4 : 2; }

// All-ones bits: NaN in float32, float16 and bfloat16.
void poison_outputs(void* out, std::size_t out_bytes, float* lse, std::size_t lse_count,
                    cudaStream_t stream) {
  KERNELAB_CUDA_CHECK(cudaMemsetAsync(out, 0xff, out_bytes, stream));
  KERNELAB_CUDA_CHECK(cudaMemsetAsync(lse, 0xff, lse_count * sizeof(float), stream));
}

void check_heads(std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim) {
  checks::check_heads(heads, kv_heads, head_dim);
  require(head_dim == 64 || head_dim == 128,
          "the CUDA attention kernels support head_dim 64 and 128, got " + std::to_string(head_dim));
  require(heads <= 65535 && kv_heads <= 65535, "at most 65535 heads");
}


void check_decode(const DecodeShape& s, const std::int64_t* seqlens) {
  require(s.batch >= 1 && s.batch <= 65535, "batch must be in [1, 65535], got " + std::to_string(s.batch));
  check_heads(s.heads, s.kv_heads, s.head_dim);
  require(s.max_seqlen >= 1, "the KV cache must hold >= 1 position");
  if (seqlens) {
    for (std::int64_t b = 0; b < s.batch; ++b) {
      require(seqlens[b] >= 0 && seqlens[b] <= s.max_seqlen,
              "seqlens[" + std::to_string(b) + "] = " + std::to_string(seqlens[b]) +
                  " is outside [0, " + std::to_string(s.max_seqlen) + "]");
    }
  }
}

int sm_count_of(int device) {
  int sms = 0;
  KERNELAB_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

// Whether fp16 / bf16 calls run MmaCore: sm_80+, 16-byte aligned arrays
// (cp.async moves 16 bytes), and KERNELAB_ATTENTION_SCALAR unset or "0" (the
// switch that runs ScalarCore instead, to compare the two on one card).
bool mma_allowed(int device, std::initializer_list<const void*> arrays) {
  const char* env = std::getenv("KERNELAB_ATTENTION_SCALAR");
  if (env != nullptr && *env != '\0' && std::string(env) != "0") return false;
  int major = 0;
  KERNELAB_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  if (major < 8) return false;
  for (const void* a : arrays) {
    if (reinterpret_cast<std::uintptr_t>(a) % 16 != 0) return false;
  }
  return true;
}

// f(Core{}) with the core that runs dtype T (float32 always ScalarCore);
// returns its name for the launch record.
template <typename T, int D, typename F>
const char* with_core(bool mma, F&& f) {
  if constexpr (!std::is_same_v<T, float>) {
    if (mma) {
      f(MmaCore<T, D>{});
      return "mma";
    }
  }
  f(ScalarCore<T, D>{});
  return "scalar";
}

// The dynamic shared memory a core's kernel is launched with, opted in when
// above the 48 KiB default.
template <typename Core, typename Kernel>
int core_smem(Kernel* kernel) {
  constexpr int bytes = Core::kDynamicSmemBytes;
  if (bytes > 48 * 1024) {
    KERNELAB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  }
  return bytes;
}

// Grid of row blocks of rows_per_block over `rows` rows (x), kv_heads (y),
// batch (z).
dim3 row_block_grid(std::int64_t rows, std::int64_t rows_per_block, std::int64_t kv_heads,
                    std::int64_t batch) {
  const std::int64_t blocks = ceil_div(rows, rows_per_block);
  require(blocks <= INT_MAX && kv_heads <= 65535 && batch <= 65535, "problem too large for one grid");
  return dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(kv_heads),
              static_cast<unsigned>(batch));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// entry points
// ---------------------------------------------------------------------------------------

int cuda_pointer_device(const void* ptr) {
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear it
    throw std::invalid_argument("not a CUDA device pointer: " + detail::cuda_error_text(err));
  }
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged) {
    throw std::invalid_argument("the array's memory is not CUDA device memory");
  }
  return attr.device;
}

SplitKvLaunch split_kv_attention_cuda(const void* q, const void* k, const void* v,
                                      const std::int64_t* seqlens_host, const DecodeShape& s,
                                      CudaDtype dtype, float scale, int num_splits, void* out,
                                      float* lse, int device, void* stream_handle, bool poison) {
  check_decode(s, seqlens_host);
  check_scale(scale);
  require(num_splits >= 0 && num_splits <= kMaxSplits,
          "num_splits must be in [1, " + std::to_string(kMaxSplits) + "] (0: heuristic), got " +
              std::to_string(num_splits));
  DeviceGuard guard(device);
  auto stream = static_cast<cudaStream_t>(stream_handle);
  const std::int64_t group = s.heads / s.kv_heads, d = s.head_dim;
  const std::int64_t tile = kv_tile_size(d);
  std::int64_t longest = 0;
  for (std::int64_t b = 0; b < s.batch; ++b) {
    longest = std::max(longest, seqlens_host ? seqlens_host[b] : s.max_seqlen);
  }
  const std::int64_t n_blocks = ceil_div(std::max<std::int64_t>(longest, 1), tile);
  const int sms = sm_count_of(device);
  const int splits = num_splits > 0
                         ? num_splits
                         : num_splits_heuristic(split_kv_ctas(s.batch, s.kv_heads, group), n_blocks, sms);
  const std::int64_t keys_per_split = split_tiles_per_split(n_blocks, splits) * tile;
  const std::int64_t rows = s.batch * s.heads;
  if (poison) poison_outputs(out, rows * d * element_size(dtype), lse, rows, stream);
  Workspace seqlens_dev(seqlens_host ? s.batch * sizeof(std::int64_t) : 0, stream);
  if (seqlens_host) {
    KERNELAB_CUDA_CHECK(cudaMemcpyAsync(seqlens_dev.as<void>(), seqlens_host,
                                        s.batch * sizeof(std::int64_t), cudaMemcpyHostToDevice, stream));
  }
  const std::size_t ws_rows = splits > 1 ? static_cast<std::size_t>(splits * rows) : 0;
  Workspace ws_out(ws_rows * d * sizeof(float), stream), ws_lse(ws_rows * sizeof(float), stream);
  const bool mma = mma_allowed(device, {q, k, v});
  const char* core = nullptr;
  dispatch(dtype, d, [&](auto tag) {
    using T = typename decltype(tag)::T;
    constexpr int D = decltype(tag)::D;
    core = with_core<T, D>(mma, [&](auto core_tag) {
      using Core = decltype(core_tag);
      auto* kernel = split_kv_kernel<Core, T, D>;
      const int smem = core_smem<Core>(kernel);
      kernel<<<dim3(splits, static_cast<unsigned>(s.kv_heads), static_cast<unsigned>(s.batch)), kThreads,
               smem, stream>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
          seqlens_dev.as<i64>(), static_cast<int>(s.heads), static_cast<int>(s.kv_heads), s.max_seqlen,
          scale, splits, keys_per_split, rows, static_cast<T*>(out), lse, ws_out.as<float>(),
          ws_lse.as<float>());
      KERNELAB_LAUNCH_CHECK("split_kv_kernel");
    });
    if (splits > 1) {
      require(rows <= INT_MAX, "too many rows");
      split_kv_combine_kernel<T, D><<<static_cast<unsigned>(rows), D, 0, stream>>>(
          ws_out.as<float>(), ws_lse.as<float>(), splits, rows, static_cast<T*>(out), lse);
      KERNELAB_LAUNCH_CHECK("split_kv_combine_kernel");
    }
  });
  return SplitKvLaunch{splits, sms, core};
}

LeanLaunch lean_attention_cuda(const void* q, const void* k, const void* v,
                               const std::int64_t* seqlens_host, const DecodeShape& s,
                               CudaDtype dtype, float scale, std::int64_t grid, bool two_kernel,
                               void* out, float* lse, int device, void* stream_handle, bool poison) {
  check_decode(s, seqlens_host);
  check_scale(scale);
  require(grid >= 0, "grid must be >= 1 CTA (0: one wave), got " + std::to_string(grid));
  DeviceGuard guard(device);
  auto stream = static_cast<cudaStream_t>(stream_handle);
  const std::int64_t group = s.heads / s.kv_heads, d = s.head_dim;
  const int tile = kv_tile_size(d);
  const std::int64_t n_out = s.batch * s.kv_heads;
  std::vector<std::int64_t> offsets(n_out + 1);
  const std::int64_t total =
      lean_tile_offsets(seqlens_host, s.batch, s.max_seqlen, s.kv_heads, tile, offsets.data());
  LeanLaunch info{};
  info.sm_count = sm_count_of(device);
  const std::int64_t rows = s.batch * s.heads;
  if (poison) poison_outputs(out, rows * d * element_size(dtype), lse, rows, stream);

  const bool mma = mma_allowed(device, {q, k, v});
  dispatch(dtype, d, [&](auto tag) {
    using T = typename decltype(tag)::T;
    constexpr int D = decltype(tag)::D;
    info.core = with_core<T, D>(mma, [&](auto core_tag) {
    using Core = decltype(core_tag);
    auto* kernel = lean_kernel<Core, T, D>;
    const int smem = core_smem<Core>(kernel);
    int per_sm = 0;
    KERNELAB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
    require(per_sm >= 1, "lean_kernel cannot be resident on this device");
    const std::int64_t one_wave = static_cast<std::int64_t>(info.sm_count) * per_sm;
    info.ctas_per_sm = per_sm;
    // One wave, but never an empty CTA (a short problem has fewer tiles).
    info.grid = grid > 0 ? grid : std::max<std::int64_t>(1, std::min(one_wave, total));
    info.two_kernel = two_kernel || info.grid > one_wave;
    require(info.grid <= INT_MAX && n_out <= INT_MAX, "problem too large for one grid");

    // One host-to-device copy: offsets, seqlens, and the flags (zero on
    // every launch).
    const std::int64_t n_seq = seqlens_host ? s.batch : 0, n_flag_words = ceil_div(n_out, 2);
    std::vector<std::int64_t> staged(n_out + 1 + n_seq + n_flag_words, 0);
    std::copy_n(offsets.data(), n_out + 1, staged.data());
    if (seqlens_host) std::copy_n(seqlens_host, n_seq, staged.data() + n_out + 1);
    Workspace staged_dev(staged.size() * sizeof(std::int64_t), stream);
    KERNELAB_CUDA_CHECK(cudaMemcpyAsync(staged_dev.as<void>(), staged.data(), staged.size() * sizeof(std::int64_t),
                                        cudaMemcpyHostToDevice, stream));
    const std::size_t slots = static_cast<std::size_t>(info.grid * group);
    Workspace part_out(slots * D * sizeof(float), stream), part_lse(slots * sizeof(float), stream);
    Workspace host_out(slots * D * sizeof(float), stream), host_lse(slots * sizeof(float), stream);

    LeanParams p{};
    p.offsets = staged_dev.as<i64>();
    p.seqlens = seqlens_host ? p.offsets + n_out + 1 : nullptr;
    p.n_out = n_out;
    p.total = total;
    p.grid = info.grid;
    p.max_seqlen = s.max_seqlen;
    p.tile = tile;
    p.heads = static_cast<int>(s.heads);
    p.kv_heads = static_cast<int>(s.kv_heads);
    p.scale = scale;
    p.part_out = part_out.as<float>();
    p.part_lse = part_lse.as<float>();
    p.host_out = host_out.as<float>();
    p.host_lse = host_lse.as<float>();
    p.flags = reinterpret_cast<int*>(staged_dev.as<i64>() + n_out + 1 + n_seq);
    kernel<<<static_cast<unsigned>(info.grid), kThreads, smem, stream>>>(
        static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), p,
        !info.two_kernel, static_cast<T*>(out), lse);
    KERNELAB_LAUNCH_CHECK("lean_kernel");
    if (info.two_kernel && n_out > 0) {
      lean_merge_kernel<T, D><<<static_cast<unsigned>(n_out), kThreads, 0, stream>>>(
          p, static_cast<T*>(out), lse);
      KERNELAB_LAUNCH_CHECK("lean_merge_kernel");
    }
    });
  });
  return info;
}

int tree_attention_cuda(const void* q, const void* k, const void* v,
                         const std::int64_t* parents, bool parents_per_batch, std::int64_t batch,
                         std::int64_t tree_tokens, std::int64_t prefix, std::int64_t heads,
                         std::int64_t kv_heads, std::int64_t head_dim, CudaDtype dtype,
                         float scale, void* out, float* lse, int device, void* stream_handle,
                         bool poison) {
  require(batch >= 1 && batch <= 65535, "batch must be in [1, 65535], got " + std::to_string(batch));
  check_heads(heads, kv_heads, head_dim);
  check_scale(scale);
  const std::int64_t n_trees = parents_per_batch ? batch : 1;
  checks::check_tree(tree_tokens, prefix, parents, n_trees, parents_per_batch);
  // Ancestor-or-self bitmasks, 256 bits (8 words) per token.
  std::vector<unsigned> masks(static_cast<std::size_t>(n_trees * tree_tokens * 8), 0u);
  for (std::int64_t b = 0; b < n_trees; ++b) {
    unsigned* m = &masks[b * tree_tokens * 8];
    for (std::int64_t i = 0; i < tree_tokens; ++i) {
      const std::int64_t p = parents[b * tree_tokens + i];
      if (p >= 0) std::copy_n(m + p * 8, 8, m + i * 8);
      m[i * 8 + i / 32] |= 1u << (i % 32);
    }
  }
  DeviceGuard guard(device);
  auto stream = static_cast<cudaStream_t>(stream_handle);
  const std::int64_t rows = batch * tree_tokens * heads;
  if (poison) poison_outputs(out, rows * head_dim * element_size(dtype), lse, rows, stream);
  Workspace masks_dev(masks.size() * sizeof(unsigned), stream);
  // Pageable source: returns once the data is staged, so `masks` may go.
  KERNELAB_CUDA_CHECK(cudaMemcpyAsync(masks_dev.as<void>(), masks.data(), masks.size() * sizeof(unsigned),
                                      cudaMemcpyHostToDevice, stream));
  const std::int64_t group = heads / kv_heads;
  const std::int64_t tile = kv_tile_size(head_dim);
  const std::int64_t n_blocks = ceil_div(prefix + tree_tokens, tile);
  const int sms = sm_count_of(device);
  const bool mma = mma_allowed(device, {q, k, v});
  int splits = 1;
  dispatch(dtype, head_dim, [&](auto tag) {
    using T = typename decltype(tag)::T;
    constexpr int D = decltype(tag)::D;
    with_core<T, D>(mma, [&](auto core_tag) {
      using Core = decltype(core_tag);
      // Few row blocks (one sequence, a small tree) would leave most SMs
      // idle on a long prefix: split the KV range as FlashDecoding does.
      const dim3 blocks = row_block_grid(tree_tokens * group, Core::kRows, kv_heads, batch);
      splits = num_splits_heuristic(static_cast<std::int64_t>(blocks.x) * kv_heads * batch, n_blocks, sms);
      const std::int64_t keys_per_split = split_tiles_per_split(n_blocks, splits) * tile;
      require(static_cast<std::int64_t>(blocks.x) * splits <= INT_MAX, "problem too large for one grid");
      const std::size_t ws_rows = splits > 1 ? static_cast<std::size_t>(splits * rows) : 0;
      Workspace ws_out(ws_rows * D * sizeof(float), stream), ws_lse(ws_rows * sizeof(float), stream);
      auto* kernel = tree_kernel<Core, T, D>;
      const int smem = core_smem<Core>(kernel);
      kernel<<<dim3(blocks.x * splits, blocks.y, blocks.z), kThreads, smem, stream>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
          masks_dev.as<unsigned>(), parents_per_batch, static_cast<int>(tree_tokens), prefix,
          static_cast<int>(heads), static_cast<int>(kv_heads), scale, splits, keys_per_split,
          static_cast<T*>(out), lse, ws_out.as<float>(), ws_lse.as<float>());
      KERNELAB_LAUNCH_CHECK("tree_kernel");
      if (splits > 1) {
        require(rows <= INT_MAX, "too many rows");
        split_kv_combine_kernel<T, D><<<static_cast<unsigned>(rows), D, 0, stream>>>(
            ws_out.as<float>(), ws_lse.as<float>(), splits, rows, static_cast<T*>(out), lse);
        KERNELAB_LAUNCH_CHECK("split_kv_combine_kernel (tree)");
      }
    });
  });
  return splits;
}

void block_attention_cuda(const void* q, const void* k, const void* v, std::int64_t batch,
                          std::int64_t q_len, std::int64_t kv_len, std::int64_t heads,
                          std::int64_t kv_heads, std::int64_t head_dim, bool causal,
                          CudaDtype dtype, float scale, void* out, float* lse, int device,
                          void* stream_handle, bool poison) {
  require(batch >= 1 && batch <= 65535, "batch must be in [1, 65535], got " + std::to_string(batch));
  require(q_len >= 1 && kv_len >= 1, "q and k must hold >= 1 position");
  check_heads(heads, kv_heads, head_dim);
  check_scale(scale);
  DeviceGuard guard(device);
  auto stream = static_cast<cudaStream_t>(stream_handle);
  const std::int64_t rows = batch * q_len * heads;
  if (poison) poison_outputs(out, rows * head_dim * element_size(dtype), lse, rows, stream);
  const bool mma = mma_allowed(device, {q, k, v});
  dispatch(dtype, head_dim, [&](auto tag) {
    using T = typename decltype(tag)::T;
    constexpr int D = decltype(tag)::D;
    with_core<T, D>(mma, [&](auto core_tag) {
      using Core = decltype(core_tag);
      auto* kernel = block_kernel<Core, T, D>;
      const int smem = core_smem<Core>(kernel);
      const dim3 grid = row_block_grid(q_len * (heads / kv_heads), Core::kRows, kv_heads, batch);
      kernel<<<grid, kThreads, smem, stream>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), q_len, 0,
          q_len, kv_len, 0, kv_len, static_cast<int>(heads), static_cast<int>(kv_heads), causal,
          scale, static_cast<T*>(out), nullptr, lse);
      KERNELAB_LAUNCH_CHECK("block_kernel");
    });
  });
}

void merge_attention_cuda(const void* out_a, const float* lse_a, const void* out_b,
                          const float* lse_b, std::int64_t rows, std::int64_t head_dim,
                          CudaDtype dtype, void* out, float* lse, int device, void* stream_handle,
                          bool poison) {
  require(rows >= 0 && rows <= INT_MAX, "rows must be in [0, 2^31), got " + std::to_string(rows));
  require(head_dim == 64 || head_dim == 128,
          "the CUDA attention kernels support head_dim 64 and 128, got " + std::to_string(head_dim));
  if (rows == 0) return;
  DeviceGuard guard(device);
  auto stream = static_cast<cudaStream_t>(stream_handle);
  const bool aliased = out == out_a || out == out_b || lse == lse_a || lse == lse_b;
  if (poison && !aliased) poison_outputs(out, rows * head_dim * element_size(dtype), lse, rows, stream);
  dispatch(dtype, head_dim, [&](auto tag) {
    using T = typename decltype(tag)::T;
    constexpr int D = decltype(tag)::D;
    merge_kernel<T, D><<<static_cast<unsigned>(rows), D, 0, stream>>>(
        static_cast<const T*>(out_a), lse_a, static_cast<const T*>(out_b), lse_b,
        static_cast<T*>(out), lse);
    KERNELAB_LAUNCH_CHECK("merge_kernel");
  });
}

void ring_attention_cuda(const void* q, const void* k, const void* v, std::int64_t batch,
                         std::int64_t seq, std::int64_t heads, std::int64_t kv_heads,
                         std::int64_t head_dim, std::int64_t world, bool causal, CudaDtype dtype,
                         float scale, void* out, float* lse, int device, void* stream_handle,
                         bool poison) {
  require(batch >= 1 && batch <= 65535, "batch must be in [1, 65535], got " + std::to_string(batch));
  require(seq >= 1, "the sequence must hold >= 1 position");
  check_heads(heads, kv_heads, head_dim);
  check_scale(scale);
  require(world >= 1, "world_size must be >= 1, got " + std::to_string(world));
  const std::int64_t parts = causal ? 2 * world : world;
  require(seq % parts == 0, "the sequence length " + std::to_string(seq) + " must be a multiple of " +
                                (causal ? "2 x world_size = " : "world_size = ") + std::to_string(parts));
  DeviceGuard guard(device);
  auto stream = static_cast<cudaStream_t>(stream_handle);
  const bool mma = mma_allowed(device, {q, k, v});
  const std::int64_t d = head_dim, rows = ring_block_rows(seq, world);
  const std::size_t es = element_size(dtype);
  const std::int64_t q_row = heads * d, kv_row = kv_heads * d;  // elements per position
  const std::size_t q_block = static_cast<std::size_t>(batch * rows * q_row);
  const std::size_t kv_block = static_cast<std::size_t>(batch * rows * kv_row);
  const std::size_t local_rows = static_cast<std::size_t>(batch * rows * heads);
  require(local_rows <= INT_MAX, "problem too large for one grid");
  if (poison) poison_outputs(out, batch * seq * q_row * es, lse, batch * seq * heads, stream);

  // Per rank: its Q block, two KV buffers (double buffering: compute reads
  // one while the ring fills the other), fp32 accumulators.
  Workspace q_blocks(world * q_block * es, stream);
  Workspace k_bufs(2 * world * kv_block * es, stream), v_bufs(2 * world * kv_block * es, stream);
  Workspace acc(world * local_rows * d * sizeof(float), stream);
  Workspace acc_lse(world * local_rows * sizeof(float), stream);
  Workspace part(local_rows * d * sizeof(float), stream), part_lse(local_rows * sizeof(float), stream);
  auto q_of = [&](std::int64_t r) { return q_blocks.as<char>() + r * q_block * es; };
  auto k_of = [&](int buf, std::int64_t r) { return k_bufs.as<char>() + (buf * world + r) * kv_block * es; };
  auto v_of = [&](int buf, std::int64_t r) { return v_bufs.as<char>() + (buf * world + r) * kv_block * es; };

  // Gather: rank r's local rows from the global [B, S, ., D] arrays (one
  // chunk, or the two zigzag chunks), one 2-D copy per chunk.
  auto gather = [&](char* dst, const void* src, std::int64_t row_elems, std::int64_t rank) {
    const std::int64_t chunks = causal ? 2 : 1, chunk_rows = rows / chunks;
    for (std::int64_t ch = 0; ch < chunks; ++ch) {
      const std::int64_t local0 = ch * chunk_rows;
      const std::int64_t global0 = ring_global_row(local0, rank, world, seq, causal);
      KERNELAB_CUDA_CHECK(cudaMemcpy2DAsync(
          dst + local0 * row_elems * es, rows * row_elems * es,
          static_cast<const char*>(src) + global0 * row_elems * es, seq * row_elems * es,
          chunk_rows * row_elems * es, batch, cudaMemcpyDeviceToDevice, stream));
    }
  };
  for (std::int64_t r = 0; r < world; ++r) {
    gather(q_of(r), q, q_row, r);
    gather(k_of(0, r), k, kv_row, r);
    gather(v_of(0, r), v, kv_row, r);
  }
  KERNELAB_CUDA_CHECK(cudaMemsetAsync(acc.as<void>(), 0, world * local_rows * d * sizeof(float), stream));
  {
    const int blocks = static_cast<int>(std::min<std::int64_t>(ceil_div(world * local_rows, 256), 4096));
    fill_kernel<<<blocks, 256, 0, stream>>>(acc_lse.as<float>(), world * local_rows, -INFINITY);
    KERNELAB_LAUNCH_CHECK("fill_kernel");
  }

  // The ring. Step t: rank r holds in buffer t % 2 the KV block of rank
  // (r - t) mod W; the comm stream meanwhile copies each rank's
  // left neighbour's buffer t % 2 into its buffer (t + 1) % 2 (what a real
  // ring would receive over NVLink; TODO: with several GPUs, peer copies).
  OwnedStream comm;
  Event ready;
  std::vector<Event> computed(static_cast<std::size_t>(world)), copied(static_cast<std::size_t>(world));
  KERNELAB_CUDA_CHECK(cudaEventRecord(ready.get(), stream));
  KERNELAB_CUDA_CHECK(cudaStreamWaitEvent(comm.get(), ready.get(), 0));
  for (std::int64_t t = 0; t < world; ++t) {
    const int cur = static_cast<int>(t % 2), nxt = 1 - cur;
    if (t + 1 < world) {
      // Buffer nxt was read by step t - 1's kernels: wait for them.
      if (t >= 1) KERNELAB_CUDA_CHECK(cudaStreamWaitEvent(comm.get(), computed[t - 1].get(), 0));
      for (std::int64_t r = 0; r < world; ++r) {
        const std::int64_t left = (r - 1 + world) % world;
        KERNELAB_CUDA_CHECK(cudaMemcpyAsync(k_of(nxt, r), k_of(cur, left), kv_block * es,
                                            cudaMemcpyDeviceToDevice, comm.get()));
        KERNELAB_CUDA_CHECK(cudaMemcpyAsync(v_of(nxt, r), v_of(cur, left), kv_block * es,
                                            cudaMemcpyDeviceToDevice, comm.get()));
      }
      KERNELAB_CUDA_CHECK(cudaEventRecord(copied[t].get(), comm.get()));
    }
    dispatch(dtype, d, [&](auto tag) {
      using T = typename decltype(tag)::T;
      constexpr int D = decltype(tag)::D;
      with_core<T, D>(mma, [&](auto core_tag) {
      using Core = decltype(core_tag);
      auto* kernel = block_kernel<Core, T, D>;
      const int smem = core_smem<Core>(kernel);
      for (std::int64_t r = 0; r < world; ++r) {
        const RingStep rs = ring_step(r, t, world, seq, causal);
        const std::int64_t nq = rs.q_end - rs.q_begin;
        const dim3 grid = row_block_grid(nq * (heads / kv_heads), Core::kRows, kv_heads, batch);
        kernel<<<grid, kThreads, smem, stream>>>(
            reinterpret_cast<const T*>(q_of(r)), reinterpret_cast<const T*>(k_of(cur, r)),
            reinterpret_cast<const T*>(v_of(cur, r)), rows, rs.q_begin, rs.q_end, rows, rs.kv_begin,
            rs.kv_end, static_cast<int>(heads), static_cast<int>(kv_heads), rs.causal, scale,
            nullptr, part.as<float>(), part_lse.as<float>());
        KERNELAB_LAUNCH_CHECK("block_kernel (ring step)");
        float* acc_r = acc.as<float>() + r * local_rows * d;
        float* acc_lse_r = acc_lse.as<float>() + r * local_rows;
        ring_accumulate_kernel<D><<<static_cast<unsigned>(batch * nq * heads), D, 0, stream>>>(
            acc_r, acc_lse_r, part.as<float>(), part_lse.as<float>(), rows, rs.q_begin, nq,
            static_cast<int>(heads));
        KERNELAB_LAUNCH_CHECK("ring_accumulate_kernel");
      }
      });
    });
    KERNELAB_CUDA_CHECK(cudaEventRecord(computed[t].get(), stream));
    if (t + 1 < world) KERNELAB_CUDA_CHECK(cudaStreamWaitEvent(stream, copied[t].get(), 0));
  }
  dispatch(dtype, d, [&](auto tag) {
    using T = typename decltype(tag)::T;
    constexpr int D = decltype(tag)::D;
    for (std::int64_t r = 0; r < world; ++r) {
      ring_scatter_kernel<T, D><<<static_cast<unsigned>(local_rows), D, 0, stream>>>(
          acc.as<float>() + r * local_rows * d, acc_lse.as<float>() + r * local_rows, r, world, seq,
          causal, rows, static_cast<int>(heads), static_cast<T*>(out), lse);
      KERNELAB_LAUNCH_CHECK("ring_scatter_kernel");
    }
  });
}

}  // namespace kernelab::attention
