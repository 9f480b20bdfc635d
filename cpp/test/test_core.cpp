// C++ tests of the core's kernels, built by CMake with -DBPNET_BUILD_TESTS=ON
// and run by ctest (CI: .ci/cpp-tests.sh). No Python: they check the rooms of
// cpp/include/bpnet on their own.
//   - each hidden unit's backward against central differences of its forward;
//   - each output unit's backward (delta^(L) = dJ/dz) against central
//     differences of its loss, and its forward against the loss's definition;
//   - the even split, the leaves and the fixed reduction tree against a plain
//     sum, with every contiguous split of the leaves giving the same bits;
//   - cost_grad on small nets against central differences of its own J, and
//     bitwise equal for 1, 2 and 3 threads; forward_cost's J against cost_grad;
//   - the update kernels: sqrt_vec against std::sqrt, bit for bit
//     (zeros, subnormals, inf, NaN, every alignment); sgd_update and adam_update
//     against their scalar formulas and bitwise equal for 1 and 2 threads;
//   - the lane selections (mask_lt/le/eq, blend) against Eigen's pcmp_*/pselect,
//     log_packet against Eigen's plog (bitwise, every float) and gather_column
//     against the scalar transposition;
//   - a sparse X's touched columns (U and its slots) over calls;
//   - the pool's adaptive poll after a job (Pool::auto_spin) and jobs posted
//     close together and far apart, each worker index run exactly once;
//   - leaf taking (LeafQueues): the order, and no spinning on leaf 0.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bpnet/bpnet.hpp"

namespace {

int failures = 0;
int checks = 0;

void check(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

void check_close(double got, double want, double rtol, double atol, const std::string& what) {
  const bool ok = std::abs(got - want) <= atol + rtol * std::abs(want);
  check(ok, what + ": got " + std::to_string(got) + ", want " + std::to_string(want));
}

using bpnet::Index;

// g(z) of a hidden unit on one value, through the unit's own forward.
template <typename Unit>
double unit_forward(double z) {
  Eigen::ArrayXd a(1);
  a(0) = z;
  bpnet::ArrayMap<double> m(a.data(), 1);
  Unit::forward(m);
  return a(0);
}

template <typename Unit>
void test_hidden_unit(const std::string& name) {
  const double h = 1e-6;
  for (double z : {-3.1, -1.2, -0.3, 0.2, 0.7, 1.9, 4.4}) {
    const double a = unit_forward<Unit>(z);
    Eigen::ArrayXd delta = Eigen::ArrayXd::Constant(1, 1.0), av = Eigen::ArrayXd::Constant(1, a);
    double colsum = 0;
    bpnet::backward_colsum(Unit{}, delta.data(), av.data(), 1, 1, &colsum);
    check(colsum == delta(0), name + " backward's column sum of one row is its delta");
    const double fd = (unit_forward<Unit>(z + h) - unit_forward<Unit>(z - h)) / (2 * h);
    check_close(delta(0), fd, 1e-7, 1e-9,
                name + " backward vs differences at z=" + std::to_string(z));
  }
}

// Loss of one row of logits z (K,) with class label `label` through the
// output unit's backward (which also writes dJ/dz over z).
template <typename Unit>
double unit_loss(std::vector<double> z, std::int64_t label, std::vector<double>* dz = nullptr) {
  const Index K = static_cast<Index>(z.size());
  std::vector<std::int64_t> labels = {label};
  bpnet::Data<double> d;
  d.n_rows = d.m = 1;
  d.labels = labels.data();
  std::vector<double> scratch(8 * 64 + 3 * 64 * K);
  const Index rows[1] = {0};
  const double loss = Unit::backward(d, rows, 1, K, z.data(), scratch.data());
  if (dz) *dz = z;
  return loss;
}

enum class Range { probability, any, positive };

template <typename Unit>
void test_output_unit(const std::string& name, Range range) {
  const std::vector<double> z0 = {0.3, -1.1, 2.0, 0.05};
  const double h = 1e-6;
  for (std::int64_t label = 0; label < 4; ++label) {
    std::vector<double> dz;
    unit_loss<Unit>(z0, label, &dz);
    for (std::size_t k = 0; k < z0.size(); ++k) {
      std::vector<double> zp = z0, zm = z0;
      zp[k] += h;
      zm[k] -= h;
      const double fd = (unit_loss<Unit>(zp, label) - unit_loss<Unit>(zm, label)) / (2 * h);
      check_close(dz[k], fd, 1e-6, 1e-9,
                  name + " delta vs differences, label " + std::to_string(label) + ", k " +
                      std::to_string(k));
    }
  }
  std::vector<double> out(z0.size());
  Unit::forward(z0.data(), out.data(), static_cast<Index>(z0.size()));
  for (std::size_t k = 0; k < z0.size(); ++k) {
    if (range == Range::probability)
      check(out[k] > 0 && out[k] < 1, name + " forward gives probabilities");
    else if (range == Range::positive)
      check_close(out[k], std::exp(z0[k]), 1e-15, 0, name + " forward is e^z");
    else
      check(out[k] == z0[k], name + " forward is z");
  }
}

// The vectorized double tanh against libm's: at most 4 ulp over 13 decades
// of |z|, both signs, every position in a row (the packet body and the tail).
void test_tanh_accuracy() {
  std::mt19937_64 gen(3);
  std::uniform_real_distribution<double> unit(-1, 1), decade(-12, 2.7);
  std::vector<double> z;
  for (int k = 0; k < 200000; ++k) z.push_back(unit(gen) * std::pow(10.0, decade(gen)));
  for (double v :
       {0.0, -0.0, 0.625, -0.625, 0.62499999999999989, 19.0, -19.1, 400.0, -800.0, 1e-300, 5e-324})
    z.push_back(v);
  for (std::size_t n : {std::size_t(1), std::size_t(3), std::size_t(7), z.size()}) {
    std::vector<double> a(z.begin(), z.begin() + n);
    bpnet::ArrayMap<double> map(a.data(), static_cast<Index>(n));
    bpnet::TanhUnit::forward(map);
    double worst = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double want = std::tanh(z[i]);
      const double ulp = std::nextafter(std::abs(want), INFINITY) - std::abs(want);
      worst = std::max(worst, std::abs(a[i] - want) / ulp);
      check(std::signbit(a[i]) == std::signbit(want), "tanh keeps the sign");
    }
    check(worst <= 4, "tanh within 4 ulp of libm (n=" + std::to_string(n) + "): worst " +
                          std::to_string(worst));
  }
}

// The hidden sigmoid in double against 1 / (1 + e^-z) in long double: at
// most 3 ulp over 13 decades of |z| up to 745, both signs, every position;
// below the smallest normal within it; inf, -inf, -0 and NaN.
void test_sigmoid_accuracy() {
  std::mt19937_64 gen(8);
  std::uniform_real_distribution<double> unit(-1, 1), decade(-12, 2.872);
  std::vector<double> z;
  for (int k = 0; k < 200000; ++k) z.push_back(unit(gen) * std::pow(10.0, decade(gen)));
  for (double v : {0.0, -0.0, 36.7, 37.0, 40.0, 41.0, -708.4, -709.0, -709.7, -709.8, -745.0, 745.0,
                   1e-300, -5e-324})
    z.push_back(v);
  for (std::size_t n : {std::size_t(1), std::size_t(3), std::size_t(7), z.size()}) {
    std::vector<double> a(z.begin(), z.begin() + n);
    bpnet::ArrayMap<double> map(a.data(), static_cast<Index>(n));
    bpnet::SigmoidUnit::forward(map);
    double worst = 0, at = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double want = double(1.0L / (1.0L + std::exp(-static_cast<long double>(z[i]))));
      const double err =
          want < std::numeric_limits<double>::min()
              ? (std::abs(a[i] - want) <= std::numeric_limits<double>::min() ? 0.0 : INFINITY)
              : std::abs(a[i] - want) / (std::nextafter(want, INFINITY) - want);
      if (err > worst) worst = err, at = z[i];
    }
    check(worst <= 3, "sigmoid within 3 ulp (n=" + std::to_string(n) + "): worst " +
                          std::to_string(worst) + " at z = " + std::to_string(at));
  }
  Eigen::ArrayXd sp(5);
  sp << INFINITY, -INFINITY, -0.0, NAN, 0.5;
  bpnet::ArrayMap<double> map(sp.data(), 5);
  bpnet::SigmoidUnit::forward(map);
  check(sp(0) == 1 && sp(1) == 0 && sp(2) == 0.5 && std::isnan(sp(3)),
        "sigmoid: inf -> 1, -inf -> 0, -0 -> 1/2, NaN -> NaN");
}

