// Work partitioning of the attention kernels (issue 5), written once for the
// CPU twins (src/attention_cpu.cpp) and the CUDA kernels: one piece of
// schedule code decides the CTA ranges for both, so they cannot drift.
//
// Plain C++17 with no allocation, no exceptions and no standard library calls
// that CUDA device code lacks; every function is KERNELAB_HOST_DEVICE.
// Callers validate their arguments (positive sizes, grid >= 1).
//
// What is here:
//  (a) FlashAttention-2's num_splits_heuristic (split-KV / FlashDecoding);
//  (b) LeanAttention's stream-K partition of the flattened
//      (batch, kv_head, kv_tile) space over a one-wave grid, with the host
//      CTA and the contributors of every output;
//  (c) the zigzag layout of causal ring attention and the per-step plan.
#pragma once

#include <cstdint>

#include "kernelab/host_device.h"

namespace kernelab::attention {

// ---------------------------------------------------------------------------
// Common
// ---------------------------------------------------------------------------

KERNELAB_INLINE_HOST_DEVICE std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

// Keys per KV tile (FlashAttention-2's kBlockN for the split-KV kernel,
// sim.kernel.schedules.split_kv.block_n): 256 / 128 / 64 for head_dim <= 64 /
// <= 128 / above. The LeanTile of lean_attention is the same tile.
KERNELAB_INLINE_HOST_DEVICE int kv_tile_size(std::int64_t head_dim) {
  return head_dim <= 64 ? 256 : (head_dim <= 128 ? 128 : 64);
}

// Query rows per split-KV CTA (kBlockM): the query heads of a GQA group are
// packed into the rows of one tile when there is one query token.
constexpr int kSplitKvRowBlock = 64;
constexpr int kMaxSplits = 128;  // flash_api.cpp
// SM count the CPU twins assume when none is given (H100 SXM).
constexpr int kDefaultSmCount = 132;

// ---------------------------------------------------------------------------
// (a) split-KV: FlashAttention-2's num_splits_heuristic
// ---------------------------------------------------------------------------

// Whether `splits` changes ceil(n_blocks / splits) from splits - 1's
// (FA2's is_split_eligible).
KERNELAB_INLINE_HOST_DEVICE bool split_eligible(std::int64_t splits, std::int64_t n_blocks) {
  return splits == 1 || ceil_div(n_blocks, splits) != ceil_div(n_blocks, splits - 1);
}

// FA2's num_splits_heuristic with slots = 2 x sm_count ("128 threads per
// block"), as sim.kernel.schedules.split_kv.num_splits computes it (same
// float64 operations, so the same answer): no split when ctas >= 0.8 slots;
// else over eligible s <= min(max_splits, slots, n_blocks), the wave
// efficiency e(s) = w / ceil(w), w = ctas s / slots; the smallest s with
// e(s) >= 0.85 max e. ctas >= 1, sm_count >= 1; n_blocks < 1 counts as 1.
KERNELAB_INLINE_HOST_DEVICE int num_splits_heuristic(std::int64_t ctas, std::int64_t n_blocks,
                                                     std::int64_t sm_count,
                                                     int max_splits = kMaxSplits) {
  const std::int64_t slots = 2 * sm_count;
  const std::int64_t n = n_blocks < 1 ? 1 : n_blocks;
  if (static_cast<double>(ctas) >= 0.8 * static_cast<double>(slots)) return 1;
  std::int64_t limit = max_splits;
  if (slots < limit) limit = slots;
  if (n < limit) limit = n;
  double best = 0.0;
  for (std::int64_t s = 1; s <= limit; ++s) {
    if (!split_eligible(s, n)) continue;
    const double w = static_cast<double>(ctas) * static_cast<double>(s) / static_cast<double>(slots);
    const double ceil_w = static_cast<double>(static_cast<std::int64_t>(w)) < w
                              ? static_cast<double>(static_cast<std::int64_t>(w)) + 1.0
                              : w;
    const double e = w / ceil_w;
    if (e > best) best = e;
  }
  for (std::int64_t s = 1; s <= limit; ++s) {
    if (!split_eligible(s, n)) continue;
    const double w = static_cast<double>(ctas) * static_cast<double>(s) / static_cast<double>(slots);
    const double ceil_w = static_cast<double>(static_cast<std::int64_t>(w)) < w
                              ? static_cast<double>(static_cast<std::int64_t>(w)) + 1.0
                              : w;
    if (w / ceil_w >= 0.85 * best) return static_cast<int>(s);
  }
  return 1;
}

// CTAs of the split-KV decode grid before splitting: batch x kv_heads x
// ceil(group / 64) (GQA packing of one query token).
KERNELAB_INLINE_HOST_DEVICE std::int64_t split_kv_ctas(std::int64_t batch, std::int64_t kv_heads,
                                                       std::int64_t group) {
  return batch * kv_heads * ceil_div(group, kSplitKvRowBlock);
}

// Split z of `splits` takes KV tiles [z nps, (z + 1) nps), nps =
// ceil(n_blocks / splits), clipped to the sequence's own tiles; a split may
// be empty (it still writes its partial: out 0, lse -inf).
KERNELAB_INLINE_HOST_DEVICE std::int64_t split_tiles_per_split(std::int64_t n_blocks,
                                                               std::int64_t splits) {
  return ceil_div(n_blocks < 1 ? 1 : n_blocks, splits);
}

// ---------------------------------------------------------------------------
// (b) LeanAttention: stream-K over (batch, kv_head, kv_tile)
// ---------------------------------------------------------------------------
//
// Outputs: o = b * kv_heads + h (one per sequence and KV head; the GQA group's
// query heads are its rows). Output o holds tiles(o) = ceil(seqlen_b / tile)
// LeanTiles (0 for an empty sequence); they are laid end to end:
// offsets[o] = sum of tiles of outputs before o, offsets[n_outputs] = total.
// The grid has G CTAs (one wave: sm_count x ctas_per_sm, so every CTA is
// resident and waiting on a flag cannot deadlock). With q = total / G and
// r = total % G, CTA c takes the contiguous global tiles
// [c q + min(c, r), (c + 1) q + min(c + 1, r)): the first r CTAs one tile
// more than the rest, so sizes differ by at most one.
//
// Host: the CTA owning tile 0 of an output. It merges, in CTA order, its own
// partial with those of the contributors host + 1 .. last (the CTAs holding
// the output's other tiles), and writes the output. A contributor's segment
// of an output is always the first segment of its range, so each CTA writes
// at most one partial: workspace slot = its CTA index. An output held whole
// by one CTA is written directly. An empty output (seqlen 0) is written by
// host_cta() as out 0, lse -inf.

// Sum of tiles of outputs before o, for every o; offsets has n_outputs + 1
// entries. seqlens may be null (every sequence max_seqlen long).
KERNELAB_INLINE_HOST_DEVICE std::int64_t lean_tile_offsets(const std::int64_t* seqlens,
                                                           std::int64_t batch, std::int64_t max_seqlen,
                                                           std::int64_t kv_heads, std::int64_t tile,
                                                           std::int64_t* offsets) {
  std::int64_t total = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t len = seqlens ? seqlens[b] : max_seqlen;
    const std::int64_t tiles = ceil_div(len, tile);
    for (std::int64_t h = 0; h < kv_heads; ++h) {
      offsets[b * kv_heads + h] = total;
      total += tiles;
    }
  }
  offsets[batch * kv_heads] = total;
  return total;
}

