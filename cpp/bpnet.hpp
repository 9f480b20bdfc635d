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
//   C    leaves: fixed row ranges whose gradient sums are added in a fixed tree
//
// theta (P,) holds Theta^(0) .. Theta^(L-2) unrolled row-major in layer order.
// Theta^(l) has shape (s_{l+1}, s_l + 1); column 0 multiplies the bias unit.
// We write W^(l) = Theta^(l)[:, 1:] (s_{l+1}, s_l) and b^(l) = Theta^(l)[:, 0].
//
// Determinism: the m examples are cut into C leaves that depend on m only
// (leaf_starts), each leaf into blocks of at most B rows that depend on the
// layer sizes and T only. A leaf's gradient is summed block by block into its
// own buffer; leaf sums are then added in a fixed binary tree (push_node).
// The result is therefore bitwise identical for any number of threads, and a
// distributed caller that computes leaves elsewhere (partial_sums) and merges
// them by the same tree (reduce_tree) gets the same bits.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace bpnet {

using Index = std::ptrdiff_t;

enum class Activation { sigmoid, tanh, relu };
enum class Output { sigmoid, softmax, identity };

inline Activation parse_activation(const std::string& name) {
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "tanh") return Activation::tanh;
  if (name == "relu") return Activation::relu;
  throw std::invalid_argument("activation must be one of 'sigmoid', 'tanh', 'relu'; got '" + name +
                              "'");
}

inline Output parse_output(const std::string& name) {
  if (name == "sigmoid") return Output::sigmoid;
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

 private:
  std::vector<Index> sizes_;    // (L,)
  std::vector<Index> offsets_;  // (L,): start of Theta^(l); offsets_[L-1] = P
  Index max_width_ = 0;
  Index width_sum_ = 0;
};

// ---------------------------------------------------------------------------
// The examples: X, optional row selection, targets and sample weights.
// ---------------------------------------------------------------------------
// A sparse X in CSR form: row i's nonzeros are values[k] at column
// indices[k] for k in [indptr[i], indptr[i+1]). indptr and indices are both
// int32 (wide = false) or both int64, as SciPy makes them. Every index is
// checked where it is read (another thread may change the arrays).
template <typename T>
struct Csr {
  const T* values = nullptr;      // (nnz,)
  const void* indptr = nullptr;   // (n_rows + 1,)
  const void* indices = nullptr;  // (nnz,)
  bool wide = false;              // int64 indices (else int32)
  Index nnz = 0;
  Index n_cols = 0;

  bool active() const { return indptr != nullptr; }
  // fn(j, v) for each nonzero (j, v) of row r, in storage order.
  template <typename F>
  void for_row(Index r, F&& fn) const {
    if (wide)
      visit(static_cast<const std::int64_t*>(indptr), static_cast<const std::int64_t*>(indices), r,
            fn);
    else
      visit(static_cast<const std::int32_t*>(indptr), static_cast<const std::int32_t*>(indices), r,
            fn);
  }

 private:
  template <typename I, typename F>
  void visit(const I* p, const I* ix, Index r, F& fn) const {
    const Index k0 = p[r], k1 = p[r + 1];
    if (k0 < 0 || k1 < k0 || k1 > nnz)
      throw std::invalid_argument("X.indptr[" + std::to_string(r) + ":" + std::to_string(r + 2) +
                                  "] = [" + std::to_string(k0) + ", " + std::to_string(k1) +
                                  "] is not a range inside [0, nnz = " + std::to_string(nnz) + "]");
    for (Index k = k0; k < k1; ++k) {
      const Index j = ix[k];
      if (j < 0 || j >= n_cols)
        throw std::invalid_argument("X.indices[" + std::to_string(k) + "] = " + std::to_string(j) +
                                    " is outside [0, " + std::to_string(n_cols) + ")");
      fn(j, values[k]);
    }
  }
};

template <typename T>
struct Data {
  const T* X = nullptr;                  // (n_rows, s_0) row-major, contiguous (or csr)
  Csr<T> csr;                            // sparse X, when csr.active()
  Index n_rows = 0;                      // rows of X, y and sample_weight
  const std::int64_t* rows = nullptr;    // (m,) selected rows, or nullptr for all
  Index m = 0;                           // examples used: len(rows) or n_rows
  const std::int64_t* labels = nullptr;  // (n_rows,) class indices 0..K-1, or
  const T* Y = nullptr;                  // (n_rows, K) target matrix
  const T* sample_weight = nullptr;      // (n_rows,) or nullptr (all ones)

  Index row(Index i) const { return rows ? static_cast<Index>(rows[i]) : i; }
};

// Row r of the examples, checked where it is read: another thread may have
// changed `rows` after validate() (the GIL is not held here).
template <typename T>
Index checked_row(const Data<T>& d, Index i) {
  const Index r = d.row(i);
  if (r < 0 || r >= d.n_rows)
    throw std::invalid_argument("rows[" + std::to_string(i) + "] = " + std::to_string(r) +
                                " is outside [0, " + std::to_string(d.n_rows) +
                                ") (changed while the core ran)");
  return r;
}

// Checks the cheap O(m + P) invariants the kernels rely on; X itself is checked
// for non-finite values block by block, through the pre-activations it makes.
template <typename T>
void validate(const Shape& shape, const T* theta, const Data<T>& d, bool need_targets) {
  if (d.m < 1) throw std::invalid_argument("X must have at least one row (m >= 1); got m = 0");
  if (d.csr.active() && d.csr.n_cols != shape.n_inputs())
    throw std::invalid_argument(
        "X has " + std::to_string(d.csr.n_cols) +
        " columns but layer_sizes[0] = " + std::to_string(shape.n_inputs()));
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
      const Index i = checked_row(d, j);
      if (d.labels[i] < 0 || d.labels[i] >= K)
        throw std::invalid_argument("y[" + std::to_string(i) +
                                    "] = " + std::to_string(d.labels[i]) +
                                    " is not a class index in [0, " + std::to_string(K) + ")");
    }
  } else if (d.Y) {
    for (Index j = 0; j < n_check; ++j)
      for (Index i = checked_row(d, j) * K, end = i + K; i < end; ++i)
        if (!std::isfinite(d.Y[i]))
          throw std::invalid_argument("y contains a non-finite value at row " +
                                      std::to_string(i / K) + ", column " + std::to_string(i % K));
  } else {
    throw std::invalid_argument("y is required");
  }
  if (d.sample_weight) {
    for (Index j = 0; j < n_check; ++j) {
      const Index i = checked_row(d, j);
      if (!std::isfinite(d.sample_weight[i]) || d.sample_weight[i] < 0)
        throw std::invalid_argument("sample_weight[" + std::to_string(i) +
                                    "] = " + std::to_string(d.sample_weight[i]) +
                                    " must be finite and >= 0");
    }
  }
}

// ---------------------------------------------------------------------------
// Leaves and the reduction tree (determinism).
//
// The m examples are cut into C leaves, fixed row ranges that depend on m only
// (leaf_starts). A leaf's gradient is summed block by block into one buffer;
// the C leaf sums are then added in a fixed binary tree:
//   node (0, c)   = leaf c
//   node (j+1, k) = node (j, 2k) + node (j, 2k+1)
// where node (j, k) covers leaves [k 2^j, (k+1) 2^j) clipped to [0, C); a node
// whose right half is empty is its parent unchanged. The root is the sum.
// Each addition is between the same two operands whoever performs it, so any
// split of the leaves into contiguous ranges, over threads or over processes
// (partial_sums + reduce_tree), gives the same bits, and a range holds only
// O(log C) partial sums at a time.
// ---------------------------------------------------------------------------
constexpr Index kLeavesTarget = 16;   // leaves for mid-sized m: work for 16 threads or workers
constexpr Index kMinLeafRows = 32;    // a 64-row mini-batch is 2 leaves: 2 threads
constexpr Index kMaxLeafRows = 4096;  // beyond 16 * 4096 rows, C grows with m

