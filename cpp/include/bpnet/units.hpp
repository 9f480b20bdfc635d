// bpnet core, floor 3: the units. Each hidden activation and each output unit
// is a forward/backward pair, side by side; one dispatch per kind turns the
// name a caller passes into the pair. Adding a unit is a struct here, a case
// in its parse_ and with_ functions, and nothing else in the core.
//
// Hidden unit g, on pre-activations z of a hidden layer (a row (s,) or a
// whole block (b s,), flat: an element's bits never depend on which):
//   forward:   a = g(z), in place over z (packet: g on one packet, the same
//              bits; the narrow kernel applies it in registers)
//   backward:  delta .*= g'(z), with g' written in terms of a = g(z)
// Output unit, on the logits z^(L) (K,) of a row or (b, K) of a block:
//   forward:   h = output(z) (one row)
//   backward:  loss = sum_i w_i loss_i (returned, in double) and
//              delta^(L) = dJ/dz^(L) written over z (one block)
// Dimension letters: see shape.hpp.
#pragma once

#include <cmath>
#include <string>
#include <type_traits>

#include "data.hpp"
#include "memory.hpp"

namespace bpnet {

// ---------------------------------------------------------------------------
// Hidden units
// ---------------------------------------------------------------------------
enum class Activation { sigmoid, tanh, relu, identity };

inline Activation parse_activation(const std::string& name) {
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "tanh") return Activation::tanh;
  if (name == "relu") return Activation::relu;
  if (name == "identity") return Activation::identity;
  throw std::invalid_argument(
      "activation must be one of 'sigmoid', 'tanh', 'relu', 'identity'; got '" + name + "'");
}

// Lane masks and selection: mask_lt(a, b), mask_le, mask_eq (and
// lane_mask<Compare::lt_or_nan>: not a >= b), then
// blend(mask, x, y) = x where the mask is set, else y. AVX-512 keeps the
// mask in a mask register; Eigen's pcmp_* / pselect turn it into a vector
// of all-ones lanes and back, and sigmoid_double took 3.6 ns per double with
// them against 1.4 with mask registers (Xeon family 6 model 207). Other ISAs
// and packets: Eigen's. Either way a lane's result is one of its two inputs,
// exactly.
enum class Compare { lt, le, eq, lt_or_nan };

// Whether Packet is an AVX-512 register of T (8 doubles or 16 floats).
template <typename Packet, typename T>
constexpr bool is_zmm_of() {
  using Traits = Eigen::internal::unpacket_traits<Packet>;
  return std::is_same_v<typename Traits::type, T> && Traits::size * sizeof(T) == 64;
}

template <Compare C, typename Packet>
auto lane_mask(const Packet& a, const Packet& b) {
  using namespace Eigen::internal;
#if defined(EIGEN_VECTORIZE_AVX512)
  constexpr int pred = C == Compare::lt   ? _CMP_LT_OQ
                       : C == Compare::le ? _CMP_LE_OQ
                       : C == Compare::eq ? _CMP_EQ_OQ
                                          : _CMP_NGE_UQ;  // lt_or_nan: not a >= b
  if constexpr (is_zmm_of<Packet, double>())
    return _mm512_cmp_pd_mask(a, b, pred);
  else if constexpr (is_zmm_of<Packet, float>())
    return _mm512_cmp_ps_mask(a, b, pred);
  else
#endif
      if constexpr (C == Compare::lt)
    return pcmp_lt(a, b);
  else if constexpr (C == Compare::le)
    return pcmp_le(a, b);
  else if constexpr (C == Compare::eq)
    return pcmp_eq(a, b);
  else
    return pcmp_lt_or_nan(a, b);
}
template <typename Packet>
auto mask_lt(const Packet& a, const Packet& b) {
  return lane_mask<Compare::lt>(a, b);
}
template <typename Packet>
auto mask_le(const Packet& a, const Packet& b) {
  return lane_mask<Compare::le>(a, b);
}
template <typename Packet>
auto mask_eq(const Packet& a, const Packet& b) {
  return lane_mask<Compare::eq>(a, b);
}

template <typename Mask, typename Packet>
Packet blend(const Mask& mask, const Packet& x, const Packet& y) {
#if defined(EIGEN_VECTORIZE_AVX512)
  if constexpr (is_zmm_of<Packet, double>())
    return _mm512_mask_blend_pd(mask, y, x);
  else if constexpr (is_zmm_of<Packet, float>())
    return _mm512_mask_blend_ps(mask, y, x);
  else
#endif
    return Eigen::internal::pselect(mask, x, y);
}

// z = f(z) over n contiguous Ts, one packet at a time; a tail shorter than a
// packet runs through a zero-padded packet, so an element's bits never depend
// on its position (in a row, a block or the flat array). Eigen's own array
// expressions finish with scalar libm calls instead.
template <typename T, typename F>
void map_packets(T* z, Index n, F&& f) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr Index W = sizeof(Packet) / sizeof(T);
  Index i = 0;
  for (; i + W <= n; i += W) pstoreu(z + i, f(ploadu<Packet>(z + i)));
  if (i == n) return;
  alignas(64) T tail[W] = {};
  std::copy(z + i, z + n, tail);
  pstore(tail, f(pload<Packet>(tail)));
  std::copy(tail, tail + (n - i), z + i);
}

