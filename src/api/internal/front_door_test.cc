// The front door's checks on their own (no sockets): hosts, origins, content types, throttle.
#include "api/internal/front_door.h"

#include <gtest/gtest.h>

namespace lakeloop::api::internal {
namespace {

using namespace std::chrono_literals;

Request Post(std::vector<Header> headers, std::string body = "{}") {
  Request r;
  r.method = "POST";
  r.headers = std::move(headers);
  r.body = std::move(body);
  return r;
}

TEST(FrontDoorTest, HostAllowlist) {
  FrontDoor door({"lake.example", "10.0.0.5:8080", "fe80::1"}, {}, 8080);
  auto code = [&](std::string_view host) { return door.CheckHost(host, 11).code(); };
  EXPECT_EQ(code("localhost"), Code::kOk);
  EXPECT_EQ(code("localhost.:9"), Code::kOk);
  EXPECT_EQ(code("127.0.0.1:8080"), Code::kOk);
  EXPECT_EQ(code("[::1]"), Code::kOk);
  EXPECT_EQ(code("Lake.Example:1"), Code::kOk);
  EXPECT_EQ(code("10.0.0.5:8080"), Code::kOk);
  EXPECT_EQ(code("10.0.0.5:8081"), Code::kMisdirectedRequest);
  EXPECT_EQ(code("[fe80::1]:8080"), Code::kOk);
  EXPECT_EQ(code("127.0.0.2"), Code::kMisdirectedRequest);
  EXPECT_EQ(code("localhost.evil.example"), Code::kMisdirectedRequest);
  EXPECT_EQ(code("evil.example:8080"), Code::kMisdirectedRequest);
  EXPECT_EQ(code("a b"), Code::kMalformedRequest);
  EXPECT_EQ(code("localhost:99999"), Code::kMalformedRequest);
  EXPECT_EQ(door.CheckHost(std::nullopt, 11).code(), Code::kMalformedRequest);
  EXPECT_EQ(door.CheckHost(std::nullopt, 10).code(), Code::kOk);
  EXPECT_EQ(FrontDoor::ValidateHostEntry("a b").code(), Code::kInvalidArgument);
  EXPECT_TRUE(FrontDoor::ValidateHostEntry("host:80").ok());
}

TEST(FrontDoorTest, OriginsOfStateChangingRequests) {
  FrontDoor door({}, {"https://ui.example"}, 8080);
  auto code = [&](std::vector<Header> h) { return door.CheckCrossSite(Post(std::move(h))).code(); };
  EXPECT_EQ(code({}), Code::kOk);
  EXPECT_EQ(code({{"Origin", "http://localhost:8080"}}), Code::kOk);
  EXPECT_EQ(code({{"Origin", "http://127.0.0.1:8080"}}), Code::kOk);
  EXPECT_EQ(code({{"Origin", "https://ui.example"}}), Code::kOk);
  EXPECT_EQ(code({{"Origin", "https://ui.example"}, {"Sec-Fetch-Site", "same-site"}}), Code::kOk);
  EXPECT_EQ(code({{"Origin", "http://localhost"}}), Code::kPermissionDenied);  // port 80
  EXPECT_EQ(code({{"Origin", "http://ui.example"}}), Code::kPermissionDenied);
  EXPECT_EQ(code({{"Origin", "null"}}), Code::kPermissionDenied);
  EXPECT_EQ(code({{"Sec-Fetch-Site", "cross-site"}}), Code::kPermissionDenied);
  EXPECT_EQ(code({{"Sec-Fetch-Site", "same-site"}}), Code::kPermissionDenied);
  EXPECT_EQ(code({{"Sec-Fetch-Site", "none"}}), Code::kOk);
  EXPECT_EQ(code({{"Sec-Fetch-Site", "same-origin"}, {"Origin", "http://localhost:8080"}}),
            Code::kOk);
  // A listed origin is trusted even cross-site; another one is not.
  EXPECT_EQ(code({{"Origin", "https://ui.example"}, {"Sec-Fetch-Site", "cross-site"}}), Code::kOk);
  EXPECT_EQ(code({{"Origin", "https://evil.example"}, {"Sec-Fetch-Site", "cross-site"}}),
            Code::kPermissionDenied);
  Request get = Post({{"Origin", "http://evil.example"}});
  get.method = "GET";
  EXPECT_TRUE(door.CheckCrossSite(get).ok());
  EXPECT_TRUE(door.CorsAllowed("https://ui.example"));
  EXPECT_FALSE(door.CorsAllowed("https://ui.example:443"));
}

TEST(FrontDoorTest, ThrottleBlocksAnAddressForAMinute) {
  AuthThrottle t(3);
  auto now = AuthThrottle::Clock::now();
  EXPECT_EQ(t.BlockedFor("10.0.0.1:1000", now), 0);
  EXPECT_EQ(t.Fail("10.0.0.1:1000", now), 0);
  EXPECT_EQ(t.Fail("10.0.0.1:1001", now + 1s), 0);  // the port does not matter
  EXPECT_EQ(t.Fail("10.0.0.1:1002", now + 2s), 60);
  EXPECT_EQ(t.BlockedFor("10.0.0.1:5", now + 3s), 59);
  EXPECT_EQ(t.BlockedFor("10.0.0.2:5", now + 3s), 0);
  EXPECT_EQ(t.BlockedFor("10.0.0.1:5", now + 62s), 0);
  // Failures spread over more than a minute never block.
  AuthThrottle slow(3);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(slow.Fail("[::1]:7", now + std::chrono::seconds(31 * i)), 0) << i;
  }
  // IPv6 addresses are keyed without their port too.
  AuthThrottle v6(1);
  EXPECT_GT(v6.Fail("[::1]:7", now), 0);
  EXPECT_GT(v6.BlockedFor("[::1]:8", now), 0);
  EXPECT_EQ(v6.BlockedFor("[::2]:8", now), 0);
}

}  // namespace
}  // namespace lakeloop::api::internal
