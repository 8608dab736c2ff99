// CPU twins of the attention kernels (issue 5). The work partitioning is
// attention_schedule.h's, the per-row merge math attention_math.h's: the
// CUDA kernels call the same functions. Inside a "CTA" the keys are walked in
// tiles with an online softmax in fp32, as the kernels do.
#include "kernelab/attention_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernelab/attention_checks.h"
#include "kernelab/attention_math.h"
#include "kernelab/attention_schedule.h"

namespace kernelab {

// ---------------------------------------------------------------------------
// binary16 <-> float
// ---------------------------------------------------------------------------

float half_to_float(Half h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h.bits & 0x8000u) << 16;
  const std::uint32_t exp = (h.bits >> 10) & 0x1fu;
  const std::uint32_t man = h.bits & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: man x 2^-24, exact in float
    const float f = static_cast<float>(man) * 5.9604644775390625e-08f;
    return sign ? -f : f;
  }
  std::uint32_t bits;
  if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

Half float_to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u) {  // inf, NaN (kept quiet)
    const std::uint16_t nan = mag > 0x7f800000u ? static_cast<std::uint16_t>(0x200u | ((mag >> 13) & 0x3ffu)) : 0;
    return Half{static_cast<std::uint16_t>(sign | 0x7c00u | nan)};
  }
  if (mag >= 0x477ff000u) return Half{static_cast<std::uint16_t>(sign | 0x7c00u)};  // >= 65520: inf
  if (mag < 0x38800000u) {  // below 2^-14: subnormal half (exact scaling, then round to even)
    float a;
    std::memcpy(&a, &mag, sizeof a);
    const auto m = static_cast<std::uint32_t>(std::nearbyint(a * 16777216.0f));
    return Half{static_cast<std::uint16_t>(sign | m)};
  }
  std::uint32_t h = mag - 0x38000000u;  // rebias the exponent 127 -> 15
  h = (h + 0xfffu + ((h >> 13) & 1u)) >> 13;  // round the mantissa to 10 bits, ties to even
  return Half{static_cast<std::uint16_t>(sign | h)};
}

namespace attention {
namespace {

inline float load(float x) { return x; }
inline float load(Half x) { return half_to_float(x); }
template <typename T>
inline T store(float x);
template <>
inline float store<float>(float x) { return x; }
template <>
inline Half store<Half>(float x) { return float_to_half(x); }

using checks::check_heads;
using checks::check_scale;
using checks::require;

// The online-softmax state of R query rows (fp32), as one CTA holds it.
class RowState {
 public:
  RowState(std::int64_t rows, std::int64_t head_dim, std::int64_t tile)
      : rows_(rows), d_(head_dim), tile_(tile),
        m_(rows), l_(rows), acc_(rows * head_dim), q_(rows * head_dim),
        kt_(tile * head_dim), vt_(tile * head_dim), s_(tile) {
    reset();
  }

  void reset() {
    std::fill(m_.begin(), m_.end(), -std::numeric_limits<float>::infinity());
    std::fill(l_.begin(), l_.end(), 0.0f);
    std::fill(acc_.begin(), acc_.end(), 0.0f);
  }

  // Query row r (D elements of T), pre-multiplied by the softmax scale.
  template <typename T>
  void set_query(std::int64_t r, const T* row, float scale) {
    for (std::int64_t i = 0; i < d_; ++i) q_[r * d_ + i] = load(row[i]) * scale;
  }