// 2^k from t = k + 1.5 * 2^52 (an integer k, |k| < 2^51, held in t's low
// mantissa bits): the bits of 2^k are (bits(t) + 1023) << 52, the high bits
// shifted out. Two integer instructions; Eigen's pldexp takes about twenty.
#if defined(__AVX512F__)
inline Eigen::internal::Packet8d pow2_from_shifted(const Eigen::internal::Packet8d& t) {
  return _mm512_castsi512_pd(
      _mm512_slli_epi64(_mm512_add_epi64(_mm512_castpd_si512(t), _mm512_set1_epi64(1023)), 52));
}
#endif
#if defined(__AVX2__)
inline Eigen::internal::Packet4d pow2_from_shifted(const Eigen::internal::Packet4d& t) {
  return _mm256_castsi256_pd(
      _mm256_slli_epi64(_mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023)), 52));
}
#endif
inline Eigen::internal::Packet2d pow2_from_shifted(const Eigen::internal::Packet2d& t) {
  return _mm_castsi128_pd(
      _mm_slli_epi64(_mm_add_epi64(_mm_castpd_si128(t), _mm_set1_epi64x(1023)), 52));
}

// e^y as 2^k (1 + expm1 r) in double, by reduction with k = floor(y / ln2):
//   y = k ln2 + r,  0 <= r < ln2,  s = 2^k,  p = expm1(r) = r + r^2 Q(r)
// so e^y = s + s p and expm1 y = s p + (s - 1), and expm1(r) keeps its
// relative accuracy as r -> 0 (no branch). For y in [log of the smallest
// normal, 710]: k from -1022 to 1024 (2^1024 is +inf). One polynomial, two
// integer instructions for 2^k, no division (Eigen's double pexp has a
// division and a twenty-instruction pldexp).
// The callers clamp their argument with Eigen's plain pmin / pmax, whose
// rule is std::min's and std::max's: a NaN first argument is returned, so
// NaN stays NaN. Not pmin<PropagateNaN>: with AVX-512 it turns compare masks
// into vectors and back, and exp_double with it took 3.8 ns per double
// against 0.73 with the plain clamps (a loop over 13,472 values, Xeon
// family 6 model 207).
inline void exp_parts(const Eigen::internal::packet_traits<double>::type& y,
                      Eigen::internal::packet_traits<double>::type& s,
                      Eigen::internal::packet_traits<double>::type& p) {
  using namespace Eigen::internal;
  using Packet = packet_traits<double>::type;
  // t = floor(y / ln2) + 1.5 * 2^52: adding 1.5 * 2^52 rounds to an integer
  // (to nearest; the -0.5 makes it a floor but for ties, where r = -0 or ln2)
  const Packet shift = pset1<Packet>(6755399441055744.0);
  const Packet t = padd(pmadd(y, pset1<Packet>(1.4426950408889634074), pset1<Packet>(-0.5)), shift);
  const Packet k = psub(t, shift);
  // r = y - k ln2 in two steps: k * ln2_hi is exact (ln2_hi has 32 bits)
  Packet r = psub(y, pmul(k, pset1<Packet>(6.93147180369123816490e-01)));
  r = psub(r, pmul(k, pset1<Packet>(1.90821492927058770002e-10)));
  // expm1 r = r + r^2 Q(r), Q of degree 10 fitted on [0, ln2] (least squares
  // at 200 Chebyshev nodes, weighted to expm1's relative error: at most
  // 1.2e-17 with these rounded coefficients; Taylor's series needs degree 14)
  Packet q = pset1<Packet>(2.871517008338878e-09);
  for (double c :
       {2.35655826622979e-08, 2.771463798151142e-07, 2.7546897372399822e-06, 2.4802039545913928e-05,
        0.00019841256842446925, 0.001388888913294231, 0.008333333330458631, 0.04166666666686307,
        0.16666666666665997, 0.5000000000000001})
    q = pmadd(q, r, pset1<Packet>(c));
  p = pmadd(pmul(r, r), q, r);
  s = pow2_from_shifted(t);  // 2^k
}

// e^x in double (exp_parts), 0 below the smallest normal (where e^x is
// subnormal or 0), +inf past 709.78; NaN stays NaN.
inline Eigen::internal::packet_traits<double>::type exp_double(
    const Eigen::internal::packet_traits<double>::type& x) {
  using namespace Eigen::internal;
  using Packet = packet_traits<double>::type;
  const Packet lo = pset1<Packet>(std::log(std::numeric_limits<double>::min()));
  const Packet y = pmin(pmax(x, lo), pset1<Packet>(710.0));  // keeps x's NaN (see exp_parts)
  Packet s, p;
  exp_parts(y, s, p);
  return blend(mask_lt(x, lo), pzero(x), pmadd(s, p, s));
}

