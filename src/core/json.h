// core/json: parsing request bodies (Boost.JSON) into Status-checked values, and a small fast
// streaming writer (std::to_chars) for replies on hot paths.
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace lakeloop {

// Parses `text` as one JSON document; a syntax error is kMalformedRequest naming the position.
Result<boost::json::value> ParseJson(std::string_view text);
// Parses and requires a JSON object.
Result<boost::json::object> ParseJsonObject(std::string_view text);

// Serialises a Boost.JSON value with our number formatting (shortest round-trip doubles).
std::string ToJson(const boost::json::value& v);

// Appends JSON to a string. Commas between members and elements are inserted automatically.
// Not thread-safe (one writer per reply).
class JsonWriter {
 public:
  explicit JsonWriter(std::string* out) : out_(out) {}

  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view k);
  JsonWriter& String(std::string_view s);
  JsonWriter& Int(int64_t v);
  JsonWriter& Uint(uint64_t v);
  // Non-finite doubles are written as null (JSON has no NaN/Inf).
  JsonWriter& Double(double v);
  JsonWriter& Bool(bool v);
  JsonWriter& Null();
  // Appends pre-encoded JSON as one value.
  JsonWriter& Raw(std::string_view json);

  static void AppendEscaped(std::string* out, std::string_view s);

 private:
  void Separate();
  std::string* out_;
  // One entry per open container: true once it holds a value.
  std::vector<bool> has_value_;
  bool after_key_ = false;
};

}  // namespace lakeloop