  // Walk keys [k0, k1) in tiles; key position p is at kbase + p * stride (V
  // likewise). Each tile is loaded once for all rows; visible(r, p) masks.
  template <typename T, typename Visible>
  void attend(const T* kbase, const T* vbase, std::int64_t stride, std::int64_t k0,
              std::int64_t k1, Visible visible) {
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    for (std::int64_t t0 = k0; t0 < k1; t0 += tile_) {
      const std::int64_t n = std::min(tile_, k1 - t0);
      for (std::int64_t j = 0; j < n; ++j) {
        const T* kr = kbase + (t0 + j) * stride;
        const T* vr = vbase + (t0 + j) * stride;
        for (std::int64_t i = 0; i < d_; ++i) {
          kt_[j * d_ + i] = load(kr[i]);
          vt_[j * d_ + i] = load(vr[i]);
        }
      }
      for (std::int64_t r = 0; r < rows_; ++r) {
        const float* qr = &q_[r * d_];
        float tile_max = kNegInf;
        for (std::int64_t j = 0; j < n; ++j) {
          if (!visible(r, t0 + j)) {
            s_[j] = kNegInf;
            continue;
          }
          const float* kr = &kt_[j * d_];
          float dot = 0.0f;
          for (std::int64_t i = 0; i < d_; ++i) dot += qr[i] * kr[i];
          s_[j] = dot;
          tile_max = std::max(tile_max, dot);
        }
        if (tile_max == kNegInf) continue;  // nothing visible in this tile
        const float m_new = std::max(m_[r], tile_max);
        const float f = rescale_factor(m_[r], m_new);
        float* acc = &acc_[r * d_];
        float l = l_[r] * f;
        for (std::int64_t i = 0; i < d_; ++i) acc[i] *= f;
        for (std::int64_t j = 0; j < n; ++j) {
          if (s_[j] == kNegInf) continue;
          const float p = std::exp(s_[j] - m_new);
          l += p;
          const float* vr = &vt_[j * d_];
          for (std::int64_t i = 0; i < d_; ++i) acc[i] += p * vr[i];
        }
        l_[r] = l;
        m_[r] = m_new;
      }
    }
  }

  // Row r's partial result: out (D floats) and lse.
  void finish(std::int64_t r, float* out, float* lse) const {
    const float inv = finish_scale(l_[r]);
    for (std::int64_t i = 0; i < d_; ++i) out[i] = acc_[r * d_ + i] * inv;
    *lse = finish_lse(m_[r], l_[r]);
  }

  template <typename T>
  void finish_to(std::int64_t r, T* out, float* lse, float* scratch) const {
    finish(r, scratch, lse);
    for (std::int64_t i = 0; i < d_; ++i) out[i] = store<T>(scratch[i]);
  }