#if defined(EIGEN_VECTORIZE_AVX2) && !defined(EIGEN_VECTORIZE_AVX512)
// e^x in float with AVX2: Eigen 3.4's pexp_float (the clamp to +-88.723,
// m = floor(x log2 e + 1/2), r = x - m ln2 in two steps, the Cephes
// polynomial y = e^r, all in the same order) with 2^m y as y 2^b 2^(m - b),
// b = floor(m / 2), where Eigen's generic pldexp clamps m again and
// multiplies by four powers of two (about fifteen instructions; its AVX-512
// pexp has its own two-instruction 2^m). |m| <= 128, so both factors are
// normal and y 2^b is exact: the one rounding is the last multiplication's,
// as in Eigen's, so the same bits for every float (test_exp_packet). A loop
// of the float sigmoid over 16,384 values (standalone C++, -O3, the avx2
// flags, Xeon family 6 model 207): 1.32-1.35 -> 1.07-1.11 ns per value.
template <typename Packet>
Packet exp_float(const Packet& x0) {
  using namespace Eigen::internal;
  using PacketI = typename unpacket_traits<Packet>::integer_packet;
  const Packet x = pmax(pmin(x0, pset1<Packet>(88.723f)), pset1<Packet>(-88.723f));
  const Packet m = pfloor(pmadd(x, pset1<Packet>(1.44269504088896341f), pset1<Packet>(0.5f)));
  Packet r = pmadd(m, pset1<Packet>(-0.693359375f), x);
  r = pmadd(m, pset1<Packet>(2.12194440e-4f), r);
  const Packet r2 = pmul(r, r), r3 = pmul(r2, r);
  Packet y = pmadd(pset1<Packet>(1.9875691500e-4f), r, pset1<Packet>(1.3981999507e-3f));
  Packet y1 = pmadd(pset1<Packet>(4.1665795894e-2f), r, pset1<Packet>(1.6666665459e-1f));
  const Packet y2 = padd(r, pset1<Packet>(1.0f));
  y = pmadd(y, r, pset1<Packet>(8.3334519073e-3f));
  y1 = pmadd(y1, r, pset1<Packet>(5.0000001201e-1f));
  y = pmadd(y, r3, y1);
  y = pmadd(y, r2, y2);
  // 2^m y; a NaN x0 gives a NaN y, and a NaN times anything keeps y's payload
  const PacketI mi = pcast<Packet, PacketI>(m), bias = pset1<PacketI>(127);
  const PacketI b = parithmetic_shift_right<1>(mi);
  const Packet c1 = preinterpret<Packet>(plogical_shift_left<23>(padd(b, bias)));
  const Packet c2 = preinterpret<Packet>(plogical_shift_left<23>(padd(psub(mi, b), bias)));
  return pmax(pmul(pmul(y, c1), c2), x0);
}
#endif

// e^x: exp_double in double; in float Eigen's packet exp (a short polynomial,
// no division), through exp_float's faster 2^m with AVX2.
template <typename Packet>
Packet exp_packet(const Packet& x) {
  using T = typename Eigen::internal::unpacket_traits<Packet>::type;
  if constexpr (std::is_same_v<T, double>) return exp_double(x);
#if defined(EIGEN_VECTORIZE_AVX2) && !defined(EIGEN_VECTORIZE_AVX512)
  else if constexpr (Eigen::internal::unpacket_traits<Packet>::size == 8)  // Packet8f
    return exp_float(x);
#endif
  else
    return Eigen::internal::pexp(x);
}

// log x: Eigen's plog, and on AVX-512 the same algorithm (Eigen 3.4's
// plog_float / plog_double: clamp to the smallest normal, frexp, the Cephes
// polynomial, then -inf at 0, +inf at +inf, NaN below 0) with its selections
// in mask registers, the same operations in the same order: the same bits for
// every input (test_log_packet: every float, and doubles over the whole
// range). Eigen's builds a vector of all-ones lanes from each compare and
// turns it back into a mask for each select. A loop over 16,384 values in
// [1, 2) (the outputs' arguments): float 0.61-0.70 -> 0.36-0.41 ns per value,
// double 1.35 -> 0.93 (Xeon family 6 model 207).
#if defined(EIGEN_VECTORIZE_AVX512DQ)
// frexp of x >= the smallest normal (or +inf, or NaN), as Eigen's
// pfrexp_generic after the clamp: m in [0.5, 1) and e = biased exponent -
// (bias - 1), or m = x and e = 0 where x is not finite.
template <typename Packet>
Packet frexp_normal(const Packet& x, Packet& e) {
  using namespace Eigen::internal;
  if constexpr (is_zmm_of<Packet, float>()) {
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i biased =  // Eigen: |x| >> 23 (a NaN may have its sign bit set)
        _mm512_and_si512(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(255));
    const __mmask16 finite = _mm512_cmpneq_epi32_mask(biased, _mm512_set1_epi32(255));
    e = _mm512_maskz_add_ps(finite, _mm512_cvtepi32_ps(biased), pset1<Packet>(-126.0f));
    const __m512i m = _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(int(0x807fffffu))),
                                      _mm512_set1_epi32(0x3f000000));
    return _mm512_mask_blend_ps(finite, x, _mm512_castsi512_ps(m));
  } else {
    const __m512i bits = _mm512_castpd_si512(x);
    const __m512i biased =
        _mm512_srli_epi64(_mm512_and_si512(bits, _mm512_set1_epi64(0x7ff0000000000000ll)), 52);
    const __mmask8 finite = _mm512_cmpneq_epi64_mask(biased, _mm512_set1_epi64(2047));
    e = _mm512_maskz_add_pd(finite, _mm512_cvtepi64_pd(biased), pset1<Packet>(-1022.0));
    const __m512i m =
        _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi64(int64_t(0x800fffffffffffffull))),
                        _mm512_set1_epi64(0x3fe0000000000000ll));
    return _mm512_mask_blend_pd(finite, x, _mm512_castsi512_pd(m));
  }
}
#endif

