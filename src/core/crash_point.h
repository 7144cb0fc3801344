// core/crash_point: named points where a test can make the process die as if by kill -9, to prove
// that every step of a protocol is crash-safe (RocksDB's sync points, for crashes).
//
// Set LAKELOOP_CRASH_AT=<name> (or <name>:<n> for the n-th time it is reached) in the environment
// of a test process; when execution reaches CrashPoint("<name>") the process sends itself SIGKILL.
// Costs one relaxed atomic load when unset.
//
// Pause instead of dying: LAKELOOP_PAUSE_AT=<name> with LAKELOOP_PAUSE_FIFO=<path of a FIFO> makes
// the first thread that reaches CrashPoint("<name>") create "<path>.reached" and block until the
// test opens the FIFO for writing and closes it; so a test can hold, say, the event log's committer
// mid-commit and observe what callers get meanwhile (a full queue) without timing luck.
#pragma once

#include <string_view>

namespace lakeloop {

void CrashPoint(std::string_view name);
// Re-reads the environment (tests that set it after start).
void ReloadCrashPoints();

}  // namespace lakeloop
