// bpnet core, floor 7: the summed Delta -> the gradient, and the cost.
//   D^(l) = Delta^(l) / weight_sum + (lam / weight_sum) Theta^(l)   for columns j >= 1
//   D^(l) = Delta^(l) / weight_sum                                  for the bias column j = 0
//   J = loss / weight_sum + lam / (2 weight_sum) sum_l sum_{i, j>=1} Theta^(l)_ij^2
// weight_sum is the summed sample weight. The work is split by rows of the
// stacked Theta^(l) (finalize_rows); each row's share of the penalty is kept in
// sq_rows and they are added in row order, so J has the same bits however
// rows are split. Dimension letters: see shape.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "data.hpp"

namespace bpnet {

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
    shape.theta_row(r, off, cols);
    for (const MergeOp<T>& op : plan)
      for (Index j = 0; j < cols; ++j) op.dst[off + j] += op.src[off + j];
  }
}

// sum_j t_j^2 over t (n,) in 8 interleaved partial sums (a fixed order: the
// same bits on every machine and alignment), combined pairwise. A row may be
// fed in pieces of a multiple of 8 elements (then the rest) through
// row_penalty_add: the partial sums see the same additions.
constexpr int kPenaltyLanes = 8;

template <typename T>
void row_penalty_add(const T* t, Index n, double* part) {
  Index j = 0;
  for (; j + kPenaltyLanes <= n; j += kPenaltyLanes)
    for (int k = 0; k < kPenaltyLanes; ++k) part[k] += double(t[j + k]) * double(t[j + k]);
  for (int k = 0; j < n; ++j, ++k) part[k] += double(t[j]) * double(t[j]);
}

