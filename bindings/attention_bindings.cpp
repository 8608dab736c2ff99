// Attention CPU twins and their schedule (issue 5): every check on the Python
// arrays happens here, before a kernel sees a pointer, so no Python input can
// crash the process. Arrays must be C-contiguous numpy arrays in native byte
// order (no copies are made); q, k, v and out float32 or float16, lse
// float32, seqlens and parents int64. The kernels run without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings.h"
#include "kernelab/attention_cpu.h"
#include "kernelab/attention_schedule.h"

namespace py = pybind11;

namespace kernelab::bindings {
namespace {

namespace at = kernelab::attention;

enum class Dtype { f32, f16 };

std::string type_name(const py::handle& obj) {
  return py::str(py::type::handle_of(obj).attr("__name__"));
}

std::string shape_text(const py::array& arr) { return py::str(arr.attr("shape")); }

std::string shape_text(const std::vector<py::ssize_t>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    text += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) text += ",";
    if (i + 1 < shape.size()) text += " ";
  }
  return text + ")";
}

// A C-contiguous, aligned numpy array of ndim dimensions.
py::array checked_array(const py::handle& obj, const std::string& name, py::ssize_t ndim) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(name + " must be a numpy.ndarray, got " + type_name(obj));
  }
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (arr.ndim() != ndim) {
    throw py::value_error(name + " must be " + std::to_string(ndim) + "-D, got shape " +
                          shape_text(arr));
  }
  if (!(arr.flags() & py::array::c_style)) {
    throw py::value_error(name + " must be C-contiguous; pass numpy.ascontiguousarray(" + name + ")");
  }
  const auto address = reinterpret_cast<std::uintptr_t>(arr.data());
  if (arr.itemsize() > 0 && address % static_cast<std::uintptr_t>(arr.itemsize()) != 0) {
    throw py::value_error(name + " is not aligned to its elements; pass a copy");
  }
  return arr;
}

Dtype float_dtype(const py::array& arr, const std::string& name) {
  if (py::isinstance<py::array_t<float>>(arr)) return Dtype::f32;
  if (arr.dtype().equal(py::dtype("=f2"))) return Dtype::f16;
  throw py::type_error(name + " must have dtype float32 or float16 (native byte order), got " +
                       std::string(py::str(arr.dtype())));
}

void expect_dtype(const py::array& arr, const std::string& name, Dtype want, const std::string& like) {
  const bool ok = want == Dtype::f32 ? py::isinstance<py::array_t<float>>(arr)
                                     : arr.dtype().equal(py::dtype("=f2"));
  if (!ok) {
    throw py::type_error(name + " must have the dtype of " + like + " (" +
                         (want == Dtype::f32 ? "float32" : "float16") + "), got " +
                         std::string(py::str(arr.dtype())));
  }
}

void expect_f32(const py::array& arr, const std::string& name) {
  if (!py::isinstance<py::array_t<float>>(arr)) {
    throw py::type_error(name + " must have dtype float32, got " + std::string(py::str(arr.dtype())));
  }
}

void expect_i64(const py::array& arr, const std::string& name) {
  if (!py::isinstance<py::array_t<std::int64_t>>(arr)) {
    throw py::type_error(name + " must have dtype int64, got " + std::string(py::str(arr.dtype())));
  }
}

void expect_shape(const py::array& arr, const std::string& name, const std::vector<py::ssize_t>& shape) {
  bool ok = arr.ndim() == static_cast<py::ssize_t>(shape.size());
  for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = arr.shape(i) == shape[i];
  if (!ok) {
    throw py::value_error(name + " must have shape " + shape_text(shape) + ", got " + shape_text(arr));
  }
}

void expect_writeable(const py::array& arr, const std::string& name) {
  if (!arr.writeable()) throw py::value_error(name + " is read-only");
}

template <typename T>
const T* cptr(const py::array& a) { return static_cast<const T*>(a.data()); }
template <typename T>
T* mptr(py::array& a) { return static_cast<T*>(a.mutable_data()); }

// q, k, v of one float dtype; out of that dtype, lse float32; shapes given.
struct Checked {
  py::array q, k, v, out, lse;
  Dtype dtype;
};