 private:
  std::int64_t rows_, d_, tile_;
  std::vector<float> m_, l_, acc_, q_, kt_, vt_, s_;
};

struct AllVisible {
  bool operator()(std::int64_t, std::int64_t) const { return true; }
};

// acc (out, lse) <- merge(acc, part) for one row of D floats.
inline void merge_into(float* acc_out, float* acc_lse, const float* part_out, float part_lse,
                       std::int64_t d) {
  const MergeWeights w = merge_weights(*acc_lse, part_lse);
  for (std::int64_t i = 0; i < d; ++i) acc_out[i] = w.a * acc_out[i] + w.b * part_out[i];
  *acc_lse = w.lse;
}

void check_decode(const DecodeShape& s, const std::int64_t* seqlens) {
  require(s.batch >= 1, "batch must be >= 1, got " + std::to_string(s.batch));
  check_heads(s.heads, s.kv_heads, s.head_dim);
  require(s.max_seqlen >= 1, "the KV cache must hold >= 1 position, got " + std::to_string(s.max_seqlen));
  if (seqlens) {
    for (std::int64_t b = 0; b < s.batch; ++b) {
      require(seqlens[b] >= 0 && seqlens[b] <= s.max_seqlen,
              "seqlens[" + std::to_string(b) + "] = " + std::to_string(seqlens[b]) +
                  " is outside [0, " + std::to_string(s.max_seqlen) + "]");
    }
  }
}

inline std::int64_t seqlen_of(const DecodeShape& s, const std::int64_t* seqlens, std::int64_t b) {
  return seqlens ? seqlens[b] : s.max_seqlen;
}

// The rows of output (b, kv head h): the query heads of the group.
template <typename T>
void load_decode_queries(RowState& st, const T* q, const DecodeShape& s, std::int64_t b,
                         std::int64_t h, float scale) {
  const std::int64_t group = s.heads / s.kv_heads;
  for (std::int64_t g = 0; g < group; ++g) {
    st.set_query(g, q + ((b * s.heads) + h * group + g) * s.head_dim, scale);
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// lean_attention
// ---------------------------------------------------------------------------

template <typename T>
void lean_attention_cpu(const T* q, const T* k, const T* v, const std::int64_t* seqlens,
                        const DecodeShape& s, float scale, std::int64_t grid, std::int64_t tile,
                        T* out, float* lse) {
  check_decode(s, seqlens);
  check_scale(scale);
  require(grid >= 1, "grid must be >= 1 CTA, got " + std::to_string(grid));
  if (tile == 0) tile = kv_tile_size(s.head_dim);
  require(tile >= 1, "tile must be >= 1 key, got " + std::to_string(tile));

  const std::int64_t group = s.heads / s.kv_heads;
  const std::int64_t d = s.head_dim;
  const std::int64_t n_out = s.batch * s.kv_heads;
  std::vector<std::int64_t> offsets(n_out + 1);
  const std::int64_t total =
      lean_tile_offsets(seqlens, s.batch, s.max_seqlen, s.kv_heads, tile, offsets.data());

  // Workspace as on the GPU: one contributor partial per CTA (its first
  // segment), and here also the host partial a host CTA keeps in registers
  // while it waits for its contributors' flags.
  std::vector<float> part_out(grid * group * d), part_lse(grid * group);
  std::vector<float> host_out(grid * group * d), host_lse(grid * group);
  std::vector<std::int64_t> host_output(grid, -1);
  std::vector<float> scratch(d);
  RowState st(group, d, tile);
  const std::int64_t stride = s.kv_heads * d;

  // Phase 1: every CTA walks its range, segment by segment.
  for (std::int64_t c = 0; c < grid; ++c) {
    const std::int64_t begin = lean_cta_begin(total, grid, c);
    const std::int64_t end = lean_cta_end(total, grid, c);
    for (std::int64_t t = begin; t < end;) {
      const LeanSegment seg = lean_segment_at(offsets.data(), n_out, end, t);
      const std::int64_t b = seg.output / s.kv_heads;
      const std::int64_t h = seg.output % s.kv_heads;
      const std::int64_t len = seqlen_of(s, seqlens, b);
      const std::int64_t k0 = seg.tile_begin * tile;
      const std::int64_t k1 = std::min(seg.tile_end * tile, len);
      st.reset();
      load_decode_queries(st, q, s, b, h, scale);
      const std::int64_t base = (b * s.max_seqlen * s.kv_heads + h) * d;
      st.attend(k + base, v + base, stride, k0, k1, AllVisible{});
      for (std::int64_t g = 0; g < group; ++g) {
        const std::int64_t row = b * s.heads + h * group + g;
        if (seg.is_whole) {
          st.finish_to(g, out + row * d, lse + row, scratch.data());
        } else if (seg.is_host) {
          st.finish(g, &host_out[(c * group + g) * d], &host_lse[c * group + g]);
          host_output[c] = seg.output;
        } else {
          st.finish(g, &part_out[(c * group + g) * d], &part_lse[c * group + g]);
        }
      }
      t += seg.tile_end - seg.tile_begin;
    }
  }

  // Phase 2: each host merges its partial with its contributors' (CTA
  // order) and writes the output.
  for (std::int64_t c = 0; c < grid; ++c) {
    const std::int64_t o = host_output[c];
    if (o < 0) continue;
    const std::int64_t last = lean_last_cta(offsets.data(), n_out, grid, o);
    const std::int64_t b = o / s.kv_heads;
    const std::int64_t h = o % s.kv_heads;
    for (std::int64_t g = 0; g < group; ++g) {
      float* acc = &host_out[(c * group + g) * d];
      float* acc_lse = &host_lse[c * group + g];
      for (std::int64_t x = c + 1; x <= last; ++x) {
        merge_into(acc, acc_lse, &part_out[(x * group + g) * d], part_lse[x * group + g], d);
      }
      const std::int64_t row = b * s.heads + h * group + g;
      for (std::int64_t i = 0; i < d; ++i) out[row * d + i] = store<T>(acc[i]);
      lse[row] = *acc_lse;
    }
  }

  // Empty sequences (no tiles): their host writes out 0, lse -inf.
  for (std::int64_t o = 0; o < n_out; ++o) {
    if (offsets[o + 1] > offsets[o]) continue;
    const std::int64_t b = o / s.kv_heads;
    const std::int64_t h = o % s.kv_heads;
    for (std::int64_t g = 0; g < group; ++g) {
      const std::int64_t row = b * s.heads + h * group + g;
      for (std::int64_t i = 0; i < d; ++i) out[row * d + i] = store<T>(0.0f);
      lse[row] = -std::numeric_limits<float>::infinity();
    }
  }
}

// ---------------------------------------------------------------------------
// split_kv_attention
// ---------------------------------------------------------------------------

template <typename T>
int split_kv_attention_cpu(const T* q, const T* k, const T* v, const std::int64_t* seqlens,
                           const DecodeShape& s, float scale, int num_splits,
                           std::int64_t sm_count, T* out, float* lse) {
  check_decode(s, seqlens);
  check_scale(scale);
  require(num_splits >= 0 && num_splits <= kMaxSplits,
          "num_splits must be in [1, " + std::to_string(kMaxSplits) + "] (0: heuristic), got " +
              std::to_string(num_splits));
  require(sm_count >= 1, "sm_count must be >= 1, got " + std::to_string(sm_count));
  const std::int64_t group = s.heads / s.kv_heads;
  const std::int64_t d = s.head_dim;
  const std::int64_t tile = kv_tile_size(d);
  std::int64_t longest = 0;
  for (std::int64_t b = 0; b < s.batch; ++b) longest = std::max(longest, seqlen_of(s, seqlens, b));
  const std::int64_t n_blocks = ceil_div(std::max<std::int64_t>(longest, 1), tile);
  const int splits = num_splits > 0
                         ? num_splits
                         : num_splits_heuristic(split_kv_ctas(s.batch, s.kv_heads, group), n_blocks, sm_count);
  const std::int64_t nps = split_tiles_per_split(n_blocks, splits);
  const std::int64_t rows = s.batch * s.heads;
  const std::int64_t stride = s.kv_heads * d;

  // Partials [splits, B, H, D] and [splits, B, H] in fp32 (FA2's oaccum).
  std::vector<float> ws_out(splits > 1 ? splits * rows * d : 0);
  std::vector<float> ws_lse(splits > 1 ? splits * rows : 0);
  std::vector<float> scratch(d);
  RowState st(group, d, tile);
  for (std::int64_t b = 0; b < s.batch; ++b) {
    const std::int64_t len = seqlen_of(s, seqlens, b);
    for (std::int64_t h = 0; h < s.kv_heads; ++h) {
      const std::int64_t base = (b * s.max_seqlen * s.kv_heads + h) * d;
      for (int z = 0; z < splits; ++z) {  // one CTA per (b, h, split)
        const std::int64_t k0 = std::min(z * nps * tile, len);
        const std::int64_t k1 = std::min((z + 1) * nps * tile, len);
        st.reset();
        load_decode_queries(st, q, s, b, h, scale);
        st.attend(k + base, v + base, stride, k0, k1, AllVisible{});
        for (std::int64_t g = 0; g < group; ++g) {
          const std::int64_t row = b * s.heads + h * group + g;
          if (splits == 1) {
            st.finish_to(g, out + row * d, lse + row, scratch.data());
          } else {
            st.finish(g, &ws_out[(z * rows + row) * d], &ws_lse[z * rows + row]);
          }
        }
      }
    }
  }
  if (splits == 1) return splits;
  // The combine kernel: one output row at a time.
  for (std::int64_t row = 0; row < rows; ++row) {
    const float l = combine_lse(&ws_lse[row], splits, rows);
    for (std::int64_t i = 0; i < d; ++i) scratch[i] = 0.0f;
    for (int z = 0; z < splits; ++z) {
      const float w = combine_weight(ws_lse[z * rows + row], l);
      if (w == 0.0f) continue;
      const float* o = &ws_out[(z * rows + row) * d];
      for (std::int64_t i = 0; i < d; ++i) scratch[i] += w * o[i];
    }
    for (std::int64_t i = 0; i < d; ++i) out[row * d + i] = store<T>(scratch[i]);
    lse[row] = l;
  }
  return splits;
}

// ---------------------------------------------------------------------------
// tree_attention
// ---------------------------------------------------------------------------

template <typename T>
void tree_attention_cpu(const T* q, const T* k, const T* v, const std::int64_t* parents,
                        bool parents_per_batch, std::int64_t batch, std::int64_t tree_tokens,
                        std::int64_t prefix, std::int64_t heads, std::int64_t kv_heads,
                        std::int64_t head_dim, float scale, T* out, float* lse) {
  require(batch >= 1, "batch must be >= 1, got " + std::to_string(batch));
  check_heads(heads, kv_heads, head_dim);
  check_scale(scale);
  const std::int64_t n_trees = parents_per_batch ? batch : 1;
  checks::check_tree(tree_tokens, prefix, parents, n_trees, parents_per_batch);
  const std::int64_t group = heads / kv_heads;
  const std::int64_t d = head_dim;
  const std::int64_t n_keys = prefix + tree_tokens;
  const std::int64_t rows = tree_tokens * group;  // row r: token r / group, head g = r % group
  const std::int64_t stride = kv_heads * d;
  const std::int64_t tile = kv_tile_size(d);
  // ancestor[i * T + j]: tree token j is i or an ancestor of i.
  std::vector<unsigned char> ancestor(tree_tokens * tree_tokens);
  std::vector<float> scratch(d);
  RowState st(rows, d, tile);
  for (std::int64_t b = 0; b < batch; ++b) {
    if (b < n_trees) {
      const std::int64_t* par = parents + b * tree_tokens;
      std::fill(ancestor.begin(), ancestor.end(), 0);
      for (std::int64_t i = 0; i < tree_tokens; ++i) {
        if (par[i] >= 0) {
          std::copy_n(&ancestor[par[i] * tree_tokens], tree_tokens, &ancestor[i * tree_tokens]);
        }
        ancestor[i * tree_tokens + i] = 1;
      }
    }
    for (std::int64_t h = 0; h < kv_heads; ++h) {
      st.reset();
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t t = r / group, g = r % group;
        st.set_query(r, q + ((b * tree_tokens + t) * heads + h * group + g) * d, scale);
      }
      const std::int64_t base = (b * n_keys * kv_heads + h) * d;
      // The prefix, once for all T x group rows; then the tree keys, masked.
      st.attend(k + base, v + base, stride, 0, prefix, AllVisible{});
      st.attend(k + base, v + base, stride, prefix, n_keys,
                [&](std::int64_t r, std::int64_t pos) {
                  return ancestor[(r / group) * tree_tokens + (pos - prefix)] != 0;
                });
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t t = r / group, g = r % group;
        const std::int64_t row = (b * tree_tokens + t) * heads + h * group + g;
        st.finish_to(r, out + row * d, lse + row, scratch.data());
      }
    }
  }
}

// ---------------------------------------------------------------------------
// block_attention (and the fp32 core ring attention uses)
// ---------------------------------------------------------------------------

namespace {

constexpr std::int64_t kBlockQueryRows = 64;  // query positions per "CTA"

// Rows [q_begin, q_end) of q ([B, q_seq, H, D]) against positions
// [kv_begin, kv_end) of k, v ([B, kv_seq, Hkv, D]), causal bottom-right
// within those ranges; writes the same rows of out32 / lse32 ([B, q_seq, H,
// D] / [B, q_seq, H], fp32).
template <typename T>
void block_partial(const T* q, std::int64_t q_seq, std::int64_t q_begin, std::int64_t q_end,
                   const T* k, const T* v, std::int64_t kv_seq, std::int64_t kv_begin,
                   std::int64_t kv_end, std::int64_t batch, std::int64_t heads,
                   std::int64_t kv_heads, std::int64_t d, bool causal, float scale,
                   float* out32, float* lse32) {
  const std::int64_t group = heads / kv_heads;
  const std::int64_t stride = kv_heads * d;
  const std::int64_t shift = (kv_end - kv_begin) - (q_end - q_begin);  // bottom-right
  RowState st(kBlockQueryRows * group, d, 128);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t h = 0; h < kv_heads; ++h) {
      const std::int64_t base = (b * kv_seq * kv_heads + h) * d;
      for (std::int64_t i0 = q_begin; i0 < q_end; i0 += kBlockQueryRows) {
        const std::int64_t n = std::min(kBlockQueryRows, q_end - i0);
        st.reset();
        for (std::int64_t r = 0; r < n * group; ++r) {
          const std::int64_t i = i0 + r / group, g = r % group;
          st.set_query(r, q + ((b * q_seq + i) * heads + h * group + g) * d, scale);
        }
        if (causal) {
          // local query i - q_begin sees local key j - kv_begin iff j - kv_begin <= i - q_begin + shift
          const std::int64_t k1 = std::min(kv_end, kv_begin + (i0 + n - 1 - q_begin) + shift + 1);
          st.attend(k + base, v + base, stride, kv_begin, std::max(k1, kv_begin),
                    [&](std::int64_t r, std::int64_t pos) {
                      const std::int64_t i = i0 + r / group;
                      return (pos - kv_begin) <= (i - q_begin) + shift;
                    });
        } else {
          st.attend(k + base, v + base, stride, kv_begin, kv_end, AllVisible{});
        }
        for (std::int64_t r = 0; r < n * group; ++r) {
          const std::int64_t i = i0 + r / group, g = r % group;
          const std::int64_t row = (b * q_seq + i) * heads + h * group + g;
          st.finish(r, out32 + row * d, lse32 + row);
        }
      }
    }
  }
}

void check_block(std::int64_t batch, std::int64_t q_len, std::int64_t kv_len) {
  require(batch >= 1, "batch must be >= 1, got " + std::to_string(batch));
  require(q_len >= 1, "q must hold >= 1 position, got " + std::to_string(q_len));
  require(kv_len >= 1, "k and v must hold >= 1 position, got " + std::to_string(kv_len));
}

}  // namespace

