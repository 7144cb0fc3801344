// core/ids: identifiers, random secrets and hashes.
#pragma once

#include <string>
#include <string_view>

namespace lakeloop {

// A random RFC 4122 version-4 UUID, lower-case with dashes. Thread-safe.
std::string NewUuid();
// `bytes` random bytes from the OS CSPRNG, hex-encoded. Thread-safe.
std::string RandomHex(size_t bytes);
// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

}  // namespace lakeloop
