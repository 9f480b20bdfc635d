// bpnet core, floor 6: leaves and the fixed reduction tree (determinism).
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
// O(log C) partial sums at a time. Dimension letters: see shape.hpp.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "shape.hpp"

namespace bpnet {

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
  for (Index c = 0; c <= C; ++c) starts[c] = split_point(m, C, c);
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

// Node buffers each of nw workers needs for its contiguous run of leaves
// [split_point(C, nw, w), split_point(C, nw, w + 1)): the deepest its stack of
// push_node grows (a dry run).
inline std::vector<int> node_slots(Index C, int nw) {
  std::vector<int> slots(nw, 0);
  for (int w = 0; w < nw; ++w) {
    std::vector<TreeNode> stack;
    for (Index c = split_point(C, nw, w); c < split_point(C, nw, w + 1); ++c) {
      slots[w] = std::max(slots[w], static_cast<int>(stack.size()) + 1);  // leaf c's buffer
      push_node(stack, TreeNode{0, c}, C, [](std::size_t, std::size_t) {});
    }
  }
  return slots;
}

// The sums a node carries: its gradient sum (P,), loss sum and weight sum.
template <typename T>
struct NodeSums {
  TreeNode node;
  T* grad;  // (P,)
  double loss;
  double weight;
};

// Checks that nodes are nodes of a tree of C leaves, contiguous in leaf order.
template <typename T>
void check_nodes(const std::vector<NodeSums<T>>& nodes, Index C) {
  if (C < 1) throw std::invalid_argument("n_leaves must be >= 1; got " + std::to_string(C));
  Index next_leaf = -1;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const std::string name = "nodes[" + std::to_string(i) + "]";
    const int level = nodes[i].node.level;
    const Index index = nodes[i].node.index;
    if (level < 0 || level > 62 || index < 0 || (index << level) >= C)
      throw std::invalid_argument(name + " = (level " + std::to_string(level) + ", index " +
                                  std::to_string(index) + ") is not a node of a tree of " +
                                  std::to_string(C) + " leaves");
    const Index first = index << level;
    if (next_leaf >= 0 && first != next_leaf)
      throw std::invalid_argument(name + " starts at leaf " + std::to_string(first) +
                                  "; the nodes must be contiguous in leaf order (expected leaf " +
                                  std::to_string(next_leaf) + ")");
    next_leaf = std::min(C, (index + 1) << level);
    for (std::size_t j = 0; j < i; ++j)
      if (nodes[j].grad == nodes[i].grad)
        throw std::invalid_argument("nodes[" + std::to_string(j) + "] and " + name +
                                    " share one grad buffer");
  }
}

// reduce_tree: merges a run of tree nodes (in leaf order, as partial_sums and
// earlier reduce_tree calls return them) by the rule of push_node, in place:
// a merged node's sums end in its left sibling's buffers. Returns the indices
// (into `nodes`) of the nodes left, in leaf order; one node (the root) when
// the run covers all C leaves.
template <typename T>
std::vector<std::size_t> reduce_tree(std::vector<NodeSums<T>>& nodes, Index P, Index C) {
  check_nodes(nodes, C);
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

}  // namespace bpnet
