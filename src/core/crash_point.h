// core/crash_point: named points where a test can make the process die as if by kill -9, to prove
// that every step of a protocol is crash-safe (RocksDB's sync points, for crashes).
//
// Set LAKELOOP_CRASH_AT=<name> (or <name>:<n> for the n-th time it is reached) in the environment
// of a test process; when execution reaches CrashPoint("<name>") the process sends itself SIGKILL.
// Costs one relaxed atomic load when unset.
#pragma once

#include <string_view>

namespace lakeloop {

void CrashPoint(std::string_view name);
// Re-reads the environment (tests that set it after start).
void ReloadCrashPoints();

}  // namespace lakeloop
