// bpnet core: forward pass, regularized cost and backprop gradient of a fully
// connected network, templated on the scalar type T (float or double).
// Pure C++/Eigen: nothing in this file knows about Python.
//
// Dimension letters (every shape comment in this file uses them):
//   m    examples (rows of X, or of the `rows` selection)
//   L    layers, L >= 2; layer l = 0 .. L-1 has s_l units (s_0 inputs)
//   K    outputs, K = s_{L-1}
//   P    parameters, P = sum_l s_{l+1} (s_l + 1)
//   B    rows of one block (a cache-sized slice of the examples)
//   C    chunks: fixed row ranges, each with its own gradient accumulator
//
// theta (P,) holds Theta^(0) .. Theta^(L-2) unrolled row-major in layer order.
// Theta^(l) has shape (s_{l+1}, s_l + 1); column 0 multiplies the bias unit.
// We write W^(l) = Theta^(l)[:, 1:] (s_{l+1}, s_l) and b^(l) = Theta^(l)[:, 0].
//
// Determinism: the m examples are cut into C chunks that depend on m only
// (chunk_starts), each chunk into blocks of B rows that depend on the layer
// sizes and T only. A chunk's gradient is summed block by block into its own
// buffer; chunk buffers are then added in chunk order. The result is therefore
// bitwise identical for any number of threads, and a distributed caller that
// computes the same chunks elsewhere (partial_sums) gets the same bits.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace bpnet {

using Index = std::ptrdiff_t;

enum class Activation { sigmoid, tanh, relu };
enum class Output { sigmoid, softmax, identity };

inline Activation parse_activation(const std::string& name) {
  if (name == "sigmoid" || name == "logistic") return Activation::sigmoid;
  if (name == "tanh") return Activation::tanh;
  if (name == "relu") return Activation::relu;
  throw std::invalid_argument("activation must be one of 'sigmoid', 'tanh', 'relu'; got '" + name +
                              "'");
}

inline Output parse_output(const std::string& name) {
  if (name == "sigmoid" || name == "logistic") return Output::sigmoid;
  if (name == "softmax") return Output::softmax;
  if (name == "identity") return Output::identity;
  throw std::invalid_argument("output must be one of 'sigmoid', 'softmax', 'identity'; got '" +
                              name + "'");
}

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

// ---------------------------------------------------------------------------
// Network shape: layer sizes and the offset of each Theta^(l) inside theta.
// ---------------------------------------------------------------------------
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
        const Index rows = sizes_[l + 1], cols = s + 1;
        if (rows < 1) continue;  // reported when the loop reaches l + 1
        Index count = 0, total = 0;
        if (rows > limit / 1024 || __builtin_mul_overflow(rows, cols, &count) ||
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

 private:
  std::vector<Index> sizes_;    // (L,)
  std::vector<Index> offsets_;  // (L,): start of Theta^(l); offsets_[L-1] = P
  Index max_width_ = 0;
  Index width_sum_ = 0;
};

// ---------------------------------------------------------------------------
// The examples: X, optional row selection, targets and sample weights.
// ---------------------------------------------------------------------------
template <typename T>
struct Data {
  const T* X = nullptr;                  // (n_rows, s_0) row-major, contiguous
  Index n_rows = 0;                      // rows of X, y and sample_weight
  const std::int64_t* rows = nullptr;    // (m,) selected rows, or nullptr for all
  Index m = 0;                           // examples used: len(rows) or n_rows
  const std::int64_t* labels = nullptr;  // (n_rows,) class indices 0..K-1, or
  const T* Y = nullptr;                  // (n_rows, K) target matrix
  const T* sample_weight = nullptr;      // (n_rows,) or nullptr (all ones)

  Index row(Index i) const { return rows ? static_cast<Index>(rows[i]) : i; }
};