// (C + 1,) leaf boundaries for m examples: C equal (+-1 row) leaves of
// clamp(ceil(m / 16), 32, 4096) rows or fewer.
inline std::vector<Index> leaf_starts(Index m) {
  const Index leaf_rows =
      std::clamp<Index>((m + kLeavesTarget - 1) / kLeavesTarget, kMinLeafRows, kMaxLeafRows);
  const Index C = std::max<Index>(1, (m + leaf_rows - 1) / leaf_rows);
  std::vector<Index> starts(C + 1);
  for (Index c = 0; c <= C; ++c) starts[c] = m / C * c + std::min(c, m % C);
  return starts;
}

// One node of the tree: covers leaves [index 2^level, (index + 1) 2^level) of C.
struct TreeNode {
  int level = 0;
  Index index = 0;
};

// Appends `node` (the next one in leaf order) to `stack`, a sequence of
// disjoint nodes in leaf order, and merges while the two on top are
// siblings: merge(i, j) must add stack[j]'s sums into stack[i]'s (the left
// sibling's) buffer. stack[j] is then dropped. Works on labels only, so the
// same rule drives the threads, the final combine and reduce_tree.
template <typename Merge>
void push_node(std::vector<TreeNode>& stack, TreeNode node, Index C, Merge&& merge) {
  stack.push_back(node);
  for (;;) {
    TreeNode& top = stack.back();
    const bool is_root = top.index == 0 && (Index(1) << top.level) >= C;
    if (is_root) return;
    if (top.index % 2 == 0 && ((top.index + 1) << top.level) >= C) {  // right half empty
      ++top.level;
      top.index /= 2;
      continue;
    }
    const std::size_t n = stack.size();
    if (n < 2) return;
    TreeNode& left = stack[n - 2];
    if (left.level != top.level || left.index % 2 != 0 || left.index + 1 != top.index) return;
    merge(n - 2, n - 1);
    ++left.level;
    left.index /= 2;
    stack.pop_back();
  }
}

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

// CPUs this process may run on (its affinity mask), at least 1.
inline int usable_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

// n_threads < 1: OpenMP's limit (OMP_NUM_THREADS, threadpoolctl). Never more
// than the usable CPUs: more threads only wait for each other, and OpenMP
// exits the process when it cannot create a thread it was asked for.
inline int resolve_threads(int n_threads) {
#ifdef _OPENMP
  if (n_threads < 1) n_threads = omp_get_max_threads();
#else
  n_threads = 1;
#endif
  return std::max(1, std::min(n_threads, usable_cpus()));
}

// libgomp ends the process ("Thread creation failed") when the address space
// cannot hold another thread's stack. Before a parallel region needs more
// threads than have run before, reserve (and release) room for their stacks;
// if that fails, run on the threads that exist.
inline int startable_threads(int n_threads) {
  static std::atomic<int> started{1};
  const int have = started.load(std::memory_order_relaxed);
  if (n_threads <= have) return n_threads;
#if defined(__linux__)
  std::size_t stack = 0;
  for (const char* var : {"GOMP_STACKSIZE", "OMP_STACKSIZE"}) {
    const char* e = std::getenv(var);
    if (!e || stack) continue;
    char* end = nullptr;
    const double v = std::strtod(e, &end);
    const char unit = end && *end ? static_cast<char>(std::toupper(*end)) : 'K';
    const double scale = unit == 'B' ? 1 : unit == 'M' ? 1 << 20 : unit == 'G' ? 1 << 30 : 1024;
    if (v > 0) stack = static_cast<std::size_t>(v * scale);
  }
  if (!stack) {
    struct rlimit rl;
    stack = getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                ? static_cast<std::size_t>(rl.rlim_cur)
                : std::size_t(32) << 20;
  }
  const std::size_t bytes =
      static_cast<std::size_t>(n_threads - 1) * (stack + (std::size_t(16) << 20));
  void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return have;
  munmap(p, bytes);
#endif
  int expected = have;
  while (expected < n_threads &&
         !started.compare_exchange_weak(expected, n_threads, std::memory_order_relaxed)) {
  }
  return n_threads;
}

// Threads worth waking for m examples: each must get at least
// kMinFlopsPerThread of work (waking a sleeping OpenMP thread costs tens of
// microseconds on an idle machine, scheduler slices on a busy one), and at
// most `units` (leaves or blocks) exist to share. bench/README.md, "threads",
// has the measurements. The result never depends on the thread count.
constexpr double kMinFlopsPerThread = 4e6;

inline double flops_per_row(const Shape& shape, bool backward) {
  double f = 0;  // forward 2 s_l s_{l+1}; weight gradients and deltas 4 s_l s_{l+1} more
  for (int l = 0; l + 1 < shape.n_layers(); ++l)
    f += (backward ? 6.0 : 2.0) * double(shape.size(l)) * double(shape.size(l + 1));
  return f;
}

inline int threads_for(const Shape& shape, Index m, int n_threads, Index units, bool backward) {
  const double by_work =
      std::floor(double(m) * flops_per_row(shape, backward) / kMinFlopsPerThread);
  Index n = std::min<Index>(resolve_threads(n_threads), std::max<Index>(1, units));
  n = std::min<Index>(n, static_cast<Index>(std::max(1.0, std::min(by_work, 1e6))));
  return static_cast<int>(std::max<Index>(1, n));
}

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// ---------------------------------------------------------------------------
// Interrupts and errors inside a parallel region.
//
// `Interrupt` is an optional hook the caller provides (the bindings check for
// Ctrl-C with it); the core calls it from the calling thread only, between
// row blocks, and stops every thread at its next block when it returns true.
// An exception thrown by one thread (a bad label read at its point of use, an
// allocation failure) is kept and rethrown once the region has ended: nothing
// escapes an OpenMP region, which would end the process.
// ---------------------------------------------------------------------------
using Interrupt = std::function<bool()>;

struct interrupted : std::runtime_error {
  interrupted() : std::runtime_error("interrupted") {}
};

class RegionState {
 public:
  explicit RegionState(const Interrupt* interrupt) : interrupt_(interrupt) {}
  bool stopped() const { return stop_.load(std::memory_order_relaxed); }
  // Called between blocks by every thread; polls the hook on the calling thread.
  bool poll() {
    if (interrupt_ && *interrupt_ && thread_id() == 0 && (*interrupt_)()) {
      was_interrupted_ = true;
      stop_.store(true, std::memory_order_relaxed);
    }
    return stopped();
  }
  template <typename F>
  void run(F&& f) noexcept {  // f() with its exception kept
    if (stopped()) return;
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      stop_.store(true, std::memory_order_relaxed);
    }
  }
  void rethrow() {  // after the region
    if (error_) std::rethrow_exception(error_);
    if (was_interrupted_) throw interrupted();
  }

 private:
  const Interrupt* interrupt_;
  std::atomic<bool> stop_{false};
  bool was_interrupted_ = false;
  std::mutex mutex_;
  std::exception_ptr error_;
};

// ---------------------------------------------------------------------------
// Workspace: per-worker block buffers and tree-node buffers, kept between
// calls so that a training loop allocates nothing. One call at a time may use
// a workspace (the caller's lock guards it).
//
// Every buffer, and every sub-buffer of a block buffer, starts on a 64-byte
// boundary: Eigen's vectorized loops peel a different number of leading
// scalars at a different alignment, which changes the order of the additions
// in a reduction. With a fixed alignment the bits of a block's result do not
// depend on which worker's buffer it ran in.
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
  // The k-th leaf worker w took from another worker's range (see cost_grad),
  // allocated on first use by that worker alone.
  T* stolen_buffer(int w, int k, Index P) {
    auto& bufs = stolen_[w];
    if (static_cast<int>(bufs.size()) <= k) bufs.resize(k + 1);
    bufs[k].resize(P);
    return bufs[k].data();
  }
  T* w0t() { return w0t_.data(); }
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
    Index nb = 0;
    for (int l = 1; l < shape.n_layers(); ++l) nb += shape.size(l);
    biases_.resize(nb);
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
    return n * sizeof(T);
  }

 private:
  AlignedBuffer<T> w0t_;
  std::vector<AlignedBuffer<T>> sparse_;
  std::vector<std::vector<AlignedBuffer<T>>> stolen_;
  std::vector<AlignedBuffer<T>> blocks_;
  std::vector<std::vector<AlignedBuffer<T>>> nodes_;
  AlignedBuffer<T> biases_;
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
  const T* W0T = nullptr;    // (s_0, s_1) W^(0)^T, for a sparse X
  T* dW0T = nullptr;         // (s_0, s_1) the leaf's dW^(0)^T, for a sparse X
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

