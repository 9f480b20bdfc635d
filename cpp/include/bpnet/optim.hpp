// bpnet core, floor 9 (beside api.hpp): the optimizers' update kernels. The
// loops stay in Python (bpnet.optimize); each step's arithmetic runs here in
// one pass over memory. Dimension letters: see shape.hpp.
#pragma once

#include <atomic>
#include <cmath>

#include "memory.hpp"
#include "parallel.hpp"

namespace bpnet {

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

// ---------------------------------------------------------------------------
// adam_update: one Adam step in place, the formulas of bpnet.optimize:
//   m1 = b1 m1 + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   theta -= step (m1 / (sqrt(v) + eps)),  step = lr sqrt(1 - b2^t) / (1 - b1^t)
// theta, m1, v, g (P,); one pass over memory instead of NumPy's nine.
// Returns whether every updated theta is finite (checked in the same pass).
// The constants are rounded to T as NumPy rounds a Python float operand.
// ---------------------------------------------------------------------------
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
  const int nt = P >= 32 * span ? resolve_threads(n_threads) : 1;
  std::atomic<bool> finite{true};
  WorkCounter slices((P + span - 1) / span);
  run_workers(nt, nullptr, [&](int, Team& team) {
    AlignedBuffer<T> root;  // sqrt(v) of one slice: on the heap, not the thread's stack
    root.resize(span);
    for (Index s; !team.stopped() && slices.next(s);) {
      const Index p0 = s * span, n = std::min(span, P - p0);
      Eigen::Map<const Arr> G(g + p0, n);
      Eigen::Map<Arr> M(m1 + p0, n), V(v + p0, n), Th(theta + p0, n);
      M = M * b1 + G * c1;
      V = V * b2 + G.square() * c2;
      sqrt_into(v + p0, root.data(), n);
      Th -= (M / (Eigen::Map<Arr>(root.data(), n) + eps)) * step;
      if (!Th.isFinite().all()) finite.store(false, std::memory_order_relaxed);
    }
  });
  return finite.load();
}

}  // namespace bpnet