Checked check_qkv(const py::object& q_obj, const py::object& k_obj, const py::object& v_obj,
                  const py::object& out_obj, const py::object& lse_obj, py::ssize_t q_ndim,
                  py::ssize_t kv_ndim) {
  Checked c;
  c.q = checked_array(q_obj, "q", q_ndim);
  c.k = checked_array(k_obj, "k", kv_ndim);
  c.v = checked_array(v_obj, "v", kv_ndim);
  c.dtype = float_dtype(c.q, "q");
  expect_dtype(c.k, "k", c.dtype, "q");
  expect_dtype(c.v, "v", c.dtype, "q");
  std::vector<py::ssize_t> kshape(c.k.shape(), c.k.shape() + kv_ndim);
  expect_shape(c.v, "v", kshape);
  if (c.q.shape(q_ndim - 1) != c.k.shape(kv_ndim - 1)) {
    throw py::value_error("q and k must have the same head_dim, got " + std::to_string(c.q.shape(q_ndim - 1)) +
                          " and " + std::to_string(c.k.shape(kv_ndim - 1)));
  }
  if (c.q.shape(0) != c.k.shape(0)) {
    throw py::value_error("q and k must have the same batch, got " + std::to_string(c.q.shape(0)) +
                          " and " + std::to_string(c.k.shape(0)));
  }
  const py::ssize_t hq = c.q.shape(q_ndim - 2), hkv = c.k.shape(kv_ndim - 2);
  if (hkv < 1 || hq < 1 || hq % hkv != 0) {
    throw py::value_error("the query heads of q (" + std::to_string(hq) +
                          ") must be a positive multiple of the KV heads of k (" + std::to_string(hkv) + ")");
  }
  c.out = checked_array(out_obj, "out", q_ndim);
  expect_dtype(c.out, "out", c.dtype, "q");
  std::vector<py::ssize_t> qshape(c.q.shape(), c.q.shape() + q_ndim);
  expect_shape(c.out, "out", qshape);
  expect_writeable(c.out, "out");
  c.lse = checked_array(lse_obj, "lse", q_ndim - 1);
  expect_f32(c.lse, "lse");
  expect_shape(c.lse, "lse", std::vector<py::ssize_t>(qshape.begin(), qshape.end() - 1));
  expect_writeable(c.lse, "lse");
  return c;
}

const std::int64_t* checked_seqlens(const py::object& obj, py::ssize_t batch, py::array& keep) {
  if (obj.is_none()) return nullptr;
  keep = checked_array(obj, "seqlens", 1);
  expect_i64(keep, "seqlens");
  expect_shape(keep, "seqlens", {batch});
  return cptr<std::int64_t>(keep);
}

at::DecodeShape decode_shape(const Checked& c) {
  return at::DecodeShape{c.q.shape(0), c.q.shape(1), c.k.shape(2), c.q.shape(2), c.k.shape(1)};
}

// --- kernels -------------------------------------------------------------------------

void lean_binding(const py::object& q, const py::object& k, const py::object& v,
                  const py::object& seqlens_obj, double scale, std::int64_t grid, std::int64_t tile,
                  const py::object& out, const py::object& lse) {
  Checked c = check_qkv(q, k, v, out, lse, 3, 4);
  py::array keep;
  const std::int64_t* seqlens = checked_seqlens(seqlens_obj, c.q.shape(0), keep);
  const at::DecodeShape s = decode_shape(c);
  const auto sc = static_cast<float>(scale);
  float* lse_p = mptr<float>(c.lse);
  if (c.dtype == Dtype::f32) {
    py::gil_scoped_release release;
    at::lean_attention_cpu(cptr<float>(c.q), cptr<float>(c.k), cptr<float>(c.v), seqlens, s, sc,
                           grid, tile, mptr<float>(c.out), lse_p);
  } else {
    py::gil_scoped_release release;
    at::lean_attention_cpu(cptr<Half>(c.q), cptr<Half>(c.k), cptr<Half>(c.v), seqlens, s, sc, grid,
                           tile, mptr<Half>(c.out), lse_p);
  }
}

int split_kv_binding(const py::object& q, const py::object& k, const py::object& v,
                     const py::object& seqlens_obj, double scale, int num_splits,
                     std::int64_t sm_count, const py::object& out, const py::object& lse) {
  Checked c = check_qkv(q, k, v, out, lse, 3, 4);
  py::array keep;
  const std::int64_t* seqlens = checked_seqlens(seqlens_obj, c.q.shape(0), keep);
  const at::DecodeShape s = decode_shape(c);
  const auto sc = static_cast<float>(scale);
  float* lse_p = mptr<float>(c.lse);
  py::gil_scoped_release release;
  if (c.dtype == Dtype::f32) {
    return at::split_kv_attention_cpu(cptr<float>(c.q), cptr<float>(c.k), cptr<float>(c.v), seqlens,
                                      s, sc, num_splits, sm_count, mptr<float>(c.out), lse_p);
  }
  return at::split_kv_attention_cpu(cptr<Half>(c.q), cptr<Half>(c.k), cptr<Half>(c.v), seqlens, s,
                                    sc, num_splits, sm_count, mptr<Half>(c.out), lse_p);
}