// Class index of row r, checked where it is read (see checked_row).
template <typename T>
std::int64_t checked_label(const Data<T>& d, Index r, Index K) {
  const std::int64_t label = d.labels[r];
  if (label < 0 || label >= K)
    throw std::invalid_argument("y[" + std::to_string(r) + "] = " + std::to_string(label) +
                                " is not a class index in [0, " + std::to_string(K) + ")");
  return label;
}

// Points A[0] at rows [r0, r0 + b) of the examples: a view of X when rows are
// contiguous, else a gathered copy in the block buffer.
template <typename T>
void load_block(const Shape& shape, const Data<T>& d, Index r0, Index b, BlockViews<T>& v) {
  const Index n = shape.n_inputs();
  if (d.csr.active()) {  // the first layer reads the CSR rows itself
    for (Index i = 0; i < b; ++i) v.r[i] = d.rows ? checked_row(d, r0 + i) : r0 + i;
  } else if (!d.rows) {
    for (Index i = 0; i < b; ++i) v.r[i] = r0 + i;
    new (&v.A[0]) RowMap<T>(const_cast<T*>(d.X) + r0 * n, b, n, Eigen::OuterStride<>(n));
  } else {
    for (Index i = 0; i < b; ++i) {
      v.r[i] = checked_row(d, r0 + i);
      std::copy_n(d.X + v.r[i] * n, n, v.gather + i * n);
    }
    new (&v.A[0]) RowMap<T>(v.gather, b, n, Eigen::OuterStride<>(n));
  }
}

