// Exceptions the kernel library throws. The bindings translate them:
// CudaUnavailable -> kernels_cuda.CudaUnavailableError, CudaError ->
// RuntimeError, std::invalid_argument -> ValueError.
#pragma once

#include <stdexcept>
#include <string>

namespace kernelab {

// CUDA cannot be used at all: not compiled in, no driver, no device, or no
// kernel image for the device. Callers asked for CUDA, so this is an error,
// never a cue to fall back to the CPU.
class CudaUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A CUDA runtime call returned an error; code is the cudaError_t value.
class CudaError : public std::runtime_error {
 public:
  CudaError(int code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

}  // namespace kernelab
