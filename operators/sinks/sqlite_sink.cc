// The `sqlite` sink: writes records as rows of a table in an SQLite database.
//
// Schema: a missing table is created from the first record written (columns in its
// field order, types INTEGER for integers and booleans, REAL for doubles, TEXT for
// strings and nested JSON, no type for null) with PRIMARY KEY(key...) when `key` is set.
// A record with a field the table lacks adds the column (ALTER TABLE ADD COLUMN), so
// schemas can grow; SQLite column names are case-insensitive, so fields are matched to
// columns ignoring ASCII case. Identifiers are always double-quoted (a field name with a
// quote cannot break out) and the table name must match [A-Za-z_][A-Za-z0-9_]*; values
// are only ever bound as parameters — no SQL is built from data.
//
// Writes: without `key`, every record is appended as a row. With `key`, rows are
// upserted (INSERT ... ON CONFLICT(key) DO UPDATE): the row becomes the last record of
// its key, fields the record lacks set to NULL. Records are buffered until Flush; updates
// to one key between two flushes are merged (only the last is written) and rows are
// written in key order (sorted writes are much faster in SQLite). Each Flush is one
// transaction, so the task does not flush this sink whenever its input runs dry (see
// Sink::FlushWhenIdle) but at most every 200 ms: rows reach the table within 200 ms.
//
// Durability: WAL mode. Flush(false) commits with synchronous=NORMAL (atomic; may be lost
// on a power cut, never torn); Flush(true) — the executor's checkpoint/end flush —
// commits with synchronous=FULL so the rows are on disk when it returns. A fresh start
// empties the table (DELETE FROM) at Open.
//
// Two-phase commit (effectively-once / snapshot, NodeContext::two_phase): Write buffers
// as above but Flush writes nothing; at each checkpoint barrier PreCommit hands the
// epoch's rows over (key.h EncodeRecord bytes, keyed rows merged and in key order) and
// the host stages them inside the checkpoint's own transaction in the state file. Once
// that checkpoint is complete the host calls ApplyEpoch, which writes the rows and a
// marker row (lineage, node, epoch) in `onceflow_applied_epochs` in ONE transaction of
// this database, committed with synchronous=FULL; an epoch whose marker exists is
// skipped. Why a marker: SQLite is not atomic across two databases in WAL mode (an
// ATTACHed database's commit is atomic per file, not together), so the state file's
// checkpoint and this database can never commit as one; the marker makes applying an
// epoch idempotent instead, and recovery rolls forward — it re-applies every staged epoch
// of a complete checkpoint, and the ones already applied are no-ops.
//
// Threading: one instance (max_parallelism 1), called from its task thread only; the
// connection is opened with SQLITE_OPEN_NOMUTEX for that reason.
#include <sqlite3.h>

#include <algorithm>
#include <cctype>

#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/ops/keyed.h"
#include "operators/sinks/fs_util.h"
#include "runtime/core/key.h"
#include "runtime/core/hashed_key.h"
#include "runtime/state/key_index.h"

