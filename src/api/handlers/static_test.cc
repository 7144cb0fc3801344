#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "api/handlers.h"

namespace lakeloop::api {
namespace {
namespace fs = std::filesystem;

class StaticPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() /
            ("lakeloop_static_test_" +
             std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    root_ = base_ / "dist";
    fs::create_directories(root_ / "assets");
    Write(root_ / "index.html", "<html></html>");
    Write(root_ / "assets" / "index-AbCd1234.js", "x");
    Write(base_ / "secret.txt", "secret");
  }
  void TearDown() override { fs::remove_all(base_); }
  static void Write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

  fs::path base_;
  fs::path root_;
};

TEST_F(StaticPathTest, ServesRegularFilesUnderTheRoot) {
  auto index = ResolveStaticPath(root_, "index.html");
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(*index, fs::canonical(root_ / "index.html"));
  auto asset = ResolveStaticPath(root_, "assets/index-AbCd1234.js");
  ASSERT_TRUE(asset.ok()) << asset.status().ToString();
  EXPECT_EQ(*asset, fs::canonical(root_ / "assets" / "index-AbCd1234.js"));
}

TEST_F(StaticPathTest, RejectsTraversalAndOddCharacters) {
  for (const std::string& bad : std::vector<std::string>{
           "../secret.txt", "assets/../../secret.txt", "..", ".", "./index.html", "/etc/passwd",
           "assets//index-AbCd1234.js", "assets\\index.html", std::string("index.html\0.js", 14),
           "a\nb", ".hidden", "C:index.html", ""}) {
    auto r = ResolveStaticPath(root_, bad);
    ASSERT_FALSE(r.ok()) << "accepted: " << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST_F(StaticPathTest, MissingDirectoriesAndEscapingSymlinksAreNotFound) {
  EXPECT_EQ(ResolveStaticPath(root_, "nope.js").status().code(), Code::kNotFound);
  EXPECT_EQ(ResolveStaticPath(root_, "assets").status().code(), Code::kNotFound);  // a directory
  fs::create_symlink(base_ / "secret.txt", root_ / "link.txt");
  EXPECT_EQ(ResolveStaticPath(root_, "link.txt").status().code(), Code::kNotFound);
  fs::create_directory_symlink(base_, root_ / "up");
  EXPECT_EQ(ResolveStaticPath(root_, "up/secret.txt").status().code(), Code::kNotFound);
  // A root that does not exist (UI not built).
  EXPECT_EQ(ResolveStaticPath(base_ / "missing", "index.html").status().code(), Code::kNotFound);
}

TEST(StaticContentTypeTest, ByExtension) {
  EXPECT_EQ(StaticContentType("index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(StaticContentType("a-1.JS"), "text/javascript; charset=utf-8");
  EXPECT_EQ(StaticContentType("a.css"), "text/css; charset=utf-8");
  EXPECT_EQ(StaticContentType("logo.svg"), "image/svg+xml");
  EXPECT_EQ(StaticContentType("noext"), "application/octet-stream");
}

}  // namespace
}  // namespace lakeloop::api
