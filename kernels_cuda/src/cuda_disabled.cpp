// The CUDA entry points of a build without CUDA: the report says why, and
// asking for CUDA work throws CudaUnavailable. KERNELAB_CUDA_DISABLED_REASON
// comes from CMake (KERNELAB_CUDA=OFF, or no nvcc found).
#include <string>

#include "kernelab/cuda_api.h"
#include "kernelab/errors.h"

#ifndef KERNELAB_CUDA_DISABLED_REASON
#define KERNELAB_CUDA_DISABLED_REASON "built without CUDA"
#endif

namespace kernelab {
namespace {

std::string not_compiled_reason() {
  return std::string("this build has no CUDA kernels: ") + KERNELAB_CUDA_DISABLED_REASON +
         "; for CUDA kernels rebuild with nvcc on PATH and KERNELAB_CUDA=AUTO or ON";
}

}  // namespace

CudaRuntimeReport cuda_runtime_report() {
  CudaRuntimeReport report;
  report.compiled = false;
  report.reason = not_compiled_reason();
  return report;
}

StreamBandwidthResult cuda_stream_bandwidth(std::uint64_t, int, int, int) {
  throw CudaUnavailable("CUDA is not usable: " + not_compiled_reason());
}

}  // namespace kernelab