// Checks the cheap O(m + P) invariants the kernels rely on; X itself is checked
// for non-finite values block by block, through the pre-activations it makes.
template <typename T>
void validate(const Shape& shape, const T* theta, const Data<T>& d, bool need_targets) {
  if (d.m < 1) throw std::invalid_argument("X must have at least one row (m >= 1); got m = 0");
  if (!Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(theta, shape.n_params()).allFinite())
    for (Index p = 0; p < shape.n_params(); ++p)
      if (!std::isfinite(theta[p]))
        throw std::invalid_argument("theta contains a non-finite value at index " +
                                    std::to_string(p));
  if (d.rows)
    for (Index i = 0; i < d.m; ++i)
      if (d.rows[i] < 0 || d.rows[i] >= d.n_rows)
        throw std::invalid_argument("rows[" + std::to_string(i) +
                                    "] = " + std::to_string(d.rows[i]) + " is outside [0, " +
                                    std::to_string(d.n_rows) + ")");
  if (!need_targets) return;
  const Index K = shape.n_outputs();
  // With a row selection (a mini-batch) only the selected rows are read, so
  // only they are checked: a training loop pays O(batch), not O(n_rows).
  const Index n_check = d.rows ? d.m : d.n_rows;
  if (d.labels) {
    for (Index j = 0; j < n_check; ++j) {
      const Index i = d.row(j);
      if (d.labels[i] < 0 || d.labels[i] >= K)
        throw std::invalid_argument("y[" + std::to_string(i) +
                                    "] = " + std::to_string(d.labels[i]) +
                                    " is not a class index in [0, " + std::to_string(K) + ")");
    }
  } else if (d.Y) {
    for (Index j = 0; j < n_check; ++j)
      for (Index i = d.row(j) * K, end = i + K; i < end; ++i)
        if (!std::isfinite(d.Y[i]))
          throw std::invalid_argument("y contains a non-finite value at row " +
                                      std::to_string(i / K) + ", column " + std::to_string(i % K));
  } else {
    throw std::invalid_argument("y is required");
  }
  if (d.sample_weight) {
    for (Index j = 0; j < n_check; ++j) {
      const Index i = d.row(j);
      if (!std::isfinite(d.sample_weight[i]) || d.sample_weight[i] < 0)
        throw std::invalid_argument("sample_weight[" + std::to_string(i) +
                                    "] = " + std::to_string(d.sample_weight[i]) +
                                    " must be finite and >= 0");
    }
  }
}

// Fixed chunk boundaries for m examples: (C + 1,) starts, C = min(max_chunks,
// ceil(m / min_chunk_rows)). Depends on m only, never on the thread count.
constexpr Index kMaxChunks = 8;
constexpr Index kMinChunkRows = 32;

inline std::vector<Index> chunk_starts(Index m) {
  Index C =
      std::max<Index>(1, std::min<Index>(kMaxChunks, (m + kMinChunkRows - 1) / kMinChunkRows));
  std::vector<Index> starts(C + 1);
  for (Index c = 0; c <= C; ++c) starts[c] = m / C * c + std::min(c, m % C);
  return starts;
}

// Rows per block: the block's activations and deltas should stay in L2.
template <typename T>
Index block_rows(const Shape& shape) {
  const Index bytes_per_row =
      static_cast<Index>(sizeof(T)) * (shape.width_sum() + 2 * shape.max_width());
  const Index budget = 768 * 1024;
  Index B = budget / std::max<Index>(bytes_per_row, 1);
  B = std::max<Index>(32, std::min<Index>(512, B));
  return B / 16 * 16;
}

inline int resolve_threads(int n_threads) {
#ifdef _OPENMP
  if (n_threads < 1) n_threads = omp_get_max_threads();
#else
  n_threads = 1;
#endif
  return std::max(1, n_threads);
}

// Threads worth waking for m examples: at most one per chunk, and each must
// get at least kMinFlopsPerThread of work. Waking a sleeping OpenMP thread
// costs tens of microseconds on an idle machine and whole scheduler slices on
// a busy one: 50 L-BFGS iterations on the digits ([64, 25, 10], 1347 rows,
// ~15 MFLOP per call) took 23 ms on one thread and 78 ms (median) on two
// while two other processes ran. On an idle machine 4 MFLOP per thread pays:
// case B of bench/ ([64, 25, 10], m = 1797, ~20 MFLOP) went from 0.418 ms on
// one thread to 0.275 ms on two. The result does not depend on the thread
// count, only the speed does.
constexpr double kMinFlopsPerThread = 4e6;

inline int threads_for(const Shape& shape, Index m, int n_threads, Index C) {
  double flops = 0;  // forward, weight gradients and deltas: ~6 m sum s_l s_{l+1}
  for (int l = 0; l + 1 < shape.n_layers(); ++l)
    flops += 6.0 * double(m) * double(shape.size(l)) * double(shape.size(l + 1));
  const double by_work = std::max(1.0, std::floor(flops / kMinFlopsPerThread));
  const Index n = std::min<Index>(resolve_threads(n_threads), C);
  return static_cast<int>(
      std::max<Index>(1, std::min<Index>(n, static_cast<Index>(std::min(by_work, 1e6)))));
}

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// ---------------------------------------------------------------------------
// Workspace: per-thread block buffers and per-chunk gradient accumulators,
// kept between calls so that a training loop allocates nothing. One call at a
// time may use a workspace (the caller's lock guards it).
//
// Every buffer, and every sub-buffer of a thread's buffer, starts on a
// 64-byte boundary: Eigen's vectorized loops peel a different number of
// leading scalars at a different alignment, which changes the order of the
// additions in a reduction. With a fixed alignment the bits of a block's
// result do not depend on which thread's buffer it ran in.
// ---------------------------------------------------------------------------
constexpr Index kAlignBytes = 64;