template <typename Packet>
Packet log_packet(const Packet& x0) {
  using namespace Eigen::internal;
#if defined(EIGEN_VECTORIZE_AVX512DQ)
  using T = typename unpacket_traits<Packet>::type;
  if constexpr (is_zmm_of<Packet, T>()) {
    constexpr bool f32 = std::is_same_v<T, float>;
    const Packet one = pset1<Packet>(T(1)), zero = pzero(x0);
    const Packet inf = pset1<Packet>(std::numeric_limits<T>::infinity());
    // clamp (Eigen's pmax: a NaN x0 stays), frexp
    Packet e, x = frexp_normal(pmax(x0, pset1<Packet>(std::numeric_limits<T>::min())), e);
    // [0.5, 1) -> [sqrt(1/2), sqrt(2)) - 1: x < sqrt(1/2) ? (x - 1) + x, e - 1 : x - 1, e - 0
    const auto low = mask_lt(x, pset1<Packet>(T(0.70710678118654752440)));
    const Packet xm1 = psub(x, one);
    // masked instructions: blend(low, psub(e, one), e) and blend(low, padd(xm1, x), xm1)
    // give the same bits but took 0.50 ns per float (1.22 per double) against 0.41 (1.06)
    if constexpr (f32) {
      e = _mm512_mask_sub_ps(e, low, e, one);
      x = _mm512_mask_add_ps(xm1, low, xm1, x);
    } else {
      e = _mm512_mask_sub_pd(e, low, e, one);
      x = _mm512_mask_add_pd(xm1, low, xm1, x);
    }
    const Packet x2 = pmul(x, x), x3 = pmul(x2, x);
    Packet y;
    if constexpr (f32) {  // Cephes' degree-8 polynomial, Eigen's evaluation order
      Packet y1, y2;
      y = pmadd(pset1<Packet>(7.0376836292E-2f), x, pset1<Packet>(-1.1514610310E-1f));
      y1 = pmadd(pset1<Packet>(-1.2420140846E-1f), x, pset1<Packet>(+1.4249322787E-1f));
      y2 = pmadd(pset1<Packet>(+2.0000714765E-1f), x, pset1<Packet>(-2.4999993993E-1f));
      y = pmadd(y, x, pset1<Packet>(1.1676998740E-1f));
      y1 = pmadd(y1, x, pset1<Packet>(-1.6668057665E-1f));
      y2 = pmadd(y2, x, pset1<Packet>(+3.3333331174E-1f));
      y = pmadd(y, x3, y1);
      y = pmadd(y, x3, y2);
      y = pmul(y, x3);
    } else {  // Cephes' P(x) / Q(x), degree 5 over 5
      Packet y1, y_;
      y = pmadd(pset1<Packet>(1.01875663804580931796E-4), x,
                pset1<Packet>(4.97494994976747001425E-1));
      y1 = pmadd(pset1<Packet>(1.44989225341610930846E1), x,
                 pset1<Packet>(1.79368678507819816313E1));
      y = pmadd(y, x, pset1<Packet>(4.70579119878881725854E0));
      y1 = pmadd(y1, x, pset1<Packet>(7.70838733755885391666E0));
      y_ = pmadd(y, x3, y1);
      y = pmadd(one, x, pset1<Packet>(1.12873587189167450590E1));
      y1 = pmadd(pset1<Packet>(8.29875266912776603211E1), x,
                 pset1<Packet>(7.11544750618563894466E1));
      y = pmadd(y, x, pset1<Packet>(4.52279145837532221105E1));
      y1 = pmadd(y1, x, pset1<Packet>(2.31251620126765340583E1));
      y = pmadd(y, x3, y1);
      y = pdiv(pmul(y_, x3), y);
    }
    y = pmadd(pset1<Packet>(T(-0.5)), x2, y);
    x = pmadd(e, pset1<Packet>(T(EIGEN_LN2)), padd(x, y));
    // +inf at +inf, NaN (all bits set, as Eigen's) below 0 or at NaN, -inf at 0
    x = blend(mask_eq(x0, inf), inf, x);
    x = blend(lane_mask<Compare::lt_or_nan>(x0, zero), ptrue(x0), x);
    return blend(mask_eq(x0, zero), pnegate(inf), x);
  } else
#endif
    return plog(x0);
}

// tanh in double, vectorized with Eigen's packets (Eigen 3.4 has no packet
// tanh for double: z.tanh() calls libm once per element). One division:
//   tanh |z| = e / (e + 2),  e = expm1(y),  y = min(2|z|, 40)
// (tanh rounds to 1 well before |z| = 20), then z's sign (tanh is odd, and
// -0 stays -0). expm1 y = s p + (s - 1) from exp_parts, where both terms are
// >= 0 (no cancellation).
inline Eigen::internal::packet_traits<double>::type tanh_packet(
    const Eigen::internal::packet_traits<double>::type& x) {
  using namespace Eigen::internal;
  using Packet = packet_traits<double>::type;
  const Packet one = pset1<Packet>(1.0), two = pset1<Packet>(2.0);
  const Packet ax = pabs(x);
  const Packet y = pmin(padd(ax, ax), pset1<Packet>(40.0));  // keeps a NaN (see exp_parts)
  Packet s, p;
  exp_parts(y, s, p);  // 2^k, 0 <= k <= 57
  const Packet e = pmadd(s, p, psub(s, one));
  const Packet sign = pand(x, pset1<Packet>(-0.0));
  return por(pdiv(e, padd(e, two)), sign);
}

