// bpnet core, floor 4: the buffers of a call. Per-worker block buffers and
// tree-node buffers are kept between calls, so that a training loop allocates
// nothing; one call at a time may use a workspace (the caller's lock guards
// it). Every buffer starts on a 64-byte line (see memory.hpp).
// Dimension letters: see shape.hpp.
#pragma once

#include <algorithm>
#include <mutex>
#include <vector>

#include "data.hpp"
#include "memory.hpp"
#include "narrow.hpp"
#include "shape.hpp"

namespace bpnet {

// Rows per block for the kernels: the GEMMs want many rows (the weight
// gradient delta^T A has depth B), the elementwise passes want the block's
// activations near the core. Decided by bench/ (see bench/README.md,
// "block rows"): about kBlockBytes of activations and deltas per block.
constexpr Index kBlockBytes = 12 << 20;
constexpr Index kMinBlockRows = 32;
constexpr Index kMaxBlockRows = 512;

template <typename T>
Index block_rows(const Shape& shape) {
  static const Index budget = [] {
    const char* e = std::getenv("BPNET_BLOCK_BYTES");  // for bench/ experiments only
    return e ? std::max<Index>(1, std::atoll(e)) : kBlockBytes;
  }();
  const Index bytes_per_row =
      static_cast<Index>(sizeof(T)) * (shape.width_sum() + 2 * shape.max_width());
  Index B = budget / std::max<Index>(bytes_per_row, 1);
  B = std::max<Index>(kMinBlockRows, std::min<Index>(kMaxBlockRows, B));
  return B / 16 * 16;
}

// Elements of one block buffer for blocks of B rows (see BlockViews).
template <typename T>
Index block_buffer_size(const Shape& shape, Index B) {
  Index n = padded<T>(B * shape.n_inputs());
  for (int l = 1; l < shape.n_layers(); ++l) n += padded<T>(B * shape.size(l));
  n += 2 * padded<T>(B * shape.max_width()) + padded<T>(shape.max_width());
  n += padded<T>((3 * B * shape.n_outputs() + 2 * B + 16) *
                 static_cast<Index>(sizeof(double) / sizeof(T)));
  return n;
}

template <typename T>
class Workspace {
 public:
  std::mutex mutex;

  T* block_buffer(int w) { return blocks_[w].data(); }
  T* node_buffer(int w, int slot) { return nodes_[w][slot].data(); }
  T* biases() { return biases_.data(); }
  // The k-th leaf worker w took from another worker's range (see api.hpp,
  // cost_grad), allocated on first use by that worker alone.
  T* stolen_buffer(int w, int k, Index P) {
    auto& bufs = stolen_[w];
    if (static_cast<int>(bufs.size()) <= k) bufs.resize(k + 1);
    bufs[k].resize(P);
    return bufs[k].data();
  }
  T* w0t() { return w0t_.data(); }
  PackedWeights<T>& packed() { return packed_; }
  T* sparse_scratch(int w) { return sparse_[w].data(); }
  // A sparse X's touched columns (see touched_columns): U (n_U,) and slot (s_0,).
  std::vector<Index>& touched() { return touched_; }
  std::vector<Index>& slot() { return slot_; }

  // For a sparse X touching n_U columns: W_U (n_U, s_1) once (and room for
  // s_1 more, the combine's copy of layer 0), and a (n_U, s_1) gradient
  // scratch per worker.
  void reserve_sparse(const Shape& shape, Index n_U, int n_workers, bool scratch) {
    const Index n = n_U * shape.size(1);
    w0t_.resize(n + shape.size(1));
    if (!scratch) return;
    if (static_cast<int>(sparse_.size()) < n_workers) sparse_.resize(n_workers);
    for (int w = 0; w < n_workers; ++w) sparse_[w].resize(n);
  }

  // Block buffers for n_workers, node buffers (P,) per worker as listed.
  void reserve(const Shape& shape, Index B, int n_workers, const std::vector<int>& node_slots) {
    if (static_cast<int>(blocks_.size()) < n_workers) blocks_.resize(n_workers);
    if (static_cast<int>(stolen_.size()) < n_workers) stolen_.resize(n_workers);
    for (int w = 0; w < n_workers; ++w) blocks_[w].resize(block_buffer_size<T>(shape, B));
    if (nodes_.size() < node_slots.size()) nodes_.resize(node_slots.size());
    for (std::size_t w = 0; w < node_slots.size(); ++w) {
      if (static_cast<int>(nodes_[w].size()) < node_slots[w]) nodes_[w].resize(node_slots[w]);
      for (int s = 0; s < node_slots[w]; ++s) nodes_[w][s].resize(shape.n_params());
    }
    biases_.resize(shape.total_rows());
  }

