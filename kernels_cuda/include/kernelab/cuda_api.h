// What the bindings ask of the CUDA side. Plain C++ (no CUDA headers), so the
// same declarations serve the CUDA build (cuda_runtime_report.cpp,
// stream_bandwidth.cpp) and the CPU-only build (cuda_disabled.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kernelab {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int sm_count = 0;
  std::uint64_t memory_bytes = 0;
  std::int64_t clock_hz = 0;         // peak SM clock
  std::int64_t memory_clock_hz = 0;  // peak memory clock
  int memory_bus_width_bits = 0;
  std::int64_t l2_bytes = 0;
  std::int64_t shared_memory_per_sm_bytes = 0;
  std::int64_t shared_memory_per_block_optin_bytes = 0;
  int registers_per_sm = 0;
  int max_threads_per_sm = 0;
  int warp_size = 0;
  std::string pci_bus_id;
  // Whether this build's kernels can run here (the runtime found an image).
  bool kernels_supported = false;
  std::string kernels_unsupported_reason;  // empty when supported
};

struct CudaRuntimeReport {
  bool compiled = false;
  int runtime_version = 0;  // CUDART_VERSION style, 13000 = 13.0; 0 when not compiled
  int driver_version = 0;   // highest CUDA version the driver supports; 0 = no driver
  std::vector<CudaDeviceInfo> devices;
  std::string reason;  // why CUDA is unusable; empty when it is usable

  bool usable() const { return reason.empty(); }
};

// Never throws for lack of CUDA, driver or device: that goes into `reason`.
CudaRuntimeReport cuda_runtime_report();

struct StreamBandwidthResult {
  std::string device;
  int device_index = 0;
  std::uint64_t n_elements = 0;   // float64 elements per array
  std::uint64_t bytes_moved = 0;  // per triad pass: 3 arrays
  int repeats = 0;
  int warmup = 0;
  double time_s = 0.0;  // median over repeats
  double time_s_min = 0.0;
  double time_s_max = 0.0;
  double bytes_per_s = 0.0;  // bytes_moved / time_s
  double max_abs_error = 0.0;  // device result vs the CPU twin
};

// Times the float64 triad on `device` over arrays of n_bytes each (rounded
// down to whole elements) and checks the result against the CPU twin.
// Throws CudaUnavailable (no CUDA), std::invalid_argument (bad arguments),
// CudaError (a CUDA call failed) or std::runtime_error (wrong result).
StreamBandwidthResult cuda_stream_bandwidth(std::uint64_t n_bytes, int repeats, int warmup,
                                            int device);

}  // namespace kernelab
