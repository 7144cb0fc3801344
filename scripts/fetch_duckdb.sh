#!/usr/bin/env bash
# Fetches the pinned DuckDB C API header and shared library from the npm registry into .deps/duckdb,
# verifying the sha256 of each tarball. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../deps/duckdb.env
source "$here/deps/duckdb.env"
dest="$here/.deps/duckdb"
stamp="$dest/.version"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$DUCKDB_HEADER_TGZ_SHA256:$DUCKDB_LIB_TGZ_SHA256" ] \
   && [ -f "$dest/include/duckdb.h" ] && [ -f "$dest/lib/libduckdb.so" ]; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "setup: fetching DuckDB $DUCKDB_VERSION from the npm registry"
npm pack --silent "$DUCKDB_HEADER_PACKAGE" >/dev/null
npm pack --silent "$DUCKDB_LIB_PACKAGE" >/dev/null
check() {
  local file="$1" want="$2" got
  got="$(sha256sum "$file" | cut -d' ' -f1)"
  if [ "$got" != "$want" ]; then
    echo "setup: sha256 mismatch for $file: got $got, want $want" >&2
    exit 1
  fi
}
header_tgz="$(ls duckdb-*.tgz | grep -v node-bindings)"
lib_tgz="$(ls duckdb-node-bindings-*.tgz)"
check "$header_tgz" "$DUCKDB_HEADER_TGZ_SHA256"
check "$lib_tgz" "$DUCKDB_LIB_TGZ_SHA256"
mkdir -p h l
tar -xzf "$header_tgz" -C h package/src/duckdb/src/include/duckdb.h
tar -xzf "$lib_tgz" -C l
rm -rf "$dest"
mkdir -p "$dest/include" "$dest/lib"
cp h/package/src/duckdb/src/include/duckdb.h "$dest/include/"
cp "$(find l -name libduckdb.so | head -1)" "$dest/lib/"
echo "$DUCKDB_HEADER_TGZ_SHA256:$DUCKDB_LIB_TGZ_SHA256" > "$stamp"
echo "setup: DuckDB $DUCKDB_VERSION in $dest"
