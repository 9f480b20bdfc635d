// bpnet core, floor 4 (beside workspace.hpp): width-specialized products for
// narrow layers. A product with an inner and an outer dimension of at most
// kNarrowWidth (a layer of 4-64 units) runs far below the FMA peak as a
// generic GEMM per row block: the GEMM packs both operands again for every
// block, and at depth 4-64 the packing costs as much as the product. Here the
// weights are packed once per call (PackedWeights) and the rows of the block
// stream through a register-blocked kernel that never packs them:
//   out (b, n_out) = in (b, n_in) M (n_in, n_out)
// with M = W^(l)^T for the forward pass (n_in = s_l, n_out = s_{l+1}) and
// M = W^(l) for the backward pass's deltas (n_in = s_{l+1}, n_out = s_l).
// Each output is sum_k in_k M_kj in the order k = 0 .. n_in - 1 (one FMA
// chain), whatever row block or thread computes it. Dimension letters: see
// shape.hpp.
#pragma once

#include <type_traits>
#include <vector>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "memory.hpp"
#include "shape.hpp"
#include "units.hpp"

namespace bpnet {

constexpr Index kNarrowWidth = 64;

// The narrow bound; BPNET_NARROW_WIDTH (read once; for bench/ experiments
// only, 0 = never) moves it.
inline Index narrow_width() {
  static const Index width = [] {
    const char* e = std::getenv("BPNET_NARROW_WIDTH");
    return e ? std::max<Index>(0, std::atoll(e)) : kNarrowWidth;
  }();
  return width;
}

// Whether the product with inner dimension n_in and outer n_out runs here.
inline bool is_narrow(Index n_in, Index n_out) {
  return n_in <= narrow_width() && n_out <= narrow_width();
}

template <typename T>
using PacketOf = typename Eigen::internal::packet_traits<T>::type;

template <typename T>
constexpr Index packet_size() {
  return static_cast<Index>(sizeof(PacketOf<T>) / sizeof(T));
}

// n rounded up to whole packets: a packed row's stride.
template <typename T>
constexpr Index packed_width(Index n) {
  return (n + packet_size<T>() - 1) / packet_size<T>() * packet_size<T>();
}

// The packed W^T of a forward product is read again for every 4 rows: it
// must stay in L2 (256 KiB: half of the smallest L2 among the hosts seen).
constexpr std::size_t kNarrowPackedBytes = 256 * 1024;

// The widest output of a layer with a wide input (s_l > the narrow bound)
// that still runs here. With 32 vector registers (AVX-512) any narrow output
// does ([400, 25]: the GEMM would pack X's block twice and W^T once per
// block, a quarter of its time). With 16 (AVX2 and below) the tiles are half
// as wide and the GEMM's kernel wins from 16 outputs on: on an AMD EPYC
// (Zen 3), two threads, m = 5000, s_l = 400, GEMM time / narrow time was
// 0.75-0.96 at s_{l+1} = 16-64 (0.74-0.82 at 25: case A, both dtypes; the
// SSE baseline build 0.79-0.81 / 0.88-0.91) and 1.07-1.09 at 12; 256 and
// 1024 inputs to 10 outputs: 0.98-1.07.
template <typename T>
constexpr Index kWideInputOutputs = sizeof(PacketOf<T>) == 64 ? kNarrowWidth : 12;

// Whether layer l's forward product and weight gradient run here: a narrow
// output (s_{l+1} <= the bound; at most kWideInputOutputs from a wide input)
// whose packed W^T stays in cache.
template <typename T>
bool narrow_layer(Index s0, Index s1) {
  return s1 <= narrow_width() && (s0 <= narrow_width() || s1 <= kWideInputOutputs<T>) &&
         static_cast<std::size_t>(s0 * packed_width<T>(s1)) * sizeof(T) <= kNarrowPackedBytes;
}

// The weights of one call packed for the narrow kernel: for layer l,
//   forward:  W^(l)^T (s_l, ld_f) with ld_f = s_{l+1} rounded up to whole packets
//             (narrow_layer: a narrow output)
//   backward: W^(l)   (s_{l+1}, ld_b) with ld_b = s_l rounded up (l >= 1;
//             is_narrow: both widths narrow)
// zero past the last column; an offset of -1 marks a product that is not narrow.
template <typename T>
class PackedWeights {
 public:
  static Index ld(Index n) { return packed_width<T>(n); }

