// Per-element math of the STREAM triad a = b + s * c, shared by the CPU twin
// (triad_cpu.cpp) and the CUDA kernel (triad_cuda.cuh).
#pragma once

#include "kernelab/host_device.h"

namespace kernelab {

template <typename T>
KERNELAB_INLINE_HOST_DEVICE T triad_element(T b, T c, T scalar) {
  return b + scalar * c;
}

// Bytes the triad moves per element: reads b and c, writes a. Write-allocate
// traffic is not counted, as in STREAM.
template <typename T>
constexpr unsigned triad_bytes_per_element() {
  return 3u * static_cast<unsigned>(sizeof(T));
}

}  // namespace kernelab
