// bpnet core, floor 1: the examples of one call (dense or CSR X, an optional
// row selection, targets, sample weights), the checks the kernels rely on and
// the messages of every argument error. Dimension letters: see shape.hpp.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "shape.hpp"

namespace bpnet {

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
  // Stored nonzeros of row r (unchecked: for_row checks the range it visits).
  Index row_nnz(Index r) const {
    return wide ? Index(static_cast<const std::int64_t*>(indptr)[r + 1]) -
                      Index(static_cast<const std::int64_t*>(indptr)[r])
                : Index(static_cast<const std::int32_t*>(indptr)[r + 1]) -
                      Index(static_cast<const std::int32_t*>(indptr)[r]);
  }
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

// The error of a selected row outside [0, n_rows), out of line: the check
// inlines (see checked_row).
[[noreturn]] __attribute__((noinline, cold)) inline void throw_bad_row(Index i, Index r,
                                                                       Index n_rows) {
  throw std::invalid_argument("rows[" + std::to_string(i) + "] = " + std::to_string(r) +
                              " is outside [0, " + std::to_string(n_rows) +
                              ") (changed while the core ran)");
}

// Row r of the examples, checked where it is read: another thread may have
// changed `rows` after validate() (the GIL is not held here).
template <typename T>
inline Index checked_row(const Data<T>& d, Index i) {
  const Index r = d.row(i);
  if (r < 0 || r >= d.n_rows) throw_bad_row(i, r, d.n_rows);
  return r;
}

// The error of a label outside [0, K), out of line: the check inlines.
[[noreturn]] __attribute__((noinline, cold)) inline void throw_bad_label(Index r,
                                                                         std::int64_t label,
                                                                         Index K) {
  throw std::invalid_argument("y[" + std::to_string(r) + "] = " + std::to_string(label) +
                              " is not a class index in [0, " + std::to_string(K) + ")");
}

// Class index of row r, checked where it is read (see checked_row).
template <typename T>
inline std::int64_t checked_label(const Data<T>& d, Index r, Index K) {
  const std::int64_t label = d.labels[r];
  if (label < 0 || label >= K) throw_bad_label(r, label, K);
  return label;
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

// partial_sums' leaf boundaries (C + 1,): from 0 to m, strictly increasing.
inline void check_starts(const std::vector<Index>& starts, Index m) {
  const Index C = static_cast<Index>(starts.size()) - 1;
  if (C < 1)
    throw std::invalid_argument("starts must have at least 2 entries; got " +
                                std::to_string(starts.size()));
  if (starts[0] != 0 || starts[C] != m)
    throw std::invalid_argument("starts must run from 0 to m = " + std::to_string(m));
  for (Index c = 0; c < C; ++c)
    if (starts[c + 1] <= starts[c])
      throw std::invalid_argument("starts must be strictly increasing");
}

// The targets and sample weights of the rows a call reads. With a row
// selection (a mini-batch) only the selected rows are read, so only they are
// checked: a training loop pays O(batch), not O(n_rows).
template <typename T>
void validate_targets(const Shape& shape, const Data<T>& d) {
  const Index K = shape.n_outputs();
  const Index n_check = d.rows ? d.m : d.n_rows;
  if (d.labels) {
    for (Index j = 0; j < n_check; ++j) checked_label(d, checked_row(d, j), K);
  } else if (d.Y) {
    for (Index j = 0; j < n_check; ++j)
      for (Index i = checked_row(d, j) * K, end = i + K; i < end; ++i)
        if (!std::isfinite(d.Y[i]))
          throw std::invalid_argument("y contains a non-finite value at row " +
                                      std::to_string(i / K) + ", column " + std::to_string(i % K));
  } else {
    throw std::invalid_argument("y is required");
  }
  if (!d.sample_weight) return;
  for (Index j = 0; j < n_check; ++j) {
    const Index i = checked_row(d, j);
    if (!std::isfinite(d.sample_weight[i]) || d.sample_weight[i] < 0)
      throw std::invalid_argument("sample_weight[" + std::to_string(i) + "] = " +
                                  std::to_string(d.sample_weight[i]) + " must be finite and >= 0");
  }
}

// Throws, naming the first index, if theta (P,) holds a non-finite value.
template <typename T>
void check_theta(const Shape& shape, const T* theta) {
  if (!all_finite(theta, shape.n_params()))
    for (Index p = 0; p < shape.n_params(); ++p)
      if (!std::isfinite(theta[p]))
        throw std::invalid_argument("theta contains a non-finite value at index " +
                                    std::to_string(p));
}

// Checks the cheap O(m + P) invariants the kernels rely on; X itself is checked
// for non-finite values block by block, through the pre-activations it makes.
// theta's O(P) scan may be left to the caller (scan_theta = false): cost_grad
// reads every Theta value in its finalize anyway, where a non-finite one makes
// a non-finite gradient (reg Theta, or 0 * Theta with lam = 0) if not already a
// non-finite pre-activation, and both paths name theta first.
template <typename T>
void validate(const Shape& shape, const T* theta, const Data<T>& d, bool need_targets,
              bool scan_theta = true) {
  if (d.m < 1) throw std::invalid_argument("X must have at least one row (m >= 1); got m = 0");
  if (d.csr.active() && d.csr.n_cols != shape.n_inputs())
    throw std::invalid_argument(
        "X has " + std::to_string(d.csr.n_cols) +
        " columns but layer_sizes[0] = " + std::to_string(shape.n_inputs()));
  if (scan_theta) check_theta(shape, theta);
  if (d.rows)
    for (Index i = 0; i < d.m; ++i)
      if (d.rows[i] < 0 || d.rows[i] >= d.n_rows)
        throw std::invalid_argument("rows[" + std::to_string(i) +
                                    "] = " + std::to_string(d.rows[i]) + " is outside [0, " +
                                    std::to_string(d.n_rows) + ")");
  if (need_targets) validate_targets(shape, d);
}

// Error for the first non-finite pre-activation found by a kernel: names the
// non-finite theta or X entry behind it, else says theta or X overflows.
template <typename T>
[[noreturn]] void throw_non_finite(const Shape& shape, const T* theta, const Data<T>& d,
                                   int bad_layer) {
  check_theta(shape, theta);  // a non-finite weight is named as such
  const Index n = shape.n_inputs();
  const auto bad_x = [](Index r, Index j) {
    return std::invalid_argument("X contains a non-finite value at row " + std::to_string(r) +
                                 ", column " + std::to_string(j));
  };
  for (Index i = 0; i < d.m; ++i) {
    const Index r = checked_row(d, i);
    if (d.csr.active()) {
      d.csr.for_row(r, [&](Index j, T x) {
        if (!std::isfinite(x)) throw bad_x(r, j);
      });
      continue;
    }
    const T* x = d.X + r * n;
    for (Index j = 0; j < n; ++j)
      if (!std::isfinite(x[j])) throw bad_x(r, j);
  }
  throw std::overflow_error("non-finite pre-activation z in layer " + std::to_string(bad_layer) +
                            ": theta or X is too large for this dtype");
}

}  // namespace bpnet
