// ObjectStore on the local filesystem: keys are paths below a root directory. Durability: Put
// writes a temp file, fsyncs and renames; Move/Copy fsync the directories they change.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "core/fs.h"
#include "lake/lake.h"

namespace lakeloop::lake {
namespace fs = std::filesystem;

Status ValidateKey(std::string_view key) {
  if (key.empty()) return InvalidArgument("empty object key");
  if (key.front() == '/')
    return InvalidArgument("object key must be relative: " + std::string(key));
  if (key.find('\0') != std::string_view::npos || key.find('\\') != std::string_view::npos) {
    return InvalidArgument("object key has a forbidden character");
  }
  size_t start = 0;
  while (start <= key.size()) {
    size_t end = key.find('/', start);
    if (end == std::string_view::npos) end = key.size();
    std::string_view seg = key.substr(start, end - start);
    if (seg == "." || seg == "..") {
      return InvalidArgument("object key may not contain '.' or '..': " + std::string(key));
    }
    if (seg.empty() && end != key.size()) {
      return InvalidArgument("object key has an empty segment: " + std::string(key));
    }
    start = end + 1;
  }
  return Status::Ok();
}

namespace {

class LocalObjectStore : public ObjectStore {
 public:
  explicit LocalObjectStore(fs::path root) : root_(std::move(root)) {}

  Status Put(std::string_view key, std::string_view data) override {
    RETURN_IF_ERROR(ValidateKey(key));
    fs::path p = Path(key);
    RETURN_IF_ERROR(CreateDirs(p.parent_path()));
    return WriteFileAtomic(p, data);
  }

  Result<std::string> Get(std::string_view key) override {
    RETURN_IF_ERROR(ValidateKey(key));
    return ReadFile(Path(key));
  }

  Result<bool> Exists(std::string_view key) override {
    RETURN_IF_ERROR(ValidateKey(key));
    std::error_code ec;
    bool e = fs::exists(Path(key), ec);
    if (ec) return IoError("stat " + std::string(key) + ": " + ec.message());
    return e;
  }

  Status Delete(std::string_view key) override {
    RETURN_IF_ERROR(ValidateKey(key));
    std::error_code ec;
    fs::path p = Path(key);
    if (fs::is_directory(p, ec)) {
      fs::remove_all(p, ec);
    } else {
      fs::remove(p, ec);
    }
    if (ec) return IoError("delete " + std::string(key) + ": " + ec.message());
    return Status::Ok();
  }

  Result<std::vector<ObjectInfo>> List(std::string_view prefix) override {
    std::vector<ObjectInfo> out;
    fs::path base = prefix.empty() ? root_ : Path(prefix);
    std::error_code ec;
    if (!fs::exists(base, ec)) return out;
    if (fs::is_regular_file(base, ec)) {
      out.push_back({std::string(prefix), static_cast<int64_t>(fs::file_size(base, ec))});
      return out;
    }
    for (auto it = fs::recursive_directory_iterator(base, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      std::string key = fs::relative(it->path(), root_, ec).generic_string();
      out.push_back({key, static_cast<int64_t>(it->file_size(ec))});
    }
    if (ec) return IoError("list " + std::string(prefix) + ": " + ec.message());
    std::sort(out.begin(), out.end(),
              [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  Status Move(std::string_view from, std::string_view to) override {
    RETURN_IF_ERROR(ValidateKey(from));
    RETURN_IF_ERROR(ValidateKey(to));
    fs::path dst = Path(to);
    RETURN_IF_ERROR(CreateDirs(dst.parent_path()));
    if (::rename(Path(from).c_str(), dst.c_str()) != 0) {
      return IoError("rename " + std::string(from) + " -> " + std::string(to) + ": " +
                     std::strerror(errno));
    }
    RETURN_IF_ERROR(FsyncPath(dst.parent_path()));
    return FsyncPath(Path(from).parent_path());
  }

  Status Copy(std::string_view from, std::string_view to) override {
    RETURN_IF_ERROR(ValidateKey(from));
    RETURN_IF_ERROR(ValidateKey(to));
    fs::path dst = Path(to);
    RETURN_IF_ERROR(CreateDirs(dst.parent_path()));
    if (::link(Path(from).c_str(), dst.c_str()) != 0 && errno != EEXIST) {
      return IoError("link " + std::string(from) + " -> " + std::string(to) + ": " +
                     std::strerror(errno));
    }
    return FsyncPath(dst.parent_path());
  }

  Status Sync(std::string_view prefix) override {
    fs::path base = prefix.empty() ? root_ : Path(prefix);
    std::error_code ec;
    if (!fs::exists(base, ec)) return Status::Ok();
    if (fs::is_directory(base, ec)) {
      for (auto it = fs::recursive_directory_iterator(base, ec); !ec && it != fs::end(it);
           it.increment(ec)) {
        RETURN_IF_ERROR(FsyncPath(it->path()));
      }
    }
    RETURN_IF_ERROR(FsyncPath(base));
    return FsyncPath(base.parent_path());
  }

  std::string Locate(std::string_view key) const override { return Path(key).string(); }
  fs::path LocalPath(std::string_view key) const override { return Path(key); }

 private:
  fs::path Path(std::string_view key) const { return root_ / fs::path(std::string(key)); }
  fs::path root_;
};

}  // namespace

std::unique_ptr<ObjectStore> NewLocalObjectStore(const fs::path& root) {
  return std::make_unique<LocalObjectStore>(root);
}

}  // namespace lakeloop::lake