// The logistic function in double with one division and exp_parts:
//   1 / (1 + e^-z) = E / (E + 1) (z >= 0)  or  1 / (E + 1) (z < 0),  E = e^|z|
// with |z| capped at 40 for z >= 0 (the result is 1 from 37) and at 710 for
// z < 0 (E = +inf past 709.78: the result 0, as 1 / (1 + exp(-z)) in libm).
inline Eigen::internal::packet_traits<double>::type sigmoid_double(
    const Eigen::internal::packet_traits<double>::type& z) {
  using namespace Eigen::internal;
  using Packet = packet_traits<double>::type;
  const Packet one = pset1<Packet>(1.0);
  const auto neg = mask_lt(z, pzero(z));
  const Packet cap = blend(neg, pset1<Packet>(710.0), pset1<Packet>(40.0));
  Packet s, p;
  exp_parts(pmin(pabs(z), cap), s, p);  // keeps z's NaN (see exp_parts)
  const Packet E = pmadd(s, p, s);
  return pdiv(blend(neg, one, E), padd(E, one));
}

// x = e^x over n contiguous doubles with exp_double, position-free
// (map_packets; a broadcast expression such as (z.colwise() - c).exp() on rows
// narrower than a packet falls back to libm's exp per element).
inline void exp_inplace(double* x, Index n) {
  map_packets(x, n, [](const auto& p) { return exp_double(p); });
}

struct SigmoidUnit {
  template <typename T>
  static void forward(ArrayMap<T>& z) {  // g(z) = 1 / (1 + e^-z)
    map_packets(z.data(), z.size(), [](const auto& p) { return packet(p); });
  }
  template <typename Packet>
  static Packet packet(const Packet& z) {
    using namespace Eigen::internal;
    using T = typename unpacket_traits<Packet>::type;
    if constexpr (std::is_same_v<T, double>)
      return sigmoid_double(z);
    else
      return pdiv(pset1<Packet>(T(1)), padd(pset1<Packet>(T(1)), exp_packet(pnegate(z))));
  }
  template <typename Packet>
  static Packet backward(const Packet& delta, const Packet& a) {  // delta g'(z), g' = a (1 - a)
    using namespace Eigen::internal;
    return pmul(delta, pmul(a, psub(pset1<Packet>(1), a)));
  }
};

struct TanhUnit {
  template <typename T>
  static void forward(ArrayMap<T>& z) {  // g(z) = tanh z
    map_packets(z.data(), z.size(), [](const auto& p) { return packet(p); });
  }
  template <typename Packet>
  static Packet packet(const Packet& z) {
    if constexpr (std::is_same_v<typename Eigen::internal::unpacket_traits<Packet>::type, double>)
      return tanh_packet(z);
    else  // Eigen's packet tanh for float (a rational approximation)
      return Eigen::internal::ptanh(z);
  }
  template <typename Packet>
  static Packet backward(const Packet& delta, const Packet& a) {  // delta g'(z), g' = 1 - a^2
    using namespace Eigen::internal;
    return pmul(delta, psub(pset1<Packet>(1), pmul(a, a)));
  }
};

struct ReluUnit {
  template <typename T>
  static void forward(ArrayMap<T>& z) {  // g(z) = max(z, 0)
    map_packets(z.data(), z.size(), [](const auto& p) { return packet(p); });
  }
  template <typename Packet>
  static Packet packet(const Packet& z) {  // max(z, 0) keeps -0 (as std::max(z, 0.0))
    return Eigen::internal::pmax(z, Eigen::internal::pzero(z));
  }
  template <typename Packet>
  static Packet backward(const Packet& delta, const Packet& a) {  // delta g'(z), g' = [a > 0]
    using namespace Eigen::internal;
    return blend(mask_lt(pzero(a), a), delta, pzero(a));
  }
};

struct IdentityUnit {
  template <typename T>
  static void forward(ArrayMap<T>&) {}  // g(z) = z
  template <typename Packet>
  static Packet packet(const Packet& z) {
    return z;
  }
  template <typename Packet>
  static Packet backward(const Packet& delta, const Packet&) {  // g'(z) = 1
    return delta;
  }
};

// f(unit) for the hidden unit named by act: the one dispatch.
template <typename F>
decltype(auto) with_hidden_unit(Activation act, F&& f) {
  switch (act) {
    case Activation::sigmoid:
      return f(SigmoidUnit{});
    case Activation::tanh:
      return f(TanhUnit{});
    case Activation::relu:
      return f(ReluUnit{});
    case Activation::identity:
      break;
  }
  return f(IdentityUnit{});
}

// ---------------------------------------------------------------------------
// Output units and their losses. The backward passes run over a (b, K) block,
// vectorized through scratch (3 padded (b, K) arrays of doubles + 2 b doubles).
// ---------------------------------------------------------------------------
enum class Output { sigmoid, softmax, identity, poisson };

inline Output parse_output(const std::string& name) {
  if (name == "sigmoid") return Output::sigmoid;
  if (name == "softmax") return Output::softmax;
  if (name == "identity") return Output::identity;
  if (name == "poisson") return Output::poisson;
  throw std::invalid_argument(
      "output must be one of 'sigmoid', 'softmax', 'identity', 'poisson'; got '" + name + "'");
}