template <typename T>
Index padded(Index n) {  // n elements rounded up to whole 64-byte lines
  constexpr Index per_line = kAlignBytes / static_cast<Index>(sizeof(T));
  return (n + per_line - 1) / per_line * per_line;
}

template <typename T>
class AlignedBuffer {
 public:
  T* data() { return ptr_.get(); }
  Index size() const { return size_; }
  void resize(Index n) {  // contents are not kept
    if (n <= size_) return;
    const std::size_t bytes = static_cast<std::size_t>(padded<T>(n)) * sizeof(T);
    T* p = static_cast<T*>(std::aligned_alloc(kAlignBytes, bytes));
    if (!p) throw std::bad_alloc();
    ptr_.reset(p);
    size_ = padded<T>(n);
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> ptr_;
  Index size_ = 0;
};

// Elements of one thread's buffer for blocks of B rows (see BlockViews).
template <typename T>
Index thread_buffer_size(const Shape& shape, Index B) {
  Index n = padded<T>(B * shape.n_inputs());
  for (int l = 1; l < shape.n_layers(); ++l) n += padded<T>(B * shape.size(l));
  n += 2 * padded<T>(B * shape.max_width());
  n += padded<T>(3 * B * shape.n_outputs() * static_cast<Index>(sizeof(double) / sizeof(T)));
  return n;
}

template <typename T>
class Workspace {
 public:
  std::mutex mutex;

  T* thread_buffer(int tid) { return thread_buffers_[tid].data(); }
  T* chunk_grad(Index c) { return chunk_grads_.data() + c * padded<T>(n_params_); }

  void reserve(const Shape& shape, Index B, int n_threads, Index n_chunk_buffers) {
    const Index per_thread = thread_buffer_size<T>(shape, B);
    if (static_cast<int>(thread_buffers_.size()) < n_threads) thread_buffers_.resize(n_threads);
    for (int t = 0; t < n_threads; ++t) thread_buffers_[t].resize(per_thread);
    n_params_ = shape.n_params();
    chunk_grads_.resize(padded<T>(n_params_) * n_chunk_buffers);
  }

  std::size_t bytes() const {
    std::size_t n = static_cast<std::size_t>(chunk_grads_.size());
    for (const auto& b : thread_buffers_) n += static_cast<std::size_t>(b.size());
    return n * sizeof(T);
  }

 private:
  std::vector<AlignedBuffer<T>> thread_buffers_;
  AlignedBuffer<T> chunk_grads_;
  Index n_params_ = 0;
};

// Views of one thread's buffer for a block of B rows:
//   gather (B, s_0) | A^(1..L-1) (B, s_l) | delta0, delta1 (B, max_width) | out (3, B, K) doubles
template <typename T>
struct BlockViews {
  std::vector<RowMap<T>> A;  // A[l] (B, s_l); A[0] may be a view of X
  T* gather;                 // (B, s_0) room for selected rows of X
  T* delta0;                 // (B, max_width)
  T* delta1;                 // (B, max_width)
  double* out;               // (3, B, K) scratch for the output layer, in double

