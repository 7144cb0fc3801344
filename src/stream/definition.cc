#include "stream/definition.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <map>
#include <set>

#include "core/fs.h"
#include "core/json.h"
#include "core/time.h"

namespace lakeloop::stream {
namespace json = boost::json;

std::string_view FieldTypeName(FieldType t) {
  switch (t) {
    case FieldType::kInteger:
      return "integer";
    case FieldType::kNumber:
      return "number";
    case FieldType::kString:
      return "string";
    case FieldType::kBoolean:
      return "boolean";
    case FieldType::kTimestamp:
      return "timestamp";
  }
  return "?";
}

std::string_view FieldSqlType(FieldType t) {
  switch (t) {
    case FieldType::kInteger:
      return "BIGINT";
    case FieldType::kNumber:
      return "DOUBLE";
    case FieldType::kString:
      return "VARCHAR";
    case FieldType::kBoolean:
      return "BOOLEAN";
    case FieldType::kTimestamp:
      return "TIMESTAMP";
  }
  return "VARCHAR";
}

int StreamDefinition::FieldIndex(std::string_view n) const {
  for (size_t i = 0; i < fields.size(); ++i) {
    if (fields[i].name == n) return static_cast<int>(i);
  }
  return -1;
}

StreamOptions StreamDefinition::ToStreamOptions() const {
  StreamOptions o;
  o.name = name;
  o.partitions = partitions;
  o.dedup_window_us = event_id_field.empty() ? 0 : dedup_window_us;
  o.retention_us = retention_us;
  o.retention_bytes = retention_bytes;
  return o;
}

Result<int64_t> ParseDuration(std::string_view s) {
  auto bad = [&] {
    return InvalidArgument("'" + std::string(s.substr(0, 40)) +
                           "' is not a duration (<n>ms, <n>s, <n>m, <n>h or <n>d)");
  };
  if (s == "0") return int64_t{0};
  int64_t n = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), n);
  if (r.ec != std::errc() || n < 0 || r.ptr == s.data()) return bad();
  std::string_view unit(r.ptr, s.data() + s.size() - r.ptr);
  int64_t mul;
  if (unit == "ms") {
    mul = 1000;
  } else if (unit == "s") {
    mul = 1'000'000;
  } else if (unit == "m") {
    mul = 60'000'000;
  } else if (unit == "h") {
    mul = 3'600'000'000;
  } else if (unit == "d") {
    mul = 86'400'000'000;
  } else {
    return bad();
  }
  if (n > INT64_MAX / mul) return bad();
  return n * mul;
}

// ---- YAML ---------------------------------------------------------------------------------------

namespace {

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) {}

  Status Error(const YAML::Node& n, const std::string& what) const {
    std::string where = file_;
    if (n.IsDefined() && n.Mark().line >= 0) {
      where += ":" + std::to_string(n.Mark().line + 1) + ":" + std::to_string(n.Mark().column + 1);
    }
    return InvalidArgument(where + ": " + what);
  }
  Status Error(const YAML::Mark& m, const std::string& what) const {
    return InvalidArgument(file_ + ":" + std::to_string(m.line + 1) + ":" +
                           std::to_string(m.column + 1) + ": " + what);
  }

  Result<std::string> Scalar(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) return Error(n, "'" + key + "' must be a single value");
    return n.Scalar();
  }
  Result<int64_t> Int(const YAML::Node& n, const std::string& key, int64_t lo, int64_t hi) const {
    ASSIGN_OR_RETURN(std::string s, Scalar(n, key));
    int64_t v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v < lo || v > hi) {
      return Error(n, "'" + key + "' must be an integer from " + std::to_string(lo) + " to " +
                          std::to_string(hi) + ", not '" + s + "'");
    }
    return v;
  }
  Result<int64_t> Duration(const YAML::Node& n, const std::string& key) const {
    ASSIGN_OR_RETURN(std::string s, Scalar(n, key));
    auto d = ParseDuration(s);
    if (!d.ok()) return Error(n, "'" + key + "': " + d.status().message());
    return *d;
  }
  Result<bool> Bool(const YAML::Node& n, const std::string& key) const {
    ASSIGN_OR_RETURN(std::string s, Scalar(n, key));
    if (s == "true") return true;
    if (s == "false") return false;
    return Error(n, "'" + key + "' must be true or false, not '" + s + "'");
  }

  // Calls `on(key, value)` for each key of a map, rejecting duplicates and keys not in `allowed`.
  template <typename F>
  Status EachKey(const YAML::Node& map, const std::vector<std::string_view>& allowed,
                 const std::string& what, F on) const {
    if (!map.IsMap()) return Error(map, what + " must be a mapping");
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const YAML::Node k = it->first;  // copies: the iterator's pair is a temporary
      const YAML::Node v = it->second;
      if (!k.IsScalar()) return Error(k, "keys of " + what + " must be names");
      const std::string& key = k.Scalar();
      if (!seen.insert(key).second) return Error(k, "duplicate key '" + key + "' in " + what);
      if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string list;
        for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        return Error(k,
                     "unknown key '" + key + "' in " + what + " (expected one of: " + list + ")");
      }
      RETURN_IF_ERROR(on(k, key, v));
    }
    return Status::Ok();
  }

 private:
  std::string file_;
};