  std::size_t bytes() const {
    std::size_t n = static_cast<std::size_t>(biases_.size());
    for (const auto& b : blocks_) n += static_cast<std::size_t>(b.size());
    for (const auto& w : nodes_)
      for (const auto& b : w) n += static_cast<std::size_t>(b.size());
    n += static_cast<std::size_t>(w0t_.size());
    for (const auto& w : stolen_)
      for (const auto& b : w) n += static_cast<std::size_t>(b.size());
    for (const auto& b : sparse_) n += static_cast<std::size_t>(b.size());
    const std::size_t index_bytes = (touched_.capacity() + slot_.capacity()) * sizeof(Index);
    return n * sizeof(T) + packed_.bytes() + index_bytes;
  }

 private:
  std::vector<Index> touched_, slot_;
  AlignedBuffer<T> w0t_;
  std::vector<AlignedBuffer<T>> sparse_;
  std::vector<std::vector<AlignedBuffer<T>>> stolen_;
  std::vector<AlignedBuffer<T>> blocks_;
  std::vector<std::vector<AlignedBuffer<T>>> nodes_;
  AlignedBuffer<T> biases_;
  PackedWeights<T> packed_;
};

// b^(0) .. b^(L-2) copied into one contiguous vector (sum_l s_{l+1},), so the
// kernels never gather the strided bias column of theta.
template <typename T>
void gather_biases(const Shape& shape, const T* theta, T* out) {
  for (int l = 0; l + 1 < shape.n_layers(); ++l) {
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>(out, shape.size(l + 1)) = shape.bias(theta, l);
    out += shape.size(l + 1);
  }
}

// Views of one block buffer for a block of B rows:
//   gather (B, s_0) | A^(1..L-1) (B, s_l) | delta0, delta1 (B, max_width) |
//   colsum (max_width,) | scratch (3, B, K) + 2 B doubles
template <typename T>
struct BlockViews {
  std::vector<RowMap<T>> A;  // A[l] (B, s_l); A[0] may be a view of X
  T* gather;                 // (B, s_0) room for selected rows of X
  T* delta0;                 // (B, max_width)
  T* delta1;                 // (B, max_width)
  T* colsum;                 // (max_width,) column sums of a delta
  double* scratch;           // (3, B, K) + 2 B doubles for the output layer
  std::vector<Index> r;      // (B,) the block's example rows, each read (and checked) once
  const PackedWeights<T>* packed = nullptr;  // the narrow layers' weights (narrow.hpp)
  // A sparse X: the call's rows touch the n_U columns U of X (touched_columns);
  // column j of X is row slot[j] of the compact W_U and dW_U.
  const T* W0T = nullptr;          // (n_U, s_1) W_U = the rows U of W^(0)^T
  T* dW0T = nullptr;               // (n_U, s_1) the leaf's dW_U, when not transposed0
  const Index* slot = nullptr;     // (s_0,) U's index of each touched column, -1 elsewhere
  const Index* touched = nullptr;  // (n_U,) U, ascending
  Index n_touched = 0;             // n_U
  // Sparse X in cost_grad: the layer-0 part of every node buffer holds
  // [db^(0) (s_1,) | dW_U (n_U, s_1)] instead of Theta^(0)'s layout, so the
  // scatter of the sparse gradient is contiguous, no node is ever transposed
  // and the room of the untouched columns is never written; the tree adds
  // the used part elementwise (add_node), and finalize_layer0 writes
  // Theta^(0)'s layout once, on the sum.
  bool transposed0 = false;

