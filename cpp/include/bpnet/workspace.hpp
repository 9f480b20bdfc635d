// bpnet core, floor 4: the buffers of a call. Per-worker block buffers and
// tree-node buffers are kept between calls, so that a training loop allocates
// nothing; one call at a time may use a workspace (the caller's lock guards
// it). Every buffer starts on a 64-byte line (see memory.hpp).
// Dimension letters: see shape.hpp.
#pragma once

#include <mutex>
#include <vector>

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

  // For a sparse X: W^(0)^T (s_0, s_1) once, and a (s_0, s_1) gradient scratch per worker.
  void reserve_sparse(const Shape& shape, int n_workers, bool scratch) {
    const Index n = shape.size(0) * shape.size(1);
    w0t_.resize(n);
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
    return n * sizeof(T) + packed_.bytes();
  }

 private:
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
  const T* W0T = nullptr;                    // (s_0, s_1) W^(0)^T, for a sparse X
  T* dW0T = nullptr;                         // (s_0, s_1) the leaf's dW^(0)^T, for a sparse X
  // Sparse X in cost_grad: the layer-0 part of every node buffer holds
  // [db^(0) (s_1,) | dW^(0)^T (s_0, s_1)] instead of Theta^(0)'s layout, so
  // the scatter of the sparse gradient is contiguous and no node is ever
  // transposed; the tree adds elementwise, and untranspose_layer0 restores
  // the layout once, on the sum.
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

// The buffers of one call: block buffers for nw workers, node buffers as
// listed, the contiguous biases, the narrow layers' packed weights and, for a
// sparse X, W^(0)^T (written here,
// once per call) and, when the call backpropagates without transposed0, a
// dW^(0)^T scratch per worker.
template <typename T>
void prepare_call(const Shape& shape, const T* theta, bool sparse, Workspace<T>& ws, Index B,
                  int nw, const std::vector<int>& node_slots, bool sparse_scratch) {
  ws.reserve(shape, B, nw, node_slots);
  if (sparse) {
    ws.reserve_sparse(shape, nw, sparse_scratch);
    Eigen::Map<RowMat<T>>(ws.w0t(), shape.size(0), shape.size(1)) =
        shape.weights(theta, 0).transpose();
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
    if (sparse_scratch) v.dW0T = ws.sparse_scratch(w);
  }
  return v;
}

}  // namespace bpnet
