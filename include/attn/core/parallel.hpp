/// \file
/// Threads of attn: the thread-count setting and one small persistent pool that every kernel shares.
///
/// The rules, for users and for kernel writers:
/// - `attn::set_num_threads(n)` sets how many threads attn's kernels use (n >= 1, otherwise
///   ConfigError); `attn::num_threads()` reads it. The default is std::thread::hardware_concurrency()
///   (1 when the platform does not tell). The setting is global and read at every kernel call.
/// - A kernel splits its work into tasks and hands them out by a static cyclic partition (share s of P
///   runs tasks s, s + P, s + 2P, ...: parallel_for) or in order to whichever share is free
///   (parallel_for_dynamic, which balances tasks of unequal cost and a busy core). A task is computed
///   by the same code with the same blocking whatever thread runs it, so results are bit-identical for
///   every thread count either way.
/// - No nesting: a kernel called from inside a share (on a pool worker, or on the calling thread while
///   it runs its own share) runs single-threaded.
/// - Eigen's own threads: Eigen parallelizes matrix products only when compiled with OpenMP (this
///   project's builds are not). In an OpenMP build, every share of a multi-share job runs with the
///   OpenMP thread count of its thread set to 1 (the pool's workers for good, the calling thread for
///   the duration of its share), so the Eigen products inside a share stay single-threaded and the
///   pool never oversubscribes the cores. Eigen::setNbThreads(k > 1) overrides OpenMP's count inside
///   Eigen: do not combine it with attn::set_num_threads(n > 1).
/// - Two user threads that run kernels at the same time do not share the pool: the first one gets it,
///   the other runs its shares one after another on its own thread (same results, no oversubscription).
/// - An exception thrown by a share is rethrown on the calling thread once every share has finished.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attn/core/eigen.hpp"
#include "attn/core/error.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace attn {

namespace detail {

/// 0 = not set: use the hardware concurrency.
inline std::atomic<int>& thread_setting() noexcept {
  static std::atomic<int> n{0};
  return n;
}

/// True on a pool worker, and on any thread while it runs a share: kernels called there stay serial.
inline thread_local bool t_in_share = false;

/// Marks the current thread as running a share, and (OpenMP builds) keeps Eigen's products in it
/// single-threaded; restores both on exit.
class ShareScope {
public:
  ShareScope() noexcept : was_(t_in_share) {
    t_in_share = true;
#ifdef _OPENMP
    omp_threads_ = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
  }
  ~ShareScope() {
    t_in_share = was_;
#ifdef _OPENMP
    omp_set_num_threads(omp_threads_);
#endif
  }
  ShareScope(const ShareScope&) = delete;
  ShareScope& operator=(const ShareScope&) = delete;

private:
  bool was_;
#ifdef _OPENMP
  int omp_threads_ = 1;
#endif
};

/// A persistent fork-join pool: `run(P, fn, ctx)` calls fn(ctx, s) for every share s in [0, P), share 0
/// on the calling thread and share s on worker s, and returns when all are done. Workers are started
/// on first need and live until the end of the program.
class ThreadPool {
public:
  using Fn = void (*)(void*, int);

