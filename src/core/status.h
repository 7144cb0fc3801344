// core: the shared vocabulary of lakeloop. Status and Result<T> carry errors as values with a code
// from one table (kCodeTable); every module returns them and the API maps codes to HTTP in one
// place.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace lakeloop {

// The one table of error codes. Tests assert codes (and their wire names), never message wording.
// Keep the wire names stable: clients match on them.
enum class Code {
  kOk,
  // The body's Content-Type is not one the route accepts (415).
  kUnsupportedMediaType,
  // The Host header is not a name this server answers to (421).
  kMisdirectedRequest,
  kInvalidArgument,      // the request or a definition is wrong (400)
  kMalformedRequest,     // the body could not be parsed (400)
  kSqlError,             // DuckDB refused the SQL: parse, bind or run-time error (400)
  kStatementNotAllowed,  // a statement type the endpoint does not run (400)
  kUnauthenticated,      // no token or an unknown one (401)
  kPermissionDenied,     // the token's role is too weak (403)
  kNotFound,             // (404)
  kMethodNotAllowed,     // the path exists, the method does not (405)
  kConflict,             // a concurrent change won, or the state forbids it (409)
  kAlreadyExists,        // (409)
  kPayloadTooLarge,      // (413)
  kResourceExhausted,    // a queue or a limit is full; retry later (429)
  kCancelled,            // the client went away (499)
  kDeadlineExceeded,     // a time limit ran out (504)
  kUnavailable,          // shutting down or a backend is down (503)
  kUnimplemented,        // (501)
  kIoError,              // the filesystem or a backend failed (500)
  kDataLoss,             // stored state is corrupt (500)
  kInternal,             // a bug (500)
};

struct CodeInfo {
  Code code;
  std::string_view name;  // wire name, e.g. "invalid_argument"
  int http_status;
};

// Looks up the row for `code` in the table.
const CodeInfo& InfoFor(Code code);
std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid_argument: message"
  std::string ToString() const;

  // Prepends context to the message, keeping the code.
  Status WithContext(std::string_view context) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status Conflict(std::string m) { return {Code::kConflict, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
inline Status IoError(std::string m) { return {Code::kIoError, std::move(m)}; }
inline Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
inline Status Unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }

// A value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok() && "Result from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace lakeloop

#define LAKELOOP_CONCAT_INNER(a, b) a##b
#define LAKELOOP_CONCAT(a, b) LAKELOOP_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::lakeloop::Status _lakeloop_status = (expr);        \
    if (!_lakeloop_status.ok()) return _lakeloop_status; \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(LAKELOOP_CONCAT(_lakeloop_result_, __LINE__), lhs, expr)
