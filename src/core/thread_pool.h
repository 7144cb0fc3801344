// core/thread_pool: a fixed pool of worker threads for blocking work (SQL, file I/O, training).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace lakeloop {

// Runs submitted tasks on `threads` workers in FIFO order. Thread-safe. Shutdown() (or the
// destructor) stops accepting work, runs what is queued, and joins the workers.
class ThreadPool {
 public:
  ThreadPool(std::string name, size_t threads, size_t max_queue = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // False when the pool is shutting down or the queue is at max_queue (0 = unbounded).
  bool Submit(std::function<void()> task);
  void Shutdown();
  size_t threads() const { return workers_.size(); }
  size_t queued() const;

 private:
  void Run();

  std::string name_;
  size_t max_queue_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace lakeloop