bool IsIdentifier(std::string_view s, bool allow_underscore_first) {
  if (s.empty() || s.size() > 63) return false;
  if (!(std::islower(static_cast<unsigned char>(s[0])) || (allow_underscore_first && s[0] == '_')))
    return false;
  for (char c : s) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '_'))
      return false;
  }
  return true;
}

Result<FieldType> ParseFieldType(std::string_view s) {
  if (s == "integer") return FieldType::kInteger;
  if (s == "number") return FieldType::kNumber;
  if (s == "string") return FieldType::kString;
  if (s == "boolean") return FieldType::kBoolean;
  if (s == "timestamp") return FieldType::kTimestamp;
  return InvalidArgument("unknown type '" + std::string(s) +
                         "' (integer, number, string, boolean or timestamp)");
}

}  // namespace

Result<StreamDefinition> ParseStreamDefinition(std::string_view text, std::string_view file_name) {
  Parser p{std::string(file_name)};
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return p.Error(e.mark, e.msg);
  }
  if (!root.IsDefined() || root.IsNull()) {
    return InvalidArgument(std::string(file_name) + ": empty stream definition");
  }
  StreamDefinition def;
  def.origin = std::string(file_name);
  YAML::Node key_node, time_node, id_node, fields_node;
  try {
    Status s = p.EachKey(
        root,
        {"name", "fields", "key", "time", "event_id", "dedup_window", "retention",
         "retention_bytes", "allowed_lateness", "max_future_skew", "partitions",
         "additional_fields", "description"},
        "a stream definition",
        [&](const YAML::Node& k, const std::string& key, const YAML::Node& v) -> Status {
          if (key == "name") {
            ASSIGN_OR_RETURN(def.name, p.Scalar(v, key));
            if (!IsIdentifier(def.name, true)) {
              return p.Error(v, "stream name '" + def.name +
                                    "' must be a lower-case identifier ([a-z_][a-z0-9_]*, at "
                                    "most 63): it names the lake table raw.<name>");
            }
          } else if (key == "fields") {
            fields_node = v;
            return p.EachKey(
                v, {}, "fields",
                [&](const YAML::Node& fk, const std::string& fname,
                    const YAML::Node& fv) -> Status {
                  if (!IsIdentifier(fname, false) || fname == "event_date") {
                    return p.Error(fk, "field name '" + fname +
                                           "' must be [a-z][a-z0-9_]* (at most 63; '_' first "
                                           "and 'event_date' are reserved)");
                  }
                  FieldDefinition f;
                  f.name = fname;
                  bool has_type = false;
                  if (fv.IsScalar()) {  // shorthand: `ts: timestamp`
                    auto t = ParseFieldType(fv.Scalar());
                    if (!t.ok())
                      return p.Error(fv, "field '" + fname + "': " + t.status().message());
                    f.type = *t;
                    has_type = true;
                  } else {
                    RETURN_IF_ERROR(p.EachKey(
                        fv, {"type", "required", "description"}, "field '" + fname + "'",
                        [&](const YAML::Node&, const std::string& a,
                            const YAML::Node& av) -> Status {
                          if (a == "type") {
                            ASSIGN_OR_RETURN(std::string ts, p.Scalar(av, a));
                            auto t = ParseFieldType(ts);
                            if (!t.ok()) {
                              return p.Error(av, "field '" + fname + "': " + t.status().message());
                            }
                            f.type = *t;
                            has_type = true;
                          } else if (a == "required") {
                            ASSIGN_OR_RETURN(f.required, p.Bool(av, a));
                          }
                          return Status::Ok();
                        }));
                  }
                  if (!has_type) return p.Error(fk, "field '" + fname + "' needs a type");
                  def.fields.push_back(std::move(f));
                  return Status::Ok();
                });
          } else if (key == "key") {
            key_node = v;
            ASSIGN_OR_RETURN(def.key_field, p.Scalar(v, key));
          } else if (key == "time") {
            time_node = v;
            ASSIGN_OR_RETURN(def.time_field, p.Scalar(v, key));
          } else if (key == "event_id") {
            id_node = v;
            ASSIGN_OR_RETURN(def.event_id_field, p.Scalar(v, key));
          } else if (key == "dedup_window") {
            ASSIGN_OR_RETURN(def.dedup_window_us, p.Duration(v, key));
          } else if (key == "retention") {
            ASSIGN_OR_RETURN(def.retention_us, p.Duration(v, key));
          } else if (key == "retention_bytes") {
            ASSIGN_OR_RETURN(def.retention_bytes, p.Int(v, key, 0, INT64_MAX));
          } else if (key == "allowed_lateness") {
            ASSIGN_OR_RETURN(def.allowed_lateness_us, p.Duration(v, key));
          } else if (key == "max_future_skew") {
            ASSIGN_OR_RETURN(def.max_future_skew_us, p.Duration(v, key));
          } else if (key == "partitions") {
            ASSIGN_OR_RETURN(int64_t n, p.Int(v, key, 1, 1024));
            def.partitions = static_cast<int>(n);
          } else if (key == "additional_fields") {
            ASSIGN_OR_RETURN(std::string a, p.Scalar(v, key));
            if (a != "reject" && a != "allow") {
              return p.Error(v, "'additional_fields' must be reject or allow, not '" + a + "'");
            }
            def.allow_additional_fields = a == "allow";
          }
          (void)k;
          return Status::Ok();
        });
    RETURN_IF_ERROR(s);
  } catch (const YAML::Exception& e) {
    return p.Error(e.mark, e.msg);
  }
  auto need = [&](bool ok, const char* what) -> Status {
    return ok ? Status::Ok()
              : p.Error(root, std::string("a stream definition needs '") + what + "'");
  };
  RETURN_IF_ERROR(need(!def.name.empty(), "name"));
  RETURN_IF_ERROR(need(fields_node.IsDefined() && !def.fields.empty(), "fields"));
  RETURN_IF_ERROR(need(!def.key_field.empty(), "key"));
  RETURN_IF_ERROR(need(!def.time_field.empty(), "time"));
  auto ref = [&](const YAML::Node& n, const std::string& name, const char* role,
                 std::initializer_list<FieldType> types, bool must_be_required) -> Status {
    int i = def.FieldIndex(name);
    if (i < 0) return p.Error(n, std::string(role) + " '" + name + "' is not one of the fields");
    const FieldDefinition& f = def.fields[i];
    if (std::find(types.begin(), types.end(), f.type) == types.end()) {
      std::string list;
      for (auto t : types) list += (list.empty() ? "" : " or ") + std::string(FieldTypeName(t));
      return p.Error(n, std::string(role) + " field '" + name + "' must be of type " + list +
                            ", not " + std::string(FieldTypeName(f.type)));
    }
    if (must_be_required && !f.required) {
      return p.Error(n, std::string(role) + " field '" + name + "' cannot be required: false");
    }
    return Status::Ok();
  };
  RETURN_IF_ERROR(
      ref(key_node, def.key_field, "key", {FieldType::kInteger, FieldType::kString}, true));
  RETURN_IF_ERROR(ref(time_node, def.time_field, "time", {FieldType::kTimestamp}, true));
  if (!def.event_id_field.empty()) {
    RETURN_IF_ERROR(ref(id_node, def.event_id_field, "event_id", {FieldType::kString}, false));
  }
  return def;
}