template <typename T>
using ArrayRM = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The sigmoid output's elementwise terms over n contiguous z (double, or
// float for a float32 network: its packets hold twice the lanes and its exp
// and log are shorter polynomials), from one exponential, one logarithm and
// one division per element:
//   e = e^-|z| (in (0, 1]),  u = 1 + e,  r = 1 / u
//   h   = 1 / (1 + e^-z)  = r (z >= 0) or e r (z < 0)
//   c   = 1 - h           = e r (z >= 0) or r (z < 0)   (no cancellation)
//   l1p = log1p(e) = log(u) - ((u - 1) - e) r
// (log1p(e) is log(u) with the rounding of u corrected to first order: exact
// to a few ulps, and e itself where u rounds to 1). A tail shorter than a
// packet runs through a padded packet, so an element's bits never depend on
// its position.
template <typename T>
void sigmoid_terms(const T* z, T* h, T* c, T* l1p, Index n) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr Index W = sizeof(Packet) / sizeof(T);
  const Packet one = pset1<Packet>(T(1));
  const auto terms = [&](const Packet& zp, Packet& hp, Packet& cp, Packet& lp) {
    const Packet e = exp_packet(pnegate(pabs(zp))), u = padd(one, e), r = pdiv(one, u);
    const Packet er = pmul(e, r);
    const auto pos = mask_le(pset1<Packet>(T(0)), zp);
    lp = psub(log_packet(u), pmul(psub(psub(u, one), e), r));
    hp = blend(pos, r, er);
    cp = blend(pos, er, r);
  };
  Index i = 0;
  for (; i + W <= n; i += W) {
    Packet hp, cp, lp;
    terms(ploadu<Packet>(z + i), hp, cp, lp);
    pstoreu(h + i, hp);
    pstoreu(c + i, cp);
    pstoreu(l1p + i, lp);
  }
  if (i == n) return;
  alignas(64) T zt[W] = {}, ht[W], ct[W], lt[W];
  std::copy(z + i, z + n, zt);
  Packet hp, cp, lp;
  terms(pload<Packet>(zt), hp, cp, lp);
  pstore(ht, hp);
  pstore(ct, cp);
  pstore(lt, lp);
  std::copy(ht, ht + (n - i), h + i);
  std::copy(ct, ct + (n - i), c + i);
  std::copy(lt, lt + (n - i), l1p + i);
}

// Sigmoid output, cross-entropy loss.
//   forward:  h = 1 / (1 + e^-z)
//   backward: loss = sum_i w_i sum_k [y_ik softplus(-z_ik) + (1 - y_ik) softplus(z_ik)]
//             delta^(L)_ik = w_i (h_ik - y_ik)
// with softplus(+-z) = max(+-z, 0) + log1p(e^-|z|) (sigmoid_terms). Splitting
// the loss by target keeps the relative accuracy of a confidently right output
// (z = 50, y = 1 gives log1p(e^-50), not softplus(50) - 50 = 0). No step
// overflows: e^-|z| stays in (0, 1] (Eigen's packet exp gives about 1e-308
// below e^-709 instead of underflowing), so h is 1 / (1 + e) or e / (1 + e).
struct SigmoidOutput {
  template <typename T>
  static void forward(const T* z, T* h, Index K) {
    for (Index k = 0; k < K; ++k) {
      const double zk = z[k];
      h[k] = T(zk >= 0 ? 1.0 / (1.0 + std::exp(-zk)) : std::exp(zk) / (1.0 + std::exp(zk)));
    }
  }
  // The terms in T: a float network's in float (each within a few ulp of the
  // double terms rounded to float; the loss still sums in double). delta for
  // a label: w h_k, or -w c_k for the target (c = 1 - h without
  // cancellation); for targets y: w (h - y), subtracted in double.
  template <typename T>
  static double backward(const Data<T>& d, const Index* rows, Index b, Index K, T* z,
                         double* scratch) {
    const Index n = b * K, pn = padded<T>(n);  // scratch: (3, b, K) doubles
    T *h = reinterpret_cast<T*>(scratch), *c = h + pn, *l1p = h + 2 * pn;
    sigmoid_terms(z, h, c, l1p, n);
    double loss = 0;
    for (Index i = 0; i < b; ++i) {
      const Index r = rows[i];
      const T w = d.sample_weight ? d.sample_weight[r] : T(1);
      const T *h_i = h + i * K, *c_i = c + i * K, *l1p_i = l1p + i * K;
      T* zi = z + i * K;  // z^(L) in, delta^(L) out
      double row = 0;
      if (d.labels) {
        const std::int64_t label = checked_label(d, r, K);
        for (Index k = 0; k < K; ++k) {
          const double zk = k == label ? -double(zi[k]) : double(zi[k]);  // softplus(-z): target
          row += std::max(zk, 0.0) + double(l1p_i[k]);
          zi[k] = k == label ? -w * c_i[k] : w * h_i[k];
        }
      } else {
        const T* y = d.Y + r * K;
        for (Index k = 0; k < K; ++k) {
          const double yk = y[k], zk = zi[k];
          row += yk * std::max(-zk, 0.0) + (1.0 - yk) * std::max(zk, 0.0) + double(l1p_i[k]);
          zi[k] = w * T(double(h_i[k]) - yk);
        }
      }
      loss += double(w) * row;
    }
    return loss;
  }
};