// First global tile of CTA `cta` (cta may be grid: then `total`).
KERNELAB_INLINE_HOST_DEVICE std::int64_t lean_cta_begin(std::int64_t total, std::int64_t grid,
                                                        std::int64_t cta) {
  const std::int64_t q = total / grid;
  const std::int64_t r = total % grid;
  return cta * q + (cta < r ? cta : r);
}

KERNELAB_INLINE_HOST_DEVICE std::int64_t lean_cta_end(std::int64_t total, std::int64_t grid,
                                                      std::int64_t cta) {
  return lean_cta_begin(total, grid, cta + 1);
}

// The CTA whose range holds global tile t (0 <= t < total).
KERNELAB_INLINE_HOST_DEVICE std::int64_t lean_cta_of_tile(std::int64_t total, std::int64_t grid,
                                                          std::int64_t t) {
  const std::int64_t q = total / grid;
  const std::int64_t r = total % grid;
  const std::int64_t big = r * (q + 1);  // tiles of the first r CTAs
  if (t < big) return t / (q + 1);
  return r + (t - big) / q;  // here q >= 1: t >= big and t < total
}

// The output holding global tile t: the last o with offsets[o] <= t (empty
// outputs share their offset with the next one and are skipped).
KERNELAB_INLINE_HOST_DEVICE std::int64_t lean_output_of_tile(const std::int64_t* offsets,
                                                             std::int64_t n_outputs, std::int64_t t) {
  std::int64_t lo = 0, hi = n_outputs;  // answer in [lo, hi)
  while (hi - lo > 1) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (offsets[mid] <= t) lo = mid; else hi = mid;
  }
  return lo;
}

// Host CTA of output o: the owner of its tile 0; for an empty output the
// owner of the tile at its offset, or the last CTA when that is the end.
KERNELAB_INLINE_HOST_DEVICE std::int64_t lean_host_cta(const std::int64_t* offsets,
                                                       std::int64_t n_outputs, std::int64_t grid,
                                                       std::int64_t o) {
  const std::int64_t total = offsets[n_outputs];
  if (offsets[o] >= total) return grid - 1;
  return lean_cta_of_tile(total, grid, offsets[o]);
}