namespace onceflow::ops {

namespace {

bool ValidTableName(std::string_view name) {
  if (name.empty()) return false;
  auto head = [](char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; };
  if (!head(name[0])) return false;
  for (char c : name) {
    if (!head(c) && !std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string Quote(std::string_view ident) {
  std::string q = "\"";
  for (char c : ident) {
    if (c == '"') q.push_back('"');
    q.push_back(c);
  }
  q.push_back('"');
  return q;
}

// ASCII case folding, as SQLite compares identifiers (and as std::tolower does in the "C"
// locale this program runs in); inline instead of a tolower() call per byte, since
// WriteRow matches every field of every row against the columns.
bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]);
    unsigned char y = static_cast<unsigned char>(b[i]);
    if (x == y) continue;
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

const char* SqlType(const Value& v) {
  switch (v.type()) {
    case ValueType::kInt:
    case ValueType::kBool:
      return "INTEGER";
    case ValueType::kDouble:
      return "REAL";
    case ValueType::kString:
    case ValueType::kJson:
      return "TEXT";
    case ValueType::kNull:
      return "";
  }
  return "";
}

class SqliteSink : public Sink {
 public:
  explicit SqliteSink(const NodeSpec& spec)
      : node_(spec.id),
        path_(spec.options.GetPath("path")),
        table_(spec.options.GetString("table")),
        key_(Given(spec.options, "key") ? spec.options.GetList("key")
                                        : std::vector<std::string>{}) {}

  ~SqliteSink() override { CloseDb(); }

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    two_phase_ = ctx.two_phase;
    if (!ValidTableName(table_)) {
      return Status::Invalid("sqlite: table name '" + table_ + "' is not [A-Za-z_][A-Za-z0-9_]*");
    }
    ONCEFLOW_RETURN_IF_ERROR(MakeParentDirs(path_));
    CloseDb();
    int rc =
        sqlite3_open_v2(path_.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      CloseDb();
      return Status::IOError("cannot open sqlite database '" + path_ + "': " + msg);
    }
    sqlite3_busy_timeout(db_, 10000);
    ONCEFLOW_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
    ONCEFLOW_RETURN_IF_ERROR(SetSynchronous(false));
    ONCEFLOW_RETURN_IF_ERROR(LoadColumns());
    if (ctx.fresh_start && table_exists_) {
      ONCEFLOW_RETURN_IF_ERROR(Exec("DELETE FROM " + Quote(table_)));
    }
    pending_.clear();
    pending_keyed_.Clear();
    return Status::Ok();
  }

  Status Write(RecordBatch& in) override {
    // Records are moved into the pending buffers, not copied: the executor discards the
    // batch after Write (see Sink::Write). With a key, the keys are encoded up front so
    // the merge map's slot for the key a few records ahead can be prefetched (the map
    // holds every key written since the last flush and misses the cache).
    if (!key_.empty()) keys_.Encode(in, key_);
    constexpr size_t kAhead = BatchKeys::kPrefetchDistance;
    auto has_key = [&](size_t i) { return !key_.empty() && i < keys_.size() && keys_.has(i); };
    for (size_t i = 0; i < kAhead; ++i) {
      if (has_key(i)) pending_keyed_.Prefetch(keys_.hashed(i));
    }
    for (size_t i = 0; i < in.size(); ++i) {
      // Two stages, as in BatchKeys::Prefetch: the slot far ahead; nearer, the entry
      // holding the record that the assignment below replaces.
      if (has_key(i + kAhead)) pending_keyed_.Prefetch(keys_.hashed(i + kAhead));
      if (has_key(i + kAhead / 2)) pending_keyed_.PrefetchEntry(keys_.hashed(i + kAhead / 2));
      Record& rec = in[i];
      std::string bad;
      for (const auto& f : rec) {
        if (f.first.empty() || f.first.find('\0') != std::string::npos) {
          bad = "sqlite: field name '" + f.first + "' cannot be a column name";
          break;
        }
      }
      if (bad.empty() && !key_.empty()) {
        if (!keys_.has(i)) {
          // Reports the missing key field through on_error.
          Status st;
          if (!ExtractKey(rec, key_, "sqlite", ctx_->errors, &key_buf_, &st) && !st.ok()) {
            return st;
          }
          continue;
        }
        pending_keyed_.FindOrInsert(keys_.hashed(i)) = std::move(rec);
        continue;
      }
      if (!bad.empty()) {
        ONCEFLOW_RETURN_IF_ERROR(ctx_->errors->OnRecordError(rec, bad));
        continue;
      }
      pending_.push_back(std::move(rec));
    }
    return Status::Ok();
  }

  // A flush is a transaction: batching rows (and merging updates of a key) across
  // batches is what makes this sink fast, so an idle task does not flush it at once.
  bool FlushWhenIdle() const override { return false; }

  Status Flush(bool durable) override {
    if (two_phase_) return Status::Ok();  // the rows wait for their checkpoint
    if (pending_.empty() && pending_keyed_.empty()) return Status::Ok();
    ONCEFLOW_RETURN_IF_ERROR(SetSynchronous(durable));
    ONCEFLOW_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    ONCEFLOW_RETURN_IF_ERROR(CommitOrRollback(WritePending()));
    pending_.clear();
    pending_keyed_.Clear();
    return Status::Ok();
  }

  Status PreCommit(SinkPreCommit* out) override {
    if (!two_phase_) return Flush(true);
    out->rows.clear();
    ForEachPending([&](const Record& rec) {
      out->rows.emplace_back();
      EncodeRecord(rec, &out->rows.back());
      return Status::Ok();
    });
    pending_.clear();
    pending_keyed_.Clear();
    return Status::Ok();
  }

  Status ApplyEpoch(const std::string& lineage, int64_t epoch,
                    const std::vector<std::string>& rows) override {
    ONCEFLOW_RETURN_IF_ERROR(
        Exec("CREATE TABLE IF NOT EXISTS onceflow_applied_epochs (lineage TEXT NOT NULL, node TEXT "
             "NOT NULL, epoch INTEGER NOT NULL, applied_ms INTEGER, PRIMARY KEY(lineage, node, "
             "epoch)) WITHOUT ROWID"));
    ONCEFLOW_RETURN_IF_ERROR(SetSynchronous(true));
    ONCEFLOW_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    bool applied = false;
    Status st = MarkEpoch(lineage, epoch, &applied);
    if (st.ok() && !applied) {
      for (const std::string& bytes : rows) {
        Record rec;
        if (!DecodeRecord(bytes, &rec)) {
          st = Status::State("sqlite sink '" + node_ + "': a staged row of epoch " +
                             std::to_string(epoch) + " is corrupt");
          break;
        }
        st = WriteRow(rec);
        if (!st.ok()) break;
      }
    }
    return CommitOrRollback(st);
  }

  Status Close() override {
    CloseDb();
    return Status::Ok();
  }

 private:
  // Ends the open transaction: COMMIT when `st` is ok, else (or if COMMIT fails) ROLLBACK.
  Status CommitOrRollback(Status st) {
    if (st.ok()) st = Exec("COMMIT");
    if (!st.ok()) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      // The columns cached may include ones the rollback undid.
      Status reload = LoadColumns();
      (void)reload;
      FinalizeInsert();
    }
    return st;
  }

