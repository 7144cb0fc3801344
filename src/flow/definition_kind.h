// flow/definition_kind.h: what `lakeloop apply` asks of each module that turns project files into
// running things (scheduler jobs, stream processors; later pipelines, endpoints, monitors,
// dashboards). The composition root keeps a list of DefinitionKinds; App::Apply reads and
// validates them all, diffs them against the catalog in one go, stores the changes in one catalog
// transaction, then hands each kind exactly its own changes. Nothing else knows the list.
//
// It lives in `flow` because flow is the lowest module that every runtime wiring module (batch,
// realtime and those to come) already depends on, and most kinds become flow jobs.
#pragma once

#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "core/status.h"

namespace lakeloop::flow {

using Definition = catalog::Definitions::Definition;
using DefinitionChange = catalog::Definitions::Change;

// One module's share of the project's definitions. Implementations are thread-safe.
class DefinitionKind {
 public:
  virtual ~DefinitionKind() = default;

  // The catalog definition kinds this module owns (e.g. {"source", "model"}). Apply diffs exactly
  // these; a kind belongs to one module.
  virtual std::vector<std::string> DefinitionKinds() const = 0;

  // Reads and validates this module's files of the project folder, as a whole (references
  // between its own definitions included). kInvalidArgument whose message is a heading line and
  // then one "  file:line: reason" line per problem.
  virtual Result<std::vector<Definition>> ReadDefinitions() = 0;

  // Checks references into other modules' definitions (`all` = every definition about to be
  // applied). Default: none.
  virtual Status CheckReferences(const std::vector<Definition>& all) {
    (void)all;
    return Status::Ok();
  }

  // What becomes of the data of a deleted definition; shown by apply and `apply --dry-run`.
  virtual std::string DeleteNote(const Definition& deleted) const = 0;

  // Called after `changes` (this module's kinds only, never empty) were committed to the catalog:
  // brings the running components in line. Created definitions start, updated ones are replaced,
  // deleted ones stop; everything unchanged keeps running untouched (no restart, no interrupted
  // run, no lost position).
  virtual Status ApplyChanges(const std::vector<DefinitionChange>& changes) = 0;
};

}  // namespace lakeloop::flow