template <typename T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Hidden activation g, in place on one row.
template <typename T>
void activate(Activation act, ArrayMap<T>& z) {
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

// One pass over the GEMM's output z (b, n), row by row while a row is in L1:
//   z += 1 b^T;  a = g(z) for a hidden layer (in place).
// Returns false if some pre-activation is not finite (0 * z is NaN there).
template <typename T>
bool bias_activate(T* z, Index b, Index n, const T* bias, Activation act, bool hidden) {
  ConstArrayMap<T> bv(bias, n);
  T check = 0;
  for (Index i = 0; i < b; ++i) {
    ArrayMap<T> zr(z + i * n, n);
    zr += bv;
    check += (zr * T(0)).sum();
    if (hidden) activate<T>(act, zr);
  }
  return check == T(0);
}

// One pass over the backpropagated delta (b, n), row by row:
//   delta .*= g'(z), written in terms of a = g(z) (b, n);
//   colsum (n,) = sum_i delta_i  (overwritten: the next bias gradient).
template <typename T>
void gprime_colsum(Activation act, T* delta, const T* a, Index b, Index n, T* colsum) {
  ArrayMap<T> cs(colsum, n);
  cs.setZero();
  for (Index i = 0; i < b; ++i) {
    ArrayMap<T> dr(delta + i * n, n);
    ConstArrayMap<T> ar(a + i * n, n);
    switch (act) {
      case Activation::sigmoid:  // g'(z) = a (1 - a)
        dr *= ar * (T(1) - ar);
        break;
      case Activation::tanh:  // g'(z) = 1 - a^2
        dr *= T(1) - ar.square();
        break;
      case Activation::relu:  // g'(z) = [a > 0]
        dr = (ar > T(0)).select(dr, T(0));
        break;
    }
    cs += dr;
  }
}

template <typename T>
void column_sums(const T* delta, Index b, Index n, T* colsum) {
  ArrayMap<T> cs(colsum, n);
  cs.setZero();
  for (Index i = 0; i < b; ++i) cs += ConstArrayMap<T>(delta + i * n, n);
}

// Forward one block of b rows: A[l+1] = g(A[l] W^(l)^T + 1 b^(l)^T) for the
// hidden layers; the last layer A[L-1] holds the logits z^(L) (b, K), not yet
// passed through the output function. biases: see gather_biases. Returns the
// first layer (1 .. L-1) whose pre-activations are not all finite, or 0.
// Sparse first layer: z (b, s_1) = X_block W^(0)^T, row i of z the sum over
// the nonzeros (j, x) of example row r_i of x W0T[j, :] (W0T = W^(0)^T (s_0, s_1)).
template <typename T>
void sparse_forward(const Csr<T>& csr, const Index* rows, Index b, const T* W0T, Index s1, T* z) {
  for (Index i = 0; i < b; ++i) {
    ArrayMap<T> zr(z + i * s1, s1);
    zr.setZero();
    csr.for_row(rows[i], [&](Index j, T x) { zr += x * ConstArrayMap<T>(W0T + j * s1, s1); });
  }
}

// Sparse first layer, backward: dW0T (s_0, s_1) += X_block^T delta^(1), i.e.
// dW0T[j, :] += x delta_i for each nonzero (j, x) of example row r_i.
template <typename T>
void sparse_accumulate(const Csr<T>& csr, const Index* rows, Index b, const T* delta, Index s1,
                       T* dW0T) {
  for (Index i = 0; i < b; ++i) {
    ConstArrayMap<T> di(delta + i * s1, s1);
    csr.for_row(rows[i], [&](Index j, T x) { ArrayMap<T>(dW0T + j * s1, s1) += x * di; });
  }
}

template <typename T>
int forward_block(const Shape& shape, const T* theta, const T* biases, Activation act, Index b,
                  BlockViews<T>& v, const Data<T>& d) {
  const int L = shape.n_layers();
  for (int l = 0; l + 1 < L; ++l) {
    auto z = v.A[l + 1].topRows(b);
    if (l == 0 && d.csr.active())
      sparse_forward(d.csr, v.r.data(), b, v.W0T, shape.size(1), z.data());
    else
      z.noalias() = v.A[l].topRows(b) * shape.weights(theta, l).transpose();
    if (!bias_activate(z.data(), b, shape.size(l + 1), biases, act, l + 2 < L)) return l + 1;
    biases += shape.size(l + 1);
  }
  return 0;
}

// Output layer of one row: writes h = output(z) (K,).
template <typename T>
void output_row(Output output, const T* z, T* h, Index K) {
  switch (output) {
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

// Identity output, one block: loss = sum_i w_i 1/2 sum_k (z_ik - y_ik)^2
// (returned) and delta^(L) = w (z - y) written over z.
template <typename T>
double identity_output_block(const Data<T>& d, const Index* rows, Index b, Index K, T* z) {
  double loss = 0;
  for (Index i = 0; i < b; ++i) {
    const Index r = rows[i];
    const T w = d.sample_weight ? d.sample_weight[r] : T(1);
    const std::int64_t label = d.labels ? checked_label(d, r, K) : -1;
    const T* y = d.Y ? d.Y + r * K : nullptr;
    T* zi = z + i * K;
    double row = 0;
    for (Index k = 0; k < K; ++k) {
      const double res = double(zi[k]) - (y ? double(y[k]) : double(k == label));
      row += 0.5 * res * res;
      zi[k] = w * T(res);
    }
    loss += double(w) * row;
  }
  return loss;
}

// Sigmoid output layer of one block, vectorized over (b, K) in double:
//   loss = sum_i w_i sum_k [y_ik softplus(-z_ik) + (1 - y_ik) softplus(z_ik)]   (returned)
//   delta^(L)_ik = w_i (h_ik - y_ik)                                            (written over z)
// with softplus(+-z) = max(+-z, 0) + log1p(e^-|z|) and h = 1 / (1 + e^-z).
// log1p(e) = log(u) - ((u - 1) - e) / u with u = 1 + e (the rounding of u
// corrected to first order: exact to a few ulps, and e itself where u rounds
// to 1). Splitting the loss by target keeps the relative accuracy of a
// confidently right output (z = 50, y = 1 gives log1p(e^-50), not
// softplus(50) - 50 = 0). No step overflows except e^-z for z < -709, where
// h = 1 / inf = 0 is the correctly rounded limit. Every array statement is a
// plain expression (no select), so Eigen vectorizes exp and log.
template <typename T>
double sigmoid_output_block(const Data<T>& d, const Index* rows, Index b, Index K, T* z,
                            double* scratch) {
  using ArrayD = Eigen::Array<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ArrayT = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<ArrayT> Z(z, b, K);
  Eigen::Map<ArrayD> zd(scratch, b, K), h(scratch + padded<double>(b * K), b, K),
      l1p(scratch + 2 * padded<double>(b * K), b, K);
  zd = Z.template cast<double>();
  h = (-zd.abs()).exp();                                        // e = e^-|z|, in (0, 1]
  l1p = (h + 1.0).log() - (((h + 1.0) - 1.0) - h) / (h + 1.0);  // log1p(e)
  h = ((-zd).exp() + 1.0).inverse();                            // h = 1 / (1 + e^-z)
  double loss = 0;
  for (Index i = 0; i < b; ++i) {
    const Index r = rows[i];
    const T w = d.sample_weight ? d.sample_weight[r] : T(1);
    const double* zi_d = &zd(i, 0);
    const double* l1p_i = &l1p(i, 0);
    const double* h_i = &h(i, 0);
    double row = 0;
    T* zi = z + i * K;
    if (d.labels) {
      const std::int64_t label = checked_label(d, r, K);
      for (Index k = 0; k < K; ++k) {
        const double zk = k == label ? -zi_d[k] : zi_d[k];  // softplus(-z) for the target
        row += std::max(zk, 0.0) + l1p_i[k];
        zi[k] = w * T(h_i[k] - double(k == label));
      }
    } else {
      const T* y = d.Y + r * K;
      for (Index k = 0; k < K; ++k) {
        const double yk = y[k], zk = zi_d[k];
        row += yk * std::max(-zk, 0.0) + (1.0 - yk) * std::max(zk, 0.0) + l1p_i[k];
        zi[k] = w * T(h_i[k] - yk);
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
double softmax_output_block(const Data<T>& d, const Index* rows, Index b, Index K, T* z,
                            double* scratch) {
  using ArrayD = Eigen::Array<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ArrayT = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<ArrayT> Z(z, b, K);
  Eigen::Map<ArrayD> zd(scratch, b, K), h(scratch + padded<double>(b * K), b, K);
  Eigen::Map<Eigen::ArrayXd> lse(scratch + 2 * padded<double>(b * K), b);
  zd = Z.template cast<double>();
  lse = zd.rowwise().maxCoeff();
  h = (zd.colwise() - lse).exp();  // e^{z - max}, in (0, 1]
  Eigen::Map<Eigen::ArrayXd> sum(scratch + 2 * padded<double>(b * K) + padded<double>(b), b);
  sum = h.rowwise().sum();  // in [1, K]
  lse += sum.log();
  h.colwise() /= sum;  // h = e^{z - lse}: one division instead of a second exp
  double loss = 0;
  for (Index i = 0; i < b; ++i) {
    const Index r = rows[i];
    const T w = d.sample_weight ? d.sample_weight[r] : T(1);
    T* zi = z + i * K;
    double row = 0;
    if (d.labels) {
      const std::int64_t label = checked_label(d, r, K);
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

// Cost and gradient sums of one block of b rows starting at example r0:
//   Delta^(l) (=|+=) delta^(l+1)^T [1, A^(l)]   into grad (P,): overwritten
//   when `first`, else accumulated
// Returns the weighted loss sum of the block. Sets bad_layer on non-finite
// pre-activations (the caller reports it).
template <typename T>
double accumulate_block(const Shape& shape, const T* theta, const T* biases, const Data<T>& d,
                        Activation act, Output output, Index r0, Index b, BlockViews<T>& v, T* grad,
                        bool first, double& weight, int& bad_layer) {
  const int L = shape.n_layers();
  const Index K = shape.n_outputs();
  load_block(shape, d, r0, b, v);
  bad_layer = forward_block(shape, theta, biases, act, b, v, d);
  if (bad_layer) return 0;

  // delta^(L) = w_i (h_i - y_i), written over the logits; loss in double.
  T* zL = v.A[L - 1].data();
  double loss;
  if (output == Output::sigmoid)
    loss = sigmoid_output_block(d, v.r.data(), b, K, zL, v.scratch);
  else if (output == Output::softmax)
    loss = softmax_output_block(d, v.r.data(), b, K, zL, v.scratch);
  else
    loss = identity_output_block(d, v.r.data(), b, K, zL);
  if (d.sample_weight)
    for (Index i = 0; i < b; ++i) weight += d.sample_weight[v.r[i]];
  else
    weight += double(b);
  column_sums(zL, b, K, v.colsum);

  // Backward: for l = L-2 .. 0, with colsum = delta^(l+1)^T 1
  //   dW^(l) (=|+=) delta^(l+1)^T A^(l)               (s_{l+1}, s_l)
  //   db^(l) (=|+=) colsum                            (s_{l+1},)
  //   delta^(l) = (delta^(l+1) W^(l)) .* g'(z^(l))    (b, s_l), for l >= 1
  RowMap<T> delta(zL, b, K, Eigen::OuterStride<>(K));
  T* spare[2] = {v.delta0, v.delta1};
  for (int l = L - 2; l >= 0; --l) {
    auto a = v.A[l].topRows(b);
    auto dW = shape.weights(grad, l);
    auto db = shape.bias(grad, l);
    Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>> cs(v.colsum, shape.size(l + 1));
    if (l == 0 && d.csr.active()) {  // into the leaf's dW0T (see accumulate_leaf)
      const Index s1 = shape.size(1);
      T* dW0T = v.transposed0 ? grad + shape.offset(0) + s1 : v.dW0T;
      sparse_accumulate(d.csr, v.r.data(), b, delta.data(), s1, dW0T);
      if (v.transposed0) {
        Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>> db0(grad + shape.offset(0), s1);
        if (first)
          db0 = cs;
        else
          db0 += cs;
      } else if (first) {
        db = cs;
      } else {
        db += cs;
      }
    } else if (first) {
      dW.noalias() = delta.transpose() * a;
      db = cs;
    } else {
      dW.noalias() += delta.transpose() * a;
      db += cs;
    }
    if (l == 0) break;
    RowMap<T> next(spare[l % 2], b, shape.size(l), Eigen::OuterStride<>(shape.size(l)));
    next.noalias() = delta * shape.weights(theta, l);
    gprime_colsum<T>(act, next.data(), a.data(), b, shape.size(l), v.colsum);
    new (&delta) RowMap<T>(next.data(), b, shape.size(l), Eigen::OuterStride<>(shape.size(l)));
  }
  return loss;
}

// Sums of one leaf, rows [r0, r1) of the examples, in blocks of at most B
// rows (the leaf split into equal blocks): grad (P,) overwritten with
// sum_i w_i dJ_i/dtheta; returns sum_i w_i loss_i, sets `weight` to sum_i w_i.
template <typename T>
double accumulate_leaf(const Shape& shape, const T* theta, const T* biases, const Data<T>& d,
                       Activation act, Output output, Index r0, Index r1, Index B, BlockViews<T>& v,
                       T* grad, double& weight, int& bad_layer, RegionState& state) {
  const Index n = r1 - r0, nb = (n + B - 1) / B;  // n rows in nb equal blocks
  double loss = 0;
  weight = 0;
  const Index s0 = shape.size(0), s1 = shape.size(1);
  if (d.csr.active())
    ArrayMap<T>(v.transposed0 ? grad + shape.offset(0) + s1 : v.dW0T, s0 * s1).setZero();
  for (Index k = 0; k < nb; ++k) {
    if (state.poll()) return 0;
    const Index b0 = r0 + n / nb * k + std::min(k, n % nb);
    const Index b1 = r0 + n / nb * (k + 1) + std::min(k + 1, n % nb);
    loss += accumulate_block(shape, theta, biases, d, act, output, b0, b1 - b0, v, grad, k == 0,
                             weight, bad_layer);
    if (bad_layer) return 0;
  }
  if (d.csr.active() && !v.transposed0)  // dW^(0) (s_1, s_0) = dW0T^T, into the leaf's buffer
    shape.weights(grad, 0) = Eigen::Map<const RowMat<T>>(v.dW0T, s0, s1).transpose();
  return loss;
}

// Error for the first non-finite pre-activation found by a kernel.
template <typename T>
[[noreturn]] void throw_non_finite(const Shape& shape, const Data<T>& d, int bad_layer) {
  const Index n = shape.n_inputs();
  for (Index i = 0; i < d.m && d.csr.active(); ++i) {
    const Index r = checked_row(d, i);
    d.csr.for_row(r, [&](Index j, T x) {
      if (!std::isfinite(x))
        throw std::invalid_argument("X contains a non-finite value at row " + std::to_string(r) +
                                    ", column " + std::to_string(j));
    });
  }
  for (Index i = 0; i < d.m && !d.csr.active(); ++i) {
    const Index r = checked_row(d, i);
    const T* x = d.X + r * n;
    for (Index j = 0; j < n; ++j)
      if (!std::isfinite(x[j]))
        throw std::invalid_argument("X contains a non-finite value at row " + std::to_string(r) +
                                    ", column " + std::to_string(j));
  }
  throw std::overflow_error("non-finite pre-activation z in layer " + std::to_string(bad_layer) +
                            ": theta or X is too large for this dtype");
}

// ---------------------------------------------------------------------------
// finalize: turns the summed Delta into the gradient and returns J.
//   D^(l) = Delta^(l) / weight_sum + (lam / weight_sum) Theta^(l)   for columns j >= 1
//   D^(l) = Delta^(l) / weight_sum                                  for the bias column j = 0
//   J = loss / weight_sum + lam / (2 weight_sum) sum_l sum_{i, j>=1} Theta^(l)_ij^2
// weight_sum is the summed sample weight. The work is split by rows of the Theta^(l)
// (finalize_rows); each row's share of the penalty is kept in sq_rows and
// they are added in row order, so J has the same bits however rows are split.
// ---------------------------------------------------------------------------
inline Index total_rows(const Shape& shape) {  // sum_l s_{l+1}: rows of all Theta^(l)
  Index n = 0;
  for (int l = 1; l < shape.n_layers(); ++l) n += shape.size(l);
  return n;
}

// Row r of the stacked Theta^(l): its offset in theta and its length s_l + 1.
inline void theta_row(const Shape& shape, Index r, Index& off, Index& cols) {
  int l = 0;
  while (r >= shape.size(l + 1)) r -= shape.size(++l);
  cols = shape.size(l) + 1;
  off = shape.offset(l) + r * cols;
}

// A merge of the final combine: dst += src, restricted to one row's slice.
template <typename T>
struct MergeOp {
  T* dst;
  const T* src;
};

// The merge plan applied to rows [r0, r1) of the stacked Theta^(l) (offsets
// only: any layout of a node buffer, see BlockViews::transposed0).
template <typename T>
void merge_rows(const Shape& shape, const std::vector<MergeOp<T>>& plan, Index r0, Index r1) {
  for (Index r = r0; r < r1; ++r) {
    Index off, cols;
    theta_row(shape, r, off, cols);
    for (const MergeOp<T>& op : plan)
      for (Index j = 0; j < cols; ++j) op.dst[off + j] += op.src[off + j];
  }
}

// grad's layer-0 part [db (s_1,) | dW^T (s_0, s_1)] -> Theta^(0)'s layout
// (s_1, s_0 + 1), through temp (s_0 s_1,); 8 output rows at a time, so that
// each cache line of temp is read once.
template <typename T>
void untranspose_layer0(const Shape& shape, T* grad, T* temp) {
  const Index s0 = shape.size(0), s1 = shape.size(1);
  T* g = grad + shape.offset(0);
  std::copy_n(g + s1, s0 * s1, temp);
  std::vector<T> db(g, g + s1);
  for (Index r0 = 0; r0 < s1; r0 += 8) {
    const Index r1 = std::min(s1, r0 + 8);
    for (Index r = r0; r < r1; ++r) g[r * (s0 + 1)] = db[r];
    for (Index j = 0; j < s0; ++j)
      for (Index r = r0; r < r1; ++r) g[r * (s0 + 1) + 1 + j] = temp[j * s1 + r];
  }
}

// Rows [r0, r1) of the stacked Theta^(l): applies the merge plan to the row's
// slice, then writes the gradient over grad (the plan's final destination)
// and sq_rows[r] = sum_{j>=1} Theta_rj^2. Returns false if a gradient value
// is not finite.
template <typename T>
bool finalize_rows(const Shape& shape, const T* theta, double inv_w, double reg, T* grad,
                   const std::vector<MergeOp<T>>& plan, Index r0, Index r1, double* sq_rows) {
  bool finite = true;
  for (Index r = r0; r < r1; ++r) {
    Index off, cols;
    theta_row(shape, r, off, cols);
    for (const MergeOp<T>& op : plan) {
      T* a = op.dst + off;
      const T* b = op.src + off;
      for (Index j = 0; j < cols; ++j) a[j] += b[j];
    }
    T* g = grad + off;
    const T* t = theta + off;
    // sum Theta_rj^2 over j >= 1 in 8 interleaved partial sums (a fixed order:
    // the same bits on every machine and alignment), combined pairwise.
    constexpr int lanes = 8;
    double part[lanes] = {};
    const T* tj = t + 1;
    const Index n = cols - 1;
    Index j = 0;
    for (; j + lanes <= n; j += lanes)
      for (int k = 0; k < lanes; ++k) part[k] += double(tj[j + k]) * double(tj[j + k]);
    for (int k = 0; j < n; ++j, ++k) part[k] += double(tj[j]) * double(tj[j]);
    sq_rows[r] =
        ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    g[0] = T(double(g[0]) * inv_w);
    for (Index c = 1; c < cols; ++c) g[c] = T(double(g[c]) * inv_w + reg * double(t[c]));
    finite = finite && Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(g, cols).allFinite();
  }
  return finite;
}

// The one check of lam (Python passes it through): the entry points call it.
inline void check_lam(double lam) {
  if (!(lam >= 0) || !std::isfinite(lam))
    throw std::invalid_argument("lam must be finite and >= 0; got " + std::to_string(lam));
}

inline void check_weight_sum(double weight_sum) {
  if (!(weight_sum > 0))
    throw std::invalid_argument("the sample weights sum to " + std::to_string(weight_sum) +
                                "; they must sum to a positive number");
}

template <typename T>
double finish_cost(const Shape& shape, double lam, double loss, double weight_sum,
                   const std::vector<double>& sq_rows, bool finite) {
  double sq = 0;
  for (double s : sq_rows) sq += s;
  const double J = loss / weight_sum + 0.5 * (lam / weight_sum) * sq;
  // Finite inputs give a finite J and gradient unless a value overflows the
  // dtype; callers (the optimizer loops) rely on this check instead of their own.
  if (!std::isfinite(J) || !finite)
    throw std::overflow_error("non-finite cost or gradient (overflows " +
                              std::string(sizeof(T) == 4 ? "float32" : "float64") +
                              "): theta or X is too large");
  (void)shape;
  return J;
}

// The summed Delta (P,) in grad -> the gradient, in place; returns J.
template <typename T>
double finalize(const Shape& shape, const T* theta, double lam, double loss, double weight_sum,
                T* grad) {
  check_lam(lam);
  check_weight_sum(weight_sum);
  std::vector<double> sq_rows(total_rows(shape));
  const bool finite = finalize_rows(shape, theta, 1.0 / weight_sum, lam / weight_sum, grad, {}, 0,
                                    total_rows(shape), sq_rows.data());
  return finish_cost<T>(shape, lam, loss, weight_sum, sq_rows, finite);
}

// ---------------------------------------------------------------------------
// reduce_tree: merges a run of tree nodes (in leaf order, as partial_sums and
// earlier reduce_tree calls return them) by the rule of push_node, in place:
// a merged node's sums end in its left sibling's buffers. Returns the indices
// (into `nodes`) of the nodes left, in leaf order; one node (the root) when
// the run covers all C leaves.
// ---------------------------------------------------------------------------
template <typename T>
struct NodeSums {
  TreeNode node;
  T* grad;  // (P,)
  double loss;
  double weight;
};

template <typename T>
std::vector<std::size_t> reduce_tree(std::vector<NodeSums<T>>& nodes, Index P, Index C) {
  std::vector<TreeNode> stack;
  std::vector<std::size_t> ids;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    ids.push_back(i);
    push_node(stack, nodes[i].node, C, [&](std::size_t a, std::size_t b) {
      NodeSums<T>& dst = nodes[ids[a]];
      const NodeSums<T>& src = nodes[ids[b]];
      for (Index p = 0; p < P; ++p) dst.grad[p] += src.grad[p];
      dst.loss += src.loss;
      dst.weight += src.weight;
      ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(b));
    });
    for (std::size_t k = 0; k < stack.size(); ++k) nodes[ids[k]].node = stack[k];
  }
  return ids;
}

// For a sparse X: W^(0)^T (s_0, s_1) into the workspace, once per call, and
// room for each worker's dW0T when the call backpropagates.
template <typename T>
void prepare_sparse(const Shape& shape, const T* theta, const Data<T>& d, Workspace<T>& ws, int nw,
                    bool backward) {
  if (!d.csr.active()) return;
  ws.reserve_sparse(shape, nw, backward);
  Eigen::Map<RowMat<T>>(ws.w0t(), shape.size(0), shape.size(1)) =
      shape.weights(theta, 0).transpose();
}

// The workspace of one call: block buffers for nw workers, node buffers as
// listed, the contiguous biases and, for a sparse X, W^(0)^T (+ scratch).
template <typename T>
void prepare_call(const Shape& shape, const T* theta, const Data<T>& d, Workspace<T>& ws, Index B,
                  int nw, const std::vector<int>& node_slots, bool sparse_scratch) {
  ws.reserve(shape, B, nw, node_slots);
  prepare_sparse(shape, theta, d, ws, nw, sparse_scratch);
  gather_biases(shape, theta, ws.biases());
}

template <typename T>
void attach_sparse(const Data<T>& d, Workspace<T>& ws, int w, bool backward, BlockViews<T>& v) {
  if (!d.csr.active()) return;
  v.W0T = ws.w0t();
  if (backward) v.dW0T = ws.sparse_scratch(w);
}

// A worker's leaf range [lo, hi), packed in one atomic word so that its owner
// (taking from the front) and other workers (taking from the back) never take
// the same leaf.
class LeafRange {
 public:
  void reset(Index lo, Index hi) { word_.store(pack(lo, hi), std::memory_order_relaxed); }
  Index left() const {
    const std::uint64_t w = word_.load(std::memory_order_relaxed);
    return static_cast<Index>(w & kMask) - static_cast<Index>(w >> 32);
  }
  bool take_front(Index& c) {  // the owner
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
      const Index lo = static_cast<Index>(w >> 32), hi = static_cast<Index>(w & kMask);
      if (lo >= hi) return false;
      if (word_.compare_exchange_weak(w, pack(lo + 1, hi), std::memory_order_relaxed)) {
        c = lo;
        return true;
      }
    }
  }
  bool take_back(Index& c) {  // another worker; never leaf 0 (it lands in grad)
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
      const Index lo = static_cast<Index>(w >> 32), hi = static_cast<Index>(w & kMask);
      if (lo >= hi || hi < 2) return false;
      if (word_.compare_exchange_weak(w, pack(lo, hi - 1), std::memory_order_relaxed)) {
        c = hi - 1;
        return true;
      }
    }
  }

 private:
  static constexpr std::uint64_t kMask = 0xffffffffu;
  static std::uint64_t pack(Index lo, Index hi) {
    return (static_cast<std::uint64_t>(lo) << 32) | static_cast<std::uint64_t>(hi);
  }
  std::atomic<std::uint64_t> word_{0};
};

// For the tests of leaf taking only: BPNET_TEST_STALL_WORKER=w (read once)
// holds worker w back 30 ms at the start of each call, so that the others take
// leaves from its range.
inline void stall_for_tests(int w) {
  static const int stalled = [] {
    const char* e = std::getenv("BPNET_TEST_STALL_WORKER");
    return e ? std::atoi(e) : -1;
  }();
  if (w == stalled) std::this_thread::sleep_for(std::chrono::milliseconds(30));
}

// Leaves one worker may take from others, each in a buffer of its own: about
// 64 MiB of them at most (and at least one).
template <typename T>
int max_stolen(Index P) {
  return static_cast<int>(
      std::max<Index>(1, std::min<Index>(64, (Index(64) << 20) / (P * Index(sizeof(T))))));
}

// ---------------------------------------------------------------------------
// cost_grad: J and its gradient (P,) in one pass; grad is overwritten.
//
// One parallel region. Phase 1: the leaves are split into contiguous ranges,
// one per worker (a worker is a thread unless OpenMP gives fewer); a worker
// sums its leaves from the front of its range into node buffers and merges
// them as push_node says (the first worker's first node is grad itself).
// A worker done with its range takes single leaves from the back of the
// fullest other range (at most max_stolen, a node each), so a thread slowed
// by a busy core delays nobody. Phase 2, after a barrier: all runs' nodes, in
// leaf order, are merged by the same rule (a list of "dst += src" operations
// planned once), applied row by row of the Theta^(l) fused with finalize, the
// rows split over the threads. Which worker took which leaf never changes a
// bit: the tree fixes every addition.
// ---------------------------------------------------------------------------
template <typename T>
double cost_grad(const Shape& shape, const T* theta, const Data<T>& d, double lam, Activation act,
                 Output output, T* grad, int n_threads, Workspace<T>& ws,
                 const Interrupt* interrupt = nullptr) {
  check_lam(lam);
  validate(shape, theta, d, true);
  const std::vector<Index> starts = leaf_starts(d.m);
  const Index C = static_cast<Index>(starts.size()) - 1;
  const Index B = block_rows<T>(shape);
  const int nw = startable_threads(threads_for(shape, d.m, n_threads, C, true));

  // Leaf ranges and node slots per worker (a dry run of push_node).
  std::vector<Index> first(nw + 1);
  for (int w = 0; w <= nw; ++w) first[w] = C / nw * w + std::min<Index>(w, C % nw);
  std::vector<int> slots(nw, 0);
  for (int w = 0; w < nw; ++w) {
    std::vector<TreeNode> stack;
    for (Index c = first[w]; c < first[w + 1]; ++c) {
      slots[w] = std::max(slots[w], static_cast<int>(stack.size()) + 1);  // leaf c's buffer
      push_node(stack, TreeNode{0, c}, C, [](std::size_t, std::size_t) {});
    }
  }
  slots[0] -= 1;                                           // worker 0's bottom node is grad
  prepare_call(shape, theta, d, ws, B, nw, slots, false);  // sparse: no scratch (transposed0)

  struct WorkerNodes {
    std::vector<TreeNode> stack;  // the owner's run, merged as it grows
    std::vector<T*> bufs;
    std::vector<double> loss, weight;
    std::vector<Index> stolen;  // leaves taken from other workers, one node each
    std::vector<T*> stolen_bufs;
    std::vector<double> stolen_loss, stolen_weight;
    int bad_layer = 0;
  };
  std::vector<WorkerNodes> nodes(nw);
  std::vector<LeafRange> ranges(nw);
  for (int w = 0; w < nw; ++w) ranges[w].reset(first[w], first[w + 1]);
  const int steal_limit = max_stolen<T>(shape.n_params());
  std::vector<MergeOp<T>> plan;
  double loss_sum = 0, weight_sum = 0;
  const Index R = total_rows(shape);
  std::vector<double> sq_rows(R);
  int finite = 1;
  bool combine = false;  // set by the planning thread: every worker finished
  RegionState state(interrupt);

#pragma omp parallel num_threads(nw) if (nw > 1)
  {
    const int tid = thread_id(), nt = team_size();
    for (int w = tid; w < nw; w += nt) {
      state.run([&] {
        BlockViews<T> v(shape, ws.block_buffer(w), B);
        attach_sparse(d, ws, w, false, v);
        v.transposed0 = d.csr.active();
        WorkerNodes& wn = nodes[w];
        Index c;
        stall_for_tests(w);
        // The own range, from the front: its first node is grad for worker 0.
        while (!state.stopped() && ranges[w].take_front(c)) {
          const std::size_t slot = wn.stack.size();
          T* buf =
              (w == 0 && slot == 0) ? grad : ws.node_buffer(w, static_cast<int>(slot) - (w == 0));
          double weight = 0;
          const double loss =
              accumulate_leaf(shape, theta, ws.biases(), d, act, output, starts[c], starts[c + 1],
                              B, v, buf, weight, wn.bad_layer, state);
          if (wn.bad_layer || state.stopped()) return;
          wn.bufs.push_back(buf);
          wn.loss.push_back(loss);
          wn.weight.push_back(weight);
          push_node(wn.stack, TreeNode{0, c}, C, [&](std::size_t a, std::size_t b) {
            Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(wn.bufs[a], shape.n_params()) +=
                Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(wn.bufs[b], shape.n_params());
            wn.loss[a] += wn.loss[b];
            wn.weight[a] += wn.weight[b];
            wn.bufs.pop_back();
            wn.loss.pop_back();
            wn.weight.pop_back();
          });
        }
        // Then leaves from the back of the range with the most left: a worker
        // slowed by another process, or by another pool's spinning threads,
        // holds up nobody.
        while (!state.stopped() && static_cast<int>(wn.stolen.size()) < steal_limit) {
          int victim = -1;
          Index most = 0;
          for (int u = 0; u < nw; ++u)
            if (u != w && ranges[u].left() > most) most = ranges[u].left(), victim = u;
          if (victim < 0) break;
          if (!ranges[victim].take_back(c)) continue;
          T* buf = ws.stolen_buffer(w, static_cast<int>(wn.stolen.size()), shape.n_params());
          double weight = 0;
          const double loss =
              accumulate_leaf(shape, theta, ws.biases(), d, act, output, starts[c], starts[c + 1],
                              B, v, buf, weight, wn.bad_layer, state);
          if (wn.bad_layer || state.stopped()) return;
          wn.stolen.push_back(c);
          wn.stolen_bufs.push_back(buf);
          wn.stolen_loss.push_back(loss);
          wn.stolen_weight.push_back(weight);
        }
      });
    }
#pragma omp barrier
#pragma omp single
    state.run([&] {  // plan the final combine (labels and scalars only)
      for (const WorkerNodes& wn : nodes)
        if (wn.bad_layer) return;
      struct Entry {
        Index first_leaf;
        TreeNode node;
        T* buf;
        double loss, weight;
      };
      std::vector<Entry> entries;  // every run's nodes, then sorted in leaf order
      for (WorkerNodes& wn : nodes) {
        for (std::size_t k = 0; k < wn.stack.size(); ++k)
          entries.push_back({wn.stack[k].index << wn.stack[k].level, wn.stack[k], wn.bufs[k],
                             wn.loss[k], wn.weight[k]});
        for (std::size_t k = 0; k < wn.stolen.size(); ++k)
          entries.push_back({wn.stolen[k], TreeNode{0, wn.stolen[k]}, wn.stolen_bufs[k],
                             wn.stolen_loss[k], wn.stolen_weight[k]});
      }
      std::sort(entries.begin(), entries.end(),
                [](const Entry& a, const Entry& b) { return a.first_leaf < b.first_leaf; });
      std::vector<TreeNode> stack;
      std::vector<T*> bufs;
      std::vector<double> loss, weight;
      for (const Entry& e : entries) {
        bufs.push_back(e.buf);
        loss.push_back(e.loss);
        weight.push_back(e.weight);
        push_node(stack, e.node, C, [&](std::size_t a, std::size_t b) {
          plan.push_back({bufs[a], bufs[b]});
          loss[a] += loss[b];
          weight[a] += weight[b];
          bufs.erase(bufs.begin() + static_cast<std::ptrdiff_t>(b));
          loss.erase(loss.begin() + static_cast<std::ptrdiff_t>(b));
          weight.erase(weight.begin() + static_cast<std::ptrdiff_t>(b));
        });
      }
      if (stack.size() != 1 || bufs[0] != grad)  // every leaf once, leaf 0 in grad
        throw std::logic_error("bpnet: the reduction tree did not close");
      loss_sum = loss[0];
      weight_sum = weight[0];
      check_weight_sum(weight_sum);
      combine = true;
    });
    // The implicit barrier of `single` publishes the plan and `combine`, which
    // no thread changes afterwards: all threads take the same branch.
    if (combine) {
      const double inv_w = 1.0 / weight_sum, reg = lam / weight_sum;
      const std::vector<MergeOp<T>> none;
      if (d.csr.active()) {  // merge, restore layer 0's layout once, then finalize
#pragma omp for schedule(dynamic, 8)
        for (Index r = 0; r < R; ++r) state.run([&] { merge_rows(shape, plan, r, r + 1); });
#pragma omp single
        state.run([&] { untranspose_layer0(shape, grad, ws.w0t()); });
      }
      const std::vector<MergeOp<T>>& ops = d.csr.active() ? none : plan;
#pragma omp for schedule(dynamic, 8) reduction(&& : finite)
      for (Index r = 0; r < R; ++r) {
        bool ok = true;
        state.run([&] {
          ok = finalize_rows(shape, theta, inv_w, reg, grad, ops, r, r + 1, sq_rows.data());
        });
        finite = finite && ok;
      }
    }
  }
  state.rethrow();
  for (const WorkerNodes& wn : nodes)
    if (wn.bad_layer) throw_non_finite(shape, d, wn.bad_layer);
  return finish_cost<T>(shape, lam, loss_sum, weight_sum, sq_rows, finite != 0);
}

// ---------------------------------------------------------------------------
// partial_sums: per-leaf unnormalized sums (the distributed building block).
//   leaf_grads[c] = sum over examples i in leaf c of w_i dJ_i/dtheta    (P,) each, overwritten
//   leaf_loss[c]  = sum_i w_i loss_i     leaf_weight[c] = sum_i w_i     (C,), overwritten
// starts (C + 1,) are row offsets into d's examples: a run of leaves of
// leaf_starts(m_total), shifted to start at 0. reduce_tree then merges them.
// ---------------------------------------------------------------------------
template <typename T>
void partial_sums(const Shape& shape, const T* theta, const Data<T>& d, Activation act,
                  Output output, const std::vector<Index>& starts,
                  const std::vector<T*>& leaf_grads, double* leaf_loss, double* leaf_weight,
                  int n_threads, Workspace<T>& ws, const Interrupt* interrupt = nullptr) {
  const Index C = static_cast<Index>(starts.size()) - 1;
  const Index B = block_rows<T>(shape);
  const int nw = startable_threads(threads_for(shape, d.m, n_threads, C, true));
  prepare_call(shape, theta, d, ws, B, nw, {}, true);
  std::vector<int> bad(C, 0);
  RegionState state(interrupt);

#pragma omp parallel num_threads(nw) if (nw > 1)
  {
    const int tid = thread_id(), nt = team_size();
    for (int w = tid; w < nw; w += nt)
      state.run([&] {
        BlockViews<T> v(shape, ws.block_buffer(w), B);
        attach_sparse(d, ws, w, true, v);
        const Index c0 = C / nw * w + std::min<Index>(w, C % nw);
        const Index c1 = C / nw * (w + 1) + std::min<Index>(w + 1, C % nw);
        for (Index c = c0; c < c1 && !state.stopped(); ++c)
          leaf_loss[c] =
              accumulate_leaf(shape, theta, ws.biases(), d, act, output, starts[c], starts[c + 1],
                              B, v, leaf_grads[c], leaf_weight[c], bad[c], state);
      });
  }
  state.rethrow();
  for (Index c = 0; c < C; ++c)
    if (bad[c]) throw_non_finite(shape, d, bad[c]);
}

// ---------------------------------------------------------------------------
// forward: a^(L) (m, K) overwritten into out; predict: argmax_k z^(L) (m,).
// Rows are independent here, so blocks are spread over threads freely.
// ---------------------------------------------------------------------------
template <typename T, typename RowFn>
void for_each_output_row(const Shape& shape, const T* theta, const Data<T>& d, Activation act,
                         int n_threads, Workspace<T>& ws, const Interrupt* interrupt, RowFn&& fn) {
  validate(shape, theta, d, false);
  const Index B = block_rows<T>(shape);
  const Index n_blocks = (d.m + B - 1) / B;
  const int nw = startable_threads(threads_for(shape, d.m, n_threads, n_blocks, false));
  prepare_call(shape, theta, d, ws, B, nw, {}, false);
  const Index K = shape.n_outputs();
  std::vector<int> bad(n_blocks, 0);
  RegionState state(interrupt);
#pragma omp parallel num_threads(nw) if (nw > 1)
  {
    const int tid = thread_id(), nt = team_size();
    for (int w = tid; w < nw; w += nt)
      state.run([&] {
        BlockViews<T> v(shape, ws.block_buffer(w), B);
        attach_sparse(d, ws, w, false, v);
        for (Index blk = w; blk < n_blocks && !state.poll(); blk += nw) {
          const Index r0 = blk * B, b = std::min(B, d.m - r0);
          load_block(shape, d, r0, b, v);
          bad[blk] = forward_block(shape, theta, ws.biases(), act, b, v, d);
          if (bad[blk]) continue;
          const T* z = v.A[shape.n_layers() - 1].data();
          for (Index i = 0; i < b; ++i) fn(r0 + i, z + i * K);
        }
      });
  }
  state.rethrow();
  for (Index blk = 0; blk < n_blocks; ++blk)
    if (bad[blk]) throw_non_finite(shape, d, bad[blk]);
}

template <typename T>
void forward(const Shape& shape, const T* theta, const Data<T>& d, Activation act, Output output,
             T* h /* (m, K) */, int n_threads, Workspace<T>& ws,
             const Interrupt* interrupt = nullptr) {
  const Index K = shape.n_outputs();
  for_each_output_row(shape, theta, d, act, n_threads, ws, interrupt,
                      [&](Index i, const T* z) { output_row(output, z, h + i * K, K); });
}

template <typename T>
void predict(const Shape& shape, const T* theta, const Data<T>& d, Activation act,
             std::int64_t* labels /* (m,) */, int n_threads, Workspace<T>& ws,
             const Interrupt* interrupt = nullptr) {
  const Index K = shape.n_outputs();
  for_each_output_row(shape, theta, d, act, n_threads, ws, interrupt, [&](Index i, const T* z) {
    labels[i] = static_cast<std::int64_t>(std::max_element(z, z + K) - z);
  });
}

// ---------------------------------------------------------------------------
// forward_cost: a^(L) (m, K) overwritten into h, and the regularized cost
//   J = loss / weight_sum + lam / (2 weight_sum) sum_l sum_{i, j>=1} Theta^(l)_ij^2
// from one forward pass (no backward pass: the validation score and loss of
// an early-stopping split). loss = sum_i w_i loss_i with the per-example
// losses of cost_grad (the same output blocks compute them) and weight_sum = sum_i w_i
// (m without sample weights). The rows of h have the bits forward gives: the
// same blocks, forward_block and output_row. Each block's loss and weight are
// kept per block and added in block order, and the blocks depend on m, the
// layer sizes and T only, so J has the same bits for any n_threads. J differs
// from cost_grad's in the order of the loss additions only (its leaves and
// tree): a few ulps.
// ---------------------------------------------------------------------------

// The output layer of one block of b rows: loss = sum_i w_i loss_i
// (returned); z (b, K) is overwritten with delta^(L), which nobody reads here.
template <typename T>
double output_block_loss(Output output, const Data<T>& d, const Index* rows, Index b, Index K, T* z,
                         double* scratch) {
  if (output == Output::sigmoid) return sigmoid_output_block(d, rows, b, K, z, scratch);
  if (output == Output::softmax) return softmax_output_block(d, rows, b, K, z, scratch);
  return identity_output_block(d, rows, b, K, z);
}

// sq_rows (sum_l s_{l+1},): row r of the stacked Theta^(l) gets
// sum_{j>=1} Theta_rj^2, in the 8 interleaved partial sums of finalize_rows
// (the same order, so the penalty has the bits cost_grad's has).
template <typename T>
void penalty_rows(const Shape& shape, const T* theta, std::vector<double>& sq_rows) {
  constexpr int lanes = 8;
  for (Index r = 0; r < static_cast<Index>(sq_rows.size()); ++r) {
    Index off, cols;
    theta_row(shape, r, off, cols);
    double part[lanes] = {};
    const T* tj = theta + off + 1;
    const Index n = cols - 1;
    Index j = 0;
    for (; j + lanes <= n; j += lanes)
      for (int k = 0; k < lanes; ++k) part[k] += double(tj[j + k]) * double(tj[j + k]);
    for (int k = 0; j < n; ++j, ++k) part[k] += double(tj[j]) * double(tj[j]);
    sq_rows[r] =
        ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  }
}

template <typename T>
double forward_cost(const Shape& shape, const T* theta, const Data<T>& d, Activation act,
                    Output output, double lam, T* h /* (m, K) */, int n_threads, Workspace<T>& ws,
                    const Interrupt* interrupt = nullptr) {
  check_lam(lam);
  validate(shape, theta, d, true);
  const Index B = block_rows<T>(shape);
  const Index n_blocks = (d.m + B - 1) / B;
  const int nw = startable_threads(threads_for(shape, d.m, n_threads, n_blocks, false));
  prepare_call(shape, theta, d, ws, B, nw, {}, false);
  const Index K = shape.n_outputs();
  std::vector<int> bad(n_blocks, 0);
  std::vector<double> loss(n_blocks, 0.0), weight(n_blocks, 0.0);  // (n_blocks,) per block
  RegionState state(interrupt);
#pragma omp parallel num_threads(nw) if (nw > 1)
  {
    const int tid = thread_id(), nt = team_size();
    for (int w = tid; w < nw; w += nt)
      state.run([&] {
        BlockViews<T> v(shape, ws.block_buffer(w), B);
        attach_sparse(d, ws, w, false, v);
        for (Index blk = w; blk < n_blocks && !state.poll(); blk += nw) {
          const Index r0 = blk * B, b = std::min(B, d.m - r0);
          load_block(shape, d, r0, b, v);
          bad[blk] = forward_block(shape, theta, ws.biases(), act, b, v, d);
          if (bad[blk]) continue;
          // h = output(z^(L)) first: the output block then overwrites z.
          T* z = v.A[shape.n_layers() - 1].data();  // (b, K) logits
          for (Index i = 0; i < b; ++i) output_row(output, z + i * K, h + (r0 + i) * K, K);
          loss[blk] = output_block_loss(output, d, v.r.data(), b, K, z, v.scratch);
          if (d.sample_weight)
            for (Index i = 0; i < b; ++i) weight[blk] += d.sample_weight[v.r[i]];
          else
            weight[blk] = double(b);
        }
      });
  }
  state.rethrow();
  for (Index blk = 0; blk < n_blocks; ++blk)
    if (bad[blk]) throw_non_finite(shape, d, bad[blk]);
  double loss_sum = 0, weight_sum = 0;  // in block order: the same bits for any n_threads
  for (Index blk = 0; blk < n_blocks; ++blk) {
    loss_sum += loss[blk];
    weight_sum += weight[blk];
  }
  check_weight_sum(weight_sum);
  std::vector<double> sq_rows(total_rows(shape));
  penalty_rows(shape, theta, sq_rows);
  return finish_cost<T>(shape, lam, loss_sum, weight_sum, sq_rows, true);
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
                 double step_size, double epsilon, int n_threads = -1) {
  const T b1 = T(beta_1), c1 = T(1 - beta_1), b2 = T(beta_2), c2 = T(1 - beta_2);
  const T step = T(step_size), eps = T(epsilon);
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  // Slices of 1024 keep the four streams in L1 between the statements. The
  // update is elementwise, so splitting the slices over threads cannot change
  // a bit; it pays once the four (P,) streams outgrow L2 (bench/README.md).
  constexpr Index span = 1024;
  const int nt = P >= 32 * span ? startable_threads(resolve_threads(n_threads)) : 1;
  int finite = 1;
  RegionState state(nullptr);
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(&& : finite)
  {
    AlignedBuffer<T> root;  // sqrt(v) of one slice: on the heap, not the thread's stack
    state.run([&] { root.resize(span); });
#pragma omp for schedule(static)
    for (Index p0 = 0; p0 < P; p0 += span) {
      if (state.stopped()) continue;
      const Index n = std::min(span, P - p0);
      Eigen::Map<const Arr> G(g + p0, n);
      Eigen::Map<Arr> M(m1 + p0, n), V(v + p0, n), Th(theta + p0, n);
      M = M * b1 + G * c1;
      V = V * b2 + G.square() * c2;
      sqrt_into(v + p0, root.data(), n);
      Th -= (M / (Eigen::Map<Arr>(root.data(), n) + eps)) * step;
      finite = finite && Th.isFinite().all();
    }
  }
  state.rethrow();
  return finite != 0;
}

}  // namespace bpnet
