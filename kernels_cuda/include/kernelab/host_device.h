// KERNELAB_HOST_DEVICE marks functions that the CPU twin and the CUDA kernel
// both call, so the per-element math is written once and cannot drift.
#pragma once

#if defined(__CUDACC__)
#define KERNELAB_HOST_DEVICE __host__ __device__
#else
#define KERNELAB_HOST_DEVICE
#endif

#define KERNELAB_INLINE_HOST_DEVICE KERNELAB_HOST_DEVICE inline
