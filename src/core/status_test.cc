#include "core/status.h"

#include <gtest/gtest.h>

namespace lakeloop {
namespace {

Result<int> Half(int x) {
  if (x % 2) return InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x).status());
  return Status::Ok();
}

TEST(StatusTest, CodesMapToStableWireNamesAndHttp) {
  EXPECT_EQ(CodeName(Code::kInvalidArgument), "invalid_argument");
  EXPECT_EQ(InfoFor(Code::kUnauthenticated).http_status, 401);
  EXPECT_EQ(InfoFor(Code::kPermissionDenied).http_status, 403);
  EXPECT_EQ(InfoFor(Code::kPayloadTooLarge).http_status, 413);
  EXPECT_EQ(InfoFor(Code::kStatementNotAllowed).http_status, 400);
  EXPECT_EQ(InfoFor(Code::kConflict).http_status, 409);
  EXPECT_EQ(InfoFor(Code::kInternal).http_status, 500);
}

TEST(StatusTest, MacrosPropagate) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(CheckEven(3).code(), Code::kInvalidArgument);
}

TEST(StatusTest, ContextKeepsCode) {
  Status s = NotFound("x").WithContext("table raw.a");
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message(), "table raw.a: x");
  EXPECT_EQ(s.ToString(), "not_found: table raw.a: x");
}

}  // namespace
}  // namespace lakeloop
