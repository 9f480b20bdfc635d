// bpnet core, floor 9 (beside api.hpp): the optimizers' update kernels. The
// loops stay in Python (bpnet.optimize); each step's arithmetic runs here in
// one pass over memory. Dimension letters: see shape.hpp.
#pragma once

#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "parallel.hpp"

namespace bpnet {

// The update kernels' vector width: one register of the build's widest
// ISA (64 bytes with AVX-512, 32 with AVX2, 16 with SSE2). A wider GCC vector
// than the registers is split by the compiler through the stack: 64-byte
// vectors in an AVX2 build took 4.2 ns per float64 Adam parameter (stores of
// ymm halves reloaded as 8-byte pieces) against 1.2 ns at 32 bytes.
#if defined(__AVX512F__)
constexpr std::size_t kVecBytes = 64;
#elif defined(__AVX__)
constexpr std::size_t kVecBytes = 32;
#else
constexpr std::size_t kVecBytes = 16;
#endif

// out = sqrt(x) for kVecBytes of T, correctly rounded: the vector sqrt
// instruction (IEEE, the bits of NumPy's np.sqrt). Not Eigen's packet sqrt:
// under EIGEN_FAST_MATH its AVX-512 float version is an approximation, which
// would make the result differ from NumPy's. Not a plain std::sqrt loop:
// sqrt may set errno, so GCC keeps it scalar with a libm call per negative
// input (a function attribute "no-math-errno" did not take: 228 us of scalar
// vsqrtsd per Adam step of P = 101,770 float32 parameters, case D of bench/).
template <typename T>
void sqrt_vec(const T* x, T* out) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>)
    _mm512_storeu_ps(out, _mm512_sqrt_ps(_mm512_loadu_ps(x)));
  else
    _mm512_storeu_pd(out, _mm512_sqrt_pd(_mm512_loadu_pd(x)));
#elif defined(__AVX__)
  if constexpr (std::is_same_v<T, float>)
    _mm256_storeu_ps(out, _mm256_sqrt_ps(_mm256_loadu_ps(x)));
  else
    _mm256_storeu_pd(out, _mm256_sqrt_pd(_mm256_loadu_pd(x)));
#elif defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>)
    _mm_storeu_ps(out, _mm_sqrt_ps(_mm_loadu_ps(x)));
  else
    _mm_storeu_pd(out, _mm_sqrt_pd(_mm_loadu_pd(x)));
#else
  for (std::size_t k = 0; k < kVecBytes / sizeof(T); ++k) out[k] = std::sqrt(x[k]);
#endif
}

// The update kernels' loop: body(p0, n) updates elements [p0, p0 + n) of
// the (P,) streams, a slice of 1024 at a time, and returns whether they
// stayed finite. Each element's update is independent, so splitting the
// slices over threads cannot change a bit. Worker w first takes the slices
// of its own contiguous range, front to back (LeafQueues), then slices from
// the back of the others' ranges: step after step the same core updates the
// same part of the streams, still in its L2, and finalize_dense's rows go
// to the workers in the same order, so a worker reads the gradient rows it
// finalized (case D's float32 Adam step, [784, 128, 10], two threads: 96-111
// -> 64-69 us, bench/README.md). Returns whether every slice stayed finite.
template <typename Body>
bool update_slices(Index P, int n_threads, Body&& body) {
  constexpr Index span = 1024;
  const int nt = P >= 32 * span ? resolve_threads(n_threads) : 1;
  std::atomic<bool> finite{true};
  LeafQueues slices((P + span - 1) / span, nt);
  run_workers(nt, nullptr, [&](int w, Team& team) {
    take_all(slices, w, team, [&](Index s) {
      const Index p0 = s * span;
      if (!body(p0, std::min(span, P - p0))) finite.store(false, std::memory_order_relaxed);
    });
  });
  return finite.load();
}

// kVecBytes of T in GCC's and Clang's vector extensions (one register),
// moved with memcpy (any alignment; no vector crosses a function boundary,
// so no ABI depends on the ISA flags). Each operator is the IEEE operation
// of its lanes: the bits of the same scalar statements.
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kVecBytes)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kVecBytes)));
};
template <typename T>
using Vec = typename VecOf<T>::type;