// Softmax output, cross-entropy loss.
//   forward:  h_k = e^{z_k - lse},  lse = log sum_k e^{z_k}   (max-shifted)
//   backward: loss = sum_i w_i sum_k y_ik (lse_i - z_ik)
//             delta^(L)_ik = w_i (h_ik S_i - y_ik),  S_i = sum_k y_ik
// S_i = 1 for class labels and one-hot rows; for rows that do not sum to 1
// this is still dJ/dz (h - y alone would not be).
// With class labels (label_rows) the terms are computed in T, W rows
// at a time (a packet's lanes), free of cancellation: with m = max_k z_k
// (first at k*), e_k = e^{z_k - m}, s = sum_{k != k*} e_k and u = 1 + s,
//   lse - z_y = log1p(s) + (m - z_y)          (a confident row keeps log1p(s))
//   delta_k   = w e_k / u  (k != y),   delta_y = -w (sum_{k != y} e_k) / u
// (h_y - 1 never formed: z = (50, -50, 0), y = 0 gives -1.9e-22, not 0).
// col[0, W) = x[l K] for the lanes l < n, 0 for l >= n: one column of a
// block of n rows K wide, in a packet's lane order. AVX-512 gathers it: a
// column written by n scalar stores and read back as one vector waits for
// the stores to reach the cache (store forwarding fails), once per class.
template <typename T>
void gather_column(const T* x, Index K, Index n, T* col) {
  constexpr Index W = sizeof(typename Eigen::internal::packet_traits<T>::type) / sizeof(T);
#if defined(EIGEN_VECTORIZE_AVX512)
  if constexpr (std::is_same_v<T, double>) {
    const __m512i idx = _mm512_set_epi64(7 * K, 6 * K, 5 * K, 4 * K, 3 * K, 2 * K, K, 0);
    _mm512_storeu_pd(
        col, _mm512_mask_i64gather_pd(_mm512_setzero_pd(), static_cast<__mmask8>((1u << n) - 1),
                                      idx, x, sizeof(double)));
    return;
  } else {
    const int k = static_cast<int>(K);
    const __m512i idx = _mm512_set_epi32(15 * k, 14 * k, 13 * k, 12 * k, 11 * k, 10 * k, 9 * k,
                                         8 * k, 7 * k, 6 * k, 5 * k, 4 * k, 3 * k, 2 * k, k, 0);
    _mm512_storeu_ps(
        col, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), static_cast<__mmask16>((1u << n) - 1),
                                      idx, x, sizeof(float)));
    return;
  }
#endif
  for (Index l = 0; l < n; ++l) col[l] = x[l * K];
  for (Index l = n; l < W; ++l) col[l] = T(0);
}

