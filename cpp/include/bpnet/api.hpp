// bpnet core, floor 9: the entry points, each a short composition of the
// floors below (the bindings call these and nothing else of the network).
//   cost_grad     J and its gradient (P,), one pass
//   partial_sums  per-leaf unnormalized sums (the distributed building block)
//   forward       a^(L) (m, K);  predict: argmax_k z^(L) (m,)
//   forward_cost  a^(L) and J from one forward pass (a validation score)
//   scan_finite   whether an array (an estimator's X) is all finite
// Workers come from parallel.hpp's run_workers; which thread computed which
// leaf or block never changes a bit. Dimension letters: see shape.hpp.
#pragma once

#include "block.hpp"
#include "finalize.hpp"
#include "parallel.hpp"
#include "tree.hpp"

namespace bpnet {

// ---------------------------------------------------------------------------
// cost_grad's pieces. Phase 1: the leaves are split into contiguous ranges,
// one per worker; a worker sums its leaves from the front of its range into
// node buffers and merges them as push_node says (the first worker's first
// node is grad itself). A worker done with its range takes single leaves from
// the back of the fullest other range (at most max_stolen, a node each).
// Phase 2, after a barrier: all runs' nodes, in leaf order, are merged by the
// same rule (a list of "dst += src" operations planned once), applied row by
// row of the Theta^(l) fused with finalize, the rows split over the threads.
// ---------------------------------------------------------------------------

// Leaves one worker may take from others, each in a buffer of its own: about
// 64 MiB of them at most (and at least one).
template <typename T>
int max_stolen(Index P) {
  return static_cast<int>(
      std::max<Index>(1, std::min<Index>(64, (Index(64) << 20) / (P * Index(sizeof(T))))));
}

// The nodes one worker made: its own run (merged as it grows) and the leaves
// it took from others (one node each).
template <typename T>
struct WorkerNodes {
  std::vector<TreeNode> stack;
  std::vector<T*> bufs;
  std::vector<double> loss, weight;
  std::vector<Index> stolen;
  std::vector<T*> stolen_bufs;
  std::vector<double> stolen_loss, stolen_weight;
  int bad_layer = 0;
};

// What every worker of one cost_grad call reads.
template <typename T>
struct LeafJob {
  const Shape& shape;
  const T* theta;
  const Data<T>& d;
  Activation act;
  Output output;
  const std::vector<Index>& starts;
  Index B;
  Workspace<T>& ws;
  T* delta1;  // (m, s_1) for a sparse X, else nullptr
};

// Worker w: its own leaves from the front, then leaves taken from others.
template <typename T>
void sum_leaves(const LeafJob<T>& job, int w, T* grad, LeafQueues& queues, WorkerNodes<T>& wn,
                Team& team) {
  const Shape& shape = job.shape;
  const Index C = static_cast<Index>(job.starts.size()) - 1, P = shape.n_params();
  BlockViews<T> v = worker_views(shape, job.ws, w, job.B, job.d.csr.active(), false);
  const bool sparse = job.d.csr.active();
  v.transposed0 = sparse;
  if (sparse) v.delta1_rows = job.delta1;
  const Index used0 = sparse ? shape.size(1) : P;  // see add_node
  const auto leaf = [&](Index c, T* buf, double& weight) {
    return accumulate_leaf(shape, job.theta, job.ws.biases(), job.d, job.act, job.output,
                           job.starts[c], job.starts[c + 1], job.B, v, buf, weight, wn.bad_layer,
                           [&] { return team.poll(); });
  };
  stall_for_tests(w);
  Index c;
  while (!team.stopped() && queues.take_own(w, c)) {
    const std::size_t slot = wn.stack.size();
    T* buf =
        (w == 0 && slot == 0) ? grad : job.ws.node_buffer(w, static_cast<int>(slot) - (w == 0));
    double weight = 0;
    const double loss = leaf(c, buf, weight);
    if (wn.bad_layer || team.stopped()) return;
    wn.bufs.push_back(buf);
    wn.loss.push_back(loss);
    wn.weight.push_back(weight);
    push_node(wn.stack, TreeNode{0, c}, C, [&](std::size_t a, std::size_t b) {
      add_node(shape, used0, wn.bufs[a], wn.bufs[b]);
      wn.loss[a] += wn.loss[b];
      wn.weight[a] += wn.weight[b];
      wn.bufs.pop_back();
      wn.loss.pop_back();
      wn.weight.pop_back();
    });
  }
  const int steal_limit = max_stolen<T>(P);
  while (!team.stopped() && static_cast<int>(wn.stolen.size()) < steal_limit &&
         queues.take_other(w, c)) {
    T* buf = job.ws.stolen_buffer(w, static_cast<int>(wn.stolen.size()), P);
    double weight = 0;
    const double loss = leaf(c, buf, weight);
    if (wn.bad_layer || team.stopped()) return;
    wn.stolen.push_back(c);
    wn.stolen_bufs.push_back(buf);
    wn.stolen_loss.push_back(loss);
    wn.stolen_weight.push_back(weight);
  }
}

// The final combine, planned on labels and scalars only: every run's nodes
// in leaf order, merged by push_node's rule into "dst += src" operations.
template <typename T>
struct CombinePlan {
  std::vector<MergeOp<T>> ops;
  double loss = 0, weight = 0;
};

template <typename T>
CombinePlan<T> plan_combine(std::vector<WorkerNodes<T>>& nodes, Index C, T* grad) {
  struct Entry {
    Index first_leaf;
    TreeNode node;
    T* buf;
    double loss, weight;
  };
  std::vector<Entry> entries;
  for (WorkerNodes<T>& wn : nodes) {
    for (std::size_t k = 0; k < wn.stack.size(); ++k)
      entries.push_back({wn.stack[k].index << wn.stack[k].level, wn.stack[k], wn.bufs[k],
                         wn.loss[k], wn.weight[k]});
    for (std::size_t k = 0; k < wn.stolen.size(); ++k)
      entries.push_back({wn.stolen[k], TreeNode{0, wn.stolen[k]}, wn.stolen_bufs[k],
                         wn.stolen_loss[k], wn.stolen_weight[k]});
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.first_leaf < b.first_leaf; });
  CombinePlan<T> plan;
  std::vector<TreeNode> stack;
  std::vector<T*> bufs;
  std::vector<double> loss, weight;
  for (const Entry& e : entries) {
    bufs.push_back(e.buf);
    loss.push_back(e.loss);
    weight.push_back(e.weight);
    push_node(stack, e.node, C, [&](std::size_t a, std::size_t b) {
      plan.ops.push_back({bufs[a], bufs[b]});
      loss[a] += loss[b];
      weight[a] += weight[b];
      bufs.erase(bufs.begin() + static_cast<std::ptrdiff_t>(b));
      loss.erase(loss.begin() + static_cast<std::ptrdiff_t>(b));
      weight.erase(weight.begin() + static_cast<std::ptrdiff_t>(b));
    });
  }
  if (stack.size() != 1 || bufs[0] != grad)  // every leaf once, leaf 0 in grad
    throw std::logic_error("bpnet: the reduction tree did not close");
  plan.loss = loss[0];
  plan.weight = weight[0];
  check_weight_sum(plan.weight);
  return plan;
}

