#include "ingest/internal/secrets.h"

#include <cctype>
#include <cstdlib>

namespace lakeloop::ingest::internal {

namespace {
bool IsVarStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsVarChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// True if `v` is exactly one ${NAME} reference.
bool IsReference(std::string_view v) {
  if (v.size() < 4 || !v.starts_with("${") || v.back() != '}' || !IsVarStart(v[2])) return false;
  for (size_t i = 3; i + 1 < v.size(); ++i) {
    if (!IsVarChar(v[i])) return false;
  }
  return true;
}
}  // namespace

Result<Resolved> ResolveEnv(std::string_view text, std::string_view what) {
  Resolved out;
  for (size_t i = 0; i < text.size();) {
    if (text.substr(i).starts_with("$${")) {
      out.text += "${";
      i += 3;
      continue;
    }
    if (text.substr(i).starts_with("${")) {
      size_t end = text.find('}', i + 2);
      std::string_view name =
          end == std::string_view::npos ? std::string_view() : text.substr(i + 2, end - i - 2);
      bool ok = !name.empty() && IsVarStart(name[0]);
      for (char c : name) ok = ok && IsVarChar(c);
      if (!ok) {
        return InvalidArgument(std::string(what) +
                               ": '${' must start a ${ENV_VAR} reference ([A-Za-z_][A-Za-z0-9_]*)");
      }
      const char* value = std::getenv(std::string(name).c_str());
      if (value == nullptr) {
        return InvalidArgument(std::string(what) + ": environment variable " + std::string(name) +
                               " is not set");
      }
      out.text += value;
      if (*value != '\0') out.secrets.emplace_back(value);
      i = end + 1;
      continue;
    }
    out.text.push_back(text[i]);
    ++i;
  }
  return out;
}

std::string Mask(std::string message, const std::vector<std::string>& secrets) {
  for (const auto& s : secrets) {
    if (s.empty()) continue;
    for (size_t pos = message.find(s); pos != std::string::npos; pos = message.find(s, pos + 3)) {
      message.replace(pos, s.size(), "***");
    }
  }
  return message;
}

Status Mask(const Status& status, const std::vector<std::string>& secrets) {
  if (status.ok()) return status;
  return Status(status.code(), Mask(status.message(), secrets));
}

Status CheckDsn(std::string_view dsn) {
  if (dsn.empty()) return InvalidArgument("'dsn' must not be empty");
  const Status literal = InvalidArgument(
      "the dsn contains a literal password; write it as ${ENV_VAR} (resolved at run time, never "
      "stored)");
  size_t scheme = dsn.find("://");
  if (scheme != std::string_view::npos) {
    std::string_view rest = dsn.substr(scheme + 3);
    size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
      std::string_view userinfo = authority.substr(0, at);
      size_t colon = userinfo.find(':');
      if (colon != std::string_view::npos && !IsReference(userinfo.substr(colon + 1))) {
        return literal;
      }
    }
  }
  // password=... as a URI parameter or a key=value pair.
  for (size_t pos = dsn.find("password="); pos != std::string_view::npos;
       pos = dsn.find("password=", pos + 1)) {
    if (pos > 0 && IsVarChar(dsn[pos - 1])) continue;  // e.g. "sslpassword="
    std::string_view v = dsn.substr(pos + 9);
    size_t end = v.find_first_of(" &");
    if (!IsReference(v.substr(0, end))) return literal;
  }
  return Status::Ok();
}

}  // namespace lakeloop::ingest::internal
