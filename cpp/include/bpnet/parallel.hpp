// bpnet core, floor 8: the one parallel runtime, and the only file that says
// omp. It knows nothing of the math: the entry points (api.hpp) hand it a
// number of workers and a body, and it gives them
//   - the thread policy: how many threads a call may wake (usable CPUs,
//     OpenMP's limit, enough work per thread, room for the threads' stacks);
//   - run_region: one parallel region, seen by the body through a Team
//     (its logical workers, barriers, one-thread steps, a shared loop);
//   - interrupts (a hook polled between blocks) and errors (kept and
//     rethrown after the region: nothing escapes an OpenMP region, which
//     would end the process);
//   - LeafQueues: contiguous leaf ranges per worker, and leaf taking from the
//     back of a slower worker's range.
#pragma once

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#include "shape.hpp"

namespace bpnet {

// ---------------------------------------------------------------------------
// Thread policy
// ---------------------------------------------------------------------------

// An explicit thread count beyond this is a mistake, and each thread gets its
// own block buffers: a huge count would exhaust memory (or thread creation).
constexpr int kMaxThreads = 1024;

inline int check_threads(int n_threads) {
  if (n_threads == 0 || n_threads < -1 || n_threads > kMaxThreads)
    throw std::invalid_argument("n_threads must be -1 (all cores) or in [1, " +
                                std::to_string(kMaxThreads) + "]; got " +
                                std::to_string(n_threads));
  return n_threads;
}

// CPUs this process may run on (its affinity mask), at least 1.
inline int usable_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

// n_threads < 1: OpenMP's limit (OMP_NUM_THREADS, threadpoolctl). Never more
// than the usable CPUs: more threads only wait for each other, and OpenMP
// exits the process when it cannot create a thread it was asked for.
inline int resolve_threads(int n_threads) {
#ifdef _OPENMP
  if (n_threads < 1) n_threads = omp_get_max_threads();
#else
  n_threads = 1;
#endif
  return std::max(1, std::min(n_threads, usable_cpus()));
}

// The OpenMP version the core was built with (yyyymm), 0 without OpenMP.
inline int openmp_version() {
#ifdef _OPENMP
  return _OPENMP;
#else
  return 0;
#endif
}

// Bytes of stack a new OpenMP thread gets: GOMP_STACKSIZE / OMP_STACKSIZE
// (a number with an optional B, K, M or G; K by default), else the process's
// stack limit, else 32 MiB.
inline std::size_t thread_stack_bytes() {
  for (const char* var : {"GOMP_STACKSIZE", "OMP_STACKSIZE"}) {
    const char* e = std::getenv(var);
    if (!e) continue;
    char* end = nullptr;
    const double v = std::strtod(e, &end);
    const char unit = end && *end ? static_cast<char>(std::toupper(*end)) : 'K';
    const double scale = unit == 'B' ? 1 : unit == 'M' ? 1 << 20 : unit == 'G' ? 1 << 30 : 1024;
    if (v > 0) return static_cast<std::size_t>(v * scale);
  }
#if defined(__linux__)
  struct rlimit rl;
  if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    return static_cast<std::size_t>(rl.rlim_cur);
#endif
  return std::size_t(32) << 20;
}

// libgomp ends the process ("Thread creation failed") when the address space
// cannot hold another thread's stack. Before a parallel region needs more
// threads than have run before, reserve (and release) room for their stacks;
// if that fails, run on the threads that exist.
inline int startable_threads(int n_threads) {
  static std::atomic<int> started{1};
  const int have = started.load(std::memory_order_relaxed);
  if (n_threads <= have) return n_threads;
#if defined(__linux__)
  const std::size_t bytes =
      static_cast<std::size_t>(n_threads - 1) * (thread_stack_bytes() + (std::size_t(16) << 20));
  void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return have;
  munmap(p, bytes);
#endif
  int expected = have;
  while (expected < n_threads &&
         !started.compare_exchange_weak(expected, n_threads, std::memory_order_relaxed)) {
  }
  return n_threads;
}

// Threads worth waking for `work` flops: each must get at least
// kMinFlopsPerThread of work (waking a sleeping OpenMP thread costs tens of
// microseconds on an idle machine, scheduler slices on a busy one), and at
// most `units` (leaves or blocks) exist to share. bench/README.md, "threads",
// has the measurements. The result never depends on the thread count.
constexpr double kMinFlopsPerThread = 4e6;

inline int threads_for(double work, int n_threads, Index units) {
  const double by_work = std::floor(work / kMinFlopsPerThread);
  Index n = std::min<Index>(resolve_threads(n_threads), std::max<Index>(1, units));
  n = std::min<Index>(n, static_cast<Index>(std::max(1.0, std::min(by_work, 1e6))));
  return startable_threads(static_cast<int>(std::max<Index>(1, n)));
}

// ---------------------------------------------------------------------------
// One parallel region: interrupts, errors, the team's steps
// ---------------------------------------------------------------------------

// An optional hook the caller provides (the bindings check for Ctrl-C with
// it); the region calls it from the calling thread only, between row blocks,
// and stops every thread at its next block when it returns true.
using Interrupt = std::function<bool()>;

struct interrupted : std::runtime_error {
  interrupted() : std::runtime_error("interrupted") {}
};

// What one thread of a region sees: nw logical workers spread over the
// threads OpenMP gave (it may give fewer), the region's stop flag and kept
// error. Every step runs its function inside run(): an exception stops the
// region and is rethrown by run_region once the region has ended.
class Team {
 public:
  Team(int nw, const Interrupt* interrupt) : nw_(nw), interrupt_(interrupt) {}
  int workers() const { return nw_; }
  bool stopped() const { return stop_.load(std::memory_order_relaxed); }
  // Asked between blocks by every thread; polls the hook on the calling thread.
  bool poll() {
    if (interrupt_ && *interrupt_ && thread_id() == 0 && (*interrupt_)()) {
      was_interrupted_ = true;
      stop_.store(true, std::memory_order_relaxed);
    }
    return stopped();
  }
  template <typename F>
  void run(F&& f) noexcept {  // f() with its exception kept
    if (stopped()) return;
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      stop_.store(true, std::memory_order_relaxed);
    }
  }
  // f(w) for each logical worker w this thread runs.
  template <typename F>
  void each_worker(F&& f) {
    for (int w = thread_id(); w < nw_; w += team_size()) run([&] { f(w); });
  }
  // f() on one thread; every thread waits for it.
  template <typename F>
  void single(F&& f) {
#pragma omp single
    run(f);
  }
  // f(i) for i in [0, n), shared by the threads in chunks of 8; every thread
  // waits at the end.
  template <typename F>
  void for_each(Index n, F&& f) {
#pragma omp for schedule(dynamic, 8)
    for (Index i = 0; i < n; ++i) run([&] { f(i); });
  }
  void barrier() {
#pragma omp barrier
  }
  void rethrow() {  // after the region
    if (error_) std::rethrow_exception(error_);
    if (was_interrupted_) throw interrupted();
  }