  BlockViews(const Shape& shape, T* buffer, Index B) {
    gather = buffer;
    T* p = buffer + padded<T>(B * shape.n_inputs());
    A.emplace_back(p, 0, shape.n_inputs(), Eigen::OuterStride<>(shape.n_inputs()));
    for (int l = 1; l < shape.n_layers(); ++l) {
      A.emplace_back(p, B, shape.size(l), Eigen::OuterStride<>(shape.size(l)));
      p += padded<T>(B * shape.size(l));
    }
    delta0 = p;
    delta1 = p + padded<T>(B * shape.max_width());
    out = reinterpret_cast<double*>(delta1 + padded<T>(B * shape.max_width()));
  }
};

// Points A[0] at rows [r0, r0 + b) of the examples: a view of X when rows are
// contiguous, else a gathered copy in the thread's buffer.
template <typename T>
void load_block(const Shape& shape, const Data<T>& d, Index r0, Index b, BlockViews<T>& v) {
  const Index n = shape.n_inputs();
  if (!d.rows) {
    new (&v.A[0]) RowMap<T>(const_cast<T*>(d.X) + r0 * n, b, n, Eigen::OuterStride<>(n));
  } else {
    for (Index i = 0; i < b; ++i) std::copy_n(d.X + d.row(r0 + i) * n, n, v.gather + i * n);
    new (&v.A[0]) RowMap<T>(v.gather, b, n, Eigen::OuterStride<>(n));
  }
}

// Hidden activation g and its derivative written in terms of a = g(z).
template <typename T, typename Z>
void activate(Activation act, Z&& z) {
  switch (act) {
    case Activation::sigmoid:  // g(z) = 1 / (1 + e^-z)
      z = (T(1) + (-z).exp()).inverse();
      break;
    case Activation::tanh:
      z = z.tanh();
      break;
    case Activation::relu:
      z = z.max(T(0));
      break;
  }
}

template <typename T, typename D, typename A>
void multiply_by_gprime(Activation act, D&& delta, const A& a) {
  switch (act) {
    case Activation::sigmoid:  // g'(z) = a (1 - a)
      delta *= a * (T(1) - a);
      break;
    case Activation::tanh:  // g'(z) = 1 - a^2
      delta *= T(1) - a.square();
      break;
    case Activation::relu:  // g'(z) = [a > 0]
      delta = (a > T(0)).select(delta, T(0));
      break;
  }
}

// Forward one block of b rows: A[l+1] = g(A[l] W^(l)^T + 1 b^(l)^T) for the
// hidden layers; the last layer A[L-1] holds the logits z^(L) (b, K), not yet
// passed through the output function. Returns the first layer (1 .. L-1) whose
// pre-activations are not all finite, or 0 when all are.
template <typename T>
int forward_block(const Shape& shape, const T* theta, Activation act, Index b, BlockViews<T>& v) {
  const int L = shape.n_layers();
  int bad_layer = 0;
  for (int l = 0; l + 1 < L; ++l) {
    auto z = v.A[l + 1].topRows(b);
    z.noalias() = v.A[l].topRows(b) * shape.weights(theta, l).transpose();
    z.rowwise() += shape.bias(theta, l).transpose();
    if (!bad_layer && !z.allFinite()) bad_layer = l + 1;
    if (l + 2 < L) activate<T>(act, z.array());
  }
  return bad_layer;
}

// Output layer of one row: writes h = output(z) (K,) and returns nothing.
template <typename T>
void output_row(Output out, const T* z, T* h, Index K) {
  switch (out) {
    case Output::sigmoid:
      for (Index k = 0; k < K; ++k) {
        const double zk = z[k];
        h[k] = T(zk >= 0 ? 1.0 / (1.0 + std::exp(-zk)) : std::exp(zk) / (1.0 + std::exp(zk)));
      }
      break;
    case Output::softmax: {
      double mx = z[0];
      for (Index k = 1; k < K; ++k) mx = std::max(mx, double(z[k]));
      double sum = 0;
      for (Index k = 0; k < K; ++k) sum += std::exp(double(z[k]) - mx);
      const double lse = mx + std::log(sum);
      for (Index k = 0; k < K; ++k) h[k] = T(std::exp(double(z[k]) - lse));
      break;
    }
    case Output::identity:
      for (Index k = 0; k < K; ++k) h[k] = z[k];
      break;
  }
}

// Identity output, one row: loss = 1/2 sum_k (z_k - y_k)^2 (returned) and
// delta^(L) = w (z - y) written over z. Targets: class index `label` (>= 0)
// or the row `y` (K,) when label < 0.
template <typename T>
double identity_loss_delta(T* z, Index K, std::int64_t label, const T* y, T w) {
  double loss = 0;
  for (Index k = 0; k < K; ++k) {
    const double r = double(z[k]) - (label >= 0 ? double(k == label) : double(y[k]));
    loss += 0.5 * r * r;
    z[k] = w * T(r);
  }
  return loss;
}

// Sigmoid output layer of one block, vectorized over (b, K) in double:
//   loss = sum_i w_i sum_k [y_ik softplus(-z_ik) + (1 - y_ik) softplus(z_ik)]   (returned)
//   delta^(L)_ik = w_i (h_ik - y_ik)                                            (written over z)
// with softplus(+-z) = max(+-z, 0) + log1p(e^-|z|) and h = 1 / (1 + e^-z), all
// from e = e^-|z| so that no step overflows. Splitting the loss by target keeps
// the relative accuracy of a confidently right output (z = 50, y = 1 gives
// log1p(e^-50), not softplus(50) - 50 = 0).
template <typename T>
double sigmoid_output_block(const Data<T>& d, Index r0, Index b, Index K, T* z, double* scratch) {
  using ArrayD = Eigen::Array<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ArrayT = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<ArrayT> Z(z, b, K);
  Eigen::Map<ArrayD> zd(scratch, b, K), e(scratch + padded<double>(b * K), b, K),
      l1p(scratch + 2 * padded<double>(b * K), b, K);
  zd = Z.template cast<double>();
  e = (-zd.abs()).exp();
  // log1p(e) = log(u) e / (u - 1), u = 1 + e (exact where u rounds to 1)
  l1p = ((e + 1.0) == 1.0).select(e, (e + 1.0).log() * e / ((e + 1.0) - 1.0));
  e = (zd >= 0.0).select((e + 1.0).inverse(), e / (e + 1.0));  // h
  double loss = 0;
  for (Index i = 0; i < b; ++i) {
    const Index r = d.row(r0 + i);
    const T w = d.sample_weight ? d.sample_weight[r] : T(1);
    const double* zi_d = &zd(i, 0);
    const double* l1p_i = &l1p(i, 0);
    double row = 0;
    T* zi = z + i * K;
    if (d.labels) {
      const std::int64_t label = d.labels[r];
      for (Index k = 0; k < K; ++k) {
        const double zk = k == label ? -zi_d[k] : zi_d[k];  // softplus(-z) for the target
        row += std::max(zk, 0.0) + l1p_i[k];
        zi[k] = w * T(e(i, k) - double(k == label));
      }
    } else {
      const T* y = d.Y + r * K;
      for (Index k = 0; k < K; ++k) {
        const double yk = y[k], zk = zi_d[k];
        row += yk * std::max(-zk, 0.0) + (1.0 - yk) * std::max(zk, 0.0) + l1p_i[k];
        zi[k] = w * T(e(i, k) - yk);
      }
    }
    loss += double(w) * row;
  }
  return loss;
}

// Softmax output layer of one block, vectorized over (b, K) in double:
//   lse_i = log sum_k e^{z_ik}            (max-shifted)
//   loss  = sum_i w_i sum_k y_ik (lse_i - z_ik)                      (returned)
//   delta^(L)_ik = w_i (h_ik S_i - y_ik),  S_i = sum_k y_ik           (written over z)
// S_i = 1 for class labels and one-hot rows; for rows that do not sum to 1
// this is still dJ/dz (h - y alone would not be).
template <typename T>
double softmax_output_block(const Data<T>& d, Index r0, Index b, Index K, T* z, double* scratch) {
  using ArrayD = Eigen::Array<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ArrayT = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<ArrayT> Z(z, b, K);
  Eigen::Map<ArrayD> zd(scratch, b, K), h(scratch + padded<double>(b * K), b, K);
  Eigen::Map<Eigen::ArrayXd> lse(scratch + 2 * padded<double>(b * K), b);
  zd = Z.template cast<double>();
  lse = zd.rowwise().maxCoeff();
  h = (zd.colwise() - lse).exp();
  lse += h.rowwise().sum().log();
  h = (zd.colwise() - lse).exp();
  double loss = 0;
  for (Index i = 0; i < b; ++i) {
    const Index r = d.row(r0 + i);
    const T w = d.sample_weight ? d.sample_weight[r] : T(1);
    T* zi = z + i * K;
    double row = 0;
    if (d.labels) {
      const std::int64_t label = d.labels[r];
      row = lse(i) - zd(i, label);
      for (Index k = 0; k < K; ++k) zi[k] = w * T(h(i, k) - double(k == label));
    } else {
      const T* y = d.Y + r * K;
      double S = 0;
      for (Index k = 0; k < K; ++k) {
        const double yk = y[k];
        S += yk;
        if (yk != 0) row += yk * (lse(i) - zd(i, k));
      }
      for (Index k = 0; k < K; ++k) zi[k] = w * T(h(i, k) * S - double(y[k]));
    }
    loss += double(w) * row;
  }
  return loss;
}

// Cost and gradient sums of one block of b rows starting at example r0.
// Accumulates (+=) into grad (P,) the unnormalized gradient
//   Delta^(l) += delta^(l+1)^T [1, A^(l)]
// and returns the weighted loss sum of the block. Sets bad_layer on non-finite
// pre-activations (the caller reports it).
template <typename T>
double accumulate_block(const Shape& shape, const T* theta, const Data<T>& d, Activation act,
                        Output out, Index r0, Index b, BlockViews<T>& v, T* grad, int& bad_layer) {
  const int L = shape.n_layers();
  const Index K = shape.n_outputs();
  load_block(shape, d, r0, b, v);
  const int bad = forward_block(shape, theta, act, b, v);
  if (bad) {
    bad_layer = bad;
    return 0;
  }

  // delta^(L) = w_i (h_i - y_i), written over the logits; loss in double.
  double loss = 0;
  T* zL = v.A[L - 1].data();
  if (out == Output::sigmoid) {
    loss = sigmoid_output_block(d, r0, b, K, zL, v.out);
  } else if (out == Output::softmax) {
    loss = softmax_output_block(d, r0, b, K, zL, v.out);
  } else {
    for (Index i = 0; i < b; ++i) {
      const Index r = d.row(r0 + i);
      const T w = d.sample_weight ? d.sample_weight[r] : T(1);
      const std::int64_t label = d.labels ? d.labels[r] : -1;
      const T* y = d.Y ? d.Y + r * K : nullptr;
      loss += double(w) * identity_loss_delta(zL + i * K, K, label, y, w);
    }
  }

  // Backward: for l = L-2 .. 0
  //   dW^(l) += delta^(l+1)^T A^(l)          (s_{l+1}, s_l)
  //   db^(l) += delta^(l+1)^T 1              (s_{l+1},)
  //   delta^(l) = (delta^(l+1) W^(l)) .* g'(z^(l))   (b, s_l), for l >= 1
  RowMap<T> delta(zL, b, K, Eigen::OuterStride<>(K));
  T* spare[2] = {v.delta0, v.delta1};
  for (int l = L - 2; l >= 0; --l) {
    auto a = v.A[l].topRows(b);
    shape.weights(grad, l).noalias() += delta.transpose() * a;
    shape.bias(grad, l) += delta.colwise().sum().transpose();
    if (l == 0) break;
    RowMap<T> next(spare[l % 2], b, shape.size(l), Eigen::OuterStride<>(shape.size(l)));
    next.noalias() = delta * shape.weights(theta, l);
    multiply_by_gprime<T>(act, next.array(), a.array());
    new (&delta) RowMap<T>(next.data(), b, shape.size(l), Eigen::OuterStride<>(shape.size(l)));
  }
  return loss;
}

// Error for the first non-finite pre-activation found by a kernel.
template <typename T>
[[noreturn]] void throw_non_finite(const Shape& shape, const Data<T>& d, int bad_layer) {
  const Index n = shape.n_inputs();
  for (Index i = 0; i < d.m; ++i) {
    const T* x = d.X + d.row(i) * n;
    for (Index j = 0; j < n; ++j)
      if (!std::isfinite(x[j]))
        throw std::invalid_argument("X contains a non-finite value at row " +
                                    std::to_string(d.row(i)) + ", column " + std::to_string(j));
  }
  throw std::overflow_error("non-finite pre-activation z in layer " + std::to_string(bad_layer) +
                            ": theta or X is too large for this dtype");
}

// ---------------------------------------------------------------------------
// partial_sums: per-chunk unnormalized sums (the distributed building block).
//   chunk_grads[c] = sum over examples i in chunk c of w_i * dJ_i/dtheta  (C, P), overwritten
//   chunk_loss[c]  = sum_i w_i loss_i     chunk_weight[c] = sum_i w_i     (C,), overwritten
// starts (C + 1,) are row offsets into the examples (see chunk_starts).
// chunk_grads may point at C separate buffers (grad_ptrs).
// ---------------------------------------------------------------------------
template <typename T>
void partial_sums(const Shape& shape, const T* theta, const Data<T>& d, Activation act, Output out,
                  const std::vector<Index>& starts, const std::vector<T*>& grad_ptrs,
                  double* chunk_loss, double* chunk_weight, int n_threads, Workspace<T>& ws) {
  const Index C = static_cast<Index>(starts.size()) - 1;
  const Index P = shape.n_params();
  const Index B = block_rows<T>(shape);
  n_threads = threads_for(shape, d.m, n_threads, C);
  ws.reserve(shape, B, n_threads, 0);
  std::vector<int> bad(C, 0);

#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads) if (n_threads > 1)
  for (Index c = 0; c < C; ++c) {
    BlockViews<T> v(shape, ws.thread_buffer(thread_id()), B);
    T* g = grad_ptrs[c];
    std::fill_n(g, P, T(0));
    double loss = 0, weight = 0;
    for (Index r0 = starts[c]; r0 < starts[c + 1] && !bad[c]; r0 += B) {
      const Index b = std::min(B, starts[c + 1] - r0);
      loss += accumulate_block(shape, theta, d, act, out, r0, b, v, g, bad[c]);
    }
    if (d.sample_weight)
      for (Index i = starts[c]; i < starts[c + 1]; ++i) weight += d.sample_weight[d.row(i)];
    else
      weight = double(starts[c + 1] - starts[c]);
    chunk_loss[c] = loss;
    chunk_weight[c] = weight;
  }
  for (Index c = 0; c < C; ++c)
    if (bad[c]) throw_non_finite(shape, d, bad[c]);
}

// finalize: turns the summed Delta (P,) into the gradient in place and returns J.
//   D^(l) = Delta^(l) / W + (lam / W) Theta^(l)   for columns j >= 1
//   D^(l) = Delta^(l) / W                         for the bias column j = 0
//   J = loss / W + lam / (2 W) sum_l sum_{i, j>=1} Theta^(l)_ij^2
// With `more` (chunk buffers (P,) each), grad is first replaced by the
// in-order sum ((grad + more[0]) + more[1]) + ..., element by element, in the
// same pass. Rows are independent, so splitting them over n_threads cannot
// change a bit.
template <typename T>
double finalize(const Shape& shape, const T* theta, double lam, double loss, double weight, T* grad,
                const std::vector<const T*>& more = {}, int n_threads = 1) {
  if (!(weight > 0))
    throw std::invalid_argument("the sample weights sum to " + std::to_string(weight) +
                                "; they must sum to a positive number");
  const double inv_w = 1.0 / weight, reg = lam / weight;
  // sum Theta_ij^2 over j >= 1 in 8 interleaved partial sums (a fixed order:
  // the same bits on every machine and alignment, without one long chain of
  // dependent additions), combined pairwise at the end.
  constexpr int lanes = 8;
  double part[lanes] = {};
  for (int l = 0; l + 1 < shape.n_layers(); ++l) {
    const Index rows = shape.size(l + 1), n = shape.size(l);
    const T* t = theta + shape.offset(l);
    for (Index i = 0; i < rows; ++i, t += n + 1) {
      const T* ti = t + 1;
      Index j = 0;
      for (; j + lanes <= n; j += lanes)
        for (int k = 0; k < lanes; ++k) part[k] += double(ti[j + k]) * double(ti[j + k]);
      for (int k = 0; j < n; ++j, ++k) part[k] += double(ti[j]) * double(ti[j]);
    }
  }
  const double sq =
      ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  const double J = loss * inv_w + 0.5 * reg * sq;

  int finite = 1;
  for (int l = 0; l + 1 < shape.n_layers(); ++l) {
    const Index rows = shape.size(l + 1), cols = shape.size(l) + 1, off = shape.offset(l);
#pragma omp parallel for schedule(static) \
    num_threads(n_threads) if (n_threads > 1 && rows * cols >= 16384) reduction(&& : finite)
    for (Index i = 0; i < rows; ++i) {
      T* g = grad + off + i * cols;
      const T* t = theta + off + i * cols;
      for (const T* c : more) {
        const T* ci = c + off + i * cols;
        for (Index j = 0; j < cols; ++j) g[j] += ci[j];
      }
      g[0] = T(double(g[0]) * inv_w);
      for (Index j = 1; j < cols; ++j) g[j] = T(double(g[j]) * inv_w + reg * double(t[j]));
      finite = finite && Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(g, cols).allFinite();
    }
  }
  // Finite inputs give a finite J and gradient unless a value overflows the
  // dtype; callers (the optimizer loops) rely on this check instead of their own.
  if (!std::isfinite(J) || !finite)
    throw std::overflow_error("non-finite cost or gradient (overflows " +
                              std::string(sizeof(T) == 4 ? "float32" : "float64") +
                              "): theta or X is too large");
  return J;
}

// ---------------------------------------------------------------------------
// cost_grad: J and its gradient (P,) in one pass; grad is overwritten.
// ---------------------------------------------------------------------------
template <typename T>
double cost_grad(const Shape& shape, const T* theta, const Data<T>& d, double lam, Activation act,
                 Output out, T* grad, int n_threads, Workspace<T>& ws) {
  if (!(lam >= 0) || !std::isfinite(lam))
    throw std::invalid_argument("lam must be finite and >= 0; got " + std::to_string(lam));
  validate(shape, theta, d, true);
  const std::vector<Index> starts = chunk_starts(d.m);
  const Index C = static_cast<Index>(starts.size()) - 1;
  const Index P = shape.n_params();
  // Chunk 0 accumulates straight into grad; chunks 1.. into the workspace.
  // (buffers only for the threads partial_sums runs)
  ws.reserve(shape, block_rows<T>(shape), threads_for(shape, d.m, n_threads, C), C - 1);
  std::vector<T*> ptrs(C);
  ptrs[0] = grad;
  for (Index c = 1; c < C; ++c) ptrs[c] = ws.chunk_grad(c - 1);
  std::vector<double> loss(C), weight(C);
  partial_sums(shape, theta, d, act, out, starts, ptrs, loss.data(), weight.data(), n_threads, ws);

  double loss_sum = 0, weight_sum = 0;
  for (Index c = 0; c < C; ++c) {
    loss_sum += loss[c];
    weight_sum += weight[c];
  }
  // Fixed-order reduction over chunks, grad = ((g_0 + g_1) + g_2) + ...,
  // fused into finalize's pass over the parameters.
  const std::vector<const T*> more(ptrs.begin() + 1, ptrs.end());
  const int nt =
      std::max(threads_for(shape, d.m, n_threads, C), P >= 65536 ? resolve_threads(n_threads) : 1);
  return finalize(shape, theta, lam, loss_sum, weight_sum, grad, more, nt);
}

// ---------------------------------------------------------------------------
// forward: a^(L) (m, K) overwritten into out; predict: argmax_k z^(L) (m,).
// ---------------------------------------------------------------------------
template <typename T, typename RowFn>
void for_each_output_row(const Shape& shape, const T* theta, const Data<T>& d, Activation act,
                         int n_threads, Workspace<T>& ws, RowFn&& fn) {
  validate(shape, theta, d, false);
  const Index B = block_rows<T>(shape);
  const Index n_blocks = (d.m + B - 1) / B;
  n_threads = static_cast<int>(std::min<Index>(resolve_threads(n_threads), n_blocks));
  ws.reserve(shape, B, n_threads, 0);
  const Index K = shape.n_outputs();
  std::vector<int> bad(n_blocks, 0);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
  for (Index blk = 0; blk < n_blocks; ++blk) {
    BlockViews<T> v(shape, ws.thread_buffer(thread_id()), B);
    const Index r0 = blk * B, b = std::min(B, d.m - r0);
    load_block(shape, d, r0, b, v);
    bad[blk] = forward_block(shape, theta, act, b, v);
    if (bad[blk]) continue;
    const T* z = v.A[shape.n_layers() - 1].data();
    for (Index i = 0; i < b; ++i) fn(r0 + i, z + i * K);
  }
  for (Index blk = 0; blk < n_blocks; ++blk)
    if (bad[blk]) throw_non_finite(shape, d, bad[blk]);
}

template <typename T>
void forward(const Shape& shape, const T* theta, const Data<T>& d, Activation act, Output out,
             T* h /* (m, K) */, int n_threads, Workspace<T>& ws) {
  const Index K = shape.n_outputs();
  for_each_output_row(shape, theta, d, act, n_threads, ws,
                      [&](Index i, const T* z) { output_row(out, z, h + i * K, K); });
}

template <typename T>
void predict(const Shape& shape, const T* theta, const Data<T>& d, Activation act,
             std::int64_t* labels /* (m,) */, int n_threads, Workspace<T>& ws) {
  const Index K = shape.n_outputs();
  for_each_output_row(shape, theta, d, act, n_threads, ws, [&](Index i, const T* z) {
    labels[i] = static_cast<std::int64_t>(std::max_element(z, z + K) - z);
  });
}

// ---------------------------------------------------------------------------
// adam_update: one Adam step in place, the formulas of bpnet.optimize:
//   m1 = b1 m1 + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   theta -= step (m1 / (sqrt(v) + eps)),  step = lr sqrt(1 - b2^t) / (1 - b1^t)
// theta, m1, v, g (P,); one pass over memory instead of NumPy's nine.
// Returns whether every updated theta is finite (checked in the same pass).
// ---------------------------------------------------------------------------
// out = sqrt(x), correctly rounded. Eigen's AVX-512 packet sqrt is an
// approximation (EIGEN_FAST_MATH), which would make the result differ from
// NumPy's and depend on the alignment of the arrays; this plain loop is
// vectorized by the compiler once sqrt need not set errno.
template <typename T>
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-math-errno")))
#endif
void sqrt_into(const T* x, T* out, Index n) {
  for (Index i = 0; i < n; ++i) out[i] = std::sqrt(x[i]);
}

// The constants are rounded to T as NumPy rounds a Python float operand.
template <typename T>
bool adam_update(T* theta, T* m1, T* v, const T* g, Index P, double beta_1, double beta_2,
                 double step_size, double epsilon) {
  const T b1 = T(beta_1), c1 = T(1 - beta_1), b2 = T(beta_2), c2 = T(1 - beta_2);
  const T step = T(step_size), eps = T(epsilon);
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  // Slices of 1024 keep the four streams in L1 between the statements. The
  // update is elementwise, so splitting the slices over threads cannot change
  // a bit; it pays once the four (P,) streams outgrow L2 (P = 101,770 f64:
  // 268 us on one thread).
  constexpr Index span = 1024;
  const int nt = resolve_threads(-1);
  int finite = 1;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && P >= 32 * span) \
    reduction(&& : finite)
  for (Index p0 = 0; p0 < P; p0 += span) {
    alignas(64) T root[span];
    const Index n = std::min(span, P - p0);
    Eigen::Map<const Arr> G(g + p0, n);
    Eigen::Map<Arr> M(m1 + p0, n), V(v + p0, n), Th(theta + p0, n);
    M = M * b1 + G * c1;
    V = V * b2 + G.square() * c2;
    sqrt_into(v + p0, root, n);
    Th -= (M / (Eigen::Map<Arr>(root, n) + eps)) * step;
    finite = finite && Th.isFinite().all();
  }
  return finite != 0;
}

}  // namespace bpnet
