// sql/internal/handles: RAII owners for DuckDB C API handles. Private to the sql module.
#pragma once

#include <duckdb.h>

#include <string>
#include <utility>

namespace lakeloop::sql::internal {

class LogicalType {
 public:
  explicit LogicalType(duckdb_logical_type t = nullptr) : t_(t) {}
  LogicalType(LogicalType&& o) noexcept : t_(std::exchange(o.t_, nullptr)) {}
  LogicalType& operator=(LogicalType&& o) noexcept {
    std::swap(t_, o.t_);
    return *this;
  }
  ~LogicalType() {
    if (t_ != nullptr) duckdb_destroy_logical_type(&t_);
  }
  duckdb_logical_type get() const { return t_; }

 private:
  duckdb_logical_type t_;
};

class Prepared {
 public:
  Prepared() = default;
  Prepared(Prepared&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Prepared& operator=(Prepared&& o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~Prepared() {
    if (p_ != nullptr) duckdb_destroy_prepare(&p_);
  }
  duckdb_prepared_statement get() const { return p_; }
  duckdb_prepared_statement* out() { return &p_; }

 private:
  duckdb_prepared_statement p_ = nullptr;
};

class Extracted {
 public:
  Extracted() = default;
  Extracted(const Extracted&) = delete;
  Extracted& operator=(const Extracted&) = delete;
  ~Extracted() {
    if (e_ != nullptr) duckdb_destroy_extracted(&e_);
  }
  duckdb_extracted_statements get() const { return e_; }
  duckdb_extracted_statements* out() { return &e_; }

 private:
  duckdb_extracted_statements e_ = nullptr;
};

class QueryResult {
 public:
  QueryResult() = default;
  QueryResult(const QueryResult&) = delete;
  QueryResult& operator=(const QueryResult&) = delete;
  ~QueryResult() {
    if (live_) duckdb_destroy_result(&r_);
  }
  // DuckDB fills the result (also on error) once it was passed to an execute call.
  duckdb_result* out() {
    live_ = true;
    return &r_;
  }
  duckdb_result* get() { return &r_; }

 private:
  duckdb_result r_{};
  bool live_ = false;
};

class DataChunk {
 public:
  explicit DataChunk(duckdb_data_chunk c) : c_(c) {}
  DataChunk(const DataChunk&) = delete;
  DataChunk& operator=(const DataChunk&) = delete;
  ~DataChunk() {
    if (c_ != nullptr) duckdb_destroy_data_chunk(&c_);
  }
  duckdb_data_chunk get() const { return c_; }

 private:
  duckdb_data_chunk c_;
};

// Takes ownership of a string DuckDB allocated (duckdb_free) and copies it.
inline std::string TakeDuckString(char* s) {
  if (s == nullptr) return {};
  std::string out(s);
  duckdb_free(s);
  return out;
}

}  // namespace lakeloop::sql::internal