void tree_binding(const py::object& q, const py::object& k, const py::object& v,
                  const py::object& parents_obj, double scale, const py::object& out,
                  const py::object& lse) {
  Checked c = check_qkv(q, k, v, out, lse, 4, 4);
  const py::ssize_t batch = c.q.shape(0), tokens = c.q.shape(1);
  if (!py::isinstance<py::array>(parents_obj)) {
    throw py::type_error("parents must be a numpy.ndarray, got " + type_name(parents_obj));
  }
  const auto parents_nd = py::reinterpret_borrow<py::array>(parents_obj).ndim();
  if (parents_nd != 1 && parents_nd != 2) {
    throw py::value_error("parents must be 1-D [T] or 2-D [B, T]");
  }
  py::array parents = checked_array(parents_obj, "parents", parents_nd);
  expect_i64(parents, "parents");
  const bool per_batch = parents_nd == 2;
  if (per_batch) expect_shape(parents, "parents", {batch, tokens});
  else expect_shape(parents, "parents", {tokens});
  if (c.k.shape(1) < tokens) {
    throw py::value_error("k must hold the prefix and the " + std::to_string(tokens) +
                          " tree tokens, got " + std::to_string(c.k.shape(1)) + " positions");
  }
  const std::int64_t prefix = c.k.shape(1) - tokens;
  const std::int64_t hq = c.q.shape(2), hkv = c.k.shape(2), d = c.q.shape(3);
  const auto sc = static_cast<float>(scale);
  const std::int64_t* par = cptr<std::int64_t>(parents);
  float* lse_p = mptr<float>(c.lse);
  py::gil_scoped_release release;
  if (c.dtype == Dtype::f32) {
    at::tree_attention_cpu(cptr<float>(c.q), cptr<float>(c.k), cptr<float>(c.v), par, per_batch,
                           batch, tokens, prefix, hq, hkv, d, sc, mptr<float>(c.out), lse_p);
  } else {
    at::tree_attention_cpu(cptr<Half>(c.q), cptr<Half>(c.k), cptr<Half>(c.v), par, per_batch, batch,
                           tokens, prefix, hq, hkv, d, sc, mptr<Half>(c.out), lse_p);
  }
}

void block_binding(const py::object& q, const py::object& k, const py::object& v, bool causal,
                   double scale, const py::object& out, const py::object& lse) {
  Checked c = check_qkv(q, k, v, out, lse, 4, 4);
  const std::int64_t b = c.q.shape(0), sq = c.q.shape(1), sk = c.k.shape(1), hq = c.q.shape(2),
                     hkv = c.k.shape(2), d = c.q.shape(3);
  const auto sc = static_cast<float>(scale);
  float* lse_p = mptr<float>(c.lse);
  py::gil_scoped_release release;
  if (c.dtype == Dtype::f32) {
    at::block_attention_cpu(cptr<float>(c.q), cptr<float>(c.k), cptr<float>(c.v), b, sq, sk, hq, hkv,
                            d, causal, sc, mptr<float>(c.out), lse_p);
  } else {
    at::block_attention_cpu(cptr<Half>(c.q), cptr<Half>(c.k), cptr<Half>(c.v), b, sq, sk, hq, hkv, d,
                            causal, sc, mptr<Half>(c.out), lse_p);
  }
}

void ring_binding(const py::object& q, const py::object& k, const py::object& v,
                  std::int64_t world, bool causal, double scale, const py::object& out,
                  const py::object& lse) {
  Checked c = check_qkv(q, k, v, out, lse, 4, 4);
  if (c.q.shape(1) != c.k.shape(1)) {
    throw py::value_error("q and k must have the same sequence length, got " +
                          std::to_string(c.q.shape(1)) + " and " + std::to_string(c.k.shape(1)));
  }
  const std::int64_t b = c.q.shape(0), s = c.q.shape(1), hq = c.q.shape(2), hkv = c.k.shape(2),
                     d = c.q.shape(3);
  const auto sc = static_cast<float>(scale);
  float* lse_p = mptr<float>(c.lse);
  py::gil_scoped_release release;
  if (c.dtype == Dtype::f32) {
    at::ring_attention_cpu(cptr<float>(c.q), cptr<float>(c.k), cptr<float>(c.v), b, s, hq, hkv, d,
                           world, causal, sc, mptr<float>(c.out), lse_p);
  } else {
    at::ring_attention_cpu(cptr<Half>(c.q), cptr<Half>(c.k), cptr<Half>(c.v), b, s, hq, hkv, d, world,
                           causal, sc, mptr<Half>(c.out), lse_p);
  }
}