// Phase 1b, sparse X: dW_U (n_U, s_1), column u of U at a time (columns
// split over the workers; each is independent). The leaves summed
//   dW_U[u, :] = sum over the leaf's nonzeros (i, x) of column u of x delta_i
// in call order, and the tree added the leaves' sums; a leaf without a
// nonzero in column u adds exactly +0 there (a sum that starts at +0 is
// never -0), so the tree's result is the tree over the leaves that have one:
// they are summed here in that same order, a stack merging two neighbours
// once the next leaf lies outside their common subtree (lca: the level of
// the smallest subtree holding two leaves). The same bits as summing whole
// node buffers, without a (s_0, s_1) buffer per leaf. Written into dWU.
inline int lca_level(Index a, Index b) {
  return a == b ? 0 : 64 - __builtin_clzll(static_cast<unsigned long long>(a ^ b));
}

template <typename T>
void sum_columns(const ColumnNonzeros<T>& cols, const T* delta1, const std::vector<Index>& starts,
                 Index s1, Index n_U, int nw, const Interrupt* interrupt, T* dWU) {
  constexpr Index chunk = 64;  // columns per work item
  WorkCounter chunks((n_U + chunk - 1) / chunk);
  run_workers(nw, interrupt, [&](int, Team& team) {
    AlignedBuffer<T> sums;  // the stack's partial sums, 66 x s_1: depth <= log2(C) + 2
    sums.resize(66 * s1);
    std::vector<Index> leaf;  // the first leaf of each stack entry
    for (Index q; !team.poll() && chunks.next(q);) {
      for (Index u = q * chunk, u1 = std::min(n_U, u + chunk); u < u1; ++u) {
        leaf.clear();
        Index c = 0;  // the leaf of the current entry: starts[c] <= i < starts[c + 1]
        for (Index k = cols.start[u]; k < cols.start[u + 1]; ++k) {
          const Index i = cols.pos[k];
          if (leaf.empty() || i >= starts[c + 1]) {
            c = static_cast<Index>(std::upper_bound(starts.begin(), starts.end(), i) -
                                   starts.begin()) -
                1;
            while (leaf.size() >= 2 &&
                   lca_level(leaf[leaf.size() - 2], leaf.back()) < lca_level(leaf.back(), c)) {
              ArrayMap<T>(sums.data() + (leaf.size() - 2) * s1, s1) +=
                  ConstArrayMap<T>(sums.data() + (leaf.size() - 1) * s1, s1);
              leaf.pop_back();
            }
            leaf.push_back(c);
            ArrayMap<T>(sums.data() + (leaf.size() - 1) * s1, s1).setZero();
          }
          ArrayMap<T>(sums.data() + (leaf.size() - 1) * s1, s1) +=
              cols.value[k] * ConstArrayMap<T>(delta1 + i * s1, s1);
        }
        for (; leaf.size() >= 2; leaf.pop_back())
          ArrayMap<T>(sums.data() + (leaf.size() - 2) * s1, s1) +=
              ConstArrayMap<T>(sums.data() + (leaf.size() - 1) * s1, s1);
        ArrayMap<T> out(dWU + u * s1, s1);
        if (leaf.empty())
          out.setZero();
        else
          out = ConstArrayMap<T>(sums.data(), s1);
      }
    }
  });
}

