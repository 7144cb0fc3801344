#include "core/crash_point.h"

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
  armed.store(!target.empty(), std::memory_order_relaxed);
}

}  // namespace

void ReloadCrashPoints() { Load(); }

void CrashPoint(std::string_view name) {
  std::call_once(once, Load);
  if (!armed.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> lock(mu);
  if (name != target) return;
  if (--remaining > 0) return;
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

}  // namespace lakeloop