  void pack(const Shape& shape, const T* theta, bool sparse) {
    const int layers = shape.n_layers() - 1;
    fwd_.assign(layers, -1);
    bwd_.assign(layers, -1);
    Index n = 0;
    for (int l = 0; l < layers; ++l) {
      const Index s0 = shape.size(l), s1 = shape.size(l + 1);
      if (narrow_layer<T>(s0, s1) && !(l == 0 && sparse)) fwd_[l] = n, n += padded<T>(s0 * ld(s1));
      if (is_narrow(s0, s1) && l >= 1) bwd_[l] = n, n += padded<T>(s1 * ld(s0));
    }
    buf_.resize(std::max<Index>(n, 1));
    for (int l = 0; l < layers; ++l) {
      const auto W = shape.weights(theta, l);  // (s_{l+1}, s_l)
      const Index s0 = shape.size(l), s1 = shape.size(l + 1);
      if (fwd_[l] >= 0) fill(buf_.data() + fwd_[l], W.transpose(), s0, s1);
      if (bwd_[l] >= 0) fill(buf_.data() + bwd_[l], W, s1, s0);
    }
  }
  // M for layer l's forward (W^T) or backward (W) product, or nullptr.
  const T* forward(int l) const { return fwd_[l] < 0 ? nullptr : buf_data() + fwd_[l]; }
  const T* backward(int l) const { return bwd_[l] < 0 ? nullptr : buf_data() + bwd_[l]; }
  std::size_t bytes() const { return static_cast<std::size_t>(buf_.size()) * sizeof(T); }

 private:
  template <typename Src>
  static void fill(T* dst, const Src& src, Index rows, Index cols) {
    const Index stride = ld(cols);
    for (Index r = 0; r < rows; ++r)
      for (Index c = 0; c < stride; ++c) dst[r * stride + c] = c < cols ? src(r, c) : T(0);
  }
  const T* buf_data() const { return const_cast<AlignedBuffer<T>&>(buf_).data(); }
  AlignedBuffer<T> buf_;
  std::vector<Index> fwd_, bwd_;
};

#if defined(__AVX2__)
// The AVX2 mask of a packet's first n lanes (each lane all ones or zero).
template <typename T>
inline __m256i first_lanes(Index n) {
  if constexpr (std::is_same_v<T, float>)
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  else
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
#endif

// dst[0, n) = the first n < P lanes of p: a masked store where the ISA has
// one (a row's last, partial packet; a copy through memory called memmove
// once per row).
template <typename T>
inline void store_first(T* dst, PacketOf<T> p, Index n) {
#if defined(__AVX512F__)
  if constexpr (sizeof(PacketOf<T>) == 64) {
    if constexpr (std::is_same_v<T, float>)
      _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << n) - 1), p);
    else
      _mm512_mask_storeu_pd(dst, static_cast<__mmask8>((1u << n) - 1), p);
    return;
  }
#endif
#if defined(__AVX2__)
  if constexpr (sizeof(PacketOf<T>) == 32) {
    if constexpr (std::is_same_v<T, float>)
      _mm256_maskstore_ps(dst, first_lanes<T>(n), p);
    else
      _mm256_maskstore_pd(dst, first_lanes<T>(n), p);
    return;
  }
#endif
  alignas(64) T tmp[sizeof(PacketOf<T>) / sizeof(T)];
  Eigen::internal::pstore(tmp, p);
  for (Index c = 0; c < n; ++c) dst[c] = tmp[c];
}

// The first n < P values at src as a packet, zero past them: a masked load
// where the ISA has one (never reads past src + n).
template <typename T>
inline PacketOf<T> load_first(const T* src, Index n) {
#if defined(__AVX512F__)
  if constexpr (sizeof(PacketOf<T>) == 64) {
    if constexpr (std::is_same_v<T, float>)
      return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), src);
    else
      return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), src);
  }
#endif
#if defined(__AVX2__)
  if constexpr (sizeof(PacketOf<T>) == 32) {
    if constexpr (std::is_same_v<T, float>)
      return _mm256_maskload_ps(src, first_lanes<T>(n));
    else
      return _mm256_maskload_pd(src, first_lanes<T>(n));
  }
#endif
  alignas(64) T tmp[sizeof(PacketOf<T>) / sizeof(T)] = {};
  for (Index c = 0; c < n; ++c) tmp[c] = src[c];
  return Eigen::internal::pload<PacketOf<T>>(tmp);
}