// Phase 2 for a dense X: the planned merges and finalize_rows over all R rows,
// in chunks of rows claimed by up to nw workers once theta holds at least
// kFinalizeParallel values (a few microseconds per worker; below it the wake
// costs more). Each row is independent: the same bits for any split. Worker
// w takes its own contiguous run of chunks first (LeafQueues), as
// update_slices does with the optimizer's slices: the rows it finalizes are
// the part of the gradient its next update reads.
constexpr Index kFinalizeParallel = 1 << 15;

template <typename T>
bool finalize_dense(const Shape& shape, const T* theta, double inv_w, double reg,
                    const CombinePlan<T>& plan, int nw, T* grad, std::vector<double>& sq_rows) {
  const Index R = shape.total_rows();
  if (nw <= 1 || shape.n_params() < kFinalizeParallel)
    return finalize_rows(shape, theta, inv_w, reg, grad, plan.ops, 0, R, sq_rows.data());
  const Index chunk = std::max<Index>(1, R / (8 * nw));  // rows per work item
  LeafQueues chunks((R + chunk - 1) / chunk, nw);
  std::atomic<bool> finite{true};
  run_workers(nw, nullptr, [&](int w, Team& team) {
    take_all(chunks, w, team, [&](Index q) {
      if (!finalize_rows(shape, theta, inv_w, reg, grad, plan.ops, q * chunk,
                         std::min(R, (q + 1) * chunk), sq_rows.data()))
        finite.store(false, std::memory_order_relaxed);
    });
  });
  return finite.load();
}

