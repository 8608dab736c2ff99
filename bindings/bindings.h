// The thin pybind11 layer over the kernel library: convert and check Python
// arguments, call the plain C++ API, convert results. No kernel math here.
#pragma once

#include <pybind11/pybind11.h>

namespace kernelab::bindings {

// Bumped whenever the functions _ext exposes change, so kernels_cuda refuses
// a stale compiled module instead of failing later (see kernels_cuda/_loader.py).
constexpr int kInterfaceVersion = 3;

void bind_triad(pybind11::module_& m);
void bind_cuda(pybind11::module_& m);
void bind_attention(pybind11::module_& m);
void bind_attention_cuda(pybind11::module_& m);

}  // namespace kernelab::bindings