// The packet exp (the softmax's e^{z - max}) against libm's: at most 2 ulp
// over (-745, 0], and an element's bits the same at every position (body or
// padded tail) in arrays of every length.
// all_finite: false for one inf, -inf or NaN at any position of any length
// (whole packets and tails), true for finite values of any size, -0 included.
template <typename T>
void check_all_finite() {
  const T bad[3] = {std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(),
                    std::numeric_limits<T>::quiet_NaN()};
  for (Index n = 1; n <= 40; ++n) {
    std::vector<T> x(n);
    for (Index i = 0; i < n; ++i) x[i] = i % 3 == 0 ? -T(0) : std::numeric_limits<T>::max() / T(i);
    check(bpnet::all_finite(x.data(), n), "all_finite: finite values");
    for (Index i = 0; i < n; ++i)
      for (T v : bad) {
        const T keep = x[i];
        x[i] = v;
        check(!bpnet::all_finite(x.data(), n), "all_finite: a non-finite value at any position");
        x[i] = keep;
      }
  }
}

void test_exp_inplace() {
  std::mt19937_64 gen(4);
  std::uniform_real_distribution<double> arg(-745, 0), small(-1e-3, 0);
  std::vector<double> z;
  for (int k = 0; k < 100000; ++k) z.push_back(k % 4 ? arg(gen) : small(gen));
  for (double v : {0.0, -0.0, -708.4, -709.8, -745.2, -1e-300}) z.push_back(v);
  std::vector<double> all(z);
  bpnet::exp_inplace(all.data(), static_cast<Index>(all.size()));
  double worst = 0;
  for (std::size_t i = 0; i < z.size(); ++i) {
    const double want = std::exp(z[i]);
    if (want < 2.3e-308) continue;  // subnormal results: absolute error only
    const double ulp = std::nextafter(want, INFINITY) - want;
    worst = std::max(worst, std::abs(all[i] - want) / ulp);
  }
  check(worst <= 2, "exp within 2 ulp of libm: worst " + std::to_string(worst));
}

// The sigmoid output's terms against libm (in double): h = 1 / (1 + e^-z),
// c = 1 - h and log1p(e^-|z|) within 4 ulp of T over |z| up to 745, both
// signs (results below 1e-30 in float: within 1e-36; below twice the
// smallest normal in double: within it).
template <typename T>
void check_sigmoid_terms() {
  std::mt19937_64 gen(7);
  std::uniform_real_distribution<double> unit(-1, 1), decade(-10, 2.87);
  std::vector<T> z;
  for (int k = 0; k < 100000; ++k) z.push_back(T(unit(gen) * std::pow(10.0, decade(gen))));
  for (double v : {0.0, -0.0, 16.0, -16.0, 36.7, -36.7, 87.0, -87.0, 709.0, -709.0, 745.0, -745.0})
    z.push_back(T(v));
  const Index n = static_cast<Index>(z.size());
  std::vector<T> h(n), c(n), l1p(n);
  bpnet::sigmoid_terms(z.data(), h.data(), c.data(), l1p.data(), n);
  const double tiny = std::numeric_limits<T>::min(), floor = sizeof(T) == 4 ? 1e-30 : 2 * tiny;
  const double abs_bound = std::max(tiny, 1e-6 * floor);
  const auto ulps = [&](T got, double want_d) {
    const T want = T(want_d);
    if (want == 0) return std::abs(double(got)) <= tiny ? 0.0 : INFINITY;
    // Eigen's packet exp clamps its argument (e^-709.44 = 1.1e-308 in double,
    // e^-88.38 = 4e-39 in float), and its float version loses a few bits
    // below e^-69 (4.4 ulp at |z| = 85 with AVX-512): there only the
    // absolute error is bounded
    if (want < floor) return std::abs(double(got) - want_d) <= abs_bound ? 0.0 : INFINITY;
    return std::abs(double(got) - want_d) / double(std::nextafter(want, T(INFINITY)) - want);
  };
  double worst[3] = {}, at[3] = {};
  for (Index i = 0; i < n; ++i) {
    const double x = z[i], e = std::exp(-std::abs(x));
    const double want_h = x >= 0 ? 1 / (1 + e) : e / (1 + e);
    const double want_c = x >= 0 ? e / (1 + e) : 1 / (1 + e);
    const double err[3] = {ulps(h[i], want_h), ulps(c[i], want_c), ulps(l1p[i], std::log1p(e))};
    for (int k = 0; k < 3; ++k)
      if (err[k] > worst[k]) worst[k] = err[k], at[k] = x;
  }
  const char* names[3] = {"h", "1 - h", "log1p(e^-|z|)"};
  for (int k = 0; k < 3; ++k)
    check(worst[k] <= 4, std::string("sigmoid output ") + names[k] + " (" +
                             (sizeof(T) == 4 ? "float" : "double") + ") within 4 ulp: worst " +
                             std::to_string(worst[k]) + " at z = " + std::to_string(at[k]));
}