  BlockViews(const Shape& shape, T* buffer, Index B) : r(B) {
    gather = buffer;
    T* p = buffer + padded<T>(B * shape.n_inputs());
    A.emplace_back(p, 0, shape.n_inputs(), Eigen::OuterStride<>(shape.n_inputs()));
    for (int l = 1; l < shape.n_layers(); ++l) {
      A.emplace_back(p, B, shape.size(l), Eigen::OuterStride<>(shape.size(l)));
      p += padded<T>(B * shape.size(l));
    }
    delta0 = p;
    delta1 = p + padded<T>(B * shape.max_width());
    colsum = delta1 + padded<T>(B * shape.max_width());
    scratch = reinterpret_cast<double*>(colsum + padded<T>(shape.max_width()));
  }
};

// U (n_U,): the columns of a sparse X that the call's rows touch, ascending,
// and slot (s_0,): slot[U[u]] = u, -1 for every other column. The previous
// call's marks are cleared first (touched still lists them), so a call costs
// O(its nonzeros + n_U log n_U), not O(s_0). When the rows hold at least s_0
// nonzeros (a full batch of a wide X touches nearly every column) U is every
// column and no nonzero is visited here.
template <typename T>
void touched_columns(const Data<T>& d, std::vector<Index>& touched, std::vector<Index>& slot) {
  const Index n = d.csr.n_cols;
  if (static_cast<Index>(slot.size()) != n) {
    slot.assign(n, -1);
  } else {
    for (Index j : touched) slot[j] = -1;
  }
  touched.clear();
  Index nnz = 0;
  for (Index i = 0; i < d.m && nnz < n; ++i) nnz += d.csr.row_nnz(d.rows ? checked_row(d, i) : i);
  if (nnz >= n) {
    touched.resize(n);
    for (Index j = 0; j < n; ++j) touched[j] = slot[j] = j;
    return;
  }
  for (Index i = 0; i < d.m; ++i)
    d.csr.for_row(d.rows ? checked_row(d, i) : i, [&](Index j, T) {
      if (slot[j] < 0) {
        slot[j] = 0;
        touched.push_back(j);
      }
    });
  std::sort(touched.begin(), touched.end());
  for (Index u = 0; u < static_cast<Index>(touched.size()); ++u) slot[touched[u]] = u;
}

// W_U (n_U, s_1): W_U[u, :] = W^(0)[:, U[u]]^T, 8 columns of U at a time so
// that W_U's lines are written whole.
template <typename T>
void gather_w0t(const Shape& shape, const T* theta, const std::vector<Index>& touched, T* WU) {
  const Index s1 = shape.size(1), nU = static_cast<Index>(touched.size());
  const Index stride = shape.size(0) + 1;
  const T* W0 = theta + shape.offset(0) + 1;  // W^(0)[h, j] = W0[h stride + j]
  for (Index u0 = 0; u0 < nU; u0 += 8) {
    const Index u1 = std::min(nU, u0 + 8);
    for (Index h = 0; h < s1; ++h)
      for (Index u = u0; u < u1; ++u) WU[u * s1 + h] = W0[h * stride + touched[u]];
  }
}

// The buffers of one call: block buffers for nw workers, node buffers as
// listed, the contiguous biases, the narrow layers' packed weights and, for a
// sparse X, the touched columns U and W_U (written here, once per call) and,
// when the call backpropagates without transposed0, a dW_U scratch per
// worker.
template <typename T>
void prepare_call(const Shape& shape, const T* theta, const Data<T>& d, Workspace<T>& ws, Index B,
                  int nw, const std::vector<int>& node_slots, bool sparse_scratch) {
  ws.reserve(shape, B, nw, node_slots);
  const bool sparse = d.csr.active();
  if (sparse) {
    touched_columns(d, ws.touched(), ws.slot());
    ws.reserve_sparse(shape, static_cast<Index>(ws.touched().size()), nw, sparse_scratch);
    gather_w0t(shape, theta, ws.touched(), ws.w0t());
  }
  gather_biases(shape, theta, ws.biases());
  ws.packed().pack(shape, theta, sparse);
}

// Worker w's views of its block buffer (and of the sparse buffers).
template <typename T>
BlockViews<T> worker_views(const Shape& shape, Workspace<T>& ws, int w, Index B, bool sparse,
                           bool sparse_scratch) {
  BlockViews<T> v(shape, ws.block_buffer(w), B);
  v.packed = &ws.packed();
  if (sparse) {
    v.W0T = ws.w0t();
    v.slot = ws.slot().data();
    v.touched = ws.touched().data();
    v.n_touched = static_cast<Index>(ws.touched().size());
    if (sparse_scratch) v.dW0T = ws.sparse_scratch(w);
  }
  return v;
}

// The part of a node buffer (P,) a call writes: all of it for a dense X; for
// a sparse X layer 0's [db^(0) | dW_U] (s_1 (1 + n_U),) and the layers
// above (from offset(1)). dst += src over that part.
template <typename T>
void add_node(const Shape& shape, Index n_touched, bool sparse, T* dst, const T* src) {
  const Index P = shape.n_params();
  if (!sparse) {
    ArrayMap<T>(dst, P) += ConstArrayMap<T>(src, P);
    return;
  }
  const Index used0 = shape.size(1) * (1 + n_touched);
  const Index rest = shape.offset(1);  // P when layer 0 is the only one
  ArrayMap<T>(dst, used0) += ConstArrayMap<T>(src, used0);
  ArrayMap<T>(dst + rest, P - rest) += ConstArrayMap<T>(src + rest, P - rest);
}

}  // namespace bpnet
