// CUDA kernel of the STREAM triad a = b + s * c. Device code only: raw
// pointers and a count. The host launchers are declared in triad_cuda.h.
#pragma once

#include <cstddef>

#include "kernelab/triad_math.h"

namespace kernelab {

// Grid-stride loop, so any grid size covers any n: the launcher sizes the
// grid to fill the device once, not to the problem.
template <typename T>
__global__ void triad_kernel(T* __restrict__ a, const T* __restrict__ b,
                             const T* __restrict__ c, T scalar, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    a[i] = triad_element(b[i], c[i], scalar);
  }
}

}  // namespace kernelab
