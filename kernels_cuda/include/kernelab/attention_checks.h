// Host-side argument checks shared by the attention CPU twins and the CUDA launchers, so both
// refuse the same inputs with the same words (std::invalid_argument, ValueError in Python).
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernelab/attention_cpu.h"  // kMaxTreeTokens

namespace kernelab::attention::checks {

inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

inline void check_heads(std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim) {
  require(heads >= 1, "heads must be >= 1, got " + std::to_string(heads));
  require(kv_heads >= 1, "kv_heads must be >= 1, got " + std::to_string(kv_heads));
  require(heads % kv_heads == 0, "heads (" + std::to_string(heads) +
                                     ") must be a multiple of kv_heads (" +
                                     std::to_string(kv_heads) + ")");
  require(head_dim >= 1, "head_dim must be >= 1, got " + std::to_string(head_dim));
}

inline void check_scale(float scale) { require(std::isfinite(scale), "softmax_scale must be finite"); }

// parents[b * tree_tokens + i] is -1 (a root) or an earlier token of the same tree.
inline void check_tree_parents(const std::int64_t* parents, std::int64_t n_trees,
                               std::int64_t tree_tokens, bool parents_per_batch) {
  for (std::int64_t b = 0; b < n_trees; ++b) {
    for (std::int64_t i = 0; i < tree_tokens; ++i) {
      const std::int64_t p = parents[b * tree_tokens + i];
      require(p == -1 || (p >= 0 && p < i),
              "parents[" + (parents_per_batch ? std::to_string(b) + ", " : std::string()) +
                  std::to_string(i) + "] = " + std::to_string(p) +
                  " must be -1 (a root) or an earlier token in [0, " + std::to_string(i) + ")");
    }
  }
}

// A tree of 1..kMaxTreeTokens tokens over a prefix of >= 0 keys, its parents valid.
inline void check_tree(std::int64_t tree_tokens, std::int64_t prefix, const std::int64_t* parents,
                       std::int64_t n_trees, bool parents_per_batch) {
  require(tree_tokens >= 1 && tree_tokens <= kMaxTreeTokens,
          "the tree must have 1 to " + std::to_string(kMaxTreeTokens) + " tokens, got " +
              std::to_string(tree_tokens));
  require(prefix >= 0, "prefix must be >= 0, got " + std::to_string(prefix));
  check_tree_parents(parents, n_trees, tree_tokens, parents_per_batch);
}

}  // namespace kernelab::attention::checks