struct SoftmaxOutput {
  template <typename T>
  static void forward(const T* z, T* h, Index K) {
    double mx = z[0];
    for (Index k = 1; k < K; ++k) mx = std::max(mx, double(z[k]));
    double sum = 0;
    for (Index k = 0; k < K; ++k) sum += std::exp(double(z[k]) - mx);
    const double lse = mx + std::log(sum);
    for (Index k = 0; k < K; ++k) h[k] = T(std::exp(double(z[k]) - lse));
  }
  // Rows [i0, i0 + W) of the block with class labels (lanes past b are
  // padding: z = 0, y = 0, w = 0); zt and et are (K, W) scratch, z^(L) in
  // row-major z is overwritten by delta^(L) (scratch of any alignment).
  // Returns sum_i w_i (lse_i - z_iy).
  template <typename T>
  static double label_rows(const Data<T>& d, const Index* rows, Index i0, Index b, Index K, T* z,
                           T* zt, T* et) {
    using namespace Eigen::internal;
    using Packet = typename packet_traits<T>::type;
    constexpr Index W = sizeof(Packet) / sizeof(T);
    const Index n = std::min(W, b - i0);
    alignas(64) T lab[W] = {}, wt[W] = {}, out[W];
    for (Index l = 0; l < n; ++l) {
      const Index r = rows[i0 + l];
      lab[l] = T(checked_label(d, r, K));  // exact: K <= 2^24 (backward)
      wt[l] = d.sample_weight ? d.sample_weight[r] : T(1);
    }
    for (Index k = 0; k < K; ++k)  // (n, K) rows -> (K, W) columns
      gather_column(z + i0 * K + k, K, n, zt + k * W);
    const Packet y = pload<Packet>(lab), zero = pzero(y), one = pset1<Packet>(T(1));
    Packet m = ploadu<Packet>(zt), kmax = zero;
    for (Index k = 1; k < K; ++k) {
      const Packet zk = ploadu<Packet>(zt + k * W);
      const auto gt = mask_lt(m, zk);
      m = blend(gt, zk, m);
      kmax = blend(gt, pset1<Packet>(T(k)), kmax);
    }
    const Packet lo = pset1<Packet>(std::log(std::numeric_limits<T>::min()));
    Packet s = zero, off_y = zero, zy = zero;
    for (Index k = 0; k < K; ++k) {
      // e^{z_k - m}, 0 below T's smallest normal (Eigen's pexp stops there)
      const Packet zk = ploadu<Packet>(zt + k * W), x = psub(zk, m);
      const Packet e = blend(mask_lt(x, lo), zero, exp_packet(x));
      const Packet kk = pset1<Packet>(T(k));
      const auto is_y = mask_eq(y, kk);
      pstoreu(et + k * W, e);
      s = padd(s, blend(mask_eq(kmax, kk), zero, e));
      off_y = padd(off_y, blend(is_y, zero, e));
      zy = blend(is_y, zk, zy);
    }
    const Packet u = padd(one, s), ru = pdiv(one, u), w = pload<Packet>(wt);
    // log1p(s) = log(u) with u's rounding corrected to first order
    const Packet l1p = psub(log_packet(u), pmul(psub(psub(u, one), s), ru));
    pstore(out, pmul(w, padd(l1p, psub(m, zy))));
    const Packet wr = pmul(w, ru), minus_off = pnegate(pmul(off_y, wr));
    for (Index k = 0; k < K; ++k) {
      const Packet dk =
          blend(mask_eq(y, pset1<Packet>(T(k))), minus_off, pmul(ploadu<Packet>(et + k * W), wr));
      pstoreu(et + k * W, dk);
      for (Index l = 0; l < n; ++l) z[(i0 + l) * K + k] = et[k * W + l];
    }
    double loss = 0;
    for (Index l = 0; l < n; ++l) loss += double(out[l]);
    return loss;
  }
  template <typename T>
  static double backward(const Data<T>& d, const Index* rows, Index b, Index K, T* z,
                         double* scratch) {
    if (d.labels && K <= (Index(1) << 24)) {  // scratch: (3, b, K) doubles, b >= 16,
                                              // hold 2 (K, W) Ts
      constexpr Index W = sizeof(typename Eigen::internal::packet_traits<T>::type) / sizeof(T);
      T *zt = reinterpret_cast<T*>(scratch), *et = zt + K * W;
      double loss = 0;
      for (Index i0 = 0; i0 < b; i0 += W) loss += label_rows(d, rows, i0, b, K, z, zt, et);
      return loss;
    }
    Eigen::Map<ArrayRM<T>> Z(z, b, K);
    Eigen::Map<ArrayRM<double>> zd(scratch, b, K), h(scratch + padded<double>(b * K), b, K);
    Eigen::Map<Eigen::ArrayXd> lse(scratch + 2 * padded<double>(b * K), b);
    zd = Z.template cast<double>();
    lse = zd.rowwise().maxCoeff();
    h = zd.colwise() - lse;
    exp_inplace(h.data(), b * K);  // e^{z - max}, in (0, 1]
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
};

// Identity output, squared-error loss (class labels are one-hot targets).
//   forward:  h = z
//   backward: loss = sum_i w_i 1/2 sum_k (z_ik - y_ik)^2,  delta^(L) = w (z - y)
struct IdentityOutput {
  template <typename T>
  static void forward(const T* z, T* h, Index K) {
    for (Index k = 0; k < K; ++k) h[k] = z[k];
  }
  template <typename T>
  static double backward(const Data<T>& d, const Index* rows, Index b, Index K, T* z, double*) {
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
};

// Exp output, half Poisson deviance loss (scikit-learn's MLPRegressor(loss="poisson")),
// for targets y >= 0 (class labels are one-hot targets):
//   forward:  h = e^z
//   backward: loss = sum_i w_i sum_k [xlogy(y_ik, y_ik) - y_ik z_ik - y_ik + h_ik]
//             (= y log(y / h) - y + h, the term y log y taken as 0 at y = 0)
//             delta^(L)_ik = w_i (h_ik - y_ik)
// h is vectorized in double through scratch; e^z overflows (inf, reported as
// a non-finite cost) only for z > 709.
struct PoissonOutput {
  template <typename T>
  static void forward(const T* z, T* h, Index K) {
    for (Index k = 0; k < K; ++k) h[k] = T(std::exp(double(z[k])));
  }
  template <typename T>
  static double backward(const Data<T>& d, const Index* rows, Index b, Index K, T* z,
                         double* scratch) {
    Eigen::Map<ArrayRM<T>> Z(z, b, K);
    Eigen::Map<ArrayRM<double>> zd(scratch, b, K), h(scratch + padded<double>(b * K), b, K);
    zd = Z.template cast<double>();
    h = zd.exp();
    double loss = 0;
    for (Index i = 0; i < b; ++i) {
      const Index r = rows[i];
      const T w = d.sample_weight ? d.sample_weight[r] : T(1);
      const std::int64_t label = d.labels ? checked_label(d, r, K) : -1;
      const T* y = d.Y ? d.Y + r * K : nullptr;
      T* zi = z + i * K;
      double row = 0;
      for (Index k = 0; k < K; ++k) {
        const double yk = y ? double(y[k]) : double(k == label);
        if (!(yk >= 0))
          throw std::invalid_argument("y[" + std::to_string(r) + ", " + std::to_string(k) +
                                      "] = " + std::to_string(yk) +
                                      " is negative; the poisson output needs y >= 0");
        const double hk = h(i, k);
        row += (yk > 0 ? yk * (std::log(yk) - zd(i, k)) : 0.0) - yk + hk;
        zi[k] = w * T(hk - yk);
      }
      loss += double(w) * row;
    }
    return loss;
  }
};

// f(unit) for the output unit named by output: the one dispatch.
template <typename F>
decltype(auto) with_output_unit(Output output, F&& f) {
  switch (output) {
    case Output::sigmoid:
      return f(SigmoidOutput{});
    case Output::softmax:
      return f(SoftmaxOutput{});
    case Output::poisson:
      return f(PoissonOutput{});
    case Output::identity:
      break;
  }
  return f(IdentityOutput{});
}

}  // namespace bpnet