  Status WritePending() {
    return ForEachPending([this](const Record& rec) { return WriteRow(rec); });
  }

  // Visits the buffered rows in write order: with a key, the last record of each key in
  // key order; without, every record in arrival order.
  template <typename F>
  Status ForEachPending(F&& fn) {
    if (!key_.empty()) {
      return pending_keyed_.ForEachSorted(
          [&](const IndexedMap<Record>::Entry& e) -> Status { return fn(e.value); });
    } else {
      for (const Record& rec : pending_) ONCEFLOW_RETURN_IF_ERROR(fn(rec));
    }
    return Status::Ok();
  }

  // Inside a transaction: *applied = the marker of (lineage, node, epoch) existed;
  // otherwise inserts it.
  Status MarkEpoch(const std::string& lineage, int64_t epoch, bool* applied) {
    sqlite3_stmt* stmt = nullptr;
    const char* sql =
        "INSERT INTO onceflow_applied_epochs (lineage, node, epoch, applied_ms) VALUES (?, ?, "
        "?, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)) ON CONFLICT DO NOTHING";
    if (sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr) != SQLITE_OK) {
      return SqlError("record an applied epoch in");
    }
    sqlite3_bind_text(stmt, 1, lineage.data(), static_cast<int>(lineage.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 2, node_.data(), static_cast<int>(node_.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 3, epoch);
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) return SqlError("record an applied epoch in");
    *applied = sqlite3_changes(db_) == 0;
    return Status::Ok();
  }

