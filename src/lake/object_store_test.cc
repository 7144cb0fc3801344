#include <gtest/gtest.h>

#include "core/ids.h"
#include "lake/lake.h"

namespace lakeloop::lake {
namespace {
namespace fs = std::filesystem;

TEST(ObjectStoreTest, KeysAreValidated) {
  for (const char* bad : {"", "/etc/passwd", "a/../b", "./a", "a//b", "..", "a\\b"}) {
    EXPECT_EQ(ValidateKey(bad).code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(ValidateKey("raw/orders/dt=2026-01-01/part-1.parquet").ok());
}

TEST(ObjectStoreTest, LocalPutGetListMoveCopyDelete) {
  fs::path root = fs::temp_directory_path() / ("lakeloop-os-" + RandomHex(6));
  auto store = NewLocalObjectStore(root);
  ASSERT_TRUE(store->Put("a/b/one", "1").ok());
  ASSERT_TRUE(store->Put("a/two", "22").ok());
  EXPECT_EQ(*store->Get("a/b/one"), "1");
  auto list = store->List("a");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].key, "a/b/one");
  EXPECT_EQ((*list)[1].size, 2);
  ASSERT_TRUE(store->Move("a/two", "c/two").ok());
  EXPECT_FALSE(*store->Exists("a/two"));
  ASSERT_TRUE(store->Copy("c/two", "d/two").ok());
  ASSERT_TRUE(store->Delete("c/two").ok());
  EXPECT_EQ(*store->Get("d/two"), "22");  // a copy outlives its source
  ASSERT_TRUE(store->Delete("missing").ok());
  EXPECT_EQ(store->Get("../x").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store->Locate("a/b/one"), (root / "a/b/one").string());
  fs::remove_all(root);
}

}  // namespace
}  // namespace lakeloop::lake
