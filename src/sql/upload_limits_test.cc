// Upload checks: each limit rejects what is over it (kPayloadTooLarge naming its config key), and
// real files of each format within the limits pass.
#include "sql/upload_limits.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "sql/sql.h"

namespace lakeloop::sql {
namespace {

using ::testing::HasSubstr;

std::string Nested(int depth, char open, char close, const std::string& key) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += open == '{' ? "{\"" + key + "\":" : std::string(1, open);
  s += "1";
  s.append(depth, close);
  return s;
}

TEST(UploadLimitsTest, JsonDepth) {
  UploadLimits limits;
  limits.max_json_depth = 64;
  EXPECT_TRUE(CheckJsonUpload(Nested(64, '{', '}', "a") + "\n", limits).ok());
  for (int depth : {65, 200, 400, 3000}) {
    Status s = CheckJsonUpload(Nested(depth, '{', '}', "a") + "\n", limits);
    EXPECT_EQ(s.code(), Code::kPayloadTooLarge) << depth;
    EXPECT_THAT(s.message(), HasSubstr("limits.upload_max_json_depth"));
  }
  // Arrays nested 10,000 deep: rejected too, without recursion.
  EXPECT_EQ(CheckJsonUpload(Nested(10000, '[', ']', ""), limits).code(), Code::kPayloadTooLarge);
  // Brackets inside strings do not count; escaped quotes do not end a string.
  EXPECT_TRUE(CheckJsonUpload("{\"a\":\"" + std::string(5000, '[') + "\\\"{{{\"}\n", limits).ok());
}

TEST(UploadLimitsTest, JsonColumns) {
  UploadLimits limits;
  limits.max_columns = 100;
  std::string wide = "{";
  for (int i = 0; i < 101; ++i)
    wide += (i ? "," : "") + std::string("\"k") + std::to_string(i) + "\":1";
  wide += "}\n";
  Status s = CheckJsonUpload(wide, limits);
  EXPECT_EQ(s.code(), Code::kPayloadTooLarge);
  EXPECT_THAT(s.message(), HasSubstr("limits.upload_max_columns"));
  // Distinct keys across records count as columns, one key per line.
  std::string lines;
  for (int i = 0; i < 101; ++i) lines += "{\"k" + std::to_string(i) + "\":1}\n";
  EXPECT_EQ(CheckJsonUpload(lines, limits).code(), Code::kPayloadTooLarge);
  // The same keys on many lines are fine; so is a JSON array of records.
  std::string same;
  for (int i = 0; i < 1000; ++i) same += "{\"a\":1,\"b\":{\"c\":2}}\n";
  EXPECT_TRUE(CheckJsonUpload(same, limits).ok());
  EXPECT_TRUE(CheckJsonUpload("[{\"a\":1},{\"a\":2,\"b\":\"x:y\"}]", limits).ok());
}

TEST(UploadLimitsTest, LineLength) {
  UploadLimits limits;
  limits.max_line_bytes = 1000;
  EXPECT_TRUE(CheckJsonUpload("{\"a\":\"" + std::string(900, 'x') + "\"}\n", limits).ok());
  Status s = CheckJsonUpload("{\"a\":1}\n{\"a\":\"" + std::string(2000, 'x') + "\"}\n", limits);
  EXPECT_EQ(s.code(), Code::kPayloadTooLarge);
  EXPECT_THAT(s.message(), HasSubstr("line 2"));
  EXPECT_THAT(s.message(), HasSubstr("limits.upload_max_line_bytes"));
  EXPECT_TRUE(CheckCsvUpload("a,b\n1," + std::string(900, 'x') + "\n", limits).ok());
  EXPECT_EQ(CheckCsvUpload("a,b\n1," + std::string(2000, 'x') + "\n", limits).code(),
            Code::kPayloadTooLarge);
  // A quoted field's newlines belong to its record; an unclosed quote runs to the end.
  EXPECT_EQ(CheckCsvUpload(
                "a,b\n1,\"" + std::string(600, 'x') + "\n" + std::string(600, 'y') + "\"\n", limits)
                .code(),
            Code::kPayloadTooLarge);
  // The whole upload a single line without a newline.
  EXPECT_EQ(CheckCsvUpload(std::string(5000, 'x'), limits).code(), Code::kPayloadTooLarge);
}

TEST(UploadLimitsTest, CsvColumns) {
  UploadLimits limits;
  limits.max_columns = 2048;
  auto header = [](int n, char delim) {
    std::string h;
    for (int i = 0; i < n; ++i) h += (i ? std::string(1, delim) : "") + "c" + std::to_string(i);
    return h + "\n";
  };
  EXPECT_TRUE(CheckCsvUpload(header(2048, ',') + "1\n", limits).ok());
  for (int n : {2049, 20000, 100000}) {
    Status s = CheckCsvUpload(header(n, ','), limits);
    EXPECT_EQ(s.code(), Code::kPayloadTooLarge) << n;
    EXPECT_THAT(s.message(), HasSubstr("limits.upload_max_columns"));
  }
  EXPECT_EQ(CheckCsvUpload(header(3000, ';'), limits).code(), Code::kPayloadTooLarge);
  EXPECT_EQ(CheckCsvUpload(header(3000, '\t'), limits).code(), Code::kPayloadTooLarge);
  // Delimiters inside quotes are not columns.
  EXPECT_TRUE(CheckCsvUpload("a,\"" + std::string(5000, ',') + "\"\n1,2\n", limits).ok());
}

// A Parquet file: "PAR1", a footer (Thrift compact FileMetaData), its length, "PAR1".
std::string ParquetWithFooter(const std::string& footer) {
  std::string out = "PAR1" + footer;
  const uint32_t n = static_cast<uint32_t>(footer.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + "PAR1";
}

std::string Varint(uint64_t v) {
  std::string s;
  while (v >= 0x80) {
    s.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  s.push_back(static_cast<char>(v));
  return s;
}

TEST(UploadLimitsTest, ParquetFooterClaimingTenMillionColumns) {
  UploadLimits limits;
  // version = 1 (field 1, i32), then schema (field 2): a list of 10,000,001 structs in 20 bytes.
  std::string footer = "\x15\x02\x19\xfc" + Varint(10000001) + std::string(16, '\0');
  Status s = CheckParquetUpload(ParquetWithFooter(footer), limits);
  EXPECT_EQ(s.code(), Code::kPayloadTooLarge);
  EXPECT_THAT(s.message(), HasSubstr("10000000 columns"));
  EXPECT_THAT(s.message(), HasSubstr("limits.upload_max_columns"));
  // Within the column limit but claiming more than it holds: malformed, not a scan.
  footer = "\x15\x02\x19\xfc" + Varint(1000) + std::string(16, '\0');
  EXPECT_EQ(CheckParquetUpload(ParquetWithFooter(footer), limits).code(), Code::kInvalidArgument);
  // Row groups (field 4 after field 2 and 3).
  std::string two_columns("\x15\x02\x19\x3c\x00\x00\x00", 7);  // 3 empty schema structs
  footer = two_columns + "\x16\x02" + "\x19\xfc" + Varint(200000) + std::string(8, '\0');
  s = CheckParquetUpload(ParquetWithFooter(footer), limits);
  EXPECT_EQ(s.code(), Code::kPayloadTooLarge);
  EXPECT_THAT(s.message(), HasSubstr("limits.upload_max_parquet_row_groups"));
}

TEST(UploadLimitsTest, ParquetTrailer) {
  UploadLimits limits;
  limits.max_parquet_footer_bytes = 1 << 20;
  std::string big = "PAR1";
  big += std::string("\x00\x00\x00\x10", 4);  // footer length 256 MiB
  big += "PAR1";
  Status s = CheckParquetUpload(big, limits);
  EXPECT_EQ(s.code(), Code::kPayloadTooLarge);
  EXPECT_THAT(s.message(), HasSubstr("limits.upload_max_parquet_footer_bytes"));
  EXPECT_EQ(CheckParquetUpload("PAR1xxxx", limits).code(), Code::kInvalidArgument);
  EXPECT_EQ(CheckParquetUpload("not parquet at all", limits).code(), Code::kInvalidArgument);
  std::string longer = ParquetWithFooter("\x15\x02");
  longer[longer.size() - 8] = 100;  // claims more footer than the file has
  EXPECT_EQ(CheckParquetUpload(longer, limits).code(), Code::kInvalidArgument);
}

class ParquetFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lakeloop-upload-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    EngineOptions o;
    o.sandboxed = false;
    o.scratch_dir = root_ / "scratch";
    auto e = Engine::Open(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(e).value();
  }
  void TearDown() override {
    engine_.reset();
    std::filesystem::remove_all(root_);
  }
  std::string Write(const std::string& select, const std::string& options = "") {
    auto path = root_ / "f.parquet";
    Status s = engine_->Exec("COPY (" + select + ") TO " + QuoteLiteral(path.string()) +
                             " (FORMAT parquet" + options + ")");
    EXPECT_TRUE(s.ok()) << s.ToString();
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::filesystem::path root_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(ParquetFilesTest, RealFilesPassAndAreCounted) {
  UploadLimits limits;
  // Nested types, several row groups, key-value metadata: all parsed and skipped correctly.
  std::string file = Write(
      "SELECT range AS id, [range, 2] AS l, {'a': range, 'b': 'x'} AS s, MAP {'k': range} AS m, "
      "range % 2 = 0 AS flag, 1.5::DOUBLE AS d FROM range(10000)",
      ", ROW_GROUP_SIZE 1000, KV_METADATA {k: 'v'}");
  Status s = CheckParquetUpload(file, limits);
  EXPECT_TRUE(s.ok()) << s.ToString();
  limits.max_parquet_row_groups = 1;  // the file has several
  EXPECT_EQ(CheckParquetUpload(file, limits).code(), Code::kPayloadTooLarge);
  limits = {};
  limits.max_columns = 5;  // the schema holds more than 5 elements besides the root
  EXPECT_EQ(CheckParquetUpload(file, limits).code(), Code::kPayloadTooLarge);
  std::string wide = "SELECT ";
  for (int i = 0; i < 300; ++i)
    wide += (i ? ", " : "") + std::to_string(i) + " AS c" + std::to_string(i);
  limits = {};
  limits.max_columns = 300;
  EXPECT_TRUE(CheckParquetUpload(Write(wide), limits).ok());
  limits.max_columns = 299;
  EXPECT_EQ(CheckParquetUpload(Write(wide), limits).code(), Code::kPayloadTooLarge);
}

}  // namespace
}  // namespace lakeloop::sql
