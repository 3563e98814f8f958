#include "runtime/state/key_lists.h"

#include <memory>
#include <utility>
#include <vector>

#include "runtime/core/varint.h"
#include "runtime/state/sqlite_stmt.h"

namespace onceflow {
Status KeyListWriter::Add(std::string_view node, std::string_view key) {
  if (!keys_.empty() && (node != node_ || keys_.size() >= kChunkBytes)) {
    ONCEFLOW_RETURN_IF_ERROR(Flush());
  }
  if (keys_.empty()) node_.assign(node);
  PutVarint(key.size(), &keys_);
  keys_.append(key);
  return Status::Ok();
}

Status KeyListWriter::Finish() { return keys_.empty() ? Status::Ok() : Flush(); }

Status KeyListWriter::Flush() {
  if (seq_ < 0) {
    // Lists added to a version later (Delete handing rows down) continue its numbering.
    Stmt q(db_, "SELECT coalesce(max(seq), 0) FROM state_keys WHERE version=?1");
    q.Bind(1, version_);
    if (q.Step() != SQLITE_ROW) return SqlError(path_, "reading key lists", db_);
    seq_ = q.Int(0);
  }
  Stmt ins(db_, "INSERT INTO state_keys(version, seq, node, keys) VALUES(?1,?2,?3,?4)");
  ins.Bind(1, version_).Bind(2, ++seq_).BindStatic(3, node_).BindBlobStatic(4, keys_);
  if (ins.Step() != SQLITE_DONE) return SqlError(path_, "writing key lists", db_);
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
    if (rc != SQLITE_DONE) return SqlError(path, "reading key lists", db);
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
        if (del.Step() != SQLITE_DONE) return SqlError(path, "deleting state", db);
        del.Rewind();
        return Status::Ok();
      }));
  Stmt drop(db, "DELETE FROM state_keys WHERE version=?1");
  drop.Bind(1, version);
  if (drop.Step() != SQLITE_DONE) return SqlError(path, "deleting key lists", db);
  return Status::Ok();
}

Status MigrateToKeyLists(sqlite3* db, const std::string& path) {
  ONCEFLOW_RETURN_IF_ERROR(
      ExecOn(db, path,
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
    if (rc != SQLITE_DONE) return SqlError(path, "listing state keys", db);
    if (w) ONCEFLOW_RETURN_IF_ERROR(w->Finish());
  }
  return ExecOn(db, path, "DROP INDEX state_by_version");
}

}  // namespace onceflow