// Phase 2: the planned merges and finalize, row by row of the stacked
// Theta^(l) (R rows), on the calling thread. A sparse X's layer 0: the
// merges of db^(0) (the node buffers' used part, see add_node), then
// finalize_layer0 from db^(0) and dW_U (sum_columns), writing Theta^(0)'s
// layout; its rows split over nw workers (each row is independent: the same
// bits for any split). Returns whether every gradient value is finite.
template <typename T>
bool combine_rows(const Shape& shape, const T* theta, double lam, const CombinePlan<T>& plan,
                  const std::vector<Index>* touched, const T* dWU, int nw, T* grad,
                  std::vector<double>& sq_rows) {
  const Index R = shape.total_rows();
  const double inv_w = 1.0 / plan.weight, reg = lam / plan.weight;
  if (!touched) return finalize_dense(shape, theta, inv_w, reg, plan, nw, grad, sq_rows);
  const Index s1 = shape.size(1);
  for (const MergeOp<T>& op : plan.ops) ArrayMap<T>(op.dst, s1) += ConstArrayMap<T>(op.src, s1);
  const std::vector<T> db(grad + shape.offset(0), grad + shape.offset(0) + s1);
  std::atomic<bool> finite0{true};
  WorkCounter groups((s1 + 7) / 8);
  run_workers(nw, nullptr, [&](int, Team& team) {
    for (Index g; !team.stopped() && groups.next(g);)
      if (!finalize_layer0(shape, theta, inv_w, reg, db.data(), dWU, *touched, 8 * g,
                           std::min(s1, 8 * g + 8), grad, sq_rows.data()))
        finite0.store(false, std::memory_order_relaxed);
  });
  const bool finite =
      finalize_rows(shape, theta, inv_w, reg, grad, plan.ops, s1, R, sq_rows.data());
  return finite && finite0.load();
}

// ---------------------------------------------------------------------------
// cost_grad: J and its gradient (P,) in one pass; grad is overwritten.
// The workers' leaves (sum_leaves, on the pool), then on the calling thread
// the plan and the combine (combine_rows). Which worker took which leaf never
// changes a bit: the tree fixes every addition.
// ---------------------------------------------------------------------------
template <typename T>
double cost_grad(const Shape& shape, const T* theta, const Data<T>& d, double lam, Activation act,
                 Output output, T* grad, int n_threads, Workspace<T>& ws,
                 const Interrupt* interrupt = nullptr) {
  check_lam(lam);
  const std::vector<Index> starts = leaf_starts(d.m);
  const Index C = static_cast<Index>(starts.size()) - 1;
  const int nw = threads_for(double(d.m) * shape.flops_per_row(true), n_threads, C);
  if (nw > 1) Pool::instance().prewake();  // they wake while the inputs are checked
  validate(shape, theta, d, true, false);  // theta: in the finalize (see validate)
  const Index B = block_rows<T>(shape);
  std::vector<int> slots = node_slots(C, nw);
  slots[0] -= 1;                                           // worker 0's bottom node is grad
  prepare_call(shape, theta, d, ws, B, nw, slots, false);  // sparse: transposed0
  const bool sparse = d.csr.active();
  const Index s1 = shape.size(1), n_U = static_cast<Index>(ws.touched().size());
  if (sparse) sort_by_column(d, ws.slot(), n_U, ws.columns());
  T* delta1 = sparse ? ws.delta1(d.m * s1) : nullptr;

  const LeafJob<T> job{shape, theta, d, act, output, starts, B, ws, delta1};
  std::vector<WorkerNodes<T>> nodes(nw);
  LeafQueues queues(C, nw);
  run_workers(nw, interrupt,
              [&](int w, Team& team) { sum_leaves(job, w, grad, queues, nodes[w], team); });
  for (const WorkerNodes<T>& wn : nodes)
    if (wn.bad_layer) throw_non_finite(shape, theta, d, wn.bad_layer);
  const CombinePlan<T> plan = plan_combine(nodes, C, grad);
  // W_U is read no more: its room takes dW_U
  if (sparse) sum_columns(ws.columns(), delta1, starts, s1, n_U, nw, interrupt, ws.w0t());
  std::vector<double> sq_rows(shape.total_rows());
  const bool finite = combine_rows(shape, theta, lam, plan, sparse ? &ws.touched() : nullptr,
                                   ws.w0t(), nw, grad, sq_rows);
  if (!finite) check_theta(shape, theta);  // else an overflow
  return finish_cost<T>(lam, plan.loss, plan.weight, sq_rows, finite);
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
  check_starts(starts, d.m);
  validate(shape, theta, d, true);
  const Index C = static_cast<Index>(starts.size()) - 1;
  const Index B = block_rows<T>(shape);
  const int nw = threads_for(double(d.m) * shape.flops_per_row(true), n_threads, C);
  prepare_call(shape, theta, d, ws, B, nw, {}, true);
  std::vector<int> bad(C, 0);
  WorkCounter leaves(C);  // each leaf has its own buffer: any worker may sum it
  run_workers(nw, interrupt, [&](int w, Team& team) {
    BlockViews<T> v = worker_views(shape, ws, w, B, d.csr.active(), true);
    for (Index c; !team.stopped() && leaves.next(c);)
      leaf_loss[c] =
          accumulate_leaf(shape, theta, ws.biases(), d, act, output, starts[c], starts[c + 1], B, v,
                          leaf_grads[c], leaf_weight[c], bad[c], [&] { return team.poll(); });
  });
  for (Index c = 0; c < C; ++c)
    if (bad[c]) throw_non_finite(shape, theta, d, bad[c]);
}