  Status WriteRow(const Record& rec) {
    if (!table_exists_) ONCEFLOW_RETURN_IF_ERROR(CreateTable(rec));
    for (const auto& f : rec) {
      if (ColumnIndex(f.first) < 0) ONCEFLOW_RETURN_IF_ERROR(AddColumn(f.first, f.second));
    }
    if (insert_ == nullptr) ONCEFLOW_RETURN_IF_ERROR(PrepareInsert());
    for (size_t i = 0; i < columns_.size(); ++i) {
      const Value* v = nullptr;
      for (const auto& f : rec) {
        if (EqualsIgnoreCase(f.first, columns_[i])) {
          v = &f.second;
          break;
        }
      }
      int idx = static_cast<int>(i + 1);
      if (v == nullptr) {
        sqlite3_bind_null(insert_, idx);
        continue;
      }
      switch (v->type()) {
        case ValueType::kNull:
          sqlite3_bind_null(insert_, idx);
          break;
        case ValueType::kBool:
        case ValueType::kInt:
          sqlite3_bind_int64(insert_, idx, v->as_int());
          break;
        case ValueType::kDouble:
          sqlite3_bind_double(insert_, idx, v->as_double());
          break;
        case ValueType::kString:
        case ValueType::kJson:
          sqlite3_bind_text(insert_, idx, v->str().data(), static_cast<int>(v->str().size()),
                            SQLITE_TRANSIENT);
          break;
      }
    }
    int rc = sqlite3_step(insert_);
    sqlite3_reset(insert_);
    sqlite3_clear_bindings(insert_);
    if (rc != SQLITE_DONE) return SqlError("write a row to");
    return Status::Ok();
  }

  Status CreateTable(const Record& first) {
    std::string sql = "CREATE TABLE IF NOT EXISTS " + Quote(table_) + " (";
    bool comma = false;
    std::vector<std::string> cols;
    for (const auto& f : first) {
      bool dup = false;
      for (const auto& c : cols) dup = dup || EqualsIgnoreCase(c, f.first);
      if (dup) continue;
      if (comma) sql += ", ";
      comma = true;
      sql += Quote(f.first);
      const char* type = SqlType(f.second);
      if (*type) sql += std::string(" ") + type;
      cols.push_back(f.first);
    }
    if (!key_.empty()) {
      sql += ", PRIMARY KEY(";
      for (size_t i = 0; i < key_.size(); ++i) {
        if (i > 0) sql += ", ";
        sql += Quote(key_[i]);
      }
      sql += ")";
    }
    sql += ")";
    ONCEFLOW_RETURN_IF_ERROR(Exec(sql));
    return LoadColumns();
  }

  Status AddColumn(const std::string& name, const Value& v) {
    std::string sql = "ALTER TABLE " + Quote(table_) + " ADD COLUMN " + Quote(name);
    const char* type = SqlType(v);
    if (*type) sql += std::string(" ") + type;
    ONCEFLOW_RETURN_IF_ERROR(Exec(sql));
    columns_.push_back(name);
    FinalizeInsert();
    return Status::Ok();
  }

  Status PrepareInsert() {
    std::string sql = "INSERT INTO " + Quote(table_) + " (";
    std::string params;
    for (size_t i = 0; i < columns_.size(); ++i) {
      if (i > 0) {
        sql += ", ";
        params += ", ";
      }
      sql += Quote(columns_[i]);
      params += "?";
    }
    sql += ") VALUES (" + params + ")";
    if (!key_.empty()) {
      sql += " ON CONFLICT(";
      for (size_t i = 0; i < key_.size(); ++i) {
        if (i > 0) sql += ", ";
        sql += Quote(key_[i]);
      }
      sql += ") DO ";
      std::string sets;
      for (const auto& c : columns_) {
        bool is_key = false;
        for (const auto& k : key_) is_key = is_key || EqualsIgnoreCase(k, c);
        if (is_key) continue;
        if (!sets.empty()) sets += ", ";
        sets += Quote(c) + " = excluded." + Quote(c);
      }
      sql += sets.empty() ? "NOTHING" : "UPDATE SET " + sets;
    }
    if (sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &insert_, nullptr) !=
        SQLITE_OK) {
      insert_ = nullptr;
      Status st = SqlError("prepare writes to");
      if (!key_.empty()) {
        return Status::Runtime(st.message() +
                               " (an existing table needs a PRIMARY KEY or UNIQUE index on "
                               "the `key` columns)");
      }
      return st;
    }
    return Status::Ok();
  }

