// bpnet core, floor 8: the one parallel runtime, and the only file that says
// omp (only to read OpenMP's thread limit). It knows nothing of the math: the
// entry points (api.hpp) hand it a number of logical workers and a body, and
// it gives them
//   - the thread policy: how many workers a call may use (usable CPUs,
//     OpenMP's limit, enough work per worker);
//   - Pool / run_workers: bpnet's own pool of threads. The caller is worker 0
//     and runs every worker index no pool thread has claimed, so a call never
//     waits for a thread that has not woken up (a busy core, another
//     library's spinning threads): it waits only for threads already inside
//     its work. An idle thread polls for the next job only while jobs come
//     close together (for about twice the last gap, at most 300 us), then
//     sleeps on a condition variable (BPNET_SPIN_US: a fixed spin instead);
//   - interrupts (a hook polled on the calling thread between blocks) and
//     errors (kept and rethrown once every worker has stopped);
//   - LeafQueues: contiguous leaf ranges per worker, and leaf taking from the
//     back of a slower worker's range (also the optimizer updates' slices and
//     the dense finalize's rows: the same part of the weights on the same
//     core, call after call); WorkCounter: items claimed one by one.
#pragma once

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
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

// n_threads < 1: OpenMP's limit (OMP_NUM_THREADS, threadpoolctl), or every
// usable CPU without OpenMP. Never more than the usable CPUs: more threads
// only wait for each other.
inline int resolve_threads(int n_threads) {
#ifdef _OPENMP
  if (n_threads < 1) n_threads = omp_get_max_threads();
#else
  if (n_threads < 1) n_threads = usable_cpus();
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

// Workers worth waking for `work` flops: each must get at least
// kMinFlopsPerThread of work (waking a sleeping thread costs tens of
// microseconds on an idle machine, scheduler slices on a busy one), and at
// most `units` (leaves or blocks) exist to share. bench/README.md, "threads",
// has the measurements. The result never depends on the thread count.
constexpr double kMinFlopsPerThread = 4e6;

inline int threads_for(double work, int n_threads, Index units) {
  const double by_work = std::floor(work / kMinFlopsPerThread);
  Index n = std::min<Index>(resolve_threads(n_threads), std::max<Index>(1, units));
  n = std::min<Index>(n, static_cast<Index>(std::max(1.0, std::min(by_work, 1e6))));
  return static_cast<int>(std::max<Index>(1, n));
}

// ---------------------------------------------------------------------------
// The pool and run_workers
// ---------------------------------------------------------------------------

// An optional hook the caller provides (the bindings check for Ctrl-C with
// it); it is called on the calling thread only, between row blocks, and
// every worker stops at its next block once it has returned true.
using Interrupt = std::function<bool()>;

struct interrupted : std::runtime_error {
  interrupted() : std::runtime_error("interrupted") {}
};

// What every worker of one call shares: the stop flag, the first error, the
// interrupt hook (polled by the calling thread).
class Team {
 public:
  explicit Team(const Interrupt* interrupt)
      : interrupt_(interrupt), caller_(std::this_thread::get_id()) {}
  bool stopped() const { return stop_.load(std::memory_order_relaxed); }
  // Asked between blocks by every worker; polls the hook on the calling thread.
  bool poll() {
    if (interrupt_ && *interrupt_ && std::this_thread::get_id() == caller_ && (*interrupt_)()) {
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
  void rethrow() {  // once every worker has stopped
    if (error_) std::rethrow_exception(error_);
    if (was_interrupted_) throw interrupted();
  }

 private:
  const Interrupt* interrupt_;
  std::thread::id caller_;
  std::atomic<bool> stop_{false};
  bool was_interrupted_ = false;
  std::mutex mutex_;
  std::exception_ptr error_;
};

// bpnet's threads, one pool per process, started on first use. One call at a
// time runs on the pool; a call that finds it busy (another Python thread's
// call) runs on its calling thread alone, which gives the same bits.
class Pool {
 public:
  static Pool& instance() {
    static Pool* pool = new Pool;  // never destroyed: its threads outlive main()
    return *pool;
  }

  // Wakes the pool's threads to poll for the job a call is about to post:
  // their wake-up, about 25 us on a VM, then overlaps the call's checks and
  // set-up instead of delaying its second worker. It starts no thread (post
  // does, after the call's own allocations: under an address-space limit the
  // call then fails with MemoryError first, and a sanitizer's thread start
  // cannot abort it). Nothing happens if another call holds the pool.
  void prewake() {
    std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock() || job_ || threads_ == 0) return;
    caller_cpu_.store(current_cpu(), std::memory_order_relaxed);
    ++alert_;
    lock.unlock();
    wake_.notify_all();
  }

  // job(w) for every worker index w in [0, n): the caller runs w = 0, pool
  // threads claim indices as they wake, and the caller then runs every index
  // still unclaimed. Returns once no pool thread is inside the job.
  void run(int n, const std::function<void(int)>& job) {
    if (!post(n, job)) {  // one worker, or the pool is busy: every index here
      for (int w = 0; w < n; ++w) job(w);
      return;
    }
    job(0);
    for (int w; (w = claim()) > 0;) job(w);  // indices no pool thread has claimed
    {
      std::lock_guard<std::mutex> guard(mutex_);
      job_ = nullptr;  // no index is claimed after this; inside_ counts the rest
    }
    wait_done();
  }

 private:
  // Offers worker indices [1, n) of job to the pool's threads; false when
  // the pool runs another call's job (or n = 1).
  bool post(int n, const std::function<void(int)>& job) {
    std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
    if (n <= 1 || !lock.owns_lock() || job_) return false;
    start_threads(n - 1);
    job_ = &job;
    next_ = 1;
    last_ = n;
    posted_ = std::chrono::steady_clock::now();
    caller_cpu_.store(current_cpu(), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    lock.unlock();
    wake_.notify_all();
    return true;
  }
  Pool() {
#if defined(__linux__)
    pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                   [] { instance().after_fork_in_child(); });
#endif
  }
  // Returns once no pool thread is inside the job. The caller's own work is
  // done and its core idle: it polls for up to kDoneSpin before it sleeps,
  // since a futex wake-up costs about 25 us on a VM (a 64-row batch of
  // [784, 128, 10] takes 150 us per thread). A pool thread finishes its
  // share at about the caller's time; the bound keeps a descheduled one (a
  // loaded machine) from costing more than that.
  static constexpr std::chrono::microseconds kDoneSpin{50};
  void wait_done() {
    const auto until = std::chrono::steady_clock::now() + kDoneSpin;
    while (inside_.load(std::memory_order_acquire) != 0) {
      if (std::chrono::steady_clock::now() >= until) {
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [&] { return inside_.load(std::memory_order_acquire) == 0; });
        return;
      }
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
  // The next unclaimed worker index of the current job, or 0.
  int claim() {
    std::lock_guard<std::mutex> guard(mutex_);
    return job_ && next_ < last_ ? next_++ : 0;
  }
  // Pool threads up to `want`; a thread the system cannot start is done without.
  void start_threads(int want) {
    while (threads_ < want && !failed_) {
      try {
        std::thread(&Pool::loop, this).detach();
        ++threads_;
      } catch (const std::system_error&) {
        failed_ = true;
      }
    }
  }
  bool has_job(std::uint64_t seen) const {  // under mutex_
    return job_ && generation_.load(std::memory_order_relaxed) != seen && next_ < last_;
  }
  void loop() {
    using Clock = std::chrono::steady_clock;
    std::uint64_t seen = 0, alerted = 0;
    bool spun = true;  // the spin after a job: not before the first
    Clock::time_point last_end{};
    Clock::duration gap = Clock::duration::max();  // last job's end to this one's post
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      if (has_job(seen)) {
        seen = generation_.load(std::memory_order_relaxed);
        const int w = next_++;
        const std::function<void(int)>* job = job_;
        // the caller's time between jobs, not this thread's wake-up: a late
        // wake-up must not turn the spin off (it would stay off)
        gap = last_end == Clock::time_point{} ? Clock::duration::max() : posted_ - last_end;
        ++inside_;
        lock.unlock();
        (*job)(w);
        last_end = Clock::now();
        lock.lock();
        if (inside_.fetch_sub(1, std::memory_order_release) == 1) done_.notify_all();
        spun = false;
      } else if (alert_ != alerted) {  // a call is on its way (prewake): poll for it
        alerted = alert_;
        lock.unlock();
        poll_for_job(seen, kPrewakePoll);
        lock.lock();
      } else if (!spun) {
        spun = true;
        lock.unlock();
        poll_for_job(seen, spin_after_job(gap));
        lock.lock();
      } else {
        wake_.wait(lock, [&] { return has_job(seen) || alert_ != alerted; });
      }
    }
  }
  // How long a woken pool thread polls for the call that woke it before it
  // sleeps again: a call posts its job once its inputs are checked and its
  // workspace laid out (10-20 us for [64, 25, 10] or [784, 128, 10]).
  static constexpr std::chrono::microseconds kPrewakePoll{100};
  // How long a pool thread polls for the next job after finishing one, given
  // `gap`, the time from its previous job's end to this one's posting.
  // Default: 2 gap + 25 us while the gap is below kAutoSpinMax, else none
  // (the thread sleeps at once). Jobs that come close together (the core
  // calls of an L-BFGS or mini-batch fit, ~100 us of the optimizer's work
  // apart) then find the thread awake on its own core: a thread that slept
  // between them is woken onto a core by the scheduler each time, and after
  // the process had idled (a fit after a pause) those wake-ups waited for a
  // CPU and the threads moved between cores for whole fits (2-vCPU VM,
  // Linux 6.18: the digits fit of bench case E, 65 calls, 18-26 -> 41-53 ms
  // after 0.3 s idle; bench/README.md, "An adaptive poll between calls").
  // Rare calls cost no spin; the spin is bounded per job. BPNET_SPIN_US=N:
  // a fixed spin of N us after every job instead (0: never spin). Read once.
  static constexpr std::chrono::microseconds kAutoSpinMax{300};
  static constexpr std::chrono::microseconds kAutoSpinSlack{25};
  static std::chrono::microseconds spin_after_job(std::chrono::steady_clock::duration gap) {
    static const long fixed_us = [] {  // -1: adaptive
      const char* e = std::getenv("BPNET_SPIN_US");
      if (!e || !*e || std::string(e) == "auto") return -1L;
      return std::max(0L, std::atol(e));
    }();
    if (fixed_us >= 0) return std::chrono::microseconds(fixed_us);
    return auto_spin(gap);
  }

 public:
  // The adaptive spin after a job whose gap (see spin_after_job) was `gap`.
  static std::chrono::microseconds auto_spin(std::chrono::steady_clock::duration gap) {
    using std::chrono::microseconds;
    if (gap >= kAutoSpinMax) return microseconds(0);
    const auto g = std::chrono::duration_cast<microseconds>(gap);
    return std::min(kAutoSpinMax, 2 * g + kAutoSpinSlack);
  }

 private:
  // Polls, without the mutex, for a generation after `seen` for up to `span`.
  // Stops early on the caller's CPU: the scheduler put this thread beside
  // the caller, and a poll there only takes the caller's time.
  void poll_for_job(std::uint64_t seen, std::chrono::microseconds span) const {
    if (span.count() == 0) return;
    const auto until = std::chrono::steady_clock::now() + span;
    while (generation_.load(std::memory_order_acquire) == seen &&
           std::chrono::steady_clock::now() < until) {
      const int cpu = current_cpu();
      if (cpu >= 0 && cpu == caller_cpu_.load(std::memory_order_relaxed)) return;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
  // A child made by fork() has none of the pool's threads: it starts afresh
  // (the threads it remembers are gone; their bookkeeping is dropped).
  void after_fork_in_child() {
    new (&mutex_) std::mutex;
    new (&wake_) std::condition_variable;
    new (&done_) std::condition_variable;
    threads_ = 0;
    inside_.store(0);
    job_ = nullptr;
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  int next_ = 0, last_ = 0;                         // worker indices [next_, last_) are unclaimed
  std::chrono::steady_clock::time_point posted_{};  // when job_ was posted
  std::atomic<int> caller_cpu_{-1};  // the CPU of the last post's or prewake's caller
  static int current_cpu() {
#if defined(__linux__)
    return sched_getcpu();
#else
    return -1;
#endif
  }
  int threads_ = 0;
  std::atomic<int> inside_{0};  // pool threads inside the current job (changed under mutex_)
  bool failed_ = false;
  std::atomic<std::uint64_t> generation_{0};  // jobs posted (changed under mutex_)
  std::uint64_t alert_ = 0;                   // prewake calls (under mutex_)
};

// body(w, team) for each logical worker w in [0, nw), on the pool (the
// caller is worker 0); each body runs inside team.run, so an error stops
// every worker. Rethrows the first error, or the interrupt, after all have
// stopped. Every entry point of the core runs its workers through here.
template <typename Body>
void run_workers(int nw, const Interrupt* interrupt, Body&& body) {
  Team team(interrupt);
  const std::function<void(int)> job = [&](int w) { team.run([&] { body(w, team); }); };
  if (nw <= 1)
    job(0);
  else
    Pool::instance().run(nw, job);
  team.rethrow();
}

// Items [0, n) claimed one at a time by whichever worker asks first: work
// whose result does not depend on who computes it and whose data no core
// keeps from one call to the next (blocks of forward, leaves with their own
// buffers).
class WorkCounter {
 public:
  explicit WorkCounter(Index n) : n_(n) {}
  bool next(Index& i) {
    i = next_.fetch_add(1, std::memory_order_relaxed);
    return i < n_;
  }

 private:
  Index n_;
  std::atomic<Index> next_{0};
};

// ---------------------------------------------------------------------------
// Leaf ranges and leaf taking
// ---------------------------------------------------------------------------

// A worker's leaf range [lo, hi), packed in one atomic word so that its owner
// (taking from the front) and other workers (taking from the back) never take
// the same leaf.
class LeafRange {
 public:
  void reset(Index lo, Index hi) { word_.store(pack(lo, hi), std::memory_order_relaxed); }
  // Leaves other workers may still take: those not yet taken, less leaf 0.
  Index takeable() const {
    const std::uint64_t w = word_.load(std::memory_order_relaxed);
    const Index lo = static_cast<Index>(w >> 32), hi = static_cast<Index>(w & kMask);
    return hi - std::max<Index>(lo, 1);
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
  // Returns false when no other range has a leaf left that this worker may
  // take. Leaf 0 is its owner's alone: a worker done while worker 0 has not
  // started (the caller preempted on a busy machine) returns instead of
  // spinning on it, and frees the CPU for the caller.
  bool take_other(int w, Index& c) {
    for (;;) {
      int victim = -1;
      Index most = 0;
      for (int u = 0; u < static_cast<int>(ranges_.size()); ++u) {
        const Index n = u == w ? 0 : ranges_[u].takeable();
        if (n > most) most = n, victim = u;
      }
      if (victim < 0) return false;
      if (ranges_[victim].take_back(c)) return true;  // else the owner took it meanwhile
    }
  }

 private:
  std::vector<LeafRange> ranges_;
};

// For the tests of LeafQueues' taking only: BPNET_TEST_STALL_WORKER=w (read
// once) holds worker w back 30 ms at the start of each parallel pass that
// hands out work through LeafQueues (the leaves, the dense finalize's rows,
// the optimizer updates' slices), so that the others take from its range.
inline void stall_for_tests(int w) {
  static const int stalled = [] {
    const char* e = std::getenv("BPNET_TEST_STALL_WORKER");
    return e ? std::atoi(e) : -1;
  }();
  if (w == stalled) std::this_thread::sleep_for(std::chrono::milliseconds(30));
}

// Worker w's share of work handed out by `queues` where each item's result
// does not depend on who computes it (the dense finalize's rows, the
// optimizer updates' slices): its own run front to back, then single items
// from the back of the others' runs; f(i) for each item i it takes.
template <typename F>
void take_all(LeafQueues& queues, int w, const Team& team, F&& f) {
  stall_for_tests(w);
  Index i;
  while (!team.stopped() && queues.take_own(w, i)) f(i);
  while (!team.stopped() && queues.take_other(w, i)) f(i);
}

}  // namespace bpnet
