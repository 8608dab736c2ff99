// CUDA attention bindings (issue 5): device pointers arrive as integers with
// their shapes, dtype, device and stream, already checked by kernels_cuda
// (_attention_gpu.py); the launchers check sizes again and throw ValueError
// (std::invalid_argument) before any launch. Built the same with or without
// CUDA: without it the library answers CudaUnavailableError ("not
// compiled"). seqlens and parents are host int64 numpy arrays. The GIL is
// released while the launchers run (they enqueue and return).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings.h"
#include "kernelab/attention_cuda.h"

namespace py = pybind11;

namespace kernelab::bindings {
namespace {

namespace at = kernelab::attention;

at::CudaDtype cuda_dtype(const std::string& name) {
  if (name == "float32") return at::CudaDtype::f32;
  if (name == "float16") return at::CudaDtype::f16;
  if (name == "bfloat16") return at::CudaDtype::bf16;
  throw py::type_error("dtype must be 'float32', 'float16' or 'bfloat16', got '" + name + "'");
}

const void* cptr(std::uintptr_t p) { return reinterpret_cast<const void*>(p); }
void* mptr(std::uintptr_t p) { return reinterpret_cast<void*>(p); }
float* fptr(std::uintptr_t p) { return reinterpret_cast<float*>(p); }
void* stream_of(std::uintptr_t s) { return reinterpret_cast<void*>(s); }

// A host int64 array (C-contiguous) of `count` elements, or None.
const std::int64_t* host_i64(const py::object& obj, const std::string& name, py::ssize_t count,
                             py::array& keep) {
  if (obj.is_none()) return nullptr;
  if (!py::isinstance<py::array_t<std::int64_t>>(obj)) {
    throw py::type_error(name + " must be a numpy int64 array");
  }
  keep = py::reinterpret_borrow<py::array>(obj);
  if (!(keep.flags() & py::array::c_style)) throw py::value_error(name + " must be C-contiguous");
  if (keep.size() != count) {
    throw py::value_error(name + " must hold " + std::to_string(count) + " integers, got " +
                          std::to_string(keep.size()));
  }
  return static_cast<const std::int64_t*>(keep.data());
}

int pointer_device(std::uintptr_t ptr) {
  py::gil_scoped_release release;
  return at::cuda_pointer_device(cptr(ptr));
}

py::dict split_kv(std::uintptr_t q, std::uintptr_t k, std::uintptr_t v, std::int64_t batch,
                  std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim,
                  std::int64_t max_seqlen, const std::string& dtype, const py::object& seqlens_obj,
                  double scale, int num_splits, std::uintptr_t out, std::uintptr_t lse, int device,
                  std::uintptr_t stream, bool poison) {
  py::array keep;
  const std::int64_t* seqlens = host_i64(seqlens_obj, "seqlens", batch, keep);
  const at::DecodeShape s{batch, heads, kv_heads, head_dim, max_seqlen};
  const at::CudaDtype dt = cuda_dtype(dtype);
  at::SplitKvLaunch r{};
  {
    py::gil_scoped_release release;
    r = at::split_kv_attention_cuda(cptr(q), cptr(k), cptr(v), seqlens, s, dt,
                                    static_cast<float>(scale), num_splits, mptr(out), fptr(lse),
                                    device, stream_of(stream), poison);
  }
  py::dict d;
  d["splits"] = r.splits;
  d["sm_count"] = r.sm_count;
  d["core"] = r.core;
  return d;
}

py::dict lean(std::uintptr_t q, std::uintptr_t k, std::uintptr_t v, std::int64_t batch,
              std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim,
              std::int64_t max_seqlen, const std::string& dtype, const py::object& seqlens_obj,
              double scale, std::int64_t grid, bool two_kernel, std::uintptr_t out,
              std::uintptr_t lse, int device, std::uintptr_t stream, bool poison) {
  py::array keep;
  const std::int64_t* seqlens = host_i64(seqlens_obj, "seqlens", batch, keep);
  const at::DecodeShape s{batch, heads, kv_heads, head_dim, max_seqlen};
  const at::CudaDtype dt = cuda_dtype(dtype);
  at::LeanLaunch r{};
  {
    py::gil_scoped_release release;
    r = at::lean_attention_cuda(cptr(q), cptr(k), cptr(v), seqlens, s, dt, static_cast<float>(scale),
                                grid, two_kernel, mptr(out), fptr(lse), device, stream_of(stream),
                                poison);
  }
  py::dict d;
  d["grid"] = r.grid;
  d["ctas_per_sm"] = r.ctas_per_sm;
  d["sm_count"] = r.sm_count;
  d["two_kernel"] = r.two_kernel;
  d["core"] = r.core;
  return d;
}

int tree(std::uintptr_t q, std::uintptr_t k, std::uintptr_t v, const py::object& parents_obj,
          bool per_batch, std::int64_t batch, std::int64_t tokens, std::int64_t prefix,
          std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim,
          const std::string& dtype, double scale, std::uintptr_t out, std::uintptr_t lse,
          int device, std::uintptr_t stream, bool poison) {
  if (parents_obj.is_none()) throw py::type_error("parents must be a numpy int64 array");
  py::array keep;
  const std::int64_t* parents =
      host_i64(parents_obj, "parents", (per_batch ? batch : 1) * tokens, keep);
  const at::CudaDtype dt = cuda_dtype(dtype);
  py::gil_scoped_release release;
  return at::tree_attention_cuda(cptr(q), cptr(k), cptr(v), parents, per_batch, batch, tokens,
                                 prefix, heads, kv_heads, head_dim, dt, static_cast<float>(scale),
                                 mptr(out), fptr(lse), device, stream_of(stream), poison);
}

void block(std::uintptr_t q, std::uintptr_t k, std::uintptr_t v, std::int64_t batch,
           std::int64_t q_len, std::int64_t kv_len, std::int64_t heads, std::int64_t kv_heads,
           std::int64_t head_dim, bool causal, const std::string& dtype, double scale,
           std::uintptr_t out, std::uintptr_t lse, int device, std::uintptr_t stream, bool poison) {
  const at::CudaDtype dt = cuda_dtype(dtype);
  py::gil_scoped_release release;
  at::block_attention_cuda(cptr(q), cptr(k), cptr(v), batch, q_len, kv_len, heads, kv_heads,
                           head_dim, causal, dt, static_cast<float>(scale), mptr(out), fptr(lse),
                           device, stream_of(stream), poison);
}

void merge(std::uintptr_t out_a, std::uintptr_t lse_a, std::uintptr_t out_b, std::uintptr_t lse_b,
           std::int64_t rows, std::int64_t head_dim, const std::string& dtype, std::uintptr_t out,
           std::uintptr_t lse, int device, std::uintptr_t stream, bool poison) {
  const at::CudaDtype dt = cuda_dtype(dtype);
  py::gil_scoped_release release;
  at::merge_attention_cuda(cptr(out_a), fptr(lse_a), cptr(out_b), fptr(lse_b), rows, head_dim, dt,
                           mptr(out), fptr(lse), device, stream_of(stream), poison);
}

void ring(std::uintptr_t q, std::uintptr_t k, std::uintptr_t v, std::int64_t batch,
          std::int64_t seq, std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim,
          std::int64_t world, bool causal, const std::string& dtype, double scale,
          std::uintptr_t out, std::uintptr_t lse, int device, std::uintptr_t stream, bool poison) {
  const at::CudaDtype dt = cuda_dtype(dtype);
  py::gil_scoped_release release;
  at::ring_attention_cuda(cptr(q), cptr(k), cptr(v), batch, seq, heads, kv_heads, head_dim, world,
                          causal, dt, static_cast<float>(scale), mptr(out), fptr(lse), device,
                          stream_of(stream), poison);
}

}  // namespace

void bind_attention_cuda(py::module_& m) {
  m.def("cuda_pointer_device", &pointer_device, py::arg("ptr"),
        "The CUDA device holding a device pointer; ValueError if it is not device memory.");
  m.def("split_kv_attention_cuda", &split_kv, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("batch"), py::arg("heads"), py::arg("kv_heads"), py::arg("head_dim"),
        py::arg("max_seqlen"), py::arg("dtype"), py::arg("seqlens"), py::arg("scale"),
        py::arg("num_splits"), py::arg("out"), py::arg("lse"), py::arg("device"), py::arg("stream"),
        py::arg("poison"), "FlashDecoding on the GPU (enqueued); returns {splits, sm_count, core}.");
  m.def("lean_attention_cuda", &lean, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("batch"),
        py::arg("heads"), py::arg("kv_heads"), py::arg("head_dim"), py::arg("max_seqlen"),
        py::arg("dtype"), py::arg("seqlens"), py::arg("scale"), py::arg("grid"),
        py::arg("two_kernel"), py::arg("out"), py::arg("lse"), py::arg("device"), py::arg("stream"),
        py::arg("poison"),
        "LeanAttention on the GPU (enqueued); returns {grid, ctas_per_sm, sm_count, two_kernel, core}.");
  m.def("tree_attention_cuda", &tree, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("parents"),
        py::arg("parents_per_batch"), py::arg("batch"), py::arg("tree_tokens"), py::arg("prefix"),
        py::arg("heads"), py::arg("kv_heads"), py::arg("head_dim"), py::arg("dtype"),
        py::arg("scale"), py::arg("out"), py::arg("lse"), py::arg("device"), py::arg("stream"),
        py::arg("poison"), "Tree attention on the GPU (enqueued); returns the KV splits used.");
  m.def("block_attention_cuda", &block, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("batch"),
        py::arg("q_len"), py::arg("kv_len"), py::arg("heads"), py::arg("kv_heads"),
        py::arg("head_dim"), py::arg("causal"), py::arg("dtype"), py::arg("scale"), py::arg("out"),
        py::arg("lse"), py::arg("device"), py::arg("stream"), py::arg("poison"),
        "Block attention on the GPU (enqueued).");
  m.def("merge_attention_cuda", &merge, py::arg("out_a"), py::arg("lse_a"), py::arg("out_b"),
        py::arg("lse_b"), py::arg("rows"), py::arg("head_dim"), py::arg("dtype"), py::arg("out"),
        py::arg("lse"), py::arg("device"), py::arg("stream"), py::arg("poison"),
        "LSE merge on the GPU (enqueued).");
  m.def("ring_attention_cuda", &ring, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("batch"),
        py::arg("seq"), py::arg("heads"), py::arg("kv_heads"), py::arg("head_dim"),
        py::arg("world_size"), py::arg("causal"), py::arg("dtype"), py::arg("scale"), py::arg("out"),
        py::arg("lse"), py::arg("device"), py::arg("stream"), py::arg("poison"),
        "Ring attention over virtual ranks on one GPU (enqueued).");
}

}  // namespace kernelab::bindings