// R rows x J packets of out, columns [j0 P, (j0 + J) P): the accumulators
// stay in registers for the whole depth n_in. Row r of the tile is row
// row0 + r of the product (the epilogue's row), out points at its row 0. The
// epilogue works on a local copy (its running sums stay in registers for the
// tile) and sees each column packet's R rows at once.
template <typename T, int R, int J, typename Epilogue>
void narrow_tile(const T* in, Index n_in, const T* M, Index ld, Index j0, T* out, Index n_out,
                 Index row0, Epilogue& epilogue) {
  using namespace Eigen::internal;
  using Packet = PacketOf<T>;
  constexpr Index P = packet_size<T>();
  Packet acc[J][R];
  for (int j = 0; j < J; ++j)
    for (int r = 0; r < R; ++r) acc[j][r] = pset1<Packet>(T(0));
  const T* m = M + j0 * P;
  for (Index k = 0; k < n_in; ++k, m += ld) {
    Packet w[J];
    for (int j = 0; j < J; ++j) w[j] = pload<Packet>(m + j * P);
    for (int r = 0; r < R; ++r) {
      const Packet a = pset1<Packet>(in[r * n_in + k]);
      for (int j = 0; j < J; ++j) acc[j][r] = pmadd(a, w[j], acc[j][r]);
    }
  }
  Epilogue e = epilogue;
  for (int j = 0; j < J; ++j) {
    const Index col = (j0 + j) * P;
    e.template column<R>(acc[j], row0, col);
    for (int r = 0; r < R; ++r) {
      T* dst = out + r * n_out + col;
      if (col + P <= n_out)
        pstoreu(dst, acc[j][r]);
      else  // the last, partial packet of a row
        store_first(dst, acc[j][r], n_out - col);
    }
  }
  epilogue = e;
}

// A product at most this many packets wide runs 8 rows per tile (8 J
// accumulators and J loads still fit the registers): twice the FMA chains of
// 4 rows to cover the FMA's latency, half the epilogues' overhead per row,
// and M (read whole for every tile: a [400, 25] layer's 77 KiB from L2) read
// half as often.
template <typename T>
constexpr int kTallPackets = sizeof(PacketOf<T>) == 64 ? 3 : 1;

// R rows of out, its first np packets of columns: tiles of J packets, the
// last one narrower.
template <typename T, int R, typename Epilogue>
void narrow_rows(const T* in, Index n_in, const T* M, Index ld, Index np, T* out, Index n_out,
                 Index row0, Epilogue& epilogue) {
  // 32 vector registers with AVX-512, 16 below it: J R accumulators, J loads
  // (R = 8: at most kTallPackets<T> packets, see narrow_product)
  constexpr int J = R > 4 ? kTallPackets<T> : sizeof(PacketOf<T>) == 64 ? 4 : 2;
  Index j0 = 0;
  for (; j0 + J <= np; j0 += J)
    narrow_tile<T, R, J>(in, n_in, M, ld, j0, out, n_out, row0, epilogue);
  if constexpr (J > 3)  // three packets left (dot_columns took a fourth's few columns)
    for (; j0 + 3 <= np; j0 += 3)
      narrow_tile<T, R, 3>(in, n_in, M, ld, j0, out, n_out, row0, epilogue);
  if constexpr (J > 2)  // two packets left: one tile, one pass over the rows
    for (; j0 + 2 <= np; j0 += 2)
      narrow_tile<T, R, 2>(in, n_in, M, ld, j0, out, n_out, row0, epilogue);
  if constexpr (J > 1)
    for (; j0 < np; ++j0) narrow_tile<T, R, 1>(in, n_in, M, ld, j0, out, n_out, row0, epilogue);
}

// An epilogue sees the R rows' packets of one column packet of a tile,
// v[r] = out[row0 + r, col .. col + P), and rewrites them in place on their
// way out: column<R>(v, row0, col).

// The product alone: each finished packet stored as it is.
struct NoEpilogue {
  template <int R, typename Packet>
  void column(Packet (&)[R], Index, Index) const {}
};

