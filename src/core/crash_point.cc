#include "core/crash_point.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

namespace lakeloop {
namespace {

std::mutex mu;
std::string target;
long remaining = 0;
std::string pause_target;  // guarded by mu
std::string pause_fifo;    // guarded by mu
std::atomic<bool> armed{false};
std::once_flag once;

void Load() {
  std::lock_guard<std::mutex> lock(mu);
  const char* v = std::getenv("LAKELOOP_CRASH_AT");
  target = v ? v : "";
  remaining = 1;
  if (auto colon = target.find(':'); colon != std::string::npos) {
    remaining = std::strtol(target.c_str() + colon + 1, nullptr, 10);
    target.resize(colon);
  }
  const char* p = std::getenv("LAKELOOP_PAUSE_AT");
  const char* f = std::getenv("LAKELOOP_PAUSE_FIFO");
  pause_target = p && f ? p : "";
  pause_fifo = p && f ? f : "";
  armed.store(!target.empty() || !pause_target.empty(), std::memory_order_relaxed);
}

// Blocks until a writer opens and closes the FIFO (the test's release).
void PauseAt(const std::string& fifo) {
  std::string reached = fifo + ".reached";
  int m = ::open(reached.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (m >= 0) ::close(m);
  int fd = ::open(fifo.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[64];
  while (::read(fd, buf, sizeof(buf)) > 0) {
  }
  ::close(fd);
}

}  // namespace

void ReloadCrashPoints() { Load(); }

void CrashPoint(std::string_view name) {
  std::call_once(once, Load);
  if (!armed.load(std::memory_order_relaxed)) return;
  std::unique_lock<std::mutex> lock(mu);
  if (!pause_target.empty() && name == pause_target) {
    std::string fifo = pause_fifo;
    pause_target.clear();  // once
    lock.unlock();
    PauseAt(fifo);
    return;
  }
  if (name != target) return;
  if (--remaining > 0) return;
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

}  // namespace lakeloop
