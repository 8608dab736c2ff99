// Per-row math of the attention kernels shared by the CPU twins and the CUDA
// kernels: the log-sum-exp merge of two partial results and the final
// normalisation of an online-softmax state. Natural-log LSE, fp32.
//
// A partial result of a query row over a key range is (o, lse): o the
// softmax-weighted mean of V over the range, lse = log(sum exp(scores)). An
// empty range is (0, -inf); merging with it is the identity, never NaN.
#pragma once

#include <cmath>

#include "kernelab/host_device.h"

namespace kernelab::attention {

// Weights of a and b in merge(a, b): w_a + w_b == 1, and the merged lse.
// m = max(l_a, l_b); w_a = exp(l_a - m) / (exp(l_a - m) + exp(l_b - m));
// lse = m + log(exp(l_a - m) + exp(l_b - m)). Both -inf: weights 0, lse -inf.
struct MergeWeights {
  float a;
  float b;
  float lse;
};

KERNELAB_INLINE_HOST_DEVICE MergeWeights merge_weights(float lse_a, float lse_b) {
  MergeWeights w;
  const float m = lse_a > lse_b ? lse_a : lse_b;
  if (m == -INFINITY) {  // both empty (also catches NaN-free -inf - -inf)
    w.a = 0.0f;
    w.b = 0.0f;
    w.lse = -INFINITY;
    return w;
  }
  const float ea = expf(lse_a - m);  // exp(-inf) = 0 for an empty side
  const float eb = expf(lse_b - m);
  const float sum = ea + eb;  // >= 1: the larger term is exp(0)
  w.a = ea / sum;
  w.b = eb / sum;
  w.lse = m + logf(sum);
  return w;
}

// Online softmax: after the keys, a row holds the running max m of its
// scaled scores, the sum l of exp(score - m) and acc = sum exp(score - m) v.
// Output o = acc / l and lse = m + log(l); no key seen (l == 0): o 0, -inf.
KERNELAB_INLINE_HOST_DEVICE float finish_scale(float l) { return l > 0.0f ? 1.0f / l : 0.0f; }

KERNELAB_INLINE_HOST_DEVICE float finish_lse(float m, float l) {
  return l > 0.0f ? m + logf(l) : -INFINITY;
}

// exp(m_old - m_new) for the rescale of a running state; 0 when the state
// was empty (m_old == -inf), never NaN.
KERNELAB_INLINE_HOST_DEVICE float rescale_factor(float m_old, float m_new) {
  return m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
}

// FlashAttention-2's combine of n partials (split-KV): lse = m + log(sum
// exp(lse_z - m)), m = max lse_z; partial z then weighs exp(lse_z - lse).
// All -inf: -inf (every weight 0).
KERNELAB_INLINE_HOST_DEVICE float combine_lse(const float* lses, int n, long long stride) {
  float m = -INFINITY;
  for (int z = 0; z < n; ++z) m = lses[z * stride] > m ? lses[z * stride] : m;
  if (m == -INFINITY) return -INFINITY;
  float sum = 0.0f;
  for (int z = 0; z < n; ++z) sum += expf(lses[z * stride] - m);
  return m + logf(sum);
}

KERNELAB_INLINE_HOST_DEVICE float combine_weight(float lse_z, float lse) {
  return lse == -INFINITY ? 0.0f : expf(lse_z - lse);
}

}  // namespace kernelab::attention