// ---------------------------------------------------------------------------
// The forward-only entry points. Rows are independent here, so blocks of B
// rows go to whichever worker asks first; fn(blk, r0, b, v) then reads the
// block's logits z^(L) (b, K) in v.A[L-1].
// ---------------------------------------------------------------------------
template <typename T, typename BlockFn>
void for_each_block(const Shape& shape, const T* theta, const Data<T>& d, Activation act,
                    int n_threads, Workspace<T>& ws, const Interrupt* interrupt, BlockFn&& fn) {
  const Index B = block_rows<T>(shape);
  const Index n_blocks = (d.m + B - 1) / B;
  const int nw = threads_for(double(d.m) * shape.flops_per_row(false), n_threads, n_blocks);
  prepare_call(shape, theta, d, ws, B, nw, {}, false);
  std::vector<int> bad(n_blocks, 0);
  WorkCounter blocks(n_blocks);
  run_workers(nw, interrupt, [&](int w, Team& team) {
    BlockViews<T> v = worker_views(shape, ws, w, B, d.csr.active(), false);
    for (Index blk; !team.poll() && blocks.next(blk);) {
      const Index r0 = blk * B, b = std::min(B, d.m - r0);
      bad[blk] = forward_rows(shape, theta, ws.biases(), d, act, r0, b, v);
      if (!bad[blk]) fn(blk, r0, b, v);
    }
  });
  for (Index blk = 0; blk < n_blocks; ++blk)
    if (bad[blk]) throw_non_finite(shape, theta, d, bad[blk]);
}

// forward: h = a^(L) (m, K), overwritten.
template <typename T>
void forward(const Shape& shape, const T* theta, const Data<T>& d, Activation act, Output output,
             T* h /* (m, K) */, int n_threads, Workspace<T>& ws,
             const Interrupt* interrupt = nullptr) {
  validate(shape, theta, d, false);
  const Index K = shape.n_outputs();
  with_output_unit(output, [&](auto unit) {
    for_each_block(shape, theta, d, act, n_threads, ws, interrupt,
                   [&](Index, Index r0, Index b, BlockViews<T>& v) {
                     const T* z = v.A[shape.n_layers() - 1].data();
                     for (Index i = 0; i < b; ++i) unit.forward(z + i * K, h + (r0 + i) * K, K);
                   });
  });
}

// predict: labels = argmax_k z^(L) (m,), overwritten.
template <typename T>
void predict(const Shape& shape, const T* theta, const Data<T>& d, Activation act,
             std::int64_t* labels /* (m,) */, int n_threads, Workspace<T>& ws,
             const Interrupt* interrupt = nullptr) {
  validate(shape, theta, d, false);
  const Index K = shape.n_outputs();
  for_each_block(shape, theta, d, act, n_threads, ws, interrupt,
                 [&](Index, Index r0, Index b, BlockViews<T>& v) {
                   const T* z = v.A[shape.n_layers() - 1].data();
                   for (Index i = 0; i < b; ++i, z += K)
                     labels[r0 + i] = static_cast<std::int64_t>(std::max_element(z, z + K) - z);
                 });
}

