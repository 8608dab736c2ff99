// CPU twins of the attention kernels of issue 5. Each computes, per "CTA",
// exactly the key ranges that attention_schedule.h gives the CUDA kernel,
// with fp32 accumulation, an online softmax and natural-log LSE, fp32
// partials (out, lse) and the LSE merge of attention_math.h. So a CPU result
// exercises the partitioning: a wrong range or a lost partial shows up.
//
// All arrays are C-contiguous; element type T is float or Half (IEEE
// binary16 bits). Outputs: out in T, lse in float (natural log; -inf for a
// row that saw no key, whose out is 0). Every function checks its sizes and
// throws std::invalid_argument before touching memory; pointers are trusted.
//
// Layouts (B batch, H query heads, Hkv KV heads, H % Hkv == 0, query head h
// uses KV head h / (H / Hkv), D head_dim):
//   decode  q [B, H, D],      k, v [B, S, Hkv, D], out [B, H, D],     lse [B, H]
//   tree    q [B, T, H, D],   k, v [B, P+T, Hkv, D], out [B, T, H, D], lse [B, T, H]
//   block   q [B, Sq, H, D],  k, v [B, Sk, Hkv, D],  out [B, Sq, H, D], lse [B, Sq, H]
//   ring    q [B, S, H, D],   k, v [B, S, Hkv, D],   out [B, S, H, D],  lse [B, S, H]
//   merge   out_* [N, D], lse_* [N]
#pragma once

#include <cstdint>

namespace kernelab {

// IEEE binary16 as stored by numpy's float16; converted on the CPU with
// round-to-nearest-even.
struct Half {
  std::uint16_t bits;
};

float half_to_float(Half h);
Half float_to_half(float f);

namespace attention {

// Largest tree of tree_attention (the CUDA kernel keeps a tree token's
// ancestors as a bitmask of this many bits).
constexpr std::int64_t kMaxTreeTokens = 256;

// Decode (one query token per sequence) against a KV cache of S positions;
// seqlens (may be null: all S) gives each sequence's length, 0 <= len <= S
// (0: out 0, lse -inf).
struct DecodeShape {
  std::int64_t batch;
  std::int64_t heads;
  std::int64_t kv_heads;
  std::int64_t head_dim;
  std::int64_t max_seqlen;  // S, the cache's second dimension
};

// LeanAttention: stream-K over (batch, kv_head, kv_tile) on `grid` CTAs,
// tiles of `tile` keys (0: kv_tile_size(head_dim)); see attention_schedule.h.
template <typename T>
void lean_attention_cpu(const T* q, const T* k, const T* v, const std::int64_t* seqlens,
                        const DecodeShape& shape, float scale, std::int64_t grid,
                        std::int64_t tile, T* out, float* lse);

// FlashDecoding: num_splits (0: FA2's heuristic for sm_count SMs) splits of
// the KV tiles, partials in fp32, then the combine. Returns the splits used.
template <typename T>
int split_kv_attention_cpu(const T* q, const T* k, const T* v, const std::int64_t* seqlens,
                           const DecodeShape& shape, float scale, int num_splits,
                           std::int64_t sm_count, T* out, float* lse);

// Tree attention: T tree tokens (1 <= T <= kMaxTreeTokens) after a P-token
// prefix (P >= 0). parents [T] (parents_per_batch false) or [B, T]: -1 for a
// root, else an earlier token (0 <= parent < i). Tree token i attends to the
// whole prefix and to its ancestors-or-self among the tree tokens (key
// position P + j). The prefix is read once per (batch, KV head) for all T
// query tokens of the group.
template <typename T>
void tree_attention_cpu(const T* q, const T* k, const T* v, const std::int64_t* parents,
                        bool parents_per_batch, std::int64_t batch, std::int64_t tree_tokens,
                        std::int64_t prefix, std::int64_t heads, std::int64_t kv_heads,
                        std::int64_t head_dim, float scale, T* out, float* lse);

// One Q block against one KV block; causal is bottom-right aligned: query i
// sees key j iff j <= i + (Sk - Sq) (rows that see nothing: out 0, lse -inf).
template <typename T>
void block_attention_cpu(const T* q, const T* k, const T* v, std::int64_t batch,
                         std::int64_t q_len, std::int64_t kv_len, std::int64_t heads,
                         std::int64_t kv_heads, std::int64_t head_dim, bool causal, float scale,
                         T* out, float* lse);

// Merge two partial results of the same rows (LSE merge; -inf rows are
// empty). out may alias out_a or out_b, lse lse_a or lse_b (row by row).
template <typename T>
void merge_attention_cpu(const T* out_a, const float* lse_a, const T* out_b, const float* lse_b,
                         std::int64_t rows, std::int64_t head_dim, T* out, float* lse);

// Ring attention over `world` virtual ranks (contiguous layout, or zigzag
// when causal; see attention_schedule.h): each rank's Q block against every
// KV block in ring order, partials merged in fp32. Equals full attention
// (causal: top-left == bottom-right, Sq == Sk). S % world == 0, and
// S % (2 world) == 0 when causal.
template <typename T>
void ring_attention_cpu(const T* q, const T* k, const T* v, std::int64_t batch, std::int64_t seq,
                        std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim,
                        std::int64_t world, bool causal, float scale, T* out, float* lse);

}  // namespace attention
}  // namespace kernelab
