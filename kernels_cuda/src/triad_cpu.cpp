// CPU twin of the CUDA triad: same per-element math (triad_math.h), any
// element strides on the inputs.
#include "kernelab/triad_cpu.h"

#include "kernelab/triad_math.h"

namespace kernelab {

template <typename T>
void triad_cpu(T* a, const T* b, std::ptrdiff_t b_stride, const T* c,
               std::ptrdiff_t c_stride, T scalar, std::size_t n) {
  if (b_stride == 1 && c_stride == 1) {
    // The common case gets its own loop so the compiler can vectorize it.
    for (std::size_t i = 0; i < n; ++i) a[i] = triad_element(b[i], c[i], scalar);
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::ptrdiff_t>(i);
    a[i] = triad_element(b[k * b_stride], c[k * c_stride], scalar);
  }
}

template void triad_cpu<float>(float*, const float*, std::ptrdiff_t, const float*,
                               std::ptrdiff_t, float, std::size_t);
template void triad_cpu<double>(double*, const double*, std::ptrdiff_t, const double*,
                                std::ptrdiff_t, double, std::size_t);

}  // namespace kernelab