  static ThreadPool& instance() {
    static ThreadPool pool;
    return pool;
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  ~ThreadPool() {
    {
      std::lock_guard lock(m_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  void run(int shares, Fn fn, void* ctx) {
    if (shares <= 1 || t_in_share) return run_serial(shares, fn, ctx);
    std::unique_lock job(job_mutex_, std::try_to_lock);
    if (!job.owns_lock()) return run_serial(shares, fn, ctx);  // another user thread has the pool
    start_workers(shares - 1);
    {
      std::lock_guard lock(m_);
      fn_ = fn;
      ctx_ = ctx;
      shares_ = shares;
      pending_ = shares - 1;
      error_ = nullptr;
      ++generation_;
    }
    work_cv_.notify_all();
    std::exception_ptr own;
    try {
      ShareScope scope;
      fn(ctx, 0);
    } catch (...) {
      own = std::current_exception();
    }
    std::exception_ptr err;
    {
      std::unique_lock lock(m_);
      done_cv_.wait(lock, [&] { return pending_ == 0; });
      err = own ? own : error_;
      error_ = nullptr;
    }
    if (err) std::rethrow_exception(err);
  }

private:
  ThreadPool() { Eigen::initParallel(); }

  static void run_serial(int shares, Fn fn, void* ctx) {
    ShareScope scope;
    for (int s = 0; s < shares; ++s) fn(ctx, s);
  }

  // Called with job_mutex_ held, before the job is published: a new worker waits for the next one.
  void start_workers(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      const int id = static_cast<int>(workers_.size()) + 1;
      std::uint64_t gen = 0;
      {
        std::lock_guard lock(m_);
        gen = generation_;
      }
      workers_.emplace_back([this, id, gen] { loop(id, gen); });
    }
  }

  void loop(int id, std::uint64_t seen) {
    ShareScope scope;  // for the worker's whole life
    for (;;) {
      Fn fn = nullptr;
      void* ctx = nullptr;
      {
        std::unique_lock lock(m_);
        work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (id >= shares_) continue;
        fn = fn_;
        ctx = ctx_;
      }
      std::exception_ptr err;
      try {
        fn(ctx, id);
      } catch (...) {
        err = std::current_exception();
      }
      {
        std::lock_guard lock(m_);
        if (err && !error_) error_ = err;
        if (--pending_ == 0) done_cv_.notify_one();
      }
    }
  }

  std::mutex job_mutex_;  // one job at a time
  std::mutex m_;          // guards everything below
  std::condition_variable work_cv_, done_cv_;
  std::vector<std::thread> workers_;
  std::uint64_t generation_ = 0;
  Fn fn_ = nullptr;
  void* ctx_ = nullptr;
  int shares_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace detail

/// Sets the number of threads attn's kernels use. Throws ConfigError unless n >= 1.
inline void set_num_threads(int n) {
  if (n < 1)
    throw ConfigError(fmt::format("attn::set_num_threads: the number of threads must be at least 1, "
                                  "got {}",
                                  n));
  detail::thread_setting().store(n, std::memory_order_relaxed);
}

/// The number of threads attn's kernels use: the last set_num_threads, else the hardware concurrency.
[[nodiscard]] inline int num_threads() noexcept {
  const int n = detail::thread_setting().load(std::memory_order_relaxed);
  if (n > 0) return n;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(std::min<unsigned>(hw, 1024));
}

/// True while the current thread runs a share of a parallel job (kernels called there stay serial).
[[nodiscard]] inline bool in_parallel_share() noexcept { return detail::t_in_share; }

/// How many shares a job of `tasks` independent tasks gets: min(num_threads(), tasks), and 1 inside a
/// share.
[[nodiscard]] inline int shares_for(std::int64_t tasks) noexcept {
  if (tasks <= 1 || detail::t_in_share) return 1;
  return static_cast<int>(std::min<std::int64_t>(num_threads(), tasks));
}

/// Fork-join: calls f(share, shares) for every share in [0, shares) (share 0 on the calling thread)
/// and returns when all have finished; rethrows the first exception of a share.
template <class F>
void parallel_shares(int shares, F&& f) {
  struct Ctx {
    F* f;
    int shares;
  } ctx{&f, shares < 1 ? 1 : shares};
  detail::ThreadPool::instance().run(
      ctx.shares, [](void* c, int s) {
        auto* x = static_cast<Ctx*>(c);
        (*x->f)(s, x->shares);
      },
      &ctx);
}

/// Calls f(i) for every i in [0, n), over shares_for(n) shares with the static cyclic partition.
template <class F>
void parallel_for(std::int64_t n, F&& f) {
  if (n <= 0) return;
  parallel_shares(shares_for(n), [&](int s, int p) {
    for (std::int64_t i = s; i < n; i += p) f(i);
  });
}

/// Calls f(i) for every i in [0, n), over shares_for(n) shares that take the next task from a shared
/// counter when they finish one. For tasks whose result does not depend on the thread that runs them
/// (every attn kernel's), so results stay the same for any thread count while the load balances.
template <class F>
void parallel_for_dynamic(std::int64_t n, F&& f) {
  if (n <= 0) return;
  std::atomic<std::int64_t> next{0};
  parallel_shares(shares_for(n), [&](int, int) {
    for (std::int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < n;
         i = next.fetch_add(1, std::memory_order_relaxed))
      f(i);
  });
}

}  // namespace attn