void test_sigmoid_terms() {
  check_sigmoid_terms<double>();
  check_sigmoid_terms<float>();
}

// f over any slice z[at, at + n) gives the bits f gives over the whole array:
// map_packets' padded tail makes an element's bits independent of its
// position, so a hidden layer's block (flat over rows of any width) and a
// single row agree.
template <typename T, typename F>
void check_position_free(const std::string& name, F f) {
  std::mt19937_64 gen(6);
  std::normal_distribution<double> normal(0, 3);
  std::vector<T> z(64);
  for (T& v : z) v = T(normal(gen));
  std::vector<T> all(z);
  f(all.data(), static_cast<Index>(all.size()));
  for (std::size_t n = 1; n <= 35; ++n)
    for (std::size_t at = 0; at + n <= z.size(); at += 5) {
      std::vector<T> part(z.begin() + at, z.begin() + at + n);
      f(part.data(), static_cast<Index>(n));
      for (std::size_t i = 0; i < n; ++i)
        check(part[i] == all[at + i], name + ": bits do not depend on the position");
    }
}

template <typename Unit, typename T>
void check_unit_position_free(const std::string& name) {
  check_position_free<T>(name, [](T* z, Index n) {
    bpnet::ArrayMap<T> map(z, n);
    Unit::forward(map);
  });
}

void test_position_free() {
  check_position_free<double>("exp", [](double* z, Index n) { bpnet::exp_inplace(z, n); });
  check_unit_position_free<bpnet::SigmoidUnit, double>("sigmoid double");
  check_unit_position_free<bpnet::SigmoidUnit, float>("sigmoid float");
  check_unit_position_free<bpnet::TanhUnit, double>("tanh double");
  check_unit_position_free<bpnet::TanhUnit, float>("tanh float");
  check_position_free<double>("sigmoid output terms", [](double* z, Index n) {
    std::vector<double> h(n), c(n), l1p(n);
    bpnet::sigmoid_terms(z, h.data(), c.data(), l1p.data(), n);
    for (Index i = 0; i < n; ++i) z[i] = h[i] + 1e3 * l1p[i] + 1e6 * c[i];
  });
  check_position_free<float>("sigmoid output terms float", [](float* z, Index n) {
    std::vector<float> h(n), c(n), l1p(n);
    bpnet::sigmoid_terms(z, h.data(), c.data(), l1p.data(), n);
    for (Index i = 0; i < n; ++i) z[i] = h[i] + 1e3f * l1p[i] + 1e6f * c[i];
  });
}

// The narrow weight gradient against a plain loop, over output widths up to
// 64 and input widths up to 130 (whole and partial packets, tiles of 1 to 4
// packets, row tiles of 4 and 1), stored and accumulated, never writing the
// bias column before each row.
template <typename T>
void check_narrow_dw() {
  std::mt19937_64 gen(8);
  std::normal_distribution<double> normal;
  double worst = 0;
  for (Index n0 : {1, 3, 8, 17, 25, 32, 33, 40, 48, 64, 130})
    for (Index n1 : {1, 2, 3, 4, 5, 6, 7, 10, 11, 13, 16, 25, 32, 64})
      for (Index b : {1, 7, 64}) {
        const Index ldw = n0 + 1;
        std::vector<T> delta(b * n1), a(b * n0), dW(n1 * ldw), want(n1 * ldw);
        for (T& x : delta) x = T(normal(gen));
        for (T& x : a) x = T(normal(gen));
        for (Index k = 0; k < n1 * ldw; ++k) want[k] = dW[k] = T(normal(gen));
        for (bool first : {true, false}) {
          for (Index r = 0; r < n1; ++r)
            for (Index c = 0; c < n0; ++c) {
              double sum = 0;
              for (Index i = 0; i < b; ++i)
                sum += double(delta[i * n1 + r]) * double(a[i * n0 + c]);
              want[r * ldw + 1 + c] = T((first ? 0.0 : double(want[r * ldw + 1 + c])) + sum);
            }
          bpnet::narrow_dw(delta.data(), b, n1, a.data(), n0, dW.data() + 1, ldw, first);
          for (Index r = 0; r < n1; ++r) {
            check(dW[r * ldw] == want[r * ldw], "narrow_dw leaves the bias column alone");
            for (Index c = 1; c <= n0; ++c)
              worst =
                  std::max(worst, std::abs(double(dW[r * ldw + c]) - double(want[r * ldw + c])) /
                                      (1.0 + std::abs(double(want[r * ldw + c]))));
          }
        }
      }
  const double tol = std::is_same_v<T, double> ? 1e-12 : 1e-4;
  check(worst <= tol, "narrow_dw matches a plain loop: worst " + std::to_string(worst));
}