  Status LoadColumns() {
    columns_.clear();
    table_exists_ = false;
    FinalizeInsert();
    std::string sql = "PRAGMA table_info(" + Quote(table_) + ")";
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      return SqlError("read the columns of");
    }
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* name = sqlite3_column_text(stmt, 1);
      columns_.emplace_back(reinterpret_cast<const char*>(name),
                            static_cast<size_t>(sqlite3_column_bytes(stmt, 1)));
    }
    sqlite3_finalize(stmt);
    table_exists_ = !columns_.empty();
    return Status::Ok();
  }

  int ColumnIndex(std::string_view name) const {
    for (size_t i = 0; i < columns_.size(); ++i) {
      if (EqualsIgnoreCase(columns_[i], name)) return static_cast<int>(i);
    }
    return -1;
  }

  Status SetSynchronous(bool full) {
    if (sync_full_ == static_cast<int>(full)) return Status::Ok();
    ONCEFLOW_RETURN_IF_ERROR(Exec(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
    sync_full_ = full;
    return Status::Ok();
  }

  Status Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      return Status::IOError("sqlite '" + path_ + "', table '" + table_ + "': " + msg);
    }
    return Status::Ok();
  }

  Status SqlError(const std::string& what) {
    return Status::IOError("sqlite: cannot " + what + " table '" + table_ + "' in '" + path_ +
                           "': " + sqlite3_errmsg(db_));
  }

  void FinalizeInsert() {
    if (insert_ != nullptr) sqlite3_finalize(insert_);
    insert_ = nullptr;
  }

  void CloseDb() {
    FinalizeInsert();
    if (db_ != nullptr) sqlite3_close(db_);
    db_ = nullptr;
    sync_full_ = -1;
  }

  std::string node_, path_, table_;
  std::vector<std::string> key_;
  bool two_phase_ = false;
  NodeContext* ctx_ = nullptr;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  int sync_full_ = -1;  // -1 unknown, 0 NORMAL, 1 FULL
  bool table_exists_ = false;
  std::vector<std::string> columns_;                        // table columns, in table order
  std::vector<Record> pending_;                             // without key: rows in arrival order
  IndexedMap<Record> pending_keyed_;  // with key: last record per key
  BatchKeys keys_;  // keys of the batch being written (with key)
  std::string key_buf_;
};

}  // namespace

NodeTypeDef SqliteSinkDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kSink;
  d.type = "sqlite";
  d.summary =
      "write records as rows of an SQLite table (append, or upsert on key); rows are "
      "committed in transactions at most every 200 ms and at checkpoints";
  d.options = {
      RequiredOption("path", OptionType::kPath,
                     "database file, relative to the pipeline file's folder; created with "
                     "missing folders"),
      RequiredOption("table", OptionType::kString,
                     "table name ([A-Za-z_][A-Za-z0-9_]*); created from the first record, "
                     "new fields add columns; emptied by a fresh run"),
      Option("key", OptionType::kFieldList, "",
             "upsert on these fields (the table's PRIMARY KEY): a key's row holds its last "
             "record; without key every record is appended"),
  };
  d.max_parallelism = 1;
  d.check = [](const NodeSpec& spec, Diagnostics& diags) {
    const YNode* table = spec.options.Raw("table");
    if (table != nullptr && !ValidTableName(spec.options.GetString("table"))) {
      diags.Error(*table, "node '" + spec.id + "': table name '" + spec.options.GetString("table") +
                              "' must match [A-Za-z_][A-Za-z0-9_]*");
    }
  };
  d.sink_guarantee = [](Semantics s) -> std::string {
    switch (s) {
      case Semantics::kEffectivelyOnce:
        return "effectively-once: each checkpoint's rows are applied once, recorded by its id "
               "in the sink's database";
      case Semantics::kAtLeastOnce:
        return "at-least-once: rows since the last checkpoint are written again after a "
               "failure (with `key` an upsert rewrites the same row)";
      case Semantics::kAtMostOnce:
        return "at-most-once: rows in flight at a failure may be missing";
    }
    return "";
  };
  d.make_sink = [](const NodeSpec& spec) { return std::make_unique<SqliteSink>(spec); };
  d.two_phase = true;
  return d;
}

}  // namespace onceflow::ops
