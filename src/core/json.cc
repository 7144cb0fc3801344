#include "core/json.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <charconv>
#include <cmath>

namespace lakeloop {
namespace json = boost::json;

Result<json::value> ParseJson(std::string_view text) {
  boost::system::error_code ec;
  json::parse_options opts;
  opts.max_depth = 64;
  json::value v = json::parse(text, ec, {}, opts);
  if (ec) {
    return Status(Code::kMalformedRequest, "request body is not valid JSON: " + ec.message());
  }
  return v;
}

Result<json::object> ParseJsonObject(std::string_view text) {
  ASSIGN_OR_RETURN(json::value v, ParseJson(text));
  if (!v.is_object()) {
    return Status(Code::kMalformedRequest, "request body must be a JSON object");
  }
  return std::move(v.as_object());
}

namespace {
void WriteValue(JsonWriter& w, const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      w.Null();
      break;
    case json::kind::bool_:
      w.Bool(v.get_bool());
      break;
    case json::kind::int64:
      w.Int(v.get_int64());
      break;
    case json::kind::uint64:
      w.Uint(v.get_uint64());
      break;
    case json::kind::double_:
      w.Double(v.get_double());
      break;
    case json::kind::string:
      w.String(v.get_string());
      break;
    case json::kind::array:
      w.BeginArray();
      for (const auto& e : v.get_array()) WriteValue(w, e);
      w.EndArray();
      break;
    case json::kind::object:
      w.BeginObject();
      for (const auto& kv : v.get_object()) {
        w.Key(kv.key());
        WriteValue(w, kv.value());
      }
      w.EndObject();
      break;
  }
}
}  // namespace

std::string ToJson(const json::value& v) {
  std::string out;
  JsonWriter w(&out);
  WriteValue(w, v);
  return out;
}

void JsonWriter::Separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!has_value_.empty()) {
    if (has_value_.back()) out_->push_back(',');
    has_value_.back() = true;
  }
}

JsonWriter& JsonWriter::BeginObject() {
  Separate();
  out_->push_back('{');
  has_value_.push_back(false);
  return *this;
}
JsonWriter& JsonWriter::EndObject() {
  out_->push_back('}');
  has_value_.pop_back();
  return *this;
}
JsonWriter& JsonWriter::BeginArray() {
  Separate();
  out_->push_back('[');
  has_value_.push_back(false);
  return *this;
}
JsonWriter& JsonWriter::EndArray() {
  out_->push_back(']');
  has_value_.pop_back();
  return *this;
}
JsonWriter& JsonWriter::Key(std::string_view k) {
  Separate();
  AppendEscaped(out_, k);
  out_->push_back(':');
  after_key_ = true;
  return *this;
}
JsonWriter& JsonWriter::String(std::string_view s) {
  Separate();
  AppendEscaped(out_, s);
  return *this;
}
JsonWriter& JsonWriter::Int(int64_t v) {
  Separate();
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out_->append(buf, r.ptr);
  return *this;
}
JsonWriter& JsonWriter::Uint(uint64_t v) {
  Separate();
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out_->append(buf, r.ptr);
  return *this;
}
JsonWriter& JsonWriter::Double(double v) {
  Separate();
  if (!std::isfinite(v)) {
    out_->append("null");
    return *this;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out_->append(buf, r.ptr);
  return *this;
}
JsonWriter& JsonWriter::Bool(bool v) {
  Separate();
  out_->append(v ? "true" : "false");
  return *this;
}
JsonWriter& JsonWriter::Null() {
  Separate();
  out_->append("null");
  return *this;
}
JsonWriter& JsonWriter::Raw(std::string_view json) {
  Separate();
  out_->append(json);
  return *this;
}

void JsonWriter::AppendEscaped(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

}  // namespace lakeloop
