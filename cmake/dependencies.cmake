# Third-party libraries. Debian packages are found the usual way; DuckDB comes from .deps/duckdb
# (scripts/fetch_duckdb.sh, version pinned in deps/duckdb.env).
find_package(Threads REQUIRED)
find_package(Boost 1.81 CONFIG REQUIRED COMPONENTS json)
find_package(GTest REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(CLI11 CONFIG REQUIRED)

set(DUCKDB_ROOT ${PROJECT_SOURCE_DIR}/.deps/duckdb CACHE PATH "DuckDB header and library")
set(DUCKDB_LIB_DIR ${DUCKDB_ROOT}/lib)
if(NOT EXISTS ${DUCKDB_ROOT}/include/duckdb.h OR NOT EXISTS ${DUCKDB_LIB_DIR}/libduckdb.so)
  message(FATAL_ERROR "DuckDB not found in ${DUCKDB_ROOT}: run scripts/setup.sh (or make build)")
endif()
add_library(duckdb SHARED IMPORTED GLOBAL)
set_target_properties(duckdb PROPERTIES
  IMPORTED_LOCATION ${DUCKDB_LIB_DIR}/libduckdb.so
  IMPORTED_NO_SONAME ON
  INTERFACE_INCLUDE_DIRECTORIES ${DUCKDB_ROOT}/include
  INTERFACE_COMPILE_DEFINITIONS DUCKDB_API_NO_DEPRECATED)
