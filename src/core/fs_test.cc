#include "core/fs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "core/ids.h"

namespace lakeloop {
namespace {
namespace fs = std::filesystem;

fs::path TempDir() {
  fs::path p = fs::temp_directory_path() / ("lakeloop-fs-" + RandomHex(6));
  fs::create_directories(p);
  return p;
}

TEST(FsTest, AtomicWriteReplacesWholeFile) {
  fs::path d = TempDir();
  ASSERT_TRUE(WriteFileAtomic(d / "a", "first").ok());
  ASSERT_TRUE(WriteFileAtomic(d / "a", "second").ok());
  EXPECT_EQ(*ReadFile(d / "a"), "second");
  int files = 0;
  for (auto& e : fs::directory_iterator(d)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);  // no temp file left behind
  EXPECT_EQ(ReadFile(d / "missing").status().code(), Code::kNotFound);
  fs::remove_all(d);
}

// A secret (admin.token) is 0600 from its first byte, whatever the umask: the temporary file is
// created with the mode, never widened and narrowed later. A watcher thread stats every file in the
// folder while it is written again and again and must never see group or other bits.
TEST(FsTest, AtomicWriteCreatesWithTheModeFromTheFirstByte) {
  fs::path d = TempDir();
  mode_t old_umask = ::umask(0);
  std::atomic<bool> done{false};
  std::atomic<int> wide{0};
  std::thread watcher([&] {
    while (!done.load()) {
      std::error_code ec;
      for (auto& e : fs::directory_iterator(d, ec)) {
        struct stat st;
        if (::stat(e.path().c_str(), &st) == 0 && (st.st_mode & 077) != 0) wide.fetch_add(1);
      }
    }
  });
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(WriteFileAtomic(d / "admin.token", "secret-" + std::to_string(i), 0600).ok());
  }
  done.store(true);
  watcher.join();
  ::umask(old_umask);
  struct stat st;
  ASSERT_EQ(::stat((d / "admin.token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(wide.load(), 0);
  // The default stays 0644 (umask 0 here would have given 0666 without the explicit chmod).
  ::umask(0);
  ASSERT_TRUE(WriteFileAtomic(d / "public", "x").ok());
  ::umask(old_umask);
  ASSERT_EQ(::stat((d / "public").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST(FsTest, LockFileIsExclusiveAcrossProcesses) {
  fs::path d = TempDir();
  auto lock = LockFile::Acquire(d / "lock", "test");
  ASSERT_TRUE(lock.ok());
  EXPECT_TRUE(LockFile::IsHeld(d / "lock"));
  pid_t pid = fork();
  if (pid == 0) {
    auto second = LockFile::Acquire(d / "lock", "child");
    _exit(second.ok() ? 1 : (second.status().code() == Code::kConflict ? 0 : 2));
  }
  int st = 0;
  waitpid(pid, &st, 0);
  EXPECT_EQ(WEXITSTATUS(st), 0);
  { auto moved = std::move(*lock); }
  EXPECT_FALSE(LockFile::IsHeld(d / "lock"));
  fs::remove_all(d);
}

TEST(FsTest, ListFilesFiltersAndSorts) {
  fs::path d = TempDir();
  for (const char* n : {"b.yaml", "a.yml", "c.sql", "z.yaml.bak"})
    ASSERT_TRUE(WriteFileAtomic(d / n, "x").ok());
  fs::create_directories(d / "sub.yaml");
  auto files = ListFiles(d, {".yaml", ".yml"});
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].filename(), "a.yml");
  EXPECT_EQ(files[1].filename(), "b.yaml");
  EXPECT_TRUE(ListFiles(d / "missing", {".yaml"}).empty());
  EXPECT_EQ(RelativePath(d / "sources" / "x.yaml", d), "sources/x.yaml");
  EXPECT_EQ(RelativePath("/elsewhere/x", d), "/elsewhere/x");
  fs::remove_all(d);
}

TEST(IdsTest, UuidsAndHashes) {
  std::string a = NewUuid(), b = NewUuid();
  EXPECT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '4');
  EXPECT_NE(a, b);
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(RandomHex(16).size(), 32u);
}

}  // namespace
}  // namespace lakeloop
