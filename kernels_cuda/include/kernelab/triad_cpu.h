// CPU twin of the triad kernel: a[i] = b[i*b_stride] + scalar * c[i*c_stride].
// Raw pointers, element strides and a count; callers validate their inputs.
#pragma once

#include <cstddef>

namespace kernelab {

// Strides are in elements and may be negative (reversed views). `a` is
// contiguous and must not overlap `b` or `c`.
template <typename T>
void triad_cpu(T* a, const T* b, std::ptrdiff_t b_stride, const T* c,
               std::ptrdiff_t c_stride, T scalar, std::size_t n);

extern template void triad_cpu<float>(float*, const float*, std::ptrdiff_t,
                                      const float*, std::ptrdiff_t, float,
                                      std::size_t);
extern template void triad_cpu<double>(double*, const double*, std::ptrdiff_t,
                                       const double*, std::ptrdiff_t, double,
                                       std::size_t);

}  // namespace kernelab
