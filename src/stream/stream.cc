#include "stream/stream.h"

namespace lakeloop::stream {

int32_t KafkaMurmur2(std::string_view data) {
  // Kafka's org.apache.kafka.common.utils.Utils.murmur2, with Java's 32-bit wrap-around.
  const uint32_t m = 0x5bd1e995;
  const int r = 24;
  const auto length = static_cast<uint32_t>(data.size());
  uint32_t h = 0x9747b28cu ^ length;
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  const uint32_t length4 = length / 4;
  for (uint32_t i = 0; i < length4; ++i) {
    const uint32_t i4 = i * 4;
    uint32_t k =
        p[i4] | (p[i4 + 1] << 8) | (p[i4 + 2] << 16) | (static_cast<uint32_t>(p[i4 + 3]) << 24);
    k *= m;
    k ^= k >> r;
    k *= m;
    h *= m;
    h ^= k;
  }
  const uint32_t tail = length & ~3u;
  switch (length % 4) {
    case 3:
      h ^= static_cast<uint32_t>(p[tail + 2]) << 16;
      [[fallthrough]];
    case 2:
      h ^= static_cast<uint32_t>(p[tail + 1]) << 8;
      [[fallthrough]];
    case 1:
      h ^= p[tail];
      h *= m;
  }
  h ^= h >> 13;
  h *= m;
  h ^= h >> 15;
  return static_cast<int32_t>(h);
}

int32_t PartitionForKey(std::string_view key, int partitions) {
  if (partitions <= 1) return 0;
  const auto positive = static_cast<uint32_t>(KafkaMurmur2(key)) & 0x7fffffffu;
  return static_cast<int32_t>(positive % static_cast<uint32_t>(partitions));
}

Status ValidateName(std::string_view kind, std::string_view name) {
  bool ok = !name.empty() && name.size() <= 128;
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '.' || c == '-');
  }
  if (ok) return Status::Ok();
  return InvalidArgument(std::string(kind) + " name must match [A-Za-z0-9_.-]{1,128}: '" +
                         std::string(name.substr(0, 200)) + "'");
}

Result<std::vector<int64_t>> EventLog::EndOffsets(std::string_view stream) const {
  ASSIGN_OR_RETURN(auto ranges, Offsets(stream));
  std::vector<int64_t> out;
  out.reserve(ranges.size());
  for (const auto& r : ranges) out.push_back(r.end);
  return out;
}

}  // namespace lakeloop::stream