Result<std::vector<StreamDefinition>> LoadStreamDefinitions(const std::filesystem::path& dir) {
  std::vector<StreamDefinition> out;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return out;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    auto ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml")) files.push_back(e.path());
  }
  if (ec) return IoError("listing " + dir.string() + ": " + ec.message());
  std::sort(files.begin(), files.end());
  std::map<std::string, std::string> seen;
  for (const auto& f : files) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(f));
    std::string shown = (dir.filename() / f.filename()).string();
    ASSIGN_OR_RETURN(StreamDefinition def, ParseStreamDefinition(text, shown));
    if (def.name != f.stem().string()) {
      return InvalidArgument(shown + ": the stream is named '" + def.name +
                             "' but the file is named '" + f.filename().string() +
                             "' (they must match)");
    }
    if (auto [it, fresh] = seen.emplace(def.name, shown); !fresh) {
      return InvalidArgument(shown + ": stream '" + def.name + "' is also defined in " +
                             it->second);
    }
    out.push_back(std::move(def));
  }
  return out;
}

// ---- validation ---------------------------------------------------------------------------------

namespace {

constexpr double kMaxExactDouble = 9007199254740992.0;  // 2^53

std::string_view KindName(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
      return "an integer";
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "?";
}

bool ToInteger(const json::value& v, int64_t* out) {
  if (v.is_int64()) {
    *out = v.get_int64();
    return true;
  }
  if (v.is_uint64()) {
    if (v.get_uint64() > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(v.get_uint64());
    return true;
  }
  if (v.is_double()) {
    double d = v.get_double();
    if (!std::isfinite(d) || std::trunc(d) != d || std::fabs(d) > kMaxExactDouble) return false;
    *out = static_cast<int64_t>(d);
    return true;
  }
  return false;
}

void AppendInt(std::string* out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, r.ptr);
}

// Validates one event object and builds the Event. Returns an empty string when accepted.
std::string ValidateOne(const StreamDefinition& def, const json::object& obj, int64_t now_us,
                        std::vector<const json::value*>& slots, Event* ev) {
  const size_t nf = def.fields.size();
  slots.assign(nf, nullptr);
  bool extra = false;
  for (const auto& kv : obj) {
    std::string_view k = kv.key();
    size_t i = 0;
    for (; i < nf; ++i) {
      if (def.fields[i].name == k) break;
    }
    if (i == nf) {
      if (!def.allow_additional_fields) {
        return "unknown field '" + std::string(k.substr(0, 64)) +
               "' (not in the stream definition; additional_fields: reject)";
      }
      extra = true;
      continue;
    }
    if (!kv.value().is_null()) slots[i] = &kv.value();
  }
  std::string& payload = ev->payload;
  payload.clear();
  payload.reserve(obj.size() * 24 + 16);
  payload.push_back('{');
  bool first = true;
  ev->event_time_us = INT64_MIN;
  ev->key.clear();
  ev->event_id.clear();
  for (size_t i = 0; i < nf; ++i) {
    const FieldDefinition& f = def.fields[i];
    const json::value* v = slots[i];
    if (v == nullptr) {
      if (f.required) return "missing required field '" + f.name + "'";
      continue;
    }
    if (!first) payload.push_back(',');
    first = false;
    payload.push_back('"');
    payload.append(f.name);
    payload.append("\":");
    auto wrong = [&](std::string_view want) {
      return "field '" + f.name + "': expected " + std::string(want) + ", got " +
             std::string(KindName(*v));
    };
    switch (f.type) {
      case FieldType::kInteger: {
        int64_t n;
        if (!ToInteger(*v, &n)) {
          if (v->is_number())
            return "field '" + f.name + "': expected an integer, got " + ToJson(*v) +
                   " (not integral or out of range)";
          return wrong("an integer");
        }
        AppendInt(&payload, n);
        if (f.name == def.key_field) AppendInt(&ev->key, n);
        break;
      }
      case FieldType::kNumber: {
        if (!v->is_number()) return wrong("a number");
        if (v->is_double()) {
          double d = v->get_double();
          if (!std::isfinite(d)) return "field '" + f.name + "': the number is not finite";
          char buf[32];
          auto r = std::to_chars(buf, buf + sizeof(buf), d);
          payload.append(buf, r.ptr);
        } else if (v->is_int64()) {
          AppendInt(&payload, v->get_int64());
        } else {
          char buf[24];
          auto r = std::to_chars(buf, buf + sizeof(buf), v->get_uint64());
          payload.append(buf, r.ptr);
        }
        break;
      }
      case FieldType::kString: {
        if (!v->is_string()) return wrong("a string");
        std::string_view s = v->get_string();
        if (f.name == def.key_field) {
          if (s.empty()) return "field '" + f.name + "': the key must not be empty";
          if (s.size() > kMaxKeyBytes) {
            return "field '" + f.name + "': the key has " + std::to_string(s.size()) +
                   " bytes, more than " + std::to_string(kMaxKeyBytes);
          }
          ev->key.assign(s);
        }
        if (f.name == def.event_id_field) {
          if (s.size() > kMaxEventIdBytes) {
            return "field '" + f.name + "': the event id has " + std::to_string(s.size()) +
                   " bytes, more than " + std::to_string(kMaxEventIdBytes);
          }
          ev->event_id.assign(s);
        }
        JsonWriter::AppendEscaped(&payload, s);
        break;
      }
      case FieldType::kBoolean:
        if (!v->is_bool()) return wrong("a boolean");
        payload.append(v->get_bool() ? "true" : "false");
        break;
      case FieldType::kTimestamp: {
        int64_t us;
        if (v->is_string()) {
          auto t = ParseRfc3339(v->get_string());
          if (!t.ok()) {
            return "field '" + f.name + "': " + t.status().message() +
                   " (RFC 3339 with a zone, e.g. 2026-11-26T09:17:10Z)";
          }
          us = *t;
        } else {
          int64_t ms;
          if (!ToInteger(*v, &ms)) {
            return wrong("a timestamp (RFC 3339 string with a zone, or epoch milliseconds)");
          }
          if (ms > INT64_MAX / 1000 || ms < INT64_MIN / 1000 + 1) {
            return "field '" + f.name + "': epoch milliseconds out of range";
          }
          us = ms * 1000;
        }
        // DuckDB's TIMESTAMP and RFC 3339 both need a four-digit year.
        if (us < -62135596800000000 || us > 253402300799999999) {
          return "field '" + f.name + "': the time is outside the years 1..9999";
        }
        payload.push_back('"');
        payload.append(FormatRfc3339(us));
        payload.push_back('"');
        if (f.name == def.time_field) ev->event_time_us = us;
        break;
      }
    }
  }
  if (extra) {
    for (const auto& kv : obj) {
      if (def.FieldIndex(kv.key()) >= 0) continue;
      if (!first) payload.push_back(',');
      first = false;
      JsonWriter::AppendEscaped(&payload, kv.key());
      payload.push_back(':');
      payload.append(ToJson(kv.value()));
    }
  }
  payload.push_back('}');
  if (ev->event_time_us > now_us && ev->event_time_us - now_us > def.max_future_skew_us) {
    return "field '" + def.time_field + "': the event time " + FormatRfc3339(ev->event_time_us) +
           " is " + std::to_string((ev->event_time_us - now_us) / 1000) +
           " ms ahead of the server clock, more than max_future_skew (" +
           std::to_string(def.max_future_skew_us / 1000) + " ms)";
  }
  return {};
}

}  // namespace