void merge_binding(const py::object& a_obj, const py::object& la_obj, const py::object& b_obj,
                   const py::object& lb_obj, const py::object& out_obj, const py::object& lse_obj) {
  if (!py::isinstance<py::array>(a_obj)) {
    throw py::type_error("out_a must be a numpy.ndarray, got " + type_name(a_obj));
  }
  const py::ssize_t nd = py::reinterpret_borrow<py::array>(a_obj).ndim();
  if (nd < 1) throw py::value_error("out_a must have at least 1 dimension (head_dim)");
  py::array a = checked_array(a_obj, "out_a", nd);
  py::array b = checked_array(b_obj, "out_b", nd);
  const Dtype dt = float_dtype(a, "out_a");
  expect_dtype(b, "out_b", dt, "out_a");
  std::vector<py::ssize_t> shape(a.shape(), a.shape() + nd);
  expect_shape(b, "out_b", shape);
  const std::vector<py::ssize_t> lshape(shape.begin(), shape.end() - 1);
  py::array la = checked_array(la_obj, "lse_a", nd - 1);
  py::array lb = checked_array(lb_obj, "lse_b", nd - 1);
  expect_f32(la, "lse_a");
  expect_f32(lb, "lse_b");
  expect_shape(la, "lse_a", lshape);
  expect_shape(lb, "lse_b", lshape);
  py::array out = checked_array(out_obj, "out", nd);
  expect_dtype(out, "out", dt, "out_a");
  expect_shape(out, "out", shape);
  expect_writeable(out, "out");
  py::array lse = checked_array(lse_obj, "lse", nd - 1);
  expect_f32(lse, "lse");
  expect_shape(lse, "lse", lshape);
  expect_writeable(lse, "lse");
  const std::int64_t d = shape.back();
  const std::int64_t rows = d > 0 ? static_cast<std::int64_t>(a.size()) / d : 0;
  float* lse_p = mptr<float>(lse);
  py::gil_scoped_release release;
  if (dt == Dtype::f32) {
    at::merge_attention_cpu(cptr<float>(a), cptr<float>(la), cptr<float>(b), cptr<float>(lb), rows, d,
                            mptr<float>(out), lse_p);
  } else {
    at::merge_attention_cpu(cptr<Half>(a), cptr<float>(la), cptr<Half>(b), cptr<float>(lb), rows, d,
                            mptr<Half>(out), lse_p);
  }
}

// --- schedule ------------------------------------------------------------------------

int splits_binding(std::int64_t ctas, std::int64_t n_blocks, std::int64_t sm_count, int max_splits) {
  if (ctas < 1) throw py::value_error("ctas must be >= 1, got " + std::to_string(ctas));
  if (sm_count < 1) throw py::value_error("sm_count must be >= 1, got " + std::to_string(sm_count));
  if (max_splits < 1) throw py::value_error("max_splits must be >= 1, got " + std::to_string(max_splits));
  return at::num_splits_heuristic(ctas, n_blocks, sm_count, max_splits);
}

py::dict lean_partition_binding(const std::vector<std::int64_t>& seqlens, std::int64_t kv_heads,
                                std::int64_t tile, std::int64_t grid) {
  if (seqlens.empty()) throw py::value_error("seqlens must hold >= 1 sequence");
  for (std::size_t b = 0; b < seqlens.size(); ++b) {
    if (seqlens[b] < 0) throw py::value_error("seqlens[" + std::to_string(b) + "] must be >= 0");
  }
  if (kv_heads < 1) throw py::value_error("kv_heads must be >= 1, got " + std::to_string(kv_heads));
  if (tile < 1) throw py::value_error("tile must be >= 1, got " + std::to_string(tile));
  if (grid < 1) throw py::value_error("grid must be >= 1, got " + std::to_string(grid));
  const auto batch = static_cast<std::int64_t>(seqlens.size());
  const std::int64_t n_out = batch * kv_heads;
  std::vector<std::int64_t> offsets(n_out + 1);
  const std::int64_t total = at::lean_tile_offsets(seqlens.data(), batch, 0, kv_heads, tile, offsets.data());
  std::vector<std::int64_t> begin(grid), end(grid), host(n_out), last(n_out);
  py::list segments;
  for (std::int64_t c = 0; c < grid; ++c) {
    begin[c] = at::lean_cta_begin(total, grid, c);
    end[c] = at::lean_cta_end(total, grid, c);
    for (std::int64_t t = begin[c]; t < end[c];) {
      const at::LeanSegment s = at::lean_segment_at(offsets.data(), n_out, end[c], t);
      segments.append(py::make_tuple(c, s.output, s.tile_begin, s.tile_end, s.is_host, s.is_whole));
      t += s.tile_end - s.tile_begin;
    }
  }
  for (std::int64_t o = 0; o < n_out; ++o) {
    host[o] = at::lean_host_cta(offsets.data(), n_out, grid, o);
    last[o] = at::lean_last_cta(offsets.data(), n_out, grid, o);
  }
  py::dict d;
  d["total_tiles"] = total;
  d["offsets"] = offsets;
  d["cta_begin"] = begin;
  d["cta_end"] = end;
  d["host"] = host;
  d["last"] = last;
  d["segments"] = segments;
  return d;
}