template <typename T>
void block_attention_cpu(const T* q, const T* k, const T* v, std::int64_t batch,
                         std::int64_t q_len, std::int64_t kv_len, std::int64_t heads,
                         std::int64_t kv_heads, std::int64_t head_dim, bool causal, float scale,
                         T* out, float* lse) {
  check_block(batch, q_len, kv_len);
  check_heads(heads, kv_heads, head_dim);
  check_scale(scale);
  const std::int64_t rows = batch * q_len * heads;
  std::vector<float> out32(rows * head_dim);
  block_partial(q, q_len, 0, q_len, k, v, kv_len, 0, kv_len, batch, heads, kv_heads, head_dim,
                causal, scale, out32.data(), lse);
  for (std::int64_t i = 0; i < rows * head_dim; ++i) out[i] = store<T>(out32[i]);
}

// ---------------------------------------------------------------------------
// merge_attention
// ---------------------------------------------------------------------------

template <typename T>
void merge_attention_cpu(const T* out_a, const float* lse_a, const T* out_b, const float* lse_b,
                         std::int64_t rows, std::int64_t head_dim, T* out, float* lse) {
  require(rows >= 0, "rows must be >= 0, got " + std::to_string(rows));
  require(head_dim >= 1, "head_dim must be >= 1, got " + std::to_string(head_dim));
  for (std::int64_t r = 0; r < rows; ++r) {
    const MergeWeights w = merge_weights(lse_a[r], lse_b[r]);
    for (std::int64_t i = 0; i < head_dim; ++i) {
      const std::int64_t x = r * head_dim + i;
      out[x] = store<T>(w.a * load(out_a[x]) + w.b * load(out_b[x]));
    }
    lse[r] = w.lse;
  }
}