// A layer's forward epilogue, while a column packet of z is in registers:
//   z += b (the bias, zero past n_out);  check += 0 z (NaN once some z is not
//   finite);  a = g(z) for a hidden layer (Unit::packet: the bits of
//   Unit::forward over the stored block).
template <typename T, typename Unit>
struct BiasUnitEpilogue {
  using Packet = PacketOf<T>;
  const T* bias;
  Index n_out;
  bool hidden;
  Packet check = Eigen::internal::pset1<Packet>(T(0));
  template <int R>
  void column(Packet (&v)[R], Index, Index col) {
    using namespace Eigen::internal;
    constexpr Index P = packet_size<T>();
    const Packet b =
        col + P <= n_out ? ploadu<Packet>(bias + col) : load_first(bias + col, n_out - col);
    for (int r = 0; r < R; ++r) {
      v[r] = padd(v[r], b);
      check = padd(check, pmul(v[r], pset1<Packet>(T(0))));
    }
    if (hidden)
      for (int r = 0; r < R; ++r) v[r] = Unit::packet(v[r]);
  }
};

// A backward product's epilogue, while a column packet of delta W (rows
// row0 .. row0 + R - 1) is in registers: delta = (delta W) .* g'(z)
// (Unit::backward, from a = g(z) (b, n)) and colsum += delta row by row
// (zeroed by the caller). The product's tiles reach a column's rows in order
// (row tiles ascending, the rows of a tile in order), so colsum has
// backward_colsum's bits.
template <typename T, typename Unit>
struct GPrimeColsumEpilogue {
  using Packet = PacketOf<T>;
  const T* a;
  Index n;
  T* colsum;
  template <int R>
  void column(Packet (&v)[R], Index row0, Index col) {
    using namespace Eigen::internal;
    constexpr Index P = packet_size<T>();
    const T* ar = a + row0 * n + col;
    T* cs = colsum + col;
    if (col + P <= n) {
      Packet sum = ploadu<Packet>(cs);
      for (int r = 0; r < R; ++r) {
        v[r] = Unit::backward(v[r], ploadu<Packet>(ar + r * n));
        sum = padd(sum, v[r]);
      }
      pstoreu(cs, sum);
      return;
    }
    Packet sum = load_first(cs, n - col);
    for (int r = 0; r < R; ++r) {
      v[r] = Unit::backward(v[r], load_first(ar + r * n, n - col));
      sum = padd(sum, v[r]);
    }
    store_first(cs, sum, n - col);
  }
};

// The columns of a forward product past its last whole packet that run as
// dot products (dot_columns) rather than in a packet of mostly unused lanes:
// r = n_out mod P when there is a whole packet before them and r <= P / 4
// (25 units in float64: 1 column, not a fourth packet of 8 lanes for 1).
template <typename T>
Index n_dot_columns(Index n_out) {
  constexpr Index P = packet_size<T>();
  const Index r = n_out % P;
  return n_out > P && r <= P / 4 ? r : 0;
}

// Columns [c0, n_out) of out's R rows (R <= 8), each the dot product of the
// row of in with the row j of W (rows ldW apart, n_in values each: W^(l),
// theta's layout), in packets along n_in (lane q sums k = q mod P in order,
// the lanes added by predux; a masked last packet); the r < P values of a
// row go through `epilogue` as one packet of r lanes.
template <typename T, int R, typename Epilogue>
void dot_columns(const T* in, Index n_in, const T* W, Index ldW, T* out, Index n_out, Index c0,
                 Index row0, Epilogue& epilogue) {
  using namespace Eigen::internal;
  using Packet = PacketOf<T>;
  constexpr Index P = packet_size<T>();
  const Index r = n_out - c0, tail = n_in % P;
  alignas(64) T z[R][P] = {};
  for (Index j = 0; j < r; ++j) {
    const T* w = W + (c0 + j) * ldW;
    Packet acc[R];
    for (int q = 0; q < R; ++q) acc[q] = pzero(Packet{});
    Index k = 0;
    for (; k + P <= n_in; k += P) {
      const Packet wk = ploadu<Packet>(w + k);
      for (int q = 0; q < R; ++q) acc[q] = pmadd(ploadu<Packet>(in + q * n_in + k), wk, acc[q]);
    }
    if (tail) {
      const Packet wk = load_first(w + k, tail);
      for (int q = 0; q < R; ++q) acc[q] = pmadd(load_first(in + q * n_in + k, tail), wk, acc[q]);
    }
    for (int q = 0; q < R; ++q) z[q][j] = predux(acc[q]);
  }
  Packet v[R];
  for (int q = 0; q < R; ++q) v[q] = pload<Packet>(z[q]);
  epilogue.template column<R>(v, row0, c0);
  for (int q = 0; q < R; ++q) store_first(out + q * n_out + c0, v[q], r);
}

