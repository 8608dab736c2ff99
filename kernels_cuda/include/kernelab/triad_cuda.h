// Host-side launchers of the CUDA triad (definitions in src/triad_cuda.cu).
// Plain C++ with the CUDA runtime API: callable from .cpp files.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace kernelab {

constexpr unsigned kTriadThreadsPerBlock = 256;

// Enqueues a = b + scalar * c on `stream` for contiguous device arrays of n
// elements, with at most max_blocks blocks (0: one block per 256 elements).
// Returns the launch error, if any; does not synchronize.
cudaError_t launch_triad(float* a, const float* b, const float* c, float scalar,
                         std::size_t n, unsigned max_blocks, cudaStream_t stream);
cudaError_t launch_triad(double* a, const double* b, const double* c, double scalar,
                         std::size_t n, unsigned max_blocks, cudaStream_t stream);

// Attributes of the float64 triad kernel on the current device. Fails with
// cudaErrorNoKernelImageForDevice (or cudaErrorInvalidDeviceFunction) when
// this build holds no code the device can run.
cudaError_t triad_kernel_attributes(cudaFuncAttributes* attributes);

}  // namespace kernelab
