// cuda_runtime_report() for CUDA builds: asks the (statically linked) runtime
// what driver and devices there are, and whether our kernels run on them.
// Lack of a driver or device is reported, never thrown.
#include <cuda_runtime_api.h>

#include <string>

#include "kernelab/cuda_api.h"
#include "kernelab/cuda_check.h"
#include "kernelab/triad_cuda.h"

namespace kernelab {
namespace {

std::string version_text(int version) {
  if (version <= 0) return "none";
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

std::int64_t attribute(cudaDeviceAttr attr, int device) {
  int value = 0;
  if (cudaDeviceGetAttribute(&value, attr, device) != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky; keep it from leaking into later calls
    return 0;
  }
  return value;
}

CudaDeviceInfo describe_device(int device) {
  CudaDeviceInfo info;
  info.index = device;
  cudaDeviceProp prop{};
  const cudaError_t err = cudaGetDeviceProperties(&prop, device);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    info.kernels_unsupported_reason =
        "cudaGetDeviceProperties failed: " + detail::cuda_error_text(err);
    return info;
  }
  info.name = prop.name;
  info.compute_capability_major = prop.major;
  info.compute_capability_minor = prop.minor;
  info.sm_count = prop.multiProcessorCount;
  info.memory_bytes = prop.totalGlobalMem;
  info.memory_bus_width_bits = prop.memoryBusWidth;
  info.l2_bytes = prop.l2CacheSize;
  info.shared_memory_per_sm_bytes = static_cast<std::int64_t>(prop.sharedMemPerMultiprocessor);
  info.shared_memory_per_block_optin_bytes = static_cast<std::int64_t>(prop.sharedMemPerBlockOptin);
  info.registers_per_sm = prop.regsPerMultiprocessor;
  info.max_threads_per_sm = prop.maxThreadsPerMultiProcessor;
  info.warp_size = prop.warpSize;
  // Clock rates left cudaDeviceProp in CUDA 13; the attributes are in kHz.
  info.clock_hz = attribute(cudaDevAttrClockRate, device) * 1000;
  info.memory_clock_hz = attribute(cudaDevAttrMemoryClockRate, device) * 1000;
  char bus_id[32] = {0};
  if (cudaDeviceGetPCIBusId(bus_id, sizeof bus_id, device) == cudaSuccess) {
    info.pci_bus_id = bus_id;
  } else {
    (void)cudaGetLastError();
  }

  // Ask the runtime for the kernel on this device: the only reliable answer
  // to "does this build hold code for it" (SASS match or PTX to JIT).
  cudaError_t run_err = cudaSetDevice(device);
  cudaFuncAttributes attributes{};
  if (run_err == cudaSuccess) run_err = triad_kernel_attributes(&attributes);
  if (run_err == cudaSuccess) {
    info.kernels_supported = true;
  } else {
    (void)cudaGetLastError();
    info.kernels_unsupported_reason =
        "device " + std::to_string(device) + " (" + info.name + ", compute capability " +
        std::to_string(prop.major) + "." + std::to_string(prop.minor) +
        ") cannot run this build's kernels: " + detail::cuda_error_text(run_err);
  }
  return info;
}

}  // namespace

CudaRuntimeReport cuda_runtime_report() {
  CudaRuntimeReport report;
  report.compiled = true;
  if (cudaRuntimeGetVersion(&report.runtime_version) != cudaSuccess) report.runtime_version = 0;
  // Returns 0 (and success) when no driver is installed.
  if (cudaDriverGetVersion(&report.driver_version) != cudaSuccess) report.driver_version = 0;

  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    if (report.driver_version == 0) {
      report.reason = "no CUDA driver found (cudaGetDeviceCount: " + detail::cuda_error_text(err) + ")";
    } else if (report.driver_version < report.runtime_version) {
      report.reason = "the CUDA driver supports CUDA " + version_text(report.driver_version) +
                      ", older than this build's runtime " + version_text(report.runtime_version) +
                      " (cudaGetDeviceCount: " + detail::cuda_error_text(err) + ")";
    } else {
      report.reason = "cudaGetDeviceCount failed: " + detail::cuda_error_text(err);
    }
    return report;
  }
  if (count == 0) {
    report.reason = "no CUDA device is visible (is CUDA_VISIBLE_DEVICES empty?)";
    return report;
  }

  int previous = 0;
  const bool had_previous = cudaGetDevice(&previous) == cudaSuccess;
  for (int device = 0; device < count; ++device) report.devices.push_back(describe_device(device));
  if (had_previous) (void)cudaSetDevice(previous);

  bool any_supported = false;
  for (const auto& info : report.devices) any_supported = any_supported || info.kernels_supported;
  if (!any_supported) report.reason = "no visible CUDA device can run this build's kernels; " +
                                      report.devices.front().kernels_unsupported_reason;
  return report;
}

}  // namespace kernelab
