// kernels_cuda._ext: the one compiled module. Imported only by kernels_cuda,
// which builds the public surface on top of it.
#include <pybind11/pybind11.h>

#include <exception>

#include "bindings.h"
#include "kernelab/errors.h"

namespace py = pybind11;

namespace {

py::dict build_info() {
  py::dict info;
  info["cuda_compiled"] = static_cast<bool>(KERNELAB_WITH_CUDA);
  info["cuda_architectures"] = KERNELAB_CUDA_ARCHITECTURES;        // "80,90"; "" without CUDA
  info["cuda_compiler_version"] = KERNELAB_CUDA_COMPILER_VERSION;  // nvcc's; "" without CUDA
  return info;
}

// CudaUnavailable becomes kernels_cuda.CudaUnavailableError, the class that
// require_cuda() raises too; it is defined in Python so it exists even when
// this module does not. Looked up at throw time: that module is loaded by then.
void translate_cuda_unavailable(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const kernelab::CudaUnavailable& e) {
    try {
      py::object cls = py::module_::import("kernels_cuda._errors").attr("CudaUnavailableError");
      PyErr_SetString(cls.ptr(), e.what());
    } catch (py::error_already_set&) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  }
}

}  // namespace

PYBIND11_MODULE(_ext, m) {
  m.doc() = "kernelab's compiled kernels; private: use the kernels_cuda package";
  m.attr("INTERFACE_VERSION") = kernelab::bindings::kInterfaceVersion;
  m.attr("BUILD_INFO") = build_info();
  py::register_exception_translator(&translate_cuda_unavailable);
  kernelab::bindings::bind_triad(m);
  kernelab::bindings::bind_cuda(m);
  kernelab::bindings::bind_attention(m);
  kernelab::bindings::bind_attention_cuda(m);
}