// The narrow forward pass with bias and unit in registers gives the bits of
// the product followed by bias_activate, for every hidden unit, both dtypes,
// hidden and output layers, whole and partial packets; a non-finite
// pre-activation is reported by both.
template <typename T>
void check_narrow_forward() {
  std::mt19937_64 gen(9);
  std::normal_distribution<double> normal;
  for (bpnet::Activation act : {bpnet::Activation::sigmoid, bpnet::Activation::tanh,
                                bpnet::Activation::relu, bpnet::Activation::identity})
    for (Index n_in : {3, 25})
      for (Index n_out : {1, 4, 9, 13, 16, 17, 18, 25, 33, 40})
        for (bool hidden : {true, false})
          for (Index b : {9, 21}) {  // tiles of 8, 4 and 1 rows
            const bpnet::Shape shape({n_in, n_out});
            std::vector<T> theta(shape.n_params()), in(b * n_in), bias(n_out);
            for (T& t : theta) t = T(normal(gen));
            for (T& x : in) x = T(normal(gen));
            for (T& x : bias) x = T(normal(gen));
            bpnet::PackedWeights<T> packed;
            packed.pack(shape, theta.data(), false);
            std::vector<T> fused(b * n_out), plain(b * n_out);
            const T* W = theta.data() + 1;  // W^(0), rows n_in + 1 apart: dot columns
            const bool ok =
                bpnet::narrow_forward(in.data(), b, n_in, packed.forward(0), fused.data(), n_out,
                                      bias.data(), act, hidden, W, n_in + 1);
            bpnet::narrow_product(in.data(), b, n_in, packed.forward(0), plain.data(), n_out,
                                  bpnet::NoEpilogue{}, W, n_in + 1);
            const bool ok_plain =
                bpnet::bias_activate(plain.data(), b, n_out, bias.data(), act, hidden);
            check(ok && ok_plain, "narrow_forward: finite pre-activations pass the check");
            check(std::memcmp(fused.data(), plain.data(), fused.size() * sizeof(T)) == 0,
                  "narrow_forward has the bits of the product, then bias_activate");
            in[2 * n_in + 1] = T(INFINITY);
            check(!bpnet::narrow_forward(in.data(), b, n_in, packed.forward(0), fused.data(), n_out,
                                         bias.data(), act, hidden, W, n_in + 1),
                  "narrow_forward reports a non-finite pre-activation");
          }
}

// The narrow kernel against a plain triple loop, over every outer width up to
// 64 and inner widths up to 400 (whole and partial packets, rows in tiles
// of 8 and 4 and alone).
void test_narrow_product() {
  std::mt19937_64 gen(5);
  std::normal_distribution<double> normal;
  double worst = 0;
  for (Index n_in : {1, 3, 4, 8, 17, 32, 64, 400})
    for (Index n_out = 1; n_out <= 64; n_out += (n_out < 12 ? 1 : 13)) {
      for (Index b : {7, 13, 21}) {  // rows in tiles of 8, 4 and alone
        const bpnet::Shape shape({n_in, n_out});
        std::vector<double> theta(shape.n_params()), in(b * n_in), out(b * n_out);
        for (double& t : theta) t = normal(gen);
        for (double& x : in) x = normal(gen);
        bpnet::PackedWeights<double> packed;
        packed.pack(shape, theta.data(), false);
        // a wide input with more outputs than kWideInputOutputs runs on the GEMM
        // (no packed W^T) below AVX-512
        const bool narrow =
            n_in <= bpnet::kNarrowWidth || n_out <= bpnet::kWideInputOutputs<double>;
        check(narrow == (packed.forward(0) != nullptr),
              "PackedWeights packs exactly the narrow layers' W^T");
        if (!narrow) continue;
        // without and with W (the few columns past the last whole packet as dot
        // products: n_dot_columns)
        for (const double* W :
             {static_cast<const double*>(nullptr), static_cast<const double*>(theta.data() + 1)}) {
          bpnet::narrow_product(in.data(), b, n_in, packed.forward(0), out.data(), n_out,
                                bpnet::NoEpilogue{}, W, n_in + 1);
          for (Index i = 0; i < b; ++i)
            for (Index j = 0; j < n_out; ++j) {
              double want = 0;
              for (Index k = 0; k < n_in; ++k)
                want += in[i * n_in + k] * theta[j * (n_in + 1) + 1 + k];
              worst = std::max(worst, std::abs(out[i * n_out + j] - want) / (1 + std::abs(want)));
            }
        }
      }
    }
  check(worst < 1e-13,
        "narrow_product equals the plain product (worst " + std::to_string(worst) + ")");
  // which layers run here: [400, 25] (case A) only with 32 vector registers
  constexpr bool wide = sizeof(bpnet::PacketOf<double>) == 64;
  check(bpnet::narrow_layer<double>(400, 25) == wide && bpnet::narrow_layer<float>(400, 25) == wide,
        "a wide input to 25 outputs is narrow exactly on AVX-512");
  check(bpnet::narrow_layer<double>(400, 12) && bpnet::narrow_layer<double>(64, 64) &&
            !bpnet::narrow_layer<double>(400, 65) && !bpnet::narrow_layer<double>(4000, 12),
        "narrow_layer: 12 outputs from 400 inputs, 64 from 64; not 65 outputs, not a W^T past L2");
}

void test_softmax_forward_matches_loss() {
  const std::vector<double> z = {0.3, -1.1, 2.0, 0.05};
  std::vector<double> h(4);
  bpnet::SoftmaxOutput::forward(z.data(), h.data(), 4);
  double sum = 0;
  for (double v : h) sum += v;
  check_close(sum, 1.0, 1e-15, 0, "softmax forward sums to 1");
  for (std::int64_t c = 0; c < 4; ++c)
    check_close(unit_loss<bpnet::SoftmaxOutput>(z, c), -std::log(h[c]), 1e-14, 0,
                "softmax loss = -log h_label");
}

void test_split_and_leaves() {
  for (Index n : {1, 7, 100, 1001})
    for (Index parts : {1, 2, 3, 16}) {
      Index prev = 0;
      for (Index k = 1; k <= parts; ++k) {
        const Index p = bpnet::split_point(n, parts, k);
        check(p - prev == n / parts || p - prev == n / parts + 1, "split_point pieces equal +-1");
        prev = p;
      }
      check(prev == n, "split_point ends at n");
    }
  for (Index m : {1, 31, 32, 513, 5000, 100000, 1000003}) {
    const auto s = bpnet::leaf_starts(m);
    check(s.front() == 0 && s.back() == m, "leaf_starts covers [0, m) for m=" + std::to_string(m));
    for (std::size_t c = 0; c + 1 < s.size(); ++c)
      check(s[c + 1] > s[c] && s[c + 1] - s[c] <= bpnet::kMaxLeafRows, "leaves are non-empty");
  }
}