inline double row_penalty_sum(const double* part) {
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

template <typename T>
double row_penalty(const T* t, Index n) {
  double part[kPenaltyLanes] = {};
  row_penalty_add(t, n, part);
  return row_penalty_sum(part);
}

// sq_rows (R,): row r of the stacked Theta^(l) gets sum_{j>=1} Theta_rj^2.
template <typename T>
void penalty_rows(const Shape& shape, const T* theta, std::vector<double>& sq_rows) {
  for (Index r = 0; r < static_cast<Index>(sq_rows.size()); ++r) {
    Index off, cols;
    shape.theta_row(r, off, cols);
    sq_rows[r] = row_penalty(theta + off + 1, cols - 1);
  }
}

// kPenaltyLanes values of T in a vector register (GCC's and Clang's vector
// extensions: eight doubles are one zmm with AVX-512, two ymm with AVX2, four
// xmm without), moved with memcpy (any alignment; no vector crosses a
// function boundary, so no ABI depends on the ISA flags).
template <typename T>
struct LanesOf;
template <>
struct LanesOf<float> {
  typedef float type __attribute__((vector_size(kPenaltyLanes * sizeof(float))));
};
template <>
struct LanesOf<double> {
  typedef double type __attribute__((vector_size(kPenaltyLanes * sizeof(double))));
};
template <typename T>
using Lanes = typename LanesOf<T>::type;

// Rows [r0, r1) of the stacked Theta^(l): applies the merge plan to the row's
// slice, then writes the gradient over grad (the plan's final destination)
// and sq_rows[r] = sum_{j>=1} Theta_rj^2. One pass over a row, 8 columns at a
// time (the penalty's lanes: column j >= 1 goes to lane (j - 1) mod 8, as in
// row_penalty, so the same bits): the merges, then in double
//   g_0 = Delta_0 inv_w,   g_j = Delta_j inv_w + reg Theta_j   (j >= 1)
// and the finite check as g * 0 summed (NaN if some g is not). Returns false
// if a gradient value is not finite.
template <typename T>
bool finalize_rows(const Shape& shape, const T* theta, double inv_w, double reg, T* grad,
                   const std::vector<MergeOp<T>>& plan, Index r0, Index r1, double* sq_rows) {
  constexpr int W = kPenaltyLanes;
  Lanes<T> zero = {};  // g * 0 summed: 0 while every g is finite
  T zero0 = 0;
  for (Index r = r0; r < r1; ++r) {
    Index off, cols;
    shape.theta_row(r, off, cols);
    T* g = grad + off;
    const T* t = theta + off;
    for (const MergeOp<T>& op : plan) op.dst[off] += op.src[off];
    g[0] = T(double(g[0]) * inv_w);
    zero0 += g[0] * T(0);
    Lanes<double> part = {};
    const Index n = cols - 1;  // columns 1 .. cols - 1, as j = 0 .. n - 1
    Index j = 0;
    for (; j + W <= n; j += W) {
      const Index c = off + 1 + j;
      Lanes<T> x, y;
      for (const MergeOp<T>& op : plan) {
        std::memcpy(&x, op.dst + c, sizeof(x));
        std::memcpy(&y, op.src + c, sizeof(y));
        x += y;
        std::memcpy(op.dst + c, &x, sizeof(x));
      }
      std::memcpy(&x, theta + c, sizeof(x));
      std::memcpy(&y, grad + c, sizeof(y));
      const Lanes<double> td = __builtin_convertvector(x, Lanes<double>);
      part += td * td;
      y = __builtin_convertvector(__builtin_convertvector(y, Lanes<double>) * inv_w + reg * td,
                                  Lanes<T>);
      std::memcpy(grad + c, &y, sizeof(y));
      zero += y * T(0);
    }
    double tail[W] = {};
    std::memcpy(tail, &part, sizeof(part));
    for (int k = 0; j < n; ++j, ++k) {
      const Index c = off + 1 + j;
      for (const MergeOp<T>& op : plan) op.dst[c] += op.src[c];
      const double td = double(t[1 + j]);
      tail[k] += td * td;
      g[1 + j] = T(double(g[1 + j]) * inv_w + reg * td);
      zero0 += g[1 + j] * T(0);
    }
    sq_rows[r] = row_penalty_sum(tail);
  }
  for (int k = 0; k < W; ++k) zero0 += zero[k];
  return zero0 == T(0);
}

// Rows [h0, h1) of Theta^(0) for a sparse X, from the summed db (s_1,) and
// dW_U (n_U, s_1) (see sum_columns): writes grad's rows in Theta^(0)'s
// layout with finalize_rows' formula, Delta = 0 in the untouched columns,
// and sq_rows[h] = sum_{j>=1} Theta_hj^2. Reads dW_U a whole line (8 rows h)
// at a time. Returns false if a value is not finite.
template <typename T>
bool finalize_layer0(const Shape& shape, const T* theta, double inv_w, double reg, const T* db,
                     const T* dWU, const std::vector<Index>& touched, Index h0, Index h1, T* grad,
                     double* sq_rows) {
  const Index s0 = shape.size(0), s1 = shape.size(1), stride = s0 + 1;
  const bool every_column = static_cast<Index>(touched.size()) == s0;  // nothing untouched
  bool finite = true;
  for (Index h = h0; h < h1; ++h) {  // the untouched columns: Delta = 0
    T* g = grad + shape.offset(0) + h * stride;
    const T* t = theta + shape.offset(0) + h * stride;
    g[0] = T(double(db[h]) * inv_w);
    // the penalty and the gradient in one pass over the row, a piece in L1 at a time
    constexpr Index piece = 1024;
    double part[kPenaltyLanes] = {};
    for (Index c0 = 1; c0 < stride; c0 += piece) {
      const Index c1 = std::min(stride, c0 + piece);
      row_penalty_add(t + c0, c1 - c0, part);
      if (!every_column)
        for (Index c = c0; c < c1; ++c) g[c] = T(0.0 + reg * double(t[c]));  // 0 * inv_w + ...
    }
    sq_rows[h] = row_penalty_sum(part);
  }
  for (Index u = 0; u < static_cast<Index>(touched.size()); ++u) {
    const Index c = 1 + touched[u];
    for (Index h = h0; h < h1; ++h) {
      const Index k = shape.offset(0) + h * stride + c;
      grad[k] = T(double(dWU[u * s1 + h]) * inv_w + reg * double(theta[k]));
    }
  }
  for (Index h = h0; h < h1; ++h)
    finite = finite && all_finite(grad + shape.offset(0) + h * stride, stride);
  return finite;
}

// J from the summed loss, the summed weight and the row penalties (added in
// row order). Finite inputs give a finite J and gradient unless a value
// overflows the dtype; callers (the optimizer loops) rely on this check
// instead of their own.
template <typename T>
double finish_cost(double lam, double loss, double weight_sum, const std::vector<double>& sq_rows,
                   bool finite) {
  double sq = 0;
  for (double s : sq_rows) sq += s;
  const double J = loss / weight_sum + 0.5 * (lam / weight_sum) * sq;
  if (!std::isfinite(J) || !finite)
    throw std::overflow_error("non-finite cost or gradient (overflows " +
                              std::string(sizeof(T) == 4 ? "float32" : "float64") +
                              "): theta or X is too large");
  return J;
}

// The summed Delta (P,) in grad -> the gradient, in place; returns J.
template <typename T>
double finalize(const Shape& shape, const T* theta, double lam, double loss, double weight_sum,
                T* grad) {
  check_lam(lam);
  check_weight_sum(weight_sum);
  std::vector<double> sq_rows(shape.total_rows());
  const bool finite = finalize_rows(shape, theta, 1.0 / weight_sum, lam / weight_sum, grad, {}, 0,
                                    shape.total_rows(), sq_rows.data());
  return finish_cost<T>(lam, loss, weight_sum, sq_rows, finite);
}

}  // namespace bpnet