 private:
  static int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
  }
  static int team_size() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
  }
  int nw_;
  const Interrupt* interrupt_;
  std::atomic<bool> stop_{false};
  bool was_interrupted_ = false;
  std::mutex mutex_;
  std::exception_ptr error_;
};

// Runs body(team) on every thread of one parallel region of nw threads (one
// thread, no region, when nw = 1); then rethrows the first error or the
// interrupt. Every entry point of the core runs its threads through here.
template <typename Body>
void run_region(int nw, const Interrupt* interrupt, Body&& body) {
  Team team(nw, interrupt);
#pragma omp parallel num_threads(nw) if (nw > 1)
  body(team);
  team.rethrow();
}

// ---------------------------------------------------------------------------
// Leaf ranges and leaf taking
// ---------------------------------------------------------------------------

// A worker's leaf range [lo, hi), packed in one atomic word so that its owner
// (taking from the front) and other workers (taking from the back) never take
// the same leaf.
class LeafRange {
 public:
  void reset(Index lo, Index hi) { word_.store(pack(lo, hi), std::memory_order_relaxed); }
  Index left() const {
    const std::uint64_t w = word_.load(std::memory_order_relaxed);
    return static_cast<Index>(w & kMask) - static_cast<Index>(w >> 32);
  }
  bool take_front(Index& c) {  // the owner
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
      const Index lo = static_cast<Index>(w >> 32), hi = static_cast<Index>(w & kMask);
      if (lo >= hi) return false;
      if (word_.compare_exchange_weak(w, pack(lo + 1, hi), std::memory_order_relaxed)) {
        c = lo;
        return true;
      }
    }
  }
  bool take_back(Index& c) {  // another worker; never leaf 0 (it lands in grad)
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
      const Index lo = static_cast<Index>(w >> 32), hi = static_cast<Index>(w & kMask);
      if (lo >= hi || hi < 2) return false;
      if (word_.compare_exchange_weak(w, pack(lo, hi - 1), std::memory_order_relaxed)) {
        c = hi - 1;
        return true;
      }
    }
  }

 private:
  static constexpr std::uint64_t kMask = 0xffffffffu;
  static std::uint64_t pack(Index lo, Index hi) {
    return (static_cast<std::uint64_t>(lo) << 32) | static_cast<std::uint64_t>(hi);
  }
  std::atomic<std::uint64_t> word_{0};
};

// C leaves in nw contiguous ranges, one per worker (split_point). A worker
// takes its own leaves from the front; done, it takes single leaves from the
// back of the range with the most left, so a worker slowed by another process
// (or by another pool's spinning threads) holds up nobody.
class LeafQueues {
 public:
  LeafQueues(Index C, int nw) : ranges_(nw) {
    for (int w = 0; w < nw; ++w) ranges_[w].reset(split_point(C, nw, w), split_point(C, nw, w + 1));
  }
  bool take_own(int w, Index& c) { return ranges_[w].take_front(c); }
  // Returns false when no other range has a leaf left.
  bool take_other(int w, Index& c) {
    for (;;) {
      int victim = -1;
      Index most = 0;
      for (int u = 0; u < static_cast<int>(ranges_.size()); ++u)
        if (u != w && ranges_[u].left() > most) most = ranges_[u].left(), victim = u;
      if (victim < 0) return false;
      if (ranges_[victim].take_back(c)) return true;
    }
  }

 private:
  std::vector<LeafRange> ranges_;
};

// For the tests of leaf taking only: BPNET_TEST_STALL_WORKER=w (read once)
// holds worker w back 30 ms at the start of each call, so that the others take
// leaves from its range.
inline void stall_for_tests(int w) {
  static const int stalled = [] {
    const char* e = std::getenv("BPNET_TEST_STALL_WORKER");
    return e ? std::atoi(e) : -1;
  }();
  if (w == stalled) std::this_thread::sleep_for(std::chrono::milliseconds(30));
}

}  // namespace bpnet