// The tree's sum against a plain sum, and every split of the leaves into two
// contiguous runs (merged separately, then together) giving the same bits.
void test_tree() {
  std::mt19937_64 gen(7);
  std::normal_distribution<double> normal;
  for (Index C : {1, 2, 3, 5, 8, 13, 16, 33}) {
    const Index P = 5;
    std::vector<std::vector<double>> leaves(C, std::vector<double>(P));
    std::vector<double> plain(P, 0.0);
    for (auto& leaf : leaves)
      for (Index p = 0; p < P; ++p) plain[p] += (leaf[p] = normal(gen) * 1e3);
    std::vector<double> reference;
    for (Index cut = 0; cut <= C; ++cut) {
      auto bufs = leaves;
      std::vector<bpnet::NodeSums<double>> left, right;
      for (Index c = 0; c < C; ++c)
        (c < cut ? left : right).push_back({bpnet::TreeNode{0, c}, bufs[c].data(), 1.0, 1.0});
      std::vector<bpnet::NodeSums<double>> all;
      for (auto* run : {&left, &right}) {
        const auto ids = bpnet::reduce_tree(*run, P, C);
        for (std::size_t i : ids) all.push_back((*run)[i]);
      }
      const auto root = bpnet::reduce_tree(all, P, C);
      check(root.size() == 1, "the tree closes on one root");
      const auto& sum = all[root[0]];
      check(sum.weight == double(C), "the root's weight is the leaf count");
      std::vector<double> got(sum.grad, sum.grad + P);
      if (reference.empty()) reference = got;
      check(got == reference, "every split of the leaves gives the same bits (C=" +
                                  std::to_string(C) + ", cut=" + std::to_string(cut) + ")");
      for (Index p = 0; p < P; ++p) check_close(got[p], plain[p], 1e-12, 1e-9, "tree sum");
    }
  }
}

struct Net {
  std::vector<Index> sizes;
  std::vector<double> theta, X, w;
  std::vector<std::int64_t> y;
};

Net make_net(std::vector<Index> sizes, Index m, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal;
  Net n{sizes, {}, {}, {}, {}};
  bpnet::Shape shape(sizes);
  n.theta.resize(shape.n_params());
  for (double& t : n.theta) t = 0.5 * normal(gen);
  n.X.resize(m * sizes[0]);
  for (double& x : n.X) x = normal(gen);
  for (Index i = 0; i < m; ++i) {
    n.y.push_back(static_cast<std::int64_t>(gen() % sizes.back()));
    n.w.push_back(0.5 + (gen() % 100) / 100.0);
  }
  return n;
}

double cost(const Net& n, const std::vector<double>& theta, bpnet::Activation act,
            bpnet::Output out, double lam, std::vector<double>* grad, int threads) {
  bpnet::Shape shape(n.sizes);
  bpnet::Data<double> d;
  d.X = n.X.data();
  d.n_rows = d.m = static_cast<Index>(n.y.size());
  d.labels = n.y.data();
  d.sample_weight = n.w.data();
  std::vector<double> g(shape.n_params());
  bpnet::Workspace<double> ws;
  const double J = bpnet::cost_grad(shape, theta.data(), d, lam, act, out, g.data(), threads, ws);
  if (grad) *grad = g;
  return J;
}

void test_cost_grad(bpnet::Activation act, bpnet::Output out, const std::string& name) {
  const Net n = make_net({4, 6, 5, 3}, 300, 11);
  std::vector<double> g1, g2, g3;
  const double J = cost(n, n.theta, act, out, 0.7, &g1, 1);
  check(cost(n, n.theta, act, out, 0.7, &g2, 2) == J && g2 == g1, name + ": 2 threads, same bits");
  check(cost(n, n.theta, act, out, 0.7, &g3, 3) == J && g3 == g1, name + ": 3 threads, same bits");
  const double h = 1e-6;
  for (std::size_t p = 0; p < n.theta.size(); p += 3) {
    auto tp = n.theta, tm = n.theta;
    tp[p] += h;
    tm[p] -= h;
    const double fd =
        (cost(n, tp, act, out, 0.7, nullptr, 1) - cost(n, tm, act, out, 0.7, nullptr, 1)) / (2 * h);
    check_close(g1[p], fd, 1e-5, 1e-8, name + ": dJ/dtheta[" + std::to_string(p) + "]");
  }
  bpnet::Shape shape(n.sizes);
  bpnet::Data<double> d;
  d.X = n.X.data();
  d.n_rows = d.m = static_cast<Index>(n.y.size());
  d.labels = n.y.data();
  d.sample_weight = n.w.data();
  std::vector<double> hbuf(d.m * shape.n_outputs());
  bpnet::Workspace<double> ws;
  const double Jf =
      bpnet::forward_cost(shape, n.theta.data(), d, act, out, 0.7, hbuf.data(), 2, ws);
  check_close(Jf, J, 1e-13, 0, name + ": forward_cost's J equals cost_grad's");
}

template <typename T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <typename T>
void test_sqrt_vec(const std::string& name) {
  constexpr Index L = bpnet::kVecBytes / sizeof(T);
  std::mt19937_64 gen(7);
  std::uniform_real_distribution<double> u(0.0, 4.0);
  const T special[] = {T(0),
                       -T(0),
                       std::numeric_limits<T>::denorm_min(),
                       std::numeric_limits<T>::min(),
                       std::numeric_limits<T>::max(),
                       std::numeric_limits<T>::infinity(),
                       std::numeric_limits<T>::quiet_NaN()};
  std::vector<T> x(4 * L + 1), out(4 * L + 1, T(-1));
  for (Index i = 0; i < 4 * L + 1; ++i)
    x[i] = i < 7 ? special[i] : T(std::pow(u(gen), 9.0) * 1e-3);  // many magnitudes
  bool ok = true;
  for (Index off = 0; off + L <= 4 * L + 1; ++off) {  // every position and alignment
    bpnet::sqrt_vec(x.data() + off, out.data());
    for (Index i = 0; i < L; ++i) ok &= same_bits(out[i], T(std::sqrt(x[i + off])));
  }
  check(ok, name + " sqrt_vec equals std::sqrt bit for bit");
  // one register of the build's ISA, as the products' packets (a wider GCC vector
  // is split through the stack: 4.2 ns per float64 Adam parameter with AVX2)
  check(bpnet::kVecBytes == sizeof(bpnet::PacketOf<T>),
        name + " update kernels' vectors are one register wide");
}

