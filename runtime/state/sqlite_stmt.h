// Stmt: a prepared SQLite statement with bound values only (never SQL built from data),
// finalised on scope exit; SqlError and ExecOn, the state file's error and exec helpers.
// Internal to runtime/state (the store, its key lists and the dedup log).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/core/status.h"

namespace onceflow {

// A prepared statement with bound values only; finalised on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &st_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK || rc_ == SQLITE_ROW || rc_ == SQLITE_DONE; }
  std::string error() const { return sqlite3_errmsg(db_); }
  Stmt& Bind(int i, int64_t v) {
    if (st_) sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  Stmt& Bind(int i, std::string_view text) { return BindText(i, text, SQLITE_TRANSIENT); }
  // A zero-length blob stays a blob, not NULL (NULL is a tombstone).
  Stmt& BindBlob(int i, std::string_view b) { return BindBytes(i, b, SQLITE_TRANSIENT); }
  // Without a copy: the bytes must stay valid and unchanged until the statement is
  // finalised or the parameter is bound again (for a hot insert loop over data that
  // outlives the statement; the copies of Bind were a malloc and free per value).
  Stmt& BindStatic(int i, std::string_view text) { return BindText(i, text, SQLITE_STATIC); }
  Stmt& BindBlobStatic(int i, std::string_view b) { return BindBytes(i, b, SQLITE_STATIC); }
  Stmt& BindNull(int i) {
    if (st_) sqlite3_bind_null(st_, i);
    return *this;
  }
  // Returns SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() {
    if (!st_) return rc_;
    rc_ = sqlite3_step(st_);
    return rc_;
  }
  void Reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
    rc_ = SQLITE_OK;
  }
  // Reset that keeps the bindings: parameters that do not change need not be bound again.
  void Rewind() {
    sqlite3_reset(st_);
    rc_ = SQLITE_OK;
  }
  int64_t Int(int c) const { return sqlite3_column_int64(st_, c); }
  bool IsNull(int c) const { return sqlite3_column_type(st_, c) == SQLITE_NULL; }
  std::string_view Blob(int c) const {
    const void* p = sqlite3_column_blob(st_, c);
    int n = sqlite3_column_bytes(st_, c);
    return p ? std::string_view(static_cast<const char*>(p), static_cast<size_t>(n))
             : std::string_view();
  }
  std::string Text(int c) const {
    const unsigned char* p = sqlite3_column_text(st_, c);
    int n = sqlite3_column_bytes(st_, c);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : "";
  }

 private:
  Stmt& BindText(int i, std::string_view text, sqlite3_destructor_type how) {
    if (st_) sqlite3_bind_text(st_, i, text.data(), static_cast<int>(text.size()), how);
    return *this;
  }
  Stmt& BindBytes(int i, std::string_view b, sqlite3_destructor_type how) {
    if (st_)
      sqlite3_bind_blob(st_, i, b.empty() ? "" : b.data(), static_cast<int>(b.size()), how);
    return *this;
  }

  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
  int rc_ = SQLITE_OK;
};

// A state error naming the file, what was being done and SQLite's message.
inline Status SqlError(const std::string& path, const std::string& what, sqlite3* db) {
  return Status::State("state file " + path + ": " + what + ": " +
                       (db ? sqlite3_errmsg(db) : "cannot allocate"));
}

// Runs `sql` (statements without bound values: schema and pragmas).
inline Status ExecOn(sqlite3* db, const std::string& path, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    return Status::State("state file " + path + ": " + sql + ": " + m);
  }
  return Status::Ok();
}

}  // namespace onceflow