// ---------------------------------------------------------------------------
// forward_cost: a^(L) (m, K) overwritten into h, and the regularized cost
//   J = loss / weight_sum + lam / (2 weight_sum) sum_l sum_{i, j>=1} Theta^(l)_ij^2
// from one forward pass (no backward pass: the validation score and loss of
// an early-stopping split). loss = sum_i w_i loss_i with the per-example
// losses of cost_grad (the output unit's backward computes them) and
// weight_sum = sum_i w_i. The rows of h have the bits forward gives. Each
// block's loss and weight are kept per block and added in block order, and
// the blocks depend on m, the layer sizes and T only, so J has the same bits
// for any n_threads. J differs from cost_grad's in the order of the loss
// additions only (its leaves and tree): a few ulps.
// ---------------------------------------------------------------------------
template <typename T>
double forward_cost(const Shape& shape, const T* theta, const Data<T>& d, Activation act,
                    Output output, double lam, T* h /* (m, K) */, int n_threads, Workspace<T>& ws,
                    const Interrupt* interrupt = nullptr) {
  check_lam(lam);
  validate(shape, theta, d, true);
  const Index K = shape.n_outputs(), B = block_rows<T>(shape);
  const Index n_blocks = (d.m + B - 1) / B;
  std::vector<double> loss(n_blocks, 0.0), weight(n_blocks, 0.0);  // (n_blocks,) per block
  with_output_unit(output, [&](auto unit) {
    for_each_block(shape, theta, d, act, n_threads, ws, interrupt,
                   [&](Index blk, Index r0, Index b, BlockViews<T>& v) {
                     // h = output(z^(L)) first: the unit's backward then overwrites z.
                     T* z = v.A[shape.n_layers() - 1].data();  // (b, K) logits
                     for (Index i = 0; i < b; ++i) unit.forward(z + i * K, h + (r0 + i) * K, K);
                     loss[blk] = unit.backward(d, v.r.data(), b, K, z, v.scratch);
                     if (d.sample_weight)
                       for (Index i = 0; i < b; ++i) weight[blk] += d.sample_weight[v.r[i]];
                     else
                       weight[blk] = double(b);
                   });
  });
  double loss_sum = 0, weight_sum = 0;  // in block order: the same bits for any n_threads
  for (Index blk = 0; blk < n_blocks; ++blk) {
    loss_sum += loss[blk];
    weight_sum += weight[blk];
  }
  check_weight_sum(weight_sum);
  std::vector<double> sq_rows(shape.total_rows());
  penalty_rows(shape, theta, sq_rows);
  return finish_cost<T>(lam, loss_sum, weight_sum, sq_rows, true);
}

// ---------------------------------------------------------------------------
// scan_finite: whether every x[0, n) is finite, chunks of 16 Ki values
// handed out over up to n_threads workers (LeafQueues; once a chunk has
// failed, the chunks left are skipped). An estimator's check of X before a
// fit, in place of NumPy's sum over X (scikit-learn's first pass): case D's
// X, 7.84 M float32 values, 0.64-0.68 ms on two threads against 2.7-3.0 ms
// there. The answer does not depend on the split.
// ---------------------------------------------------------------------------
template <typename T>
bool scan_finite(const T* x, Index n, int n_threads) {
  constexpr Index chunk = Index(1) << 14;
  const Index C = (n + chunk - 1) / chunk;
  const int nw = C >= 4 ? static_cast<int>(std::min<Index>(resolve_threads(n_threads), C)) : 1;
  std::atomic<bool> finite{true};
  LeafQueues chunks(C, nw);
  run_workers(nw, nullptr, [&](int w, Team& team) {
    take_all(chunks, w, team, [&](Index c) {
      const Index p0 = c * chunk;
      if (finite.load(std::memory_order_relaxed) && !all_finite(x + p0, std::min(chunk, n - p0)))
        finite.store(false, std::memory_order_relaxed);
    });
  });
  return finite.load();
}

}  // namespace bpnet