// Last CTA touching output o (== host when one CTA holds it whole or it is
// empty). Contributors are host + 1 .. last.
KERNELAB_INLINE_HOST_DEVICE std::int64_t lean_last_cta(const std::int64_t* offsets,
                                                       std::int64_t n_outputs, std::int64_t grid,
                                                       std::int64_t o) {
  const std::int64_t total = offsets[n_outputs];
  if (offsets[o + 1] <= offsets[o]) return lean_host_cta(offsets, n_outputs, grid, o);
  return lean_cta_of_tile(total, grid, offsets[o + 1] - 1);
}

// One piece of a CTA's range: tiles [tile_begin, tile_end) (local to the
// output) of output `output`.
struct LeanSegment {
  std::int64_t output;
  std::int64_t tile_begin;
  std::int64_t tile_end;
  std::int64_t output_tiles;  // tiles of the whole output
  bool is_host;   // holds the output's tile 0
  bool is_whole;  // holds all of the output: write it directly
};

// The segment of a CTA's range that starts at global tile t (t < cta_end);
// the next one starts at t + (tile_end - tile_begin).
KERNELAB_INLINE_HOST_DEVICE LeanSegment lean_segment_at(const std::int64_t* offsets,
                                                        std::int64_t n_outputs, std::int64_t cta_end,
                                                        std::int64_t t) {
  LeanSegment s;
  s.output = lean_output_of_tile(offsets, n_outputs, t);
  const std::int64_t first = offsets[s.output];
  const std::int64_t last = offsets[s.output + 1];
  const std::int64_t end = cta_end < last ? cta_end : last;
  s.tile_begin = t - first;
  s.tile_end = end - first;
  s.output_tiles = last - first;
  s.is_host = s.tile_begin == 0;
  s.is_whole = s.is_host && s.tile_end == s.output_tiles;
  return s;
}

// Default one-wave grid of the CPU twin: sm_count x ctas_per_sm.
constexpr int kDefaultLeanCtasPerSm = 2;

// ---------------------------------------------------------------------------
// (c) ring attention: contiguous or zigzag layout, and the per-step plan
// ---------------------------------------------------------------------------
//
// World size W, sequence S. Not causal: S is cut into W chunks, rank r holds
// chunk r. Causal (zigzag, balancing the causal work): S is cut into 2W
// chunks of c = S / (2W), rank r holds chunks r and 2W - 1 - r, in that
// order, as one local block of 2c rows. Q, K and V use the same layout. At
// step t (0 .. W-1) rank r holds the K/V block of rank src = (r - t) mod W
// and attends its Q block to it; the partials are merged in step order.

// Rows of one rank's local block.
KERNELAB_INLINE_HOST_DEVICE std::int64_t ring_block_rows(std::int64_t seq, std::int64_t world) {
  return seq / world;
}

// Global position of local row `row` of rank `rank`.
KERNELAB_INLINE_HOST_DEVICE std::int64_t ring_global_row(std::int64_t row, std::int64_t rank,
                                                         std::int64_t world, std::int64_t seq,
                                                         bool causal) {
  if (!causal) return rank * (seq / world) + row;
  const std::int64_t c = seq / (2 * world);
  if (row < c) return rank * c + row;
  return (2 * world - 1 - rank) * c + (row - c);
}

// The KV source rank of step t for rank r.
KERNELAB_INLINE_HOST_DEVICE std::int64_t ring_source(std::int64_t rank, std::int64_t step,
                                                     std::int64_t world) {
  return ((rank - step) % world + world) % world;
}

// What rank r computes at one step: local Q rows [q_begin, q_end) against
// local KV rows [kv_begin, kv_end) of the source's block, with a causal
// (square, so bottom-right == top-left) mask or none. Zigzag makes every
// step either the causal diagonal (src == r), half the queries against all
// keys (src > r: chunk 2W-1-r sees both of src's chunks, chunk r none), or
// all queries against half the keys (src < r: both see chunk src, neither
// sees chunk 2W-1-src): equal work on every rank.
struct RingStep {
  std::int64_t source;
  std::int64_t q_begin, q_end;
  std::int64_t kv_begin, kv_end;
  bool causal;
};

KERNELAB_INLINE_HOST_DEVICE RingStep ring_step(std::int64_t rank, std::int64_t step,
                                               std::int64_t world, std::int64_t seq, bool causal) {
  RingStep s;
  s.source = ring_source(rank, step, world);
  const std::int64_t rows = seq / world;
  s.q_begin = 0; s.q_end = rows; s.kv_begin = 0; s.kv_end = rows; s.causal = false;
  if (!causal) return s;
  const std::int64_t c = rows / 2;
  if (s.source == rank) {
    s.causal = true;
  } else if (s.source < rank) {
    s.kv_end = c;
  } else {
    s.q_begin = c;
  }
  return s;
}

}  // namespace kernelab::attention