// ---------------------------------------------------------------------------
// ring_attention
// ---------------------------------------------------------------------------

template <typename T>
void ring_attention_cpu(const T* q, const T* k, const T* v, std::int64_t batch, std::int64_t seq,
                        std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim,
                        std::int64_t world, bool causal, float scale, T* out, float* lse) {
  check_block(batch, seq, seq);
  check_heads(heads, kv_heads, head_dim);
  check_scale(scale);
  require(world >= 1, "world_size must be >= 1, got " + std::to_string(world));
  const std::int64_t parts = causal ? 2 * world : world;
  require(seq % parts == 0, "the sequence length " + std::to_string(seq) + " must be a multiple of " +
                                (causal ? "2 x world_size = " : "world_size = ") +
                                std::to_string(parts));
  const std::int64_t d = head_dim;
  const std::int64_t rows = ring_block_rows(seq, world);
  const std::int64_t q_row = heads * d, kv_row = kv_heads * d;  // elements per position

  // Each rank's local blocks (the layout ring attention keeps on the GPUs).
  auto gather = [&](const T* src, std::int64_t row_elems, std::int64_t rank) {
    std::vector<T> block(batch * rows * row_elems);
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t g = ring_global_row(r, rank, world, seq, causal);
        std::copy_n(src + (b * seq + g) * row_elems, row_elems, &block[(b * rows + r) * row_elems]);
      }
    }
    return block;
  };
  std::vector<std::vector<T>> k_blocks, v_blocks;
  for (std::int64_t rank = 0; rank < world; ++rank) {
    k_blocks.push_back(gather(k, kv_row, rank));
    v_blocks.push_back(gather(v, kv_row, rank));
  }
  const std::int64_t local_rows = batch * rows * heads;
  std::vector<float> acc(local_rows * d), acc_lse(local_rows), part(local_rows * d), part_lse(local_rows);
  for (std::int64_t rank = 0; rank < world; ++rank) {
    const std::vector<T> q_block = gather(q, q_row, rank);
    std::fill(acc.begin(), acc.end(), 0.0f);
    std::fill(acc_lse.begin(), acc_lse.end(), -std::numeric_limits<float>::infinity());
    for (std::int64_t step = 0; step < world; ++step) {
      const RingStep rs = ring_step(rank, step, world, seq, causal);
      block_partial(q_block.data(), rows, rs.q_begin, rs.q_end, k_blocks[rs.source].data(),
                    v_blocks[rs.source].data(), rows, rs.kv_begin, rs.kv_end, batch, heads,
                    kv_heads, d, rs.causal, scale, part.data(), part_lse.data());
      for (std::int64_t b = 0; b < batch; ++b) {
        for (std::int64_t i = rs.q_begin; i < rs.q_end; ++i) {
          for (std::int64_t hq = 0; hq < heads; ++hq) {
            const std::int64_t x = (b * rows + i) * heads + hq;
            merge_into(&acc[x * d], &acc_lse[x], &part[x * d], part_lse[x], d);
          }
        }
      }
    }
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t i = 0; i < rows; ++i) {
        const std::int64_t g = ring_global_row(i, rank, world, seq, causal);
        for (std::int64_t hq = 0; hq < heads; ++hq) {
          const std::int64_t x = (b * rows + i) * heads + hq;
          const std::int64_t y = (b * seq + g) * heads + hq;
          for (std::int64_t e = 0; e < d; ++e) out[y * d + e] = store<T>(acc[x * d + e]);
          lse[y] = acc_lse[x];
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// instantiations
// ---------------------------------------------------------------------------

#define KERNELAB_ATTENTION_INSTANTIATE(T)                                                       \
  template void lean_attention_cpu<T>(const T*, const T*, const T*, const std::int64_t*,       \
                                      const DecodeShape&, float, std::int64_t, std::int64_t,   \
                                      T*, float*);                                             \
  template int split_kv_attention_cpu<T>(const T*, const T*, const T*, const std::int64_t*,    \
                                         const DecodeShape&, float, int, std::int64_t, T*,     \
                                         float*);                                              \
  template void tree_attention_cpu<T>(const T*, const T*, const T*, const std::int64_t*, bool, \
                                      std::int64_t, std::int64_t, std::int64_t, std::int64_t,  \
                                      std::int64_t, std::int64_t, float, T*, float*);          \
  template void block_attention_cpu<T>(const T*, const T*, const T*, std::int64_t,             \
                                       std::int64_t, std::int64_t, std::int64_t, std::int64_t, \
                                       std::int64_t, bool, float, T*, float*);                 \
  template void merge_attention_cpu<T>(const T*, const float*, const T*, const float*,         \
                                       std::int64_t, std::int64_t, T*, float*);                \
  template void ring_attention_cpu<T>(const T*, const T*, const T*, std::int64_t, std::int64_t, \
                                      std::int64_t, std::int64_t, std::int64_t, std::int64_t,  \
                                      bool, float, T*, float*);

KERNELAB_ATTENTION_INSTANTIATE(float)
KERNELAB_ATTENTION_INSTANTIATE(Half)

#undef KERNELAB_ATTENTION_INSTANTIATE

}  // namespace attention
}  // namespace kernelab