// ---------------------------------------------------------------------------
// adam_update: one Adam step in place, the formulas of bpnet.optimize:
//   m1 = b1 m1 + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   theta -= step (m1 / (sqrt(v) + eps)),  step = lr sqrt(1 - b2^t) / (1 - b1^t)
// theta, m1, v, g (P,); one pass over memory instead of NumPy's nine, a
// register (kVecBytes) of each stream at a time: every element is read and written once and
// the square root (the IEEE instruction, sqrt_vec) and the division issue back
// to back (a statement per pass over a 1024-value slice took 76 us per step
// of case D's 101,770 float32 parameters on one thread, 275 us in float64).
// Each element takes NumPy's roundings in NumPy's order (no FMA:
// -ffp-contract=off), in the vector body and the scalar tail alike.
// Returns whether every updated theta is finite (checked in the same pass).
// The constants are rounded to T as NumPy rounds a Python float operand.
// ---------------------------------------------------------------------------
template <typename T>
bool adam_slice(T* theta, T* m1, T* v, const T* g, Index n, T b1, T c1, T b2, T c2, T step, T eps) {
  using V = Vec<T>;
  constexpr Index L = sizeof(V) / sizeof(T);
  V zero = {};  // theta * 0 summed: 0 while every theta is finite
  Index i = 0;
  for (; i + L <= n; i += L) {
    V G, M, S, R, Th;
    std::memcpy(&G, g + i, sizeof(V));
    std::memcpy(&M, m1 + i, sizeof(V));
    std::memcpy(&S, v + i, sizeof(V));
    M = M * b1 + G * c1;
    S = S * b2 + (G * G) * c2;
    std::memcpy(m1 + i, &M, sizeof(V));
    std::memcpy(v + i, &S, sizeof(V));
    alignas(64) T root[L];
    sqrt_vec(v + i, root);
    std::memcpy(&R, root, sizeof(V));
    std::memcpy(&Th, theta + i, sizeof(V));
    Th = Th - (M / (R + eps)) * step;
    std::memcpy(theta + i, &Th, sizeof(V));
    zero += Th * T(0);
  }
  bool finite = true;
  for (; i < n; ++i) {
    m1[i] = m1[i] * b1 + g[i] * c1;
    v[i] = v[i] * b2 + (g[i] * g[i]) * c2;
    theta[i] = theta[i] - (m1[i] / (std::sqrt(v[i]) + eps)) * step;  // IEEE sqrt, as the body's
    finite = finite && theta[i] * T(0) == T(0);
  }
  for (Index k = 0; k < L; ++k) finite = finite && zero[k] == T(0);
  return finite;
}

template <typename T>
bool adam_update(T* theta, T* m1, T* v, const T* g, Index P, double beta_1, double beta_2,
                 double step_size, double epsilon, int n_threads = -1) {
  const T b1 = T(beta_1), c1 = T(1 - beta_1), b2 = T(beta_2), c2 = T(1 - beta_2);
  const T step = T(step_size), eps = T(epsilon);
  return update_slices(P, n_threads, [&](Index p0, Index n) {
    return adam_slice(theta + p0, m1 + p0, v + p0, g + p0, n, b1, c1, b2, c2, step, eps);
  });
}

// ---------------------------------------------------------------------------
// sgd_update: one SGD step with momentum in place, the formulas of
// bpnet.optimize:
//   v = mu v - lr g;  theta += mu v - lr g (Nesterov)  or  theta += v
// theta, v, g (P,); one pass over memory instead of NumPy's five (four
// updates and the finiteness scan). Returns whether every updated theta is
// finite (checked in the same pass).
// Each element takes NumPy's roundings, in NumPy's order: v = v mu;
// lg = g lr; v = v - lg; theta = theta + ((mu v) - lg), or theta + v; mu and
// lr rounded to T as NumPy rounds a Python float operand. No FMA
// (-ffp-contract=off), so the vector body and the scalar tail agree.
// ---------------------------------------------------------------------------
template <typename T>
bool sgd_update(T* theta, T* v, const T* g, Index P, double learning_rate, double momentum,
                bool nesterov, int n_threads = -1) {
  const T mu = T(momentum), lr = T(learning_rate);
  return update_slices(P, n_threads, [&](Index p0, Index n) {
    T* th = theta + p0;
    T* vs = v + p0;
    const T* gs = g + p0;
    if (nesterov) {
      for (Index i = 0; i < n; ++i) {
        const T lg = gs[i] * lr;
        const T vi = vs[i] * mu - lg;
        vs[i] = vi;
        th[i] = th[i] + (mu * vi - lg);
      }
    } else {
      for (Index i = 0; i < n; ++i) {
        const T vi = vs[i] * mu - gs[i] * lr;
        vs[i] = vi;
        th[i] = th[i] + vi;
      }
    }
    return all_finite(th, n);
  });
}

}  // namespace bpnet
