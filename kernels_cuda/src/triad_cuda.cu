// Host launchers of the CUDA triad kernel (triad_cuda.cuh).
#include "kernelab/triad_cuda.h"

#include <algorithm>

#include "kernelab/triad_cuda.cuh"

namespace kernelab {
namespace {

template <typename T>
cudaError_t launch(T* a, const T* b, const T* c, T scalar, std::size_t n,
                   unsigned max_blocks, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;  // a zero-block grid is a launch error
  const std::size_t needed = (n + kTriadThreadsPerBlock - 1) / kTriadThreadsPerBlock;
  // gridDim.x is limited to 2^31 - 1; the grid-stride loop covers the rest.
  std::size_t blocks = std::min<std::size_t>(needed, 0x7fffffffu);
  if (max_blocks != 0) blocks = std::min<std::size_t>(blocks, max_blocks);
  triad_kernel<T><<<static_cast<unsigned>(blocks), kTriadThreadsPerBlock, 0, stream>>>(
      a, b, c, scalar, n);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_triad(float* a, const float* b, const float* c, float scalar,
                         std::size_t n, unsigned max_blocks, cudaStream_t stream) {
  return launch(a, b, c, scalar, n, max_blocks, stream);
}

cudaError_t launch_triad(double* a, const double* b, const double* c, double scalar,
                         std::size_t n, unsigned max_blocks, cudaStream_t stream) {
  return launch(a, b, c, scalar, n, max_blocks, stream);
}

cudaError_t triad_kernel_attributes(cudaFuncAttributes* attributes) {
  return cudaFuncGetAttributes(attributes, triad_kernel<double>);
}

}  // namespace kernelab