// out (b, n_out) = in (b, n_in) M (n_in, ld), all row-major and contiguous;
// out is overwritten, each packet through `epilogue` on its way out. M packed
// by PackedWeights (zero past n_out). With W (M^T in theta's layout, rows ldW
// apart) the n_dot_columns last columns are dot products instead.
template <typename T, typename Epilogue = NoEpilogue>
void narrow_product(const T* in, Index b, Index n_in, const T* M, T* out, Index n_out,
                    Epilogue&& epilogue = Epilogue{}, const T* W = nullptr, Index ldW = 0) {
  const Index ld = PackedWeights<T>::ld(n_out);
  const Index n_dot = W ? n_dot_columns<T>(n_out) : 0;
  const Index np = (n_out - n_dot + packet_size<T>() - 1) / packet_size<T>();
  Index i = 0;
  // rows [i, i + R) at a time while R more are left
  auto rows = [&](auto R_) {
    constexpr int R = decltype(R_)::value;
    for (; i + R <= b; i += R) {
      narrow_rows<T, R>(in + i * n_in, n_in, M, ld, np, out + i * n_out, n_out, i, epilogue);
      if (n_dot)
        dot_columns<T, R>(in + i * n_in, n_in, W, ldW, out + i * n_out, n_out, n_out - n_dot, i,
                          epilogue);
    }
  };
  if (np <= kTallPackets<T>) rows(std::integral_constant<int, 8>{});
  rows(std::integral_constant<int, 4>{});
  rows(std::integral_constant<int, 1>{});
}

// Whether a narrow layer's forward pass applies its bias and unit in the
// tile's registers (the bits are the same either way). The output layer's
// bias always. A hidden unit runs on whole packets of each row there, so a
// layer of n outputs wastes ld(n) - n lanes of it per row (a 4-unit layer in
// float32: 12 of 16); in float32 with up to a quarter wasted the saved passes
// over the block win (one thread, alternating builds: [4, 32, 16, 4] tanh
// -4 %, [64, 25, 10] -2 %; a 4-unit layer fused was +6 %). In double the
// unit's many registers next to the tile's accumulators cost more than the
// passes (N +2 %, B +1 %): not fused.
template <typename T>
bool fuse_epilogue(Index n, bool hidden) {
  return !hidden || (std::is_same_v<T, float> && 4 * n >= 3 * PackedWeights<T>::ld(n));
}

// The forward pass of a narrow layer: out = g(in M + 1 b^T) (g for a hidden
// layer only), bias and unit applied in registers. Returns false if some
// pre-activation is not finite (as bias_activate).
template <typename T>
bool narrow_forward(const T* in, Index b, Index n_in, const T* M, T* out, Index n_out,
                    const T* bias, Activation act, bool hidden, const T* W, Index ldW) {
  return with_hidden_unit(act, [&](auto unit) {
    BiasUnitEpilogue<T, decltype(unit)> epilogue{bias, n_out, hidden};
    narrow_product(in, b, n_in, M, out, n_out, epilogue, W, ldW);
    return Eigen::internal::predux(epilogue.check) == T(0);
  });
}

