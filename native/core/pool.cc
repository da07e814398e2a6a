#include "pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace geoedit {
namespace {

struct Job {
  const std::function<void(int64_t, int64_t)>* fn;
  int64_t n, grain;
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  int max_helpers = 0;  // pool workers allowed besides the caller
  int helpers = 0;      // guarded by Pool::m
  int64_t err_begin = INT64_MAX;
  std::exception_ptr err;
  std::mutex err_m;

  void work() {
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) return;
      const int64_t b = next.fetch_add(grain);
      if (b >= n) return;
      const int64_t e = std::min(n, b + grain);
      try {
        (*fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> g(err_m);
        if (b < err_begin) { err_begin = b; err = std::current_exception(); }
        failed.store(true);
      }
    }
  }
};

class Pool {
 public:
  Pool() {
    unsigned hc = std::thread::hardware_concurrency();
    size_ = int(hc == 0 ? 1 : hc);
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.detach();  // never join at exit: workers may be blocked in the OS
  }
  int size() const { return size_; }

  void run(Job* job) {
    if (job->max_helpers > 0) {
      std::unique_lock<std::mutex> g(m_);
      ensure_started();
      queue_.push_back(job);
      g.unlock();
      cv_.notify_all();
    }
    job->work();
    if (job->max_helpers > 0) {
      std::unique_lock<std::mutex> g(m_);
      auto it = std::find(queue_.begin(), queue_.end(), job);
      if (it != queue_.end()) queue_.erase(it);
      done_cv_.wait(g, [&] { return job->helpers == 0; });
    }
  }

 private:
  void ensure_started() {
    if (!workers_.empty()) return;
    for (int i = 1; i < size_; ++i) workers_.emplace_back([this] { loop(); });
  }
  void loop() {
    std::unique_lock<std::mutex> g(m_);
    for (;;) {
      Job* job = nullptr;
      cv_.wait(g, [&] {
        if (stop_) return true;
        for (Job* j : queue_) if (j->helpers < j->max_helpers) { job = j; return true; }
        return false;
      });
      if (stop_) return;
      job->helpers++;
      g.unlock();
      job->work();
      g.lock();
      job->helpers--;
      auto it = std::find(queue_.begin(), queue_.end(), job);
      if (it != queue_.end() && (job->next.load() >= job->n || job->failed.load())) queue_.erase(it);
      done_cv_.notify_all();
    }
  }

  int size_;
  bool stop_ = false;
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::deque<Job*> queue_;
  std::vector<std::thread> workers_;
};

Pool& pool() {
  static Pool* p = new Pool();  // leaked on purpose: no destructor ordering issues at exit
  return *p;
}

}  // namespace

int pool_threads() { return pool().size(); }

void parallel_for(int64_t n, int64_t grain, int threads, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  const int64_t chunks = (n + grain - 1) / grain;
  int t = threads <= 0 ? pool().size() : std::min(threads, pool().size());
  if (int64_t(t) > chunks) t = int(chunks);
  Job job;
  job.fn = &fn;
  job.n = n;
  job.grain = grain;
  job.max_helpers = t - 1;
  pool().run(&job);
  if (job.err) std::rethrow_exception(job.err);
}

}  // namespace geoedit