py::dict ring_layout_binding(std::int64_t seq, std::int64_t world, bool causal) {
  if (world < 1) throw py::value_error("world_size must be >= 1, got " + std::to_string(world));
  const std::int64_t parts = causal ? 2 * world : world;
  if (seq < 1 || seq % parts != 0) {
    throw py::value_error("the sequence length " + std::to_string(seq) + " must be a positive multiple of " +
                          std::to_string(parts));
  }
  const std::int64_t rows = at::ring_block_rows(seq, world);
  py::list global_rows, steps;
  for (std::int64_t r = 0; r < world; ++r) {
    std::vector<std::int64_t> g(rows);
    for (std::int64_t i = 0; i < rows; ++i) g[i] = at::ring_global_row(i, r, world, seq, causal);
    global_rows.append(g);
    py::list rank_steps;
    for (std::int64_t t = 0; t < world; ++t) {
      const at::RingStep s = at::ring_step(r, t, world, seq, causal);
      rank_steps.append(py::make_tuple(s.source, s.q_begin, s.q_end, s.kv_begin, s.kv_end, s.causal));
    }
    steps.append(rank_steps);
  }
  py::dict d;
  d["global_rows"] = global_rows;
  d["steps"] = steps;
  return d;
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def("lean_attention_cpu", &lean_binding, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("seqlens"), py::arg("scale"), py::arg("grid"), py::arg("tile"), py::arg("out"),
        py::arg("lse"), "LeanAttention decode CPU twin; writes out and lse.");
  m.def("split_kv_attention_cpu", &split_kv_binding, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("seqlens"), py::arg("scale"), py::arg("num_splits"), py::arg("sm_count"),
        py::arg("out"), py::arg("lse"),
        "FlashDecoding CPU twin; writes out and lse, returns the splits used.");
  m.def("tree_attention_cpu", &tree_binding, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("parents"), py::arg("scale"), py::arg("out"), py::arg("lse"),
        "Tree attention CPU twin; writes out and lse.");
  m.def("block_attention_cpu", &block_binding, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("causal"), py::arg("scale"), py::arg("out"), py::arg("lse"),
        "Block attention CPU twin; writes out and lse.");
  m.def("ring_attention_cpu", &ring_binding, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("world_size"), py::arg("causal"), py::arg("scale"), py::arg("out"), py::arg("lse"),
        "Ring attention CPU twin over virtual ranks; writes out and lse.");
  m.def("merge_attention_cpu", &merge_binding, py::arg("out_a"), py::arg("lse_a"), py::arg("out_b"),
        py::arg("lse_b"), py::arg("out"), py::arg("lse"), "LSE merge of two partials; writes out and lse.");
  m.def("attention_schedule_splits", &splits_binding, py::arg("ctas"), py::arg("n_blocks"),
        py::arg("sm_count"), py::arg("max_splits") = at::kMaxSplits,
        "FlashAttention-2's num_splits_heuristic (slots = 2 x sm_count).");
  m.def("attention_lean_partition", &lean_partition_binding, py::arg("seqlens"), py::arg("kv_heads"),
        py::arg("tile"), py::arg("grid"), "LeanAttention's stream-K partition, as the kernels use it.");
  m.def("attention_ring_layout", &ring_layout_binding, py::arg("seq"), py::arg("world_size"),
        py::arg("causal"), "Ring attention's per-rank global rows and per-step plan.");
  m.attr("ATTENTION_MAX_TREE_TOKENS") = at::kMaxTreeTokens;
  m.attr("ATTENTION_MAX_SPLITS") = at::kMaxSplits;
  m.attr("ATTENTION_DEFAULT_SM_COUNT") = at::kDefaultSmCount;
  m.attr("ATTENTION_DEFAULT_LEAN_CTAS_PER_SM") = at::kDefaultLeanCtasPerSm;
}

}  // namespace kernelab::bindings
