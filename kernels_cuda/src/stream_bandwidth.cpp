// cuda_stream_bandwidth(): STREAM-style triad timing, our HBM bandwidth probe.
// Own device buffers (cudaMalloc, not managed memory, so no page migration is
// timed), poisoned output, CUDA-event timing, median over repeats, and a full
// check of the result against the CPU twin.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernelab/cuda_api.h"
#include "kernelab/cuda_check.h"
#include "kernelab/errors.h"
#include "kernelab/triad_cpu.h"
#include "kernelab/triad_cuda.h"
#include "kernelab/triad_math.h"

namespace kernelab {
namespace {

// STREAM's scalar.
constexpr double kScalar = 3.0;
// Host check in slices, so verifying needs no fourth full-size host array.
constexpr std::size_t kVerifyChunkElements = std::size_t{1} << 20;

class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes) { KERNELAB_CUDA_CHECK(cudaMalloc(&ptr_, bytes)); }
  ~DeviceBuffer() { if (ptr_ != nullptr) (void)cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  double* get() const { return static_cast<double*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

class Event {
 public:
  Event() { KERNELAB_CUDA_CHECK(cudaEventCreate(&event_)); }
  ~Event() { if (event_ != nullptr) (void)cudaEventDestroy(event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

class Stream {
 public:
  Stream() { KERNELAB_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() { if (stream_ != nullptr) (void)cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

const CudaDeviceInfo& usable_device(const CudaRuntimeReport& report, int device) {
  if (!report.compiled || report.devices.empty()) {
    throw CudaUnavailable("CUDA is not usable: " + report.reason);
  }
  if (device < 0 || device >= static_cast<int>(report.devices.size())) {
    throw std::invalid_argument("device must be in [0, " + std::to_string(report.devices.size()) +
                                "), got " + std::to_string(device));
  }
  const CudaDeviceInfo& info = report.devices[static_cast<std::size_t>(device)];
  if (!info.kernels_supported) {
    throw CudaUnavailable("CUDA is not usable: " + info.kernels_unsupported_reason);
  }
  return info;
}

// Inputs with varied mantissas, so a wrong index or a stale value shows.
void fill_inputs(std::vector<double>& b, std::vector<double>& c) {
  for (std::size_t i = 0; i < b.size(); ++i) {
    b[i] = 1.0 + static_cast<double>(i % 977) / 977.0;
    c[i] = 2.0 - static_cast<double>(i % 613) / 613.0;
  }
}

// Returns the largest |device - twin|; throws at the first element off by more
// than a few ulps (the device may fuse the multiply-add, the host may not).
double verify(const std::vector<double>& a, const std::vector<double>& b,
              const std::vector<double>& c) {
  std::vector<double> expected(std::min(kVerifyChunkElements, a.size()));
  const double eps = std::numeric_limits<double>::epsilon();
  double max_abs_error = 0.0;
  for (std::size_t start = 0; start < a.size(); start += kVerifyChunkElements) {
    const std::size_t count = std::min(kVerifyChunkElements, a.size() - start);
    triad_cpu(expected.data(), b.data() + start, 1, c.data() + start, 1, kScalar, count);
    for (std::size_t k = 0; k < count; ++k) {
      const std::size_t i = start + k;
      const double error = std::fabs(a[i] - expected[k]);
      const double tolerance = 4.0 * eps * (std::fabs(b[i]) + std::fabs(kScalar * c[i]));
      if (!(error <= tolerance)) {  // also catches NaN, i.e. untouched poison
        throw std::runtime_error("CUDA triad gave a wrong result at element " + std::to_string(i) +
                                 ": got " + std::to_string(a[i]) + ", expected " +
                                 std::to_string(expected[k]));
      }
      max_abs_error = std::max(max_abs_error, error);
    }
  }
  return max_abs_error;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

}  // namespace

StreamBandwidthResult cuda_stream_bandwidth(std::uint64_t n_bytes, int repeats, int warmup,
                                            int device) {
  if (n_bytes < sizeof(double)) {
    throw std::invalid_argument("n_bytes must be at least " + std::to_string(sizeof(double)) +
                                " (one float64 element per array), got " + std::to_string(n_bytes));
  }
  if (n_bytes > std::numeric_limits<std::uint64_t>::max() / 4) {
    throw std::invalid_argument("n_bytes is too large: " + std::to_string(n_bytes));
  }
  if (repeats < 1) throw std::invalid_argument("repeats must be >= 1, got " + std::to_string(repeats));
  if (warmup < 0) throw std::invalid_argument("warmup must be >= 0, got " + std::to_string(warmup));

  const CudaRuntimeReport report = cuda_runtime_report();
  const CudaDeviceInfo& info = usable_device(report, device);
  KERNELAB_CUDA_CHECK(cudaSetDevice(device));

  const std::size_t n = static_cast<std::size_t>(n_bytes / sizeof(double));
  const std::size_t array_bytes = n * sizeof(double);
  // One resident wave of blocks; the grid-stride loop does the rest.
  const unsigned max_blocks = static_cast<unsigned>(
      std::max(1, info.sm_count * info.max_threads_per_sm / static_cast<int>(kTriadThreadsPerBlock)));

  // Device first: running out of device memory should fail before the host
  // spends time filling arrays.
  DeviceBuffer a_dev(array_bytes), b_dev(array_bytes), c_dev(array_bytes);
  Stream stream;
  Event start, stop;

  std::vector<double> b(n), c(n);
  fill_inputs(b, c);
  KERNELAB_CUDA_CHECK(cudaMemcpyAsync(b_dev.get(), b.data(), array_bytes, cudaMemcpyHostToDevice, stream.get()));
  KERNELAB_CUDA_CHECK(cudaMemcpyAsync(c_dev.get(), c.data(), array_bytes, cudaMemcpyHostToDevice, stream.get()));
  // All-ones bytes are a NaN double: any element the kernel skips fails the check.
  KERNELAB_CUDA_CHECK(cudaMemsetAsync(a_dev.get(), 0xFF, array_bytes, stream.get()));

  for (int i = 0; i < warmup; ++i) {
    KERNELAB_CUDA_CHECK(launch_triad(a_dev.get(), b_dev.get(), c_dev.get(), kScalar, n, max_blocks, stream.get()));
  }
  std::vector<double> times_s;
  times_s.reserve(static_cast<std::size_t>(repeats));
  for (int i = 0; i < repeats; ++i) {
    KERNELAB_CUDA_CHECK(cudaEventRecord(start.get(), stream.get()));
    KERNELAB_CUDA_CHECK(launch_triad(a_dev.get(), b_dev.get(), c_dev.get(), kScalar, n, max_blocks, stream.get()));
    KERNELAB_CUDA_CHECK(cudaEventRecord(stop.get(), stream.get()));
    KERNELAB_CUDA_CHECK(cudaEventSynchronize(stop.get()));
    float elapsed_ms = 0.0f;
    KERNELAB_CUDA_CHECK(cudaEventElapsedTime(&elapsed_ms, start.get(), stop.get()));
    times_s.push_back(static_cast<double>(elapsed_ms) * 1e-3);
  }

  std::vector<double> a(n);
  KERNELAB_CUDA_CHECK(cudaMemcpyAsync(a.data(), a_dev.get(), array_bytes, cudaMemcpyDeviceToHost, stream.get()));
  KERNELAB_CUDA_CHECK(cudaStreamSynchronize(stream.get()));

  StreamBandwidthResult result;
  result.max_abs_error = verify(a, b, c);
  result.device = info.name;
  result.device_index = device;
  result.n_elements = n;
  result.bytes_moved = static_cast<std::uint64_t>(n) * triad_bytes_per_element<double>();
  result.repeats = repeats;
  result.warmup = warmup;
  result.time_s = median(times_s);
  result.time_s_min = *std::min_element(times_s.begin(), times_s.end());
  result.time_s_max = *std::max_element(times_s.begin(), times_s.end());
  result.bytes_per_s = result.time_s > 0.0 ? static_cast<double>(result.bytes_moved) / result.time_s : 0.0;
  return result;
}

}  // namespace kernelab