template <typename T>
void test_sgd_update(const std::string& name) {
  const Index P = 70001;  // over the multi-threaded size, not a multiple of a slice
  std::mt19937_64 gen(11);
  std::normal_distribution<double> nd;
  std::vector<T> theta(P), v(P), g(P);
  for (Index i = 0; i < P; ++i) theta[i] = T(nd(gen)), v[i] = T(0.1 * nd(gen)), g[i] = T(nd(gen));
  for (bool nesterov : {true, false}) {
    const double lr = 0.01, mu = 0.9;
    std::vector<T> t1 = theta, v1 = v, t2 = theta, v2 = v, tr = theta, vr = v;
    check(bpnet::sgd_update(t1.data(), v1.data(), g.data(), P, lr, mu, nesterov, 1),
          name + " sgd_update: finite");
    check(bpnet::sgd_update(t2.data(), v2.data(), g.data(), P, lr, mu, nesterov, 2),
          name + " sgd_update: finite (2 threads)");
    const T m = T(mu), l = T(lr);
    for (Index i = 0; i < P; ++i) {  // v = mu v - lr g; theta += mu v - lr g, or += v
      const T lg = g[i] * l;
      vr[i] = vr[i] * m - lg;
      tr[i] = tr[i] + (nesterov ? m * vr[i] - lg : vr[i]);
    }
    const std::string what = name + (nesterov ? " nesterov" : " momentum");
    check(t1 == tr && v1 == vr, what + " sgd_update equals its formula bit for bit");
    check(t2 == t1 && v2 == v1, what + " sgd_update: 2 threads, same bits");
    g[P - 1] = std::numeric_limits<T>::infinity();
    check(!bpnet::sgd_update(t1.data(), v1.data(), g.data(), P, lr, mu, nesterov, 2),
          what + " sgd_update reports a non-finite theta");
    g[P - 1] = T(0);
  }
}

// adam_update against its scalar formula (NumPy's roundings in NumPy's
// order), bit for bit, on 1 and 2 threads; P and a short P leave tails after
// the 64-byte vector body; a non-finite theta anywhere (the body or the tail)
// is reported, and every other element is still updated.
template <typename T>
void test_adam_update(const std::string& name) {
  for (const Index P : {Index(1), Index(37), Index(70001)}) {
    std::mt19937_64 gen(12);
    std::normal_distribution<double> nd;
    std::vector<T> theta(P), m1(P), v(P), g(P);
    for (Index i = 0; i < P; ++i)
      theta[i] = T(nd(gen)), m1[i] = T(0.1 * nd(gen)), v[i] = T(0.01 * std::abs(nd(gen))),
      g[i] = T(nd(gen));
    const double b1 = 0.9, b2 = 0.999, step = 1e-3 * std::sqrt(1 - 0.999) / (1 - 0.9), eps = 1e-8;
    std::vector<T> t1 = theta, m_1 = m1, v1 = v, t2 = theta, m_2 = m1, v2 = v;
    const std::string what = name + " adam_update (P=" + std::to_string(P) + ")";
    check(bpnet::adam_update(t1.data(), m_1.data(), v1.data(), g.data(), P, b1, b2, step, eps, 1),
          what + ": finite");
    check(bpnet::adam_update(t2.data(), m_2.data(), v2.data(), g.data(), P, b1, b2, step, eps, 2),
          what + ": finite (2 threads)");
    const T B1 = T(b1), C1 = T(1 - b1), B2 = T(b2), C2 = T(1 - b2), S = T(step), E = T(eps);
    bool same = true;
    for (Index i = 0; i < P; ++i) {
      const T m = m1[i] * B1 + g[i] * C1, s = v[i] * B2 + (g[i] * g[i]) * C2;
      const T t = theta[i] - (m / (std::sqrt(s) + E)) * S;
      same = same && same_bits(m_1[i], m) && same_bits(v1[i], s) && same_bits(t1[i], t);
    }
    check(same, what + " equals its formula bit for bit");
    check(t2 == t1 && m_2 == m_1 && v2 == v1, what + ": 2 threads, same bits");
    for (const Index bad : {Index(0), P / 2, P - 1}) {
      std::vector<T> t3 = theta, m3 = m1, v3 = v, g3 = g;
      g3[bad] = std::numeric_limits<T>::infinity();
      check(
          !bpnet::adam_update(t3.data(), m3.data(), v3.data(), g3.data(), P, b1, b2, step, eps, 2),
          what + " reports a non-finite theta at " + std::to_string(bad));
      bool rest = true;
      for (Index i = 0; i < P; ++i)
        if (i != bad) rest = rest && same_bits(t3[i], t1[i]);
      check(rest, what + ": the other elements are still updated");
    }
  }
}

// mask_lt / mask_le / mask_eq and blend (AVX-512 mask registers where the
// build has them) against Eigen's pcmp_* and pselect, lane by lane, on
// values with -0, +-inf, NaN and ties.
template <typename T>
void test_lane_selection(const std::string& name) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr int W = sizeof(Packet) / sizeof(T);
  const T vals[] = {T(0),
                    -T(0),
                    T(1),
                    T(-1),
                    T(2.5),
                    std::numeric_limits<T>::infinity(),
                    -std::numeric_limits<T>::infinity(),
                    std::numeric_limits<T>::quiet_NaN()};
  constexpr int V = sizeof(vals) / sizeof(vals[0]);
  bool ok = true;
  for (int s = 0; s < V * V; ++s) {
    alignas(64) T a[W], b[W], x[W], y[W], got[W], want[W];
    for (int l = 0; l < W; ++l) {
      a[l] = vals[(s + l) % V], b[l] = vals[(s / V + 3 * l) % V];
      x[l] = T(10 + l), y[l] = T(-20 - l);
    }
    const Packet pa = pload<Packet>(a), pb = pload<Packet>(b), px = pload<Packet>(x),
                 py = pload<Packet>(y);
    const Packet masks[4][2] = {
        {bpnet::blend(bpnet::mask_lt(pa, pb), px, py), pselect(pcmp_lt(pa, pb), px, py)},
        {bpnet::blend(bpnet::mask_le(pa, pb), px, py), pselect(pcmp_le(pa, pb), px, py)},
        {bpnet::blend(bpnet::mask_eq(pa, pb), px, py), pselect(pcmp_eq(pa, pb), px, py)},
        {bpnet::blend(bpnet::lane_mask<bpnet::Compare::lt_or_nan>(pa, pb), px, py),
         pselect(pcmp_lt_or_nan(pa, pb), px, py)}};
    for (const auto& m : masks) {
      pstore(got, m[0]);
      pstore(want, m[1]);
      for (int l = 0; l < W; ++l) ok = ok && same_bits(got[l], want[l]);
    }
  }
  check(ok, name + " mask_lt/le/eq/lt_or_nan with blend select as Eigen's pcmp_*/pselect");
}

