// The CUDA entry points of a build without CUDA: the report says why, and
// asking for CUDA work throws CudaUnavailable. KERNELAB_CUDA_DISABLED_REASON
// comes from CMake (KERNELAB_CUDA=OFF, or no nvcc found).
#include <string>

#include "kernelab/attention_cuda.h"
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

namespace attention {

// The attention launchers (attention_cuda.h): no kernels in this build.
int cuda_pointer_device(const void*) {
  throw CudaUnavailable("CUDA is not usable: " + not_compiled_reason());
}

SplitKvLaunch split_kv_attention_cuda(const void*, const void*, const void*, const std::int64_t*,
                                      const DecodeShape&, CudaDtype, float, int, void*, float*,
                                      int, void*, bool) {
  throw CudaUnavailable("CUDA is not usable: " + not_compiled_reason());
}

LeanLaunch lean_attention_cuda(const void*, const void*, const void*, const std::int64_t*,
                               const DecodeShape&, CudaDtype, float, std::int64_t, bool, void*,
                               float*, int, void*, bool) {
  throw CudaUnavailable("CUDA is not usable: " + not_compiled_reason());
}

int tree_attention_cuda(const void*, const void*, const void*, const std::int64_t*, bool,
                         std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                         std::int64_t, CudaDtype, float, void*, float*, int, void*, bool) {
  throw CudaUnavailable("CUDA is not usable: " + not_compiled_reason());
}

void block_attention_cuda(const void*, const void*, const void*, std::int64_t, std::int64_t,
                          std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool, CudaDtype,
                          float, void*, float*, int, void*, bool) {
  throw CudaUnavailable("CUDA is not usable: " + not_compiled_reason());
}

void merge_attention_cuda(const void*, const float*, const void*, const float*, std::int64_t,
                          std::int64_t, CudaDtype, void*, float*, int, void*, bool) {
  throw CudaUnavailable("CUDA is not usable: " + not_compiled_reason());
}

void ring_attention_cuda(const void*, const void*, const void*, std::int64_t, std::int64_t,
                         std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool, CudaDtype,
                         float, void*, float*, int, void*, bool) {
  throw CudaUnavailable("CUDA is not usable: " + not_compiled_reason());
}

}  // namespace attention
}  // namespace kernelab
