// CUDA runtime report and stream-bandwidth bindings: plain structs to dicts.
// Built the same with or without CUDA; the library answers "not compiled".
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings.h"
#include "kernelab/cuda_api.h"

namespace py = pybind11;

namespace kernelab::bindings {
namespace {

py::object none_if_empty(const std::string& text) {
  return text.empty() ? py::object(py::none()) : py::object(py::str(text));
}

py::dict device_dict(const CudaDeviceInfo& d) {
  py::dict out;
  out["index"] = d.index;
  out["name"] = d.name;
  out["compute_capability"] = py::make_tuple(d.compute_capability_major, d.compute_capability_minor);
  out["sm_count"] = d.sm_count;
  out["memory_bytes"] = d.memory_bytes;
  out["clock_hz"] = d.clock_hz;
  out["memory_clock_hz"] = d.memory_clock_hz;
  out["memory_bus_width_bits"] = d.memory_bus_width_bits;
  out["l2_bytes"] = d.l2_bytes;
  out["shared_memory_per_sm_bytes"] = d.shared_memory_per_sm_bytes;
  out["shared_memory_per_block_optin_bytes"] = d.shared_memory_per_block_optin_bytes;
  out["registers_per_sm"] = d.registers_per_sm;
  out["max_threads_per_sm"] = d.max_threads_per_sm;
  out["warp_size"] = d.warp_size;
  out["pci_bus_id"] = d.pci_bus_id;
  out["kernels_supported"] = d.kernels_supported;
  out["reason"] = none_if_empty(d.kernels_unsupported_reason);
  return out;
}

py::dict runtime_report() {
  CudaRuntimeReport report;
  {
    py::gil_scoped_release release;  // the first CUDA call may load the driver
    report = cuda_runtime_report();
  }
  py::list devices;
  for (const auto& d : report.devices) devices.append(device_dict(d));
  py::dict out;
  out["compiled"] = report.compiled;
  out["runtime_version"] = report.runtime_version;
  out["driver_version"] = report.driver_version;
  out["devices"] = devices;
  out["reason"] = none_if_empty(report.reason);
  return out;
}

py::dict stream_bandwidth(std::uint64_t n_bytes, int repeats, int warmup, int device) {
  StreamBandwidthResult r;
  {
    py::gil_scoped_release release;
    r = cuda_stream_bandwidth(n_bytes, repeats, warmup, device);
  }
  py::dict out;
  out["bytes_per_s"] = r.bytes_per_s;
  out["time_s"] = r.time_s;
  out["bytes_moved"] = r.bytes_moved;
  out["device"] = r.device;
  out["device_index"] = r.device_index;
  out["n_elements"] = r.n_elements;
  out["dtype"] = "float64";
  out["repeats"] = r.repeats;
  out["warmup"] = r.warmup;
  out["time_s_min"] = r.time_s_min;
  out["time_s_max"] = r.time_s_max;
  out["max_abs_error"] = r.max_abs_error;
  return out;
}

}  // namespace

void bind_cuda(py::module_& m) {
  m.def("cuda_runtime_report", &runtime_report,
        "What the CUDA runtime sees: versions (ints), devices, and why CUDA is unusable.");
  m.def("cuda_stream_bandwidth", &stream_bandwidth, py::arg("n_bytes"), py::arg("repeats"),
        py::arg("warmup"), py::arg("device"),
        "Time the float64 triad over arrays of n_bytes each and verify the result.");
}

}  // namespace kernelab::bindings