// log_packet (the sigmoid and softmax outputs' logarithm; on AVX-512 Eigen's
// algorithm with mask-register selections) against Eigen's plog, bit for bit:
// every float (every 61st under the sanitizers), and doubles at every
// exponent (2^k, 1.5 x 2^k and 62 random mantissas each, both signs): 0,
// subnormals, inf and NaNs of either sign.
template <typename T>
void test_log_packet(const std::string& name) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  using U = std::conditional_t<std::is_same_v<T, float>, uint32_t, uint64_t>;
  constexpr int W = sizeof(Packet) / sizeof(T);
  alignas(64) U in[W];
  alignas(64) T got[W], want[W];
  Index differ = 0, n = 0;
  const auto run = [&]() {
    const Packet x = pload<Packet>(reinterpret_cast<const T*>(in));
    pstore(got, bpnet::log_packet(x));
    pstore(want, plog(x));
    for (int l = 0; l < W; ++l) differ += !same_bits(got[l], want[l]);
    n += W;
  };
  if constexpr (std::is_same_v<T, float>) {
#if defined(__SANITIZE_ADDRESS__)
    constexpr uint64_t step = 61;  // ASan + UBSan: every 61st float (3 min for all)
#else
    constexpr uint64_t step = 1;
#endif
    for (uint64_t b = 0; b < (uint64_t(1) << 32); b += W * step) {
      for (int l = 0; l < W; ++l) in[l] = U(b + l * step);
      run();
    }
  } else {
    std::mt19937_64 rng(7);
    for (U sign : {U(0), U(1) << 63})
      for (U expo = 0; expo < 2048; ++expo)
        for (int rep = 0; rep < 64 / W; ++rep) {
          for (int l = 0; l < W; ++l) {
            U mant = rng() & ((U(1) << 52) - 1);
            if (rep == 0 && l == 0) mant = 0;           // 2^k, +-0, +-inf
            if (rep == 0 && l == 1) mant = U(1) << 51;  // a quiet NaN at expo 2047
            in[l] = sign | (expo << 52) | mant;
          }
          run();
        }
  }
  check(differ == 0, name + " log_packet equals Eigen's plog bitwise (" + std::to_string(n) +
                         " values, " + std::to_string(differ) + " differ)");
}

// exp_packet in float (the float units' exponential; with AVX2 exp_float,
// Eigen's pexp_float with a two-factor 2^m) against Eigen's pexp, bit for
// bit, for every float (every 61st under the sanitizers): the clamp's ends,
// subnormal results, 0, inf and NaNs of either sign.
void test_exp_packet() {
  using namespace Eigen::internal;
  using Packet = packet_traits<float>::type;
  constexpr int W = sizeof(Packet) / sizeof(float);
  alignas(64) uint32_t in[W];
  alignas(64) float got[W], want[W];
#if defined(__SANITIZE_ADDRESS__)
  constexpr uint64_t step = 61;
#else
  constexpr uint64_t step = 1;
#endif
  Index differ = 0, n = 0;
  for (uint64_t b = 0; b < (uint64_t(1) << 32); b += W * step) {
    for (int l = 0; l < W; ++l) in[l] = uint32_t(b + l * step);
    const Packet x = pload<Packet>(reinterpret_cast<const float*>(in));
    pstore(got, bpnet::exp_packet(x));
    pstore(want, pexp(x));
    for (int l = 0; l < W; ++l) differ += !same_bits(got[l], want[l]);
    n += W;
  }
  check(differ == 0, "float exp_packet equals Eigen's pexp bitwise (" + std::to_string(n) +
                         " values, " + std::to_string(differ) + " differ)");
}

// gather_column (the softmax output's transposition, a gather with
// AVX-512) against the scalar copy: every lane count n <= W and row width K,
// lanes past n zero, nothing read past row n - 1 (the last row ends the
// buffer).
template <typename T>
void test_gather_column(const std::string& name) {
  constexpr Index W = sizeof(typename Eigen::internal::packet_traits<T>::type) / sizeof(T);
  bool ok = true;
  for (Index K = 1; K <= 21; ++K)
    for (Index n = 1; n <= W; ++n)
      for (Index k = 0; k < K; ++k) {
        std::vector<T> x(n * K);
        for (Index i = 0; i < n * K; ++i) x[i] = T(i) + T(0.25);
        alignas(64) T col[W];
        std::fill_n(col, W, T(-1));
        bpnet::gather_column(x.data() + k, K, n, col);
        for (Index l = 0; l < W; ++l) ok = ok && col[l] == (l < n ? x[l * K + k] : T(0));
      }
  check(ok, name + " gather_column equals the scalar transposition");
}

// touched_columns: U ascending, slot its inverse and -1 elsewhere; the
// previous call's marks cleared; every column once rows hold >= s_0 nonzeros.
void test_touched_columns() {
  Index n = 12;
  // rows: {3, 7}, {7, 1}, {}, {11}
  const std::int32_t indptr[] = {0, 2, 4, 4, 5};
  const std::int32_t indices[] = {3, 7, 7, 1, 11};
  const double values[] = {1, 2, 3, 4, 5};
  bpnet::Data<double> d;
  d.csr.values = values;
  d.csr.indptr = indptr;
  d.csr.indices = indices;
  d.csr.nnz = 5;
  d.csr.n_cols = n;
  d.n_rows = d.m = 4;
  std::vector<Index> touched, slot;
  const auto slots_agree = [&](const std::vector<Index>& want, const std::string& what) {
    check(touched == want, what + ": U ascending");
    for (Index j = 0; j < n; ++j) {
      const auto u = std::find(want.begin(), want.end(), j);
      check(slot[j] == (u == want.end() ? -1 : u - want.begin()), what + ": slot of each column");
    }
  };
  bpnet::touched_columns(d, touched, slot);
  slots_agree({1, 3, 7, 11}, "all rows");
  const std::int64_t rows[] = {3, 2};  // the row selection of a mini-batch
  d.rows = rows;
  d.m = 2;
  bpnet::touched_columns(d, touched, slot);
  slots_agree({11}, "rows {3, 2}");
  d.m = 0;
  bpnet::touched_columns(d, touched, slot);
  slots_agree({}, "no rows");
  d.csr.n_cols = n = 5;  // 5 nonzeros >= 5 columns: U = every column, nothing visited
  d.rows = nullptr;
  d.m = 4;
  std::vector<Index> all = {0, 1, 2, 3, 4};
  bpnet::touched_columns(d, touched, slot);
  check(touched == all && slot == all, "rows holding >= s_0 nonzeros touch every column");
}

