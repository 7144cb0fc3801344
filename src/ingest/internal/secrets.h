// ingest/internal/secrets: `${ENV_VAR}` credentials in source definitions. They are resolved only
// at run time, and every resolved value is masked out of any message that leaves a run.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace lakeloop::ingest::internal {

// A resolved text and the values substituted into it (to mask).
struct Resolved {
  std::string text;
  std::vector<std::string> secrets;
};

// Replaces every ${NAME} ([A-Za-z_][A-Za-z0-9_]*) with the environment variable's value. A missing
// variable is kInvalidArgument naming it (never a value). "$${" stays a literal "${".
Result<Resolved> ResolveEnv(std::string_view text, std::string_view what);

// Replaces every occurrence of each non-empty secret in `message` by "***".
std::string Mask(std::string message, const std::vector<std::string>& secrets);
Status Mask(const Status& status, const std::vector<std::string>& secrets);

// A PostgreSQL dsn (URI or key=value) must not carry a literal password: a password is written as
// ${ENV_VAR}. kInvalidArgument otherwise (the message never repeats the password).
Status CheckDsn(std::string_view dsn);

}  // namespace lakeloop::ingest::internal
