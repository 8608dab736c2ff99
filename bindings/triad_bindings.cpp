// triad_cpu binding: every check on the Python arrays happens here, before
// the kernel sees a pointer, so no Python input can crash the process.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "bindings.h"
#include "kernelab/triad_cpu.h"

namespace py = pybind11;

namespace kernelab::bindings {
namespace {

std::string type_name(const py::handle& obj) {
  return py::str(py::type::handle_of(obj).attr("__name__"));
}

std::string shape_text(const py::array& arr) {
  return py::str(arr.attr("shape"));
}

py::array as_vector(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " + type_name(obj));
  }
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (arr.ndim() != 1) {
    throw py::value_error(std::string(name) + " must be 1-D, got shape " + shape_text(arr));
  }
  return arr;
}

// Element stride of a checked 1-D array; numpy strides are in bytes and need
// not be a multiple of the item size (e.g. a field of a structured array).
template <typename T>
std::ptrdiff_t element_stride(const py::array& arr, const char* name) {
  if (arr.shape(0) <= 1) return 1;  // the stride of 0 or 1 element is never used
  const py::ssize_t stride_bytes = arr.strides(0);
  if (stride_bytes % static_cast<py::ssize_t>(sizeof(T)) != 0) {
    throw py::value_error(std::string(name) + " has a stride of " + std::to_string(stride_bytes) +
                          " bytes, not a multiple of its " + std::to_string(sizeof(T)) +
                          "-byte elements; pass a copy (numpy.ascontiguousarray)");
  }
  return static_cast<std::ptrdiff_t>(stride_bytes / static_cast<py::ssize_t>(sizeof(T)));
}

template <typename T>
const T* aligned_data(const py::array& arr, const char* name) {
  const auto address = reinterpret_cast<std::uintptr_t>(arr.data());
  if (address % alignof(T) != 0) {
    throw py::value_error(std::string(name) + " is not aligned to its " + std::to_string(alignof(T)) +
                          "-byte elements; pass a copy (numpy.ascontiguousarray)");
  }
  return static_cast<const T*>(arr.data());
}

// [lowest, highest) byte addresses a checked 1-D array touches.
std::pair<std::uintptr_t, std::uintptr_t> byte_span(const py::array& arr) {
  const auto start = reinterpret_cast<std::uintptr_t>(arr.data());
  if (arr.shape(0) == 0) return {start, start};
  const auto last = static_cast<std::intptr_t>(arr.shape(0) - 1) * arr.strides(0);
  const std::uintptr_t lo = last < 0 ? start - static_cast<std::uintptr_t>(-last) : start;
  const std::uintptr_t hi = (last < 0 ? start : start + static_cast<std::uintptr_t>(last)) +
                            static_cast<std::uintptr_t>(arr.itemsize());
  return {lo, hi};
}

bool overlaps(const py::array& x, const py::array& y) {
  const auto [x_lo, x_hi] = byte_span(x);
  const auto [y_lo, y_hi] = byte_span(y);
  return x_lo < y_hi && y_lo < x_hi;
}

// out: a contiguous, writeable array of b's dtype and shape. It may be b or c
// itself (element i is read before it is written), but no other overlap.
template <typename T>
py::array_t<T> checked_out(const py::object& out_obj, const py::array& b, const py::array& c) {
  if (out_obj.is_none()) return py::array_t<T>(b.shape(0));
  if (!py::isinstance<py::array>(out_obj)) {
    throw py::type_error("out must be a numpy.ndarray or None, got " + type_name(out_obj));
  }
  auto out = py::reinterpret_borrow<py::array>(out_obj);
  if (!py::isinstance<py::array_t<T>>(out)) {
    throw py::type_error("out must have the dtype of b (" + std::string(py::str(b.dtype())) +
                         "), got " + std::string(py::str(out.dtype())));
  }
  if (out.ndim() != 1 || out.shape(0) != b.shape(0)) {
    throw py::value_error("out must have the shape of b " + shape_text(b) + ", got " +
                          shape_text(out));
  }
  if (out.shape(0) > 1 && out.strides(0) != static_cast<py::ssize_t>(sizeof(T))) {
    throw py::value_error("out must be contiguous");
  }
  if (!out.writeable()) throw py::value_error("out is read-only");
  aligned_data<T>(out, "out");
  for (const py::array* input : {&b, &c}) {
    const bool same = input->data() == out.data() && (out.shape(0) <= 1 || input->strides(0) == out.strides(0));
    if (!same && overlaps(*input, out)) {
      throw py::value_error("out overlaps b or c without being the same array");
    }
  }
  return py::reinterpret_borrow<py::array_t<T>>(out);
}

template <typename T>
py::array triad_typed(const py::array& b, const py::array& c, double scalar,
                      const py::object& out_obj) {
  const std::ptrdiff_t b_stride = element_stride<T>(b, "b");
  const std::ptrdiff_t c_stride = element_stride<T>(c, "c");
  const T* b_data = aligned_data<T>(b, "b");
  const T* c_data = aligned_data<T>(c, "c");
  py::array_t<T> a = checked_out<T>(out_obj, b, c);
  const auto n = static_cast<std::size_t>(b.shape(0));
  T* a_data = a.mutable_data();
  {
    py::gil_scoped_release release;
    triad_cpu<T>(a_data, b_data, b_stride, c_data, c_stride, static_cast<T>(scalar), n);
  }
  return std::move(a);
}

py::array triad_cpu_binding(const py::object& b_obj, const py::object& c_obj, double scalar,
                            const py::object& out_obj) {
  const py::array b = as_vector(b_obj, "b");
  const py::array c = as_vector(c_obj, "c");
  if (b.shape(0) != c.shape(0)) {
    throw py::value_error("b and c must have the same shape, got " + shape_text(b) + " and " +
                          shape_text(c));
  }
  // Equivalence, not a cast: a float64 array passed with float32 is a caller
  // bug to report, and non-native byte order fails here too.
  const bool b_f32 = py::isinstance<py::array_t<float>>(b);
  const bool b_f64 = py::isinstance<py::array_t<double>>(b);
  if (!b_f32 && !b_f64) {
    throw py::type_error("b must have dtype float32 or float64 (native byte order), got " +
                         std::string(py::str(b.dtype())));
  }
  const bool same = b_f32 ? py::isinstance<py::array_t<float>>(c) : py::isinstance<py::array_t<double>>(c);
  if (!same) {
    throw py::type_error("c must have the same dtype as b (" + std::string(py::str(b.dtype())) +
                         "), got " + std::string(py::str(c.dtype())));
  }
  return b_f32 ? triad_typed<float>(b, c, scalar, out_obj)
               : triad_typed<double>(b, c, scalar, out_obj);
}

}  // namespace

void bind_triad(py::module_& m) {
  m.def("triad_cpu", &triad_cpu_binding, py::arg("b"), py::arg("c"), py::arg("scalar"),
        py::kw_only(), py::arg("out") = py::none(),
        "a = b + scalar * c on the CPU for 1-D float32/float64 arrays; returns out or a new array.");
}

}  // namespace kernelab::bindings
