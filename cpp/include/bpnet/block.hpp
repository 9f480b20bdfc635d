// bpnet core, floor 5: one block of rows, and one leaf of blocks.
//   forward_block:  A^(l+1) = g(A^(l) W^(l)^T + 1 b^(l)^T), logits in A^(L-1)
//   backward_block: the weight gradient sums and deltas, layer by layer down
//   accumulate_leaf: a leaf's rows in equal blocks, its sums into one buffer
// The sparse first layer has its own forward/backward pair. Kernels take
// pointers and shapes and know nothing of threads. Dimension letters: see
// shape.hpp.
#pragma once

#include <new>

#include "units.hpp"
#include "workspace.hpp"

namespace bpnet {

// Points A[0] at rows [r0, r0 + b) of the examples: a view of X when they
// are contiguous in X (no selection, or a selection's run of consecutive
// rows), else a gathered copy in the block buffer. The same values either
// way, so the same bits.
template <typename T>
void load_block(const Shape& shape, const Data<T>& d, Index r0, Index b, BlockViews<T>& v) {
  const Index n = shape.n_inputs();
  v.r0 = r0;
  if (d.csr.active()) {  // the first layer reads the CSR rows itself
    for (Index i = 0; i < b; ++i) v.r[i] = d.rows ? checked_row(d, r0 + i) : r0 + i;
  } else if (!d.rows) {
    for (Index i = 0; i < b; ++i) v.r[i] = r0 + i;
    new (&v.A[0]) RowMap<T>(const_cast<T*>(d.X) + r0 * n, b, n, Eigen::OuterStride<>(n));
  } else {
    // a selection: a view where the block's rows are a run r, r + 1, ... (an
    // unshuffled mini-batch), else a copy
    bool run = true;
    for (Index i = 0; i < b; ++i) {
      v.r[i] = checked_row(d, r0 + i);
      run = run && v.r[i] == v.r[0] + i;
    }
    if (run) {
      new (&v.A[0]) RowMap<T>(const_cast<T*>(d.X) + v.r[0] * n, b, n, Eigen::OuterStride<>(n));
      return;
    }
    for (Index i = 0; i < b; ++i) std::copy_n(d.X + v.r[i] * n, n, v.gather + i * n);
    new (&v.A[0]) RowMap<T>(v.gather, b, n, Eigen::OuterStride<>(n));
  }
}

// Sparse first layer, forward: z (b, s_1) = X_block W^(0)^T, row i of z the
// sum over the nonzeros (j, x) of example row r_i of x W_U[slot[j], :]
// (W_U: the touched rows of W^(0)^T, see touched_columns).
template <typename T>
void sparse_forward(const Csr<T>& csr, const Index* rows, Index b, const T* WU, const Index* slot,
                    Index s1, T* z) {
  for (Index i = 0; i < b; ++i) {
    ArrayMap<T> zr(z + i * s1, s1);
    zr.setZero();
    csr.for_row(rows[i], [&](Index j, T x) { zr += x * ConstArrayMap<T>(WU + slot[j] * s1, s1); });
  }
}

// Sparse first layer, backward: dW_U (n_U, s_1) += X_block^T delta^(1) over
// the touched columns, i.e. dW_U[slot[j], :] += x delta_i for each nonzero
// (j, x) of example row r_i.
template <typename T>
void sparse_backward(const Csr<T>& csr, const Index* rows, Index b, const T* delta,
                     const Index* slot, Index s1, T* dWU) {
  for (Index i = 0; i < b; ++i) {
    ConstArrayMap<T> di(delta + i * s1, s1);
    csr.for_row(rows[i], [&](Index j, T x) { ArrayMap<T>(dWU + slot[j] * s1, s1) += x * di; });
  }
}

// Over the GEMM's output z (b, n) while the block is in cache (block_rows
// sizes it): z += 1 b^T row by row, then, flat over the block's b n values
// (whole packets, however narrow the layer), the finite check and a = g(z)
// for a hidden layer (in place). Returns false, before g, if some
// pre-activation is not finite (0 * z is NaN there).
template <typename T>
bool bias_activate(T* z, Index b, Index n, const T* bias, Activation act, bool hidden) {
  ConstArrayMap<T> bv(bias, n);
  for (Index i = 0; i < b; ++i) ArrayMap<T>(z + i * n, n) += bv;
  ArrayMap<T> all(z, b * n);  // the block, flat: the unit runs over whole packets
  if ((all * T(0)).sum() != T(0)) return false;
  if (hidden) with_hidden_unit(act, [&](auto unit) { unit.forward(all); });
  return true;
}

// Forward one block of b rows: A[l+1] = g(A[l] W^(l)^T + 1 b^(l)^T) for the
// hidden layers; the last layer A[L-1] holds the logits z^(L) (b, K), not yet
// passed through the output function. biases: see gather_biases. Returns the
// first layer (1 .. L-1) whose pre-activations are not all finite, or 0.
template <typename T>
int forward_block(const Shape& shape, const T* theta, const T* biases, Activation act, Index b,
                  BlockViews<T>& v, const Data<T>& d) {
  const int L = shape.n_layers();
  for (int l = 0; l + 1 < L; ++l) {
    auto z = v.A[l + 1].topRows(b);
    const T* M = v.packed ? v.packed->forward(l) : nullptr;  // W^(l)^T, narrow layers
    const Index n = shape.size(l + 1);
    const bool hidden = l + 2 < L;
    bool finite;
    const T* W = shape.weights(theta, l).data();  // W^(l): its rows s_l + 1 apart
    if (M && fuse_epilogue<T>(n, hidden)) {       // bias and unit in registers
      finite = narrow_forward(v.A[l].data(), b, shape.size(l), M, z.data(), n, biases, act, hidden,
                              W, shape.size(l) + 1);
    } else {
      if (M)
        narrow_product(v.A[l].data(), b, shape.size(l), M, z.data(), n, NoEpilogue{}, W,
                       shape.size(l) + 1);
      else if (l == 0 && d.csr.active())
        sparse_forward(d.csr, v.r.data(), b, v.W0T, v.slot, n, z.data());
      else
        z.noalias() = v.A[l].topRows(b) * shape.weights(theta, l).transpose();
      finite = bias_activate(z.data(), b, n, biases, act, hidden);
    }
    if (!finite) return l + 1;
    biases += shape.size(l + 1);
  }
  return 0;
}

// One pass over a block's delta (b, n), row-major, a packet of columns at a
// time (up to 4 packets of a row in registers):
//   delta .*= g'(z)  (Unit::backward, from a = g(z) (b, n); IdentityUnit: none)
//   colsum (n,) = sum_i delta_i  (overwritten: the next bias gradient)
// each column summed over i = 0 .. b-1 in order (any split of the columns
// gives the same bits); a row's last partial packet is loaded and stored
// masked. a may be null for IdentityUnit.
template <typename T, typename Unit>
void backward_colsum(Unit, T* delta, const T* a, Index b, Index n, T* colsum) {
  using namespace Eigen::internal;
  using Packet = PacketOf<T>;
  constexpr Index P = packet_size<T>();
  for (Index c0 = 0; c0 < n; c0 += 4 * P) {
    // J packets of columns from c0; the last holds `last` of them (P if full)
    const Index J = std::min<Index>(4, (n - c0 + P - 1) / P);
    const Index last = std::min<Index>(P, n - (c0 + (J - 1) * P));
    Packet acc[4] = {pzero(Packet{}), pzero(Packet{}), pzero(Packet{}), pzero(Packet{})};
    for (Index i = 0; i < b; ++i) {
      T* dp = delta + i * n + c0;
      const T* ap = a ? a + i * n + c0 : nullptr;
      for (Index j = 0; j < J; ++j) {
        const bool full = j + 1 < J || last == P;
        Packet d = full ? ploadu<Packet>(dp + j * P) : load_first(dp + j * P, last);
        if constexpr (!std::is_same_v<Unit, IdentityUnit>) {
          const Packet av = full ? ploadu<Packet>(ap + j * P) : load_first(ap + j * P, last);
          d = Unit::backward(d, av);
          if (full)
            pstoreu(dp + j * P, d);
          else
            store_first(dp + j * P, d, last);
        }
        acc[j] = padd(acc[j], d);
      }
    }
    for (Index j = 0; j < J; ++j) {
      if (j + 1 < J || last == P)
        pstoreu(colsum + c0 + j * P, acc[j]);
      else
        store_first(colsum + c0 + j * P, acc[j], last);
    }
  }
}

// colsum (n,) = sum_i delta_i over the rows of delta (b, n); overwritten.
// Where n divides a packet (an output layer of 1, 2, 4 or 8 units) the block
// is summed flat, a packet of P / n rows at a time: lane q of the sum holds
// column q mod n, over rows i = q div n (mod P / n) in order; the lanes of
// a column are then added in lane order (fixed by b and n alone: the same
// bits for any thread count). Otherwise backward_colsum's pass.
template <typename T>
void column_sums(const T* delta, Index b, Index n, T* colsum) {
  using namespace Eigen::internal;
  using Packet = PacketOf<T>;
  constexpr Index P = packet_size<T>();
  if (n >= P || P % n != 0) {
    backward_colsum(IdentityUnit{}, const_cast<T*>(delta), static_cast<const T*>(nullptr), b, n,
                    colsum);
    return;
  }
  const Index total = b * n;
  Packet acc = pzero(Packet{});
  Index i = 0;
  for (; i + P <= total; i += P) acc = padd(acc, ploadu<Packet>(delta + i));
  if (i < total) acc = padd(acc, load_first(delta + i, total - i));
  alignas(64) T lanes[P];
  pstore(lanes, acc);
  for (Index c = 0; c < n; ++c) {
    T sum = lanes[c];
    for (Index q = c + n; q < P; q += n) sum += lanes[q];
    colsum[c] = sum;
  }
}

// delta .*= g'(z) and colsum = its column sums (backward_colsum), for the
// hidden unit named by act.
template <typename T>
void gprime_colsum(Activation act, T* delta, const T* a, Index b, Index n, T* colsum) {
  with_hidden_unit(act, [&](auto unit) { backward_colsum(unit, delta, a, b, n, colsum); });
}

// x (=|+=) y: overwritten for a leaf's first block, accumulated after it.
template <typename X, typename Y>
void set_or_add(X&& x, const Y& y, bool first) {
  if (first)
    x = y;
  else
    x += y;
}

// The gradient of layer 0 for a sparse X, from delta^(1) (b, s_1): in
// cost_grad the rows of delta^(1) are kept by call position (v.delta1_rows, for
// sum_columns), else dW_U is summed into the leaf's scratch; db^(0) from
// colsum (at offset(0) of the leaf's buffer in cost_grad, see
// BlockViews::transposed0).
template <typename T>
void sparse_layer0_backward(const Shape& shape, const Data<T>& d, Index b, const T* delta,
                            BlockViews<T>& v, T* grad, bool first) {
  const Index s1 = shape.size(1);
  if (v.delta1_rows)
    std::copy_n(delta, b * s1, v.delta1_rows + v.r0 * s1);
  else
    sparse_backward(d.csr, v.r.data(), b, delta, v.slot, s1, v.dW0T);
  Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>> cs(v.colsum, s1);
  if (v.transposed0)
    set_or_add(Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>(grad + shape.offset(0), s1), cs,
               first);
  else
    set_or_add(shape.bias(grad, 0), cs, first);
}

// Backward one block of b rows, from delta^(L) (b, K) in A[L-1] and its
// column sums in colsum, for l = L-2 .. 0:
//   dW^(l) (=|+=) delta^(l+1)^T A^(l)               (s_{l+1}, s_l)
//   db^(l) (=|+=) colsum = delta^(l+1)^T 1          (s_{l+1},)
//   delta^(l) = (delta^(l+1) W^(l)) .* g'(z^(l))    (b, s_l), for l >= 1
// into grad (P,): overwritten when `first`, else accumulated.
template <typename T>
void backward_block(const Shape& shape, const T* theta, const Data<T>& d, Activation act, Index b,
                    BlockViews<T>& v, T* grad, bool first) {
  const int L = shape.n_layers();
  const Index K = shape.n_outputs();
  RowMap<T> delta(v.A[L - 1].data(), b, K, Eigen::OuterStride<>(K));
  T* spare[2] = {v.delta0, v.delta1};
  for (int l = L - 2; l >= 0; --l) {
    auto a = v.A[l].topRows(b);
    if (l == 0 && d.csr.active()) {
      sparse_layer0_backward(shape, d, b, delta.data(), v, grad, first);
    } else {
      auto dW = shape.weights(grad, l);
      Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>> cs(v.colsum, shape.size(l + 1));
      const Index s0 = shape.size(l), s1 = shape.size(l + 1);
      if (narrow_layer<T>(s0, s1) && s0 >= packet_size<T>()) {
        narrow_dw(delta.data(), b, s1, a.data(), s0, dW.data(), s0 + 1, first);
      } else if (s0 < packet_size<T>() && s1 >= packet_size<T>() && s1 <= kNarrowWidth) {
        // fewer inputs than a packet (a 4-feature X): dW^T (s0, s1) = a^T delta
        // with the roles swapped (packets along s1), then added transposed
        alignas(64) T dWT[kNarrowWidth * packet_size<T>()];
        narrow_dw(a.data(), b, s0, delta.data(), s1, dWT, s1, true);
        for (Index r = 0; r < s1; ++r)
          for (Index c = 0; c < s0; ++c)
            dW(r, c) = first ? dWT[c * s1 + r] : dW(r, c) + dWT[c * s1 + r];
      } else if (first)
        dW.noalias() = delta.transpose() * a;
      else
        dW.noalias() += delta.transpose() * a;
      set_or_add(shape.bias(grad, l), cs, first);
    }
    if (l == 0) break;
    RowMap<T> next(spare[l % 2], b, shape.size(l), Eigen::OuterStride<>(shape.size(l)));
    if (const T* M = v.packed ? v.packed->backward(l) : nullptr) {  // W^(l), narrow layers
      // g' and the column sums applied in the tile's registers
      std::fill_n(v.colsum, shape.size(l), T(0));
      with_hidden_unit(act, [&](auto unit) {
        narrow_product(delta.data(), b, shape.size(l + 1), M, next.data(), shape.size(l),
                       GPrimeColsumEpilogue<T, decltype(unit)>{a.data(), shape.size(l), v.colsum});
      });
    } else {
      next.noalias() = delta * shape.weights(theta, l);
      gprime_colsum<T>(act, next.data(), a.data(), b, shape.size(l), v.colsum);
    }
    new (&delta) RowMap<T>(next.data(), b, shape.size(l), Eigen::OuterStride<>(shape.size(l)));
  }
}

// The sums of one block of b rows starting at example r0: forward, the output
// unit's backward (delta^(L) = dJ/dz over the logits, loss in double), then
// backward_block. Adds the block's summed sample weight to `weight`; returns
// its weighted loss sum. Sets bad_layer on non-finite pre-activations (the
// caller reports it).
template <typename T>
double accumulate_block(const Shape& shape, const T* theta, const T* biases, const Data<T>& d,
                        Activation act, Output output, Index r0, Index b, BlockViews<T>& v, T* grad,
                        bool first, double& weight, int& bad_layer) {
  const Index K = shape.n_outputs();
  load_block(shape, d, r0, b, v);
  bad_layer = forward_block(shape, theta, biases, act, b, v, d);
  if (bad_layer) return 0;
  T* zL = v.A[shape.n_layers() - 1].data();
  const double loss = with_output_unit(
      output, [&](auto unit) { return unit.backward(d, v.r.data(), b, K, zL, v.scratch); });
  if (d.sample_weight)
    for (Index i = 0; i < b; ++i) weight += d.sample_weight[v.r[i]];
  else
    weight += double(b);
  column_sums(zL, b, K, v.colsum);
  backward_block(shape, theta, d, act, b, v, grad, first);
  return loss;
}

// Sums of one leaf, rows [r0, r1) of the examples, in blocks of at most B
// rows (the leaf split into equal blocks): grad (P,) overwritten with
// sum_i w_i dJ_i/dtheta; returns sum_i w_i loss_i, sets `weight` to sum_i w_i.
// stop() is asked before each block; when it says true the leaf is abandoned.
template <typename T, typename Stop>
double accumulate_leaf(const Shape& shape, const T* theta, const T* biases, const Data<T>& d,
                       Activation act, Output output, Index r0, Index r1, Index B, BlockViews<T>& v,
                       T* grad, double& weight, int& bad_layer, Stop&& stop) {
  const Index n = r1 - r0, nb = (n + B - 1) / B;  // n rows in nb equal blocks
  double loss = 0;
  weight = 0;
  const Index s1 = shape.size(1);
  if (d.csr.active() && !v.delta1_rows)  // dW_U: only the touched columns' rows are ever written
    ArrayMap<T>(v.dW0T, v.n_touched * s1).setZero();
  for (Index k = 0; k < nb; ++k) {
    if (stop()) return 0;
    const Index b0 = r0 + split_point(n, nb, k), b1 = r0 + split_point(n, nb, k + 1);
    loss += accumulate_block(shape, theta, biases, d, act, output, b0, b1 - b0, v, grad, k == 0,
                             weight, bad_layer);
    if (bad_layer) return 0;
  }
  if (d.csr.active() && !v.delta1_rows) {  // dW^(0) (s_1, s_0) from dW_U, into the leaf's buffer
    auto dW = shape.weights(grad, 0);
    dW.setZero();
    for (Index u = 0; u < v.n_touched; ++u)
      dW.col(v.touched[u]) =
          Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(v.dW0T + u * s1, s1);
  }
  return loss;
}

// Rows [r0, r0 + b) of the examples through the network: their logits z^(L)
// (b, K) end in A[L-1]. Returns forward_block's bad layer (0: all finite).
template <typename T>
int forward_rows(const Shape& shape, const T* theta, const T* biases, const Data<T>& d,
                 Activation act, Index r0, Index b, BlockViews<T>& v) {
  load_block(shape, d, r0, b, v);
  return forward_block(shape, theta, biases, act, b, v, d);
}

}  // namespace bpnet