// The poll after a job: 2 gap + 25 us, at most 300 us, none from a 300 us gap.
void test_auto_spin() {
  using bpnet::Pool;
  using std::chrono::microseconds;
  const std::pair<long, long> cases[] = {{0, 25},    {10, 45},    {100, 225}, {137, 299},
                                         {138, 300}, {299, 300},  {300, 0},   {301, 0},
                                         {5000, 0},  {1000000, 0}};
  for (auto [gap, want] : cases)
    check(Pool::auto_spin(microseconds(gap)) == microseconds(want),
          "auto_spin(" + std::to_string(gap) + " us) = " + std::to_string(want) + " us");
  check(Pool::auto_spin(std::chrono::steady_clock::duration::max()) == microseconds(0),
        "no poll after a first job (gap max)");
  check(Pool::auto_spin(std::chrono::nanoseconds(50500)) == microseconds(125),
        "a gap's sub-microsecond part is dropped");
}

// Jobs on the pool with gaps below and above the poll's bound (the pool's
// threads polling, or asleep): every worker index runs exactly once per job.
void test_pool_jobs_across_gaps() {
  constexpr int kWorkers = 3;
  for (long gap_us : {0L, 50L, 400L, 2000L}) {
    bool ok = true;
    for (int rep = 0; rep < 20; ++rep) {
      std::atomic<int> runs[kWorkers] = {};
      bpnet::run_workers(kWorkers, nullptr, [&](int w, bpnet::Team&) { runs[w].fetch_add(1); });
      for (auto& r : runs) ok = ok && r.load() == 1;
      if (gap_us) std::this_thread::sleep_for(std::chrono::microseconds(gap_us));
    }
    check(ok, "pool jobs " + std::to_string(gap_us) + " us apart run each worker once");
  }
}

// Leaf taking: the owner takes its range from the front, others single
// leaves from the back of the fullest range, never leaf 0; a worker with
// nothing left to take returns at once, also while worker 0 has not taken
// leaf 0 yet (it used to spin until then, taking the CPU from a preempted
// caller).
void test_leaf_queues() {
  using bpnet::Index;
  bpnet::LeafQueues q(6, 2);  // worker 0: leaves [0, 3), worker 1: [3, 6)
  Index c = -1;
  std::vector<Index> got;
  while (q.take_own(1, c)) got.push_back(c);
  for (int k = 0; k < 2 && q.take_other(1, c); ++k) got.push_back(c);
  check(got == std::vector<Index>{3, 4, 5, 2, 1}, "worker 1 takes 3, 4, 5, then 2 and 1");
  const auto t0 = std::chrono::steady_clock::now();
  std::atomic<int> answer{-1};
  std::thread other([&] {
    Index d = -1;
    answer = q.take_other(1, d) ? 1 : 0;
  });
  for (int k = 0; k < 2000 && answer.load() < 0; ++k)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const bool returned = answer.load() >= 0;
  check(q.take_own(0, c) && c == 0, "worker 0 still takes leaf 0");  // also frees a spinner
  other.join();
  check(returned && answer.load() == 0 &&
            std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2),
        "take_other returns false at once when only leaf 0 is left");
  check(!q.take_own(0, c) && !q.take_other(0, c), "nothing left for worker 0");
  bpnet::LeafQueues three(7, 3);  // [0, 3), [3, 5), [5, 7)
  check(three.take_own(0, c) && c == 0, "worker 0 takes leaf 0 first");
  check(three.take_other(0, c) && c == 4,
        "a thief takes from the fullest range's back (a tie: the lower worker's)");
  check(three.take_other(0, c) && c == 6, "then from the range now fullest");
  check(three.take_other(2, c) && c == 2, "worker 0's range: from its back");
  check(three.take_other(2, c) && c == 1, "a tie goes to the lower worker");
  check(three.take_other(2, c) && c == 3, "then worker 1's last");
  check(!three.take_other(2, c) && three.take_own(2, c) && c == 5,
        "then its own, and nothing more");
}

}  // namespace

int main() {
  test_auto_spin();
  test_leaf_queues();
  test_pool_jobs_across_gaps();
  check_all_finite<double>();
  check_all_finite<float>();
  test_exp_inplace();
  check_narrow_dw<double>();
  check_narrow_forward<double>();
  check_narrow_forward<float>();
  check_narrow_dw<float>();
  test_position_free();
  test_sigmoid_terms();
  test_hidden_unit<bpnet::SigmoidUnit>("sigmoid");
  test_hidden_unit<bpnet::TanhUnit>("tanh");
  test_hidden_unit<bpnet::ReluUnit>("relu");
  test_hidden_unit<bpnet::IdentityUnit>("identity");
  test_output_unit<bpnet::SigmoidOutput>("sigmoid output", Range::probability);
  test_output_unit<bpnet::SoftmaxOutput>("softmax output", Range::probability);
  test_output_unit<bpnet::IdentityOutput>("identity output", Range::any);
  test_output_unit<bpnet::PoissonOutput>("poisson output", Range::positive);
  test_tanh_accuracy();
  test_sigmoid_accuracy();
  test_narrow_product();
  test_softmax_forward_matches_loss();
  test_split_and_leaves();
  test_tree();
  test_sqrt_vec<float>("float");
  test_sqrt_vec<double>("double");
  test_sgd_update<float>("float");
  test_sgd_update<double>("double");
  test_adam_update<float>("float");
  test_adam_update<double>("double");
  test_lane_selection<float>("float");
  test_gather_column<float>("float");
  test_gather_column<double>("double");
  test_lane_selection<double>("double");
  test_log_packet<float>("float");
  test_log_packet<double>("double");
  test_exp_packet();
  test_touched_columns();
  using A = bpnet::Activation;
  using O = bpnet::Output;
  for (auto [act, aname] : {std::pair{A::sigmoid, "sigmoid"},
                            {A::tanh, "tanh"},
                            {A::relu, "relu"},
                            {A::identity, "identity"}})
    for (auto [out, oname] : {std::pair{O::sigmoid, "sigmoid"},
                              {O::softmax, "softmax"},
                              {O::identity, "identity"},
                              {O::poisson, "poisson"}})
      test_cost_grad(act, out, std::string(aname) + "/" + oname);
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
