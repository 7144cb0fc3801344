// core/fs: durable filesystem helpers (fsync of files and directories, atomic replace, lock files).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace lakeloop {

Status FsyncPath(const std::filesystem::path& path);  // a file or a directory
// Writes `data` to `path` atomically: temp file in the same directory, fsync, rename, fsync dir.
// `mode` is given to open(O_CREAT|O_EXCL) of the temporary file (and set with fchmod, whatever the
// umask), so a secret written with 0600 is never readable by others, not even for a moment.
Status WriteFileAtomic(const std::filesystem::path& path, std::string_view data,
                       unsigned mode = 0644);
Result<std::string> ReadFile(const std::filesystem::path& path);
Status CreateDirs(const std::filesystem::path& path);
// Regular files directly in `dir` whose extension is one of `extensions` (".yaml"), sorted; none
// when `dir` does not exist.
std::vector<std::filesystem::path> ListFiles(const std::filesystem::path& dir,
                                             std::initializer_list<std::string_view> extensions);
// `path` relative to `base` with '/' separators (the path itself when it is not below base).
std::string RelativePath(const std::filesystem::path& path, const std::filesystem::path& base);

// An exclusive advisory lock (flock) on a file, held for the object's lifetime. Writes the
// holder's pid and the given note into the file for diagnostics.
class LockFile {
 public:
  static Result<LockFile> Acquire(const std::filesystem::path& path, std::string_view note);
  LockFile(LockFile&& other) noexcept;
  LockFile& operator=(LockFile&& other) noexcept;
  ~LockFile();
  // Reads what the current holder wrote, if the lock is held by someone.
  static Result<std::string> ReadHolder(const std::filesystem::path& path);
  // True if some process holds the lock right now.
  static bool IsHeld(const std::filesystem::path& path);

 private:
  explicit LockFile(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace lakeloop