// The weight gradient of a narrow layer (narrow_layer; the caller keeps
// layers with n0 < P, a packet mostly empty, on the GEMM):
//   dW (n1, n0) (=|+=) delta^T (n1, b) a (b, n0)
// with delta (b, n1) and a (b, n0) row-major and contiguous, and dW's rows
// ldw apart (theta's layout: each row after its bias). A generic GEMM packs
// both operands for every block; here R rows x J packets of dW stay in
// registers while the b rows stream through once per tile. Each element is
// one FMA chain over i = 0 .. b-1 in order, then stored (first) or added.
template <typename T, int R, int J, bool Partial>
void narrow_dw_tile(const T* delta, Index b, Index n1, const T* a, Index n0, Index r0, Index j0,
                    T* dW, Index ldw, bool first) {
  using namespace Eigen::internal;
  using Packet = PacketOf<T>;
  constexpr Index P = packet_size<T>();
  const Index c0 = j0 * P, last = n0 - (c0 + (J - 1) * P);  // values in the last packet
  Packet acc[J][R];  // [J][R]: GCC 12 keeps [R][J] of 4 x 4 on the stack in the loop
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < J; ++j) acc[j][r] = pset1<Packet>(T(0));
  // row i of a and delta into the sums. With Partial the last packet's lanes
  // past `last` are read whole (their sums are never stored) from the rows
  // after row i, as long as they lie inside a; the last rows' are loaded
  // masked (a masked load inside the loop makes GCC 12 store every
  // accumulator each row)
  const auto row = [&](Index i, bool masked) {
    const T* ai = a + c0 + i * n0;
    const T* di = delta + r0 + i * n1;
    Packet w[J];
    for (int j = 0; j + 1 < J; ++j) w[j] = ploadu<Packet>(ai + j * P);
    w[J - 1] = masked ? load_first(ai + (J - 1) * P, last) : ploadu<Packet>(ai + (J - 1) * P);
    for (int r = 0; r < R; ++r) {
      const Packet d = pset1<Packet>(di[r]);
      for (int j = 0; j < J; ++j) acc[j][r] = pmadd(d, w[j], acc[j][r]);
    }
  };
  // row i reads `over` values past its end: inside a while (b - 1 - i) n0 >= over
  const Index over = Partial ? c0 + J * P - n0 : 0;
  const Index full = Partial ? std::max<Index>(0, b - (over + n0 - 1) / n0) : b;
  for (Index i = 0; i < full; ++i) row(i, false);
  for (Index i = full; i < b; ++i) row(i, true);
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < J; ++j) {
      T* dst = dW + (r0 + r) * ldw + c0 + j * P;
      Packet v = acc[j][r];
      if (!Partial || j + 1 < J) {
        if (!first) v = padd(ploadu<Packet>(dst), v);
        pstoreu(dst, v);
      } else {
        if (!first) v = padd(load_first(dst, last), v);
        store_first(dst, v, last);
      }
    }
}

// f(std::integral_constant<int, rows>) for 1 <= rows <= R: a run-time row
// count to a tile's compile-time one.
template <int R, typename F>
void with_rows(Index rows, F&& f) {
  if constexpr (R > 1)
    if (rows < R) return with_rows<R - 1>(rows, f);
  f(std::integral_constant<int, R>{});
}

// All n0 columns of dW, in column tiles of Jmax packets and then single
// packets, each tile over all n1 rows of dW in row tiles of at most Rmax
// rows, as even as they come (25 rows: 5 x 5, not 6 x 4 + 1): a tile's
// columns of `a` (b rows of J packets) are read by every row tile in turn
// while they are still in cache (a [400, 25] layer's block of X does not fit
// L2; a tile's 32 columns of it do). Each row of a tile takes J loads of `a`
// for R x J FMAs: on a core with two 512-bit FMA pipes (Intel Xeon) R = 4
// took 1.3x the forward tile's time per FMA, R <= 6 1.2x; R = 6 holds 24
// accumulators + 4 packets of `a` + 1 broadcast in the 32 registers. Every element's chain
// runs over the b rows in order whatever the tiles: the same bits.
template <typename T>
void narrow_dw(const T* delta, Index b, Index n1, const T* a, Index n0, T* dW, Index ldw,
               bool first) {
  constexpr bool wide = sizeof(PacketOf<T>) == 64;
  constexpr int Rmax = wide ? 6 : 4, Jmax = wide ? 4 : 2;
  const Index np = (n0 + packet_size<T>() - 1) / packet_size<T>();
  const bool partial = n0 % packet_size<T>() != 0;  // only the row's last packet is
  auto column_tile = [&](auto J_, Index j0) {
    constexpr int J = decltype(J_)::value;
    const bool last = partial && j0 + J == np;
    auto tile = [&](auto R_, Index r0) {
      constexpr int R = decltype(R_)::value;
      if (last)
        narrow_dw_tile<T, R, J, true>(delta, b, n1, a, n0, r0, j0, dW, ldw, first);
      else
        narrow_dw_tile<T, R, J, false>(delta, b, n1, a, n0, r0, j0, dW, ldw, first);
    };
    const Index tiles = (n1 + Rmax - 1) / Rmax;
    for (Index t = 0, r0 = 0; t < tiles; ++t) {
      const Index rows = (n1 - r0) / (tiles - t);  // 1 .. Rmax
      with_rows<Rmax>(rows, [&](auto R_) { tile(R_, r0); });
      r0 += rows;
    }
  };
  Index j0 = 0;
  for (; j0 + Jmax <= np; j0 += Jmax) column_tile(std::integral_constant<int, Jmax>{}, j0);
  for (; j0 < np; ++j0) column_tile(std::integral_constant<int, 1>{}, j0);
}

}  // namespace bpnet