Result<ValidatedBatch> ValidateEvents(const StreamDefinition& def, std::string_view body,
                                      int64_t now_us) {
  ValidatedBatch out;
  size_t start = body.find_first_not_of(" \t\r\n");
  if (start == std::string_view::npos) return InvalidArgument("the request has no events");
  std::vector<const json::value*> slots;
  Event ev;
  size_t index = 0;
  auto handle = [&](const json::value& v) {
    if (!v.is_object()) {
      out.rejected.push_back(
          {index, "an event must be a JSON object, got " + std::string(KindName(v))});
    } else {
      std::string err = ValidateOne(def, v.get_object(), now_us, slots, &ev);
      if (err.empty()) {
        out.accepted.push_back(std::move(ev));
        out.accepted_index.push_back(index);
        ev = Event{};
      } else {
        out.rejected.push_back({index, std::move(err)});
      }
    }
    ++index;
  };
  unsigned char buffer[4096];
  json::monotonic_resource mr(buffer, sizeof(buffer));
  if (body[start] == '[') {
    boost::system::error_code ec;
    json::value v = json::parse(body, ec, &mr);
    if (ec || !v.is_array()) {
      return Status(Code::kMalformedRequest,
                    "the body is not a valid JSON array of events: " + ec.message());
    }
    const json::array& arr = v.get_array();
    out.accepted.reserve(arr.size());
    for (const auto& e : arr) handle(e);
    if (index == 0) return InvalidArgument("the request has no events");
    return out;
  }
  if (body[start] != '{') {
    return Status(Code::kMalformedRequest,
                  "the body must be a JSON array of event objects or NDJSON (one object a line)");
  }
  json::stream_parser parser;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t nl = body.find('\n', pos);
    if (nl == std::string_view::npos) nl = body.size();
    std::string_view line = body.substr(pos, nl - pos);
    pos = nl + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.remove_suffix(1);
    size_t b = line.find_first_not_of(" \t");
    if (b == std::string_view::npos) continue;
    line.remove_prefix(b);
    mr.release();
    parser.reset(&mr);
    boost::system::error_code ec;
    parser.write(line.data(), line.size(), ec);
    if (!ec) parser.finish(ec);
    if (ec) {
      out.rejected.push_back({index++, "not JSON: " + ec.message()});
      continue;
    }
    handle(parser.release());
  }
  if (index == 0) return InvalidArgument("the request has no events");
  return out;
}

}  // namespace lakeloop::stream
