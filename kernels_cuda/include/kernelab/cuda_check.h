// KERNELAB_CUDA_CHECK(call): every CUDA runtime return code goes through it; a
// failure throws kernelab::CudaError naming the call, the error and the place.
// Host code only; needs the CUDA runtime headers.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "kernelab/errors.h"

namespace kernelab::detail {

inline const char* file_basename(const char* path) {
  const char* base = path;
  for (const char* p = path; *p != '\0'; ++p) {
    if (*p == '/' || *p == '\\') base = p + 1;
  }
  return base;
}

inline std::string cuda_error_text(cudaError_t err) {
  return std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ")";
}

inline void cuda_check(cudaError_t err, const char* call, const char* file, int line) {
  if (err != cudaSuccess) {
    throw CudaError(static_cast<int>(err),
                    "CUDA call " + std::string(call) + " failed: " + cuda_error_text(err) +
                        " at " + file_basename(file) + ":" + std::to_string(line));
  }
}

}  // namespace kernelab::detail

#define KERNELAB_CUDA_CHECK(call) ::kernelab::detail::cuda_check((call), #call, __FILE__, __LINE__)
