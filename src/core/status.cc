#include "core/status.h"

#include <array>

namespace lakeloop {
namespace {

constexpr std::array kCodeTable = {
    CodeInfo{Code::kOk, "ok", 200},
    CodeInfo{Code::kInvalidArgument, "invalid_argument", 400},
    CodeInfo{Code::kMalformedRequest, "malformed_request", 400},
    CodeInfo{Code::kSqlError, "sql_error", 400},
    CodeInfo{Code::kStatementNotAllowed, "statement_not_allowed", 400},
    CodeInfo{Code::kUnauthenticated, "unauthenticated", 401},
    CodeInfo{Code::kPermissionDenied, "permission_denied", 403},
    CodeInfo{Code::kNotFound, "not_found", 404},
    CodeInfo{Code::kMethodNotAllowed, "method_not_allowed", 405},
    CodeInfo{Code::kConflict, "conflict", 409},
    CodeInfo{Code::kAlreadyExists, "already_exists", 409},
    CodeInfo{Code::kPayloadTooLarge, "payload_too_large", 413},
    CodeInfo{Code::kUnsupportedMediaType, "unsupported_media_type", 415},
    CodeInfo{Code::kMisdirectedRequest, "misdirected_request", 421},
    CodeInfo{Code::kResourceExhausted, "resource_exhausted", 429},
    CodeInfo{Code::kCancelled, "cancelled", 499},
    CodeInfo{Code::kDeadlineExceeded, "deadline_exceeded", 504},
    CodeInfo{Code::kUnavailable, "unavailable", 503},
    CodeInfo{Code::kUnimplemented, "unimplemented", 501},
    CodeInfo{Code::kIoError, "io_error", 500},
    CodeInfo{Code::kDataLoss, "data_loss", 500},
    CodeInfo{Code::kInternal, "internal", 500},
};

}  // namespace

const CodeInfo& InfoFor(Code code) {
  for (const auto& row : kCodeTable) {
    if (row.code == code) return row;
  }
  return kCodeTable.back();
}

std::string_view CodeName(Code code) { return InfoFor(code).name; }

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string out(CodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  return Status(code_, std::move(m));
}

}  // namespace lakeloop
