#include "runtime/state/key_lists.h"

#include <memory>
#include <utility>
#include <vector>

#include "runtime/state/sqlite_stmt.h"

namespace onceflow {
namespace {

Status ListError(sqlite3* db, const std::string& path, const std::string& what) {
  return Status::State("state file " + path + ": " + what + ": " + sqlite3_errmsg(db));
}

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

Status ExecSql(sqlite3* db, const std::string& path, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) == SQLITE_OK) return Status::Ok();
  std::string m = err ? err : sqlite3_errmsg(db);
  sqlite3_free(err);
  return Status::State("state file " + path + ": " + sql + ": " + m);
}

bool GetVarint(std::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    const auto b = static_cast<unsigned char>(in->front());
    in->remove_prefix(1);
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (b < 0x80) return true;
  }
  return false;
}

}  // namespace

Status KeyListWriter::Add(std::string_view node, std::string_view key) {
  if (!keys_.empty() && (node != node_ || keys_.size() >= kChunkBytes)) {
    ONCEFLOW_RETURN_IF_ERROR(Flush());
  }
  if (keys_.empty()) node_.assign(node);
  PutVarint(&keys_, key.size());
  keys_.append(key);
  return Status::Ok();
}

Status KeyListWriter::Finish() { return keys_.empty() ? Status::Ok() : Flush(); }

Status KeyListWriter::Flush() {
  if (seq_ < 0) {
    // Lists added to a version later (Delete handing rows down) continue its numbering.
    Stmt q(db_, "SELECT coalesce(max(seq), 0) FROM state_keys WHERE version=?1");
    q.Bind(1, version_);
    if (q.Step() != SQLITE_ROW) return ListError(db_, path_, "reading key lists");
    seq_ = q.Int(0);
  }
  Stmt ins(db_, "INSERT INTO state_keys(version, seq, node, keys) VALUES(?1,?2,?3,?4)");
  ins.Bind(1, version_).Bind(2, ++seq_).BindStatic(3, node_).BindBlobStatic(4, keys_);
  if (ins.Step() != SQLITE_DONE) return ListError(db_, path_, "writing key lists");
  keys_.clear();
  return Status::Ok();
}

Status ForEachListedKey(sqlite3* db, const std::string& path, int64_t version,
                        const std::function<Status(std::string_view, std::string_view)>& fn) {
  std::vector<std::pair<std::string, std::string>> lists;  // (node, keys blob)
  {
    Stmt q(db, "SELECT node, keys FROM state_keys WHERE version=?1 ORDER BY seq");
    q.Bind(1, version);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) lists.emplace_back(q.Text(0), std::string(q.Blob(1)));
    if (rc != SQLITE_DONE) return ListError(db, path, "reading key lists");
  }
  for (const auto& [node, blob] : lists) {
    std::string_view in = blob;
    while (!in.empty()) {
      uint64_t n = 0;
      if (!GetVarint(&in, &n) || n > in.size()) {
        return Status::State("state file " + path + ": the key list of checkpoint " +
                             std::to_string(version) + " is corrupt");
      }
      ONCEFLOW_RETURN_IF_ERROR(fn(node, in.substr(0, n)));
      in.remove_prefix(n);
    }
  }
  return Status::Ok();
}

Status DeleteVersionRows(sqlite3* db, const std::string& path, int64_t version) {
  Stmt del(db, "DELETE FROM state WHERE node=?1 AND key=?2 AND version=?3");
  del.Bind(3, version);
  ONCEFLOW_RETURN_IF_ERROR(
      ForEachListedKey(db, path, version, [&](std::string_view node, std::string_view key) {
        del.BindStatic(1, node).BindBlobStatic(2, key);
        if (del.Step() != SQLITE_DONE) return ListError(db, path, "deleting state");
        del.Rewind();
        return Status::Ok();
      }));
  Stmt drop(db, "DELETE FROM state_keys WHERE version=?1");
  drop.Bind(1, version);
  if (drop.Step() != SQLITE_DONE) return ListError(db, path, "deleting key lists");
  return Status::Ok();
}

Status MigrateToKeyLists(sqlite3* db, const std::string& path) {
  ONCEFLOW_RETURN_IF_ERROR(
      ExecSql(db, path,
              "CREATE TABLE state_keys(version INTEGER NOT NULL, seq INTEGER NOT NULL,"
              " node TEXT NOT NULL, keys BLOB NOT NULL, PRIMARY KEY(version, seq))"));
  {
    // The old index serves this scan in (version, node, key) order.
    Stmt q(db, "SELECT version, node, key FROM state ORDER BY version, node, key");
    std::unique_ptr<KeyListWriter> w;
    int64_t version = 0;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      if (!w || q.Int(0) != version) {
        if (w) ONCEFLOW_RETURN_IF_ERROR(w->Finish());
        version = q.Int(0);
        w = std::make_unique<KeyListWriter>(db, path, version);
      }
      ONCEFLOW_RETURN_IF_ERROR(w->Add(q.Text(1), q.Blob(2)));
    }
    if (rc != SQLITE_DONE) return ListError(db, path, "listing state keys");
    if (w) ONCEFLOW_RETURN_IF_ERROR(w->Finish());
  }
  return ExecSql(db, path, "DROP INDEX state_by_version");
}

}  // namespace onceflow
