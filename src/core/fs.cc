#include "core/fs.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/ids.h"

namespace lakeloop {
namespace fs = std::filesystem;

namespace {
Status Errno(std::string_view what, const fs::path& p) {
  return IoError(std::string(what) + " " + p.string() + ": " + std::strerror(errno));
}
}  // namespace

Status FsyncPath(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open", path);
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  errno = saved;
  if (rc != 0) return Errno("fsync", path);
  return Status::Ok();
}

Status WriteFileAtomic(const fs::path& path, std::string_view data, unsigned mode) {
  fs::path tmp = path;
  tmp += ".tmp-" + RandomHex(6);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) return Errno("create", tmp);
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) {  // the umask may have narrowed it: be exact
    Status s = Errno("chmod", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = Errno("write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return s;
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    Status s = Errno("fsync", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = Errno("rename", tmp);
    ::unlink(tmp.c_str());
    return s;
  }
  return FsyncPath(path.parent_path().empty() ? fs::path(".") : path.parent_path());
}

Result<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!fs::exists(path)) return NotFound("no such file: " + path.string());
    return Errno("open", path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status CreateDirs(const fs::path& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return IoError("create directory " + path.string() + ": " + ec.message());
  return Status::Ok();
}

std::vector<fs::path> ListFiles(const fs::path& dir,
                                std::initializer_list<std::string_view> extensions) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec)) continue;
    std::string ext = e.path().extension().string();
    for (auto want : extensions) {
      if (ext == want) out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string RelativePath(const fs::path& path, const fs::path& base) {
  std::error_code ec;
  auto r = fs::relative(path, base, ec);
  if (ec || r.empty() || r.native().rfind("..", 0) == 0) return path.generic_string();
  return r.generic_string();
}

Result<LockFile> LockFile::Acquire(const fs::path& path, std::string_view note) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("open lock file", path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int saved = errno;
    ::close(fd);
    if (saved == EWOULDBLOCK) {
      auto holder = ReadHolder(path);
      return Status(Code::kConflict, "data directory is in use (lock " + path.string() +
                                         " held by " + (holder.ok() ? *holder : "?") + ")");
    }
    errno = saved;
    return Errno("lock", path);
  }
  std::string content = std::to_string(::getpid()) + "\n" + std::string(note) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, content.data(), content.size(), 0) < 0) {
    ::close(fd);
    return Errno("write lock file", path);
  }
  ::fsync(fd);
  return LockFile(fd);
}

LockFile::LockFile(LockFile&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
LockFile& LockFile::operator=(LockFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}
LockFile::~LockFile() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

Result<std::string> LockFile::ReadHolder(const fs::path& path) { return ReadFile(path); }

bool LockFile::IsHeld(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

}  // namespace lakeloop
