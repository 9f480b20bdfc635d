// The core's entry points for one scalar type T, compiled once per ISA build
// in their own translation units (core_f64.cpp, core_f32.cpp) and declared
// `extern` in the binding file, so that the compiler spends its -O3 time on
// the kernels in three files that ninja builds side by side instead of one.
//
// BPNET_CORE_INSTANCES(, T) instantiates them; BPNET_CORE_INSTANCES(extern, T)
// only declares them (no body is compiled where it appears). Each line names
// a function template: its signature comes from the header (decltype), so a
// changed signature needs no edit here. A template the binding file calls
// that is not listed still works; it is just compiled in the binding file
// (tests/project/test_architecture_cpp.py checks the list is complete).
#pragma once

#include "bpnet/bpnet.hpp"

#define BPNET_CORE_INSTANCE(EXTERN, name, T) EXTERN template decltype(name<T>) name<T>;

#define BPNET_CORE_INSTANCES(EXTERN, T)               \
  BPNET_CORE_INSTANCE(EXTERN, bpnet::cost_grad, T)    \
  BPNET_CORE_INSTANCE(EXTERN, bpnet::partial_sums, T) \
  BPNET_CORE_INSTANCE(EXTERN, bpnet::forward, T)      \
  BPNET_CORE_INSTANCE(EXTERN, bpnet::forward_cost, T) \
  BPNET_CORE_INSTANCE(EXTERN, bpnet::predict, T)      \
  BPNET_CORE_INSTANCE(EXTERN, bpnet::finalize, T)     \
  BPNET_CORE_INSTANCE(EXTERN, bpnet::adam_update, T)  \
  BPNET_CORE_INSTANCE(EXTERN, bpnet::sgd_update, T)   \
  BPNET_CORE_INSTANCE(EXTERN, bpnet::scan_finite, T)  \
  BPNET_CORE_INSTANCE(EXTERN, bpnet::reduce_tree, T)  \
  BPNET_CORE_INSTANCE(EXTERN, bpnet::check_nodes, T)
