// bpnet core, floor 0: the network's shape and views of theta.
//
// The core computes the forward pass, the regularized cost and the backprop
// gradient of a fully connected network, templated on the scalar type T
// (float or double). Pure C++/Eigen: nothing under cpp/include knows Python.
//
// Dimension letters (every shape comment in the core's headers uses them):
//   m    examples (rows of X, or of the `rows` selection)
//   L    layers, L >= 2; layer l = 0 .. L-1 has s_l units (s_0 inputs)
//   K    outputs, K = s_{L-1}
//   P    parameters, P = sum_l s_{l+1} (s_l + 1)
//   B    rows of one block (a cache-sized slice of the examples)
//   C    leaves: fixed row ranges whose gradient sums are added in a fixed tree
//
// theta (P,) holds Theta^(0) .. Theta^(L-2) unrolled row-major in layer order.
// Theta^(l) has shape (s_{l+1}, s_l + 1); column 0 multiplies the bias unit.
// We write W^(l) = Theta^(l)[:, 1:] (s_{l+1}, s_l) and b^(l) = Theta^(l)[:, 0].
//
// The headers, one way down (each includes only those above it):
//   shape.hpp     Index, Eigen maps, Shape (this file)
//   data.hpp      the examples (dense or CSR), their checks and error messages
//   memory.hpp    64-byte aligned buffers
//   units.hpp     each hidden activation and output unit: forward next to backward
//   narrow.hpp    width-specialized products for narrow layers (weights packed once)
//   workspace.hpp per-call buffers, block views, block rows
//   block.hpp     one block of rows: forward_block / backward_block, one leaf
//   tree.hpp      fixed leaves, the even split, the fixed reduction tree
//   finalize.hpp  merged sums -> gradient and cost
//   parallel.hpp  the only file that says omp: thread policy, one parallel runtime
//   api.hpp       the entry points, each a short composition of the above
//   optim.hpp     the optimizers' update kernels
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace bpnet {

using Index = std::ptrdiff_t;

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using RowMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using ConstRowMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using StridedVec =
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>, Eigen::Unaligned, Eigen::InnerStride<>>;
template <typename T>
using ConstStridedVec =
    Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>, Eigen::Unaligned, Eigen::InnerStride<>>;
template <typename T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Whether x[0, n) is all finite: 0 x is 0 for a finite x and NaN for an
// infinite or NaN one, and the sum runs in packets (Eigen's allFinite() tests
// one element and branches per element).
template <typename T>
bool all_finite(const T* x, Index n) {
  return (ConstArrayMap<T>(x, n) * T(0)).sum() == T(0);
}

// Network shape: layer sizes and the offset of each Theta^(l) inside theta.
class Shape {
 public:
  explicit Shape(std::vector<Index> sizes) : sizes_(std::move(sizes)) {
    if (sizes_.size() < 2)
      throw std::invalid_argument(
          "layer_sizes must have at least 2 layers (input and output); got " +
          std::to_string(sizes_.size()));
    // Activations of one row and the gradient must stay far from overflow:
    // P * sizeof(double) and B * sum(s_l) * sizeof(double) must fit in Index.
    constexpr Index limit = std::numeric_limits<Index>::max() / 64;
    offsets_.push_back(0);
    Index width_sum = 0;
    for (std::size_t l = 0; l < sizes_.size(); ++l) {
      const Index s = sizes_[l];
      if (s < 1)
        throw std::invalid_argument("layer_sizes[" + std::to_string(l) + "] must be >= 1; got " +
                                    std::to_string(s));
      if (s > limit / 1024 || width_sum > limit / 1024 - s)
        throw std::invalid_argument("layer_sizes[" + std::to_string(l) +
                                    "] = " + std::to_string(s) + " is too large");
      width_sum += s;
      if (l + 1 < sizes_.size()) {
        const Index theta_rows = sizes_[l + 1], theta_cols = s + 1;  // Theta^(l)'s shape
        if (theta_rows < 1) continue;  // reported when the loop reaches l + 1
        Index count = 0, total = 0;
        if (theta_rows > limit / 1024 || __builtin_mul_overflow(theta_rows, theta_cols, &count) ||
            __builtin_add_overflow(offsets_.back(), count, &total) || total > limit)
          throw std::invalid_argument("layer_sizes give a parameter count that overflows (layers " +
                                      std::to_string(l) + " -> " + std::to_string(l + 1) + ")");
        offsets_.push_back(total);
      }
    }
    max_width_ = *std::max_element(sizes_.begin() + 1, sizes_.end());
    width_sum_ = width_sum;
  }

  int n_layers() const { return static_cast<int>(sizes_.size()); }
  Index size(int l) const { return sizes_[l]; }
  Index n_inputs() const { return sizes_.front(); }
  Index n_outputs() const { return sizes_.back(); }
  Index n_params() const { return offsets_.back(); }
  Index offset(int l) const { return offsets_[l]; }
  Index max_width() const { return max_width_; }  // max(s_1 .. s_{L-1})
  Index width_sum() const { return width_sum_; }  // s_0 + ... + s_{L-1}
  const std::vector<Index>& sizes() const { return sizes_; }

  // W^(l) = Theta^(l)[:, 1:]  (s_{l+1}, s_l), a strided view into theta.
  template <typename T>
  ConstRowMap<T> weights(const T* theta, int l) const {
    return ConstRowMap<T>(theta + offsets_[l] + 1, sizes_[l + 1], sizes_[l],
                          Eigen::OuterStride<>(sizes_[l] + 1));
  }
  template <typename T>
  RowMap<T> weights(T* theta, int l) const {
    return RowMap<T>(theta + offsets_[l] + 1, sizes_[l + 1], sizes_[l],
                     Eigen::OuterStride<>(sizes_[l] + 1));
  }
  // b^(l) = Theta^(l)[:, 0]  (s_{l+1},)
  template <typename T>
  ConstStridedVec<T> bias(const T* theta, int l) const {
    return ConstStridedVec<T>(theta + offsets_[l], sizes_[l + 1],
                              Eigen::InnerStride<>(sizes_[l] + 1));
  }
  template <typename T>
  StridedVec<T> bias(T* theta, int l) const {
    return StridedVec<T>(theta + offsets_[l], sizes_[l + 1], Eigen::InnerStride<>(sizes_[l] + 1));
  }

  // The rows of all Theta^(l) stacked: R = sum_l s_{l+1}.
  Index total_rows() const {
    Index n = 0;
    for (int l = 1; l < n_layers(); ++l) n += sizes_[l];
    return n;
  }
  // Row r of the stacked Theta^(l): its offset in theta and its length s_l + 1.
  void theta_row(Index r, Index& off, Index& cols) const {
    int l = 0;
    while (r >= sizes_[l + 1]) r -= sizes_[++l];
    cols = sizes_[l] + 1;
    off = offsets_[l] + r * cols;
  }
  // Multiply-adds of one example: forward 2 s_l s_{l+1}; with the backward
  // pass (weight gradients and deltas) 4 s_l s_{l+1} more.
  double flops_per_row(bool backward) const {
    double f = 0;
    for (int l = 0; l + 1 < n_layers(); ++l)
      f += (backward ? 6.0 : 2.0) * double(sizes_[l]) * double(sizes_[l + 1]);
    return f;
  }

 private:
  std::vector<Index> sizes_;    // (L,)
  std::vector<Index> offsets_;  // (L,): start of Theta^(l); offsets_[L-1] = P
  Index max_width_ = 0;
  Index width_sum_ = 0;
};

// The k-th of `parts` equal (+-1) pieces of [0, n): its first index. The one
// even-split formula (leaves over m, leaves over workers, rows over blocks).
inline Index split_point(Index n, Index parts, Index k) {
  return n / parts * k + std::min(k, n % parts);
}

}  // namespace bpnet
