// StateStore, dedup mode: the per-task commits of effectively-once/dedup and what a
// restart reads back. The tables are documented with the others at the top of store.cc.
//
// DEDUP
//   Every task commits {consumed positions, state changelog, outputs, sink progress} in
//   one transaction with synchronous=NORMAL, hundreds of times a second. NORMAL is enough
//   here, unlike for a checkpoint's completion record: all tasks commit into this one WAL,
//   in an order that respects causality (a producer's outputs are committed before any
//   consumer can commit having applied them), and a power cut loses at most a suffix of
//   the WAL, i.e. the newest commits in that order — which leaves a consistent cut: every
//   surviving consumer position refers to surviving producer outputs. A `file` sink's
//   length is only recorded after its data was fsynced; an `sqlite` sink's rows are
//   staged here and applied with a marker afterwards (rolled forward on restart).
//   The WAL is copied back after compactions and whenever it passes its bound.
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "runtime/state/sqlite_stmt.h"
#include "runtime/state/store.h"

namespace onceflow {
namespace {

constexpr int64_t kDedupWalBytes = int64_t{64} << 20;

void PutU32(uint32_t v, std::string* out) {
  char b[4];
  std::memcpy(b, &v, 4);
  out->append(b, 4);
}

bool GetU32(std::string_view* in, uint32_t* v) {
  if (in->size() < 4) return false;
  std::memcpy(v, in->data(), 4);
  in->remove_prefix(4);
  return true;
}

}  // namespace

void AppendChange(std::string_view key, const StateValue* value, std::string* blob) {
  PutU32(static_cast<uint32_t>(key.size()), blob);
  blob->append(key.data(), key.size());
  if (value == nullptr) {
    blob->push_back(0);
    return;
  }
  blob->push_back(1);
  const size_t at = blob->size();
  PutU32(0, blob);
  EncodeStateValue(*value, blob);
  const uint32_t n = static_cast<uint32_t>(blob->size() - at - 4);
  std::memcpy(blob->data() + at, &n, 4);
}

bool ForEachChange(
    std::string_view blob,
    const std::function<void(std::string_view key, const std::string_view* value)>& fn) {
  while (!blob.empty()) {
    uint32_t klen = 0;
    // size_t arithmetic: klen + 1 must not wrap around for klen = 2^32 - 1.
    if (!GetU32(&blob, &klen) || blob.size() < static_cast<size_t>(klen) + 1) return false;
    std::string_view key = blob.substr(0, klen);
    blob.remove_prefix(klen);
    const char has = blob[0];
    blob.remove_prefix(1);
    if (has == 0) {
      fn(key, nullptr);
      continue;
    }
    uint32_t vlen = 0;
    if (!GetU32(&blob, &vlen) || blob.size() < vlen) return false;
    std::string_view value = blob.substr(0, vlen);
    blob.remove_prefix(vlen);
    fn(key, &value);
  }
  return true;
}

Status StateStore::DedupCommit(const DedupCommitData& d, int64_t* epoch) {
  *epoch = 0;
  bool has_staged = false;
  for (const auto& s : d.staged) has_staged |= !s.rows.empty();
  Status st = WithTransaction(false, [&] {
    for (const DedupChannel& c : d.consumed) {
      Stmt q(db_,
             "INSERT INTO dedup_channels(channel, consumed, ended, pos_name, pos_offset)"
             " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(channel) DO UPDATE SET"
             " consumed=excluded.consumed, ended=excluded.ended, pos_name=excluded.pos_name,"
             " pos_offset=excluded.pos_offset");
      q.Bind(1, c.channel).Bind(2, c.consumed).Bind(3, c.ended ? 1 : 0).Bind(4, c.pos_name)
          .Bind(5, c.pos_offset);
      if (q.Step() != SQLITE_DONE) return Error("writing a consumed position");
    }
    for (const auto& [channel, seq] : d.produced) {
      Stmt q(db_,
             "INSERT INTO dedup_channels(channel, produced) VALUES(?1, ?2)"
             " ON CONFLICT(channel) DO UPDATE SET produced=excluded.produced");
      q.Bind(1, channel).Bind(2, seq);
      if (q.Step() != SQLITE_DONE) return Error("writing a produced position");
    }
    if (!d.outbox.empty()) {
      Stmt q(db_, "INSERT INTO dedup_outbox(channel, seq, data) VALUES(?1, ?2, ?3)");
      for (const auto& o : d.outbox) {
        q.Reset();
        q.Bind(1, o.channel).Bind(2, o.seq).BindBlob(3, o.data);
        if (q.Step() != SQLITE_DONE) return Error("writing the outbox");
      }
    }
    for (const auto& [channel, seq] : d.trim) {
      Stmt q(db_, "DELETE FROM dedup_outbox WHERE channel=?1 AND seq<=?2");
      q.Bind(1, channel).Bind(2, seq);
      if (q.Step() != SQLITE_DONE) return Error("trimming the outbox");
    }
    if (!d.changes.empty()) {
      Stmt q(db_, "INSERT INTO dedup_changes(node, data) VALUES(?1, ?2)");
      for (const auto& [node, blob] : d.changes) {
        q.Reset();
        q.Bind(1, node).BindBlob(2, blob);
        if (q.Step() != SQLITE_DONE) return Error("writing the state changelog");
      }
    }
    for (const SinkCommit& c : d.sinks) {
      Stmt q(db_,
             "INSERT INTO dedup_sinks(node, instance, path, length) VALUES(?1, ?2, ?3, ?4)"
             " ON CONFLICT(node, instance) DO UPDATE SET path=excluded.path,"
             " length=excluded.length");
      q.Bind(1, c.node).Bind(2, c.instance).Bind(3, c.path).Bind(4, c.length);
      if (q.Step() != SQLITE_DONE) return Error("writing a sink length");
    }
    if (has_staged) {
      // Epoch ids come from last_id, like checkpoint ids: never reused, so a sink's
      // (lineage, node, epoch) marker never matches another commit's.
      int64_t last = 0;
      {
        Stmt q(db_, "SELECT v FROM meta WHERE k='last_id'");
        if (q.Step() != SQLITE_ROW) return Error("reading last_id");
        last = std::strtoll(q.Text(0).c_str(), nullptr, 10);
      }
      *epoch = last + 1;
      Stmt u(db_, "UPDATE meta SET v=?1 WHERE k='last_id'");
      u.Bind(1, std::to_string(*epoch));
      if (u.Step() != SQLITE_DONE) return Error("writing last_id");
      Stmt q(db_, "INSERT INTO sink_staging(checkpoint, node, seq, row) VALUES(?1, ?2, ?3, ?4)");
      for (const auto& s : d.staged) {
        int64_t seq = 0;
        for (const std::string& row : s.rows) {
          q.Reset();
          q.Bind(1, *epoch).Bind(2, s.node).Bind(3, seq++).BindBlob(4, row);
          if (q.Step() != SQLITE_DONE) return Error("staging sink rows");
        }
      }
    }
    if (d.in_txn_hook) d.in_txn_hook();
    return Status::Ok();
  });
  if (!st.ok()) *epoch = 0;
  return st;
}

Status StateStore::DedupChannels(std::vector<DedupChannel>* out) {
  out->clear();
  if (schema_version_ < 3) return Status::Ok();
  Stmt q(db_,
         "SELECT channel, produced, consumed, ended, pos_name, pos_offset FROM dedup_channels"
         " ORDER BY channel");
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    DedupChannel c;
    c.channel = q.Text(0);
    c.produced = q.Int(1);
    c.consumed = q.Int(2);
    c.ended = q.Int(3) != 0;
    c.pos_name = q.Text(4);
    c.pos_offset = q.Int(5);
    out->push_back(std::move(c));
  }
  return rc == SQLITE_DONE ? Status::Ok() : Error("reading dedup channels");
}

Status StateStore::DedupOutbox(const std::string& channel,
                               const std::function<Status(int64_t, std::string_view)>& fn) {
  Stmt q(db_, "SELECT seq, data FROM dedup_outbox WHERE channel=?1 ORDER BY seq");
  q.Bind(1, channel);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) ONCEFLOW_RETURN_IF_ERROR(fn(q.Int(0), q.Blob(1)));
  return rc == SQLITE_DONE ? Status::Ok() : Error("reading the outbox");
}

Status StateStore::DedupSinks(std::vector<SinkCommit>* out) {
  // Dedup commits are not checkpoints: epoch 0.
  return ReadSinkCommits("SELECT node, instance, path, length, 0 FROM dedup_sinks", [](Stmt&) {},
                         "reading dedup sink lengths", out);
}

Status StateStore::DedupState(
    const std::string& node,
    const std::function<Status(std::string_view, const std::string_view*)>& fn) {
  {
    Stmt q(db_, "SELECT key, value FROM dedup_state WHERE node=?1");
    q.Bind(1, node);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      std::string_view v = q.Blob(1);
      ONCEFLOW_RETURN_IF_ERROR(fn(q.Blob(0), &v));
    }
    if (rc != SQLITE_DONE) return Error("reading dedup state");
  }
  Stmt q(db_, "SELECT data FROM dedup_changes WHERE node=?1 ORDER BY id");
  q.Bind(1, node);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    Status cb;
    const bool ok = ForEachChange(q.Blob(0), [&](std::string_view k, const std::string_view* v) {
      if (cb.ok()) cb = fn(k, v);
    });
    ONCEFLOW_RETURN_IF_ERROR(cb);
    if (!ok) return Status::State("state file " + path_ + ": corrupt state changelog of '" + node + "'");
  }
  return rc == SQLITE_DONE ? Status::Ok() : Error("reading the state changelog");
}

Status StateStore::DedupLiveState(
    const std::string& node,
    const std::function<Status(const std::string& key, const std::string& value)>& fn) {
  std::map<std::string, std::optional<std::string>> live;
  ONCEFLOW_RETURN_IF_ERROR(
      DedupState(node, [&](std::string_view key, const std::string_view* value) {
        auto& slot = live[std::string(key)];
        if (value != nullptr) {
          slot = std::string(*value);
        } else {
          slot.reset();
        }
        return Status::Ok();
      }));
  for (const auto& [key, value] : live) {
    if (value) ONCEFLOW_RETURN_IF_ERROR(fn(key, *value));
  }
  return Status::Ok();
}

Status StateStore::DedupCompact(int64_t* rows) {
  int64_t folded = 0;
  Status st = WithTransaction(false, [&] {
    int64_t max_id = 0;
    {
      Stmt q(db_, "SELECT COALESCE(MAX(id), 0) FROM dedup_changes");
      if (q.Step() != SQLITE_ROW) return Error("reading the changelog");
      max_id = q.Int(0);
    }
    if (max_id == 0) return Status::Ok();
    // Last change wins per (node, key); written in key order (sorted B-tree inserts).
    // Keys and values stay views into the blobs read here: no allocation per change.
    std::vector<std::pair<std::string, std::string>> blobs;  // node, data
    {
      Stmt q(db_, "SELECT node, data FROM dedup_changes WHERE id<=?1 ORDER BY id");
      q.Bind(1, max_id);
      int rc;
      while ((rc = q.Step()) == SQLITE_ROW) blobs.emplace_back(q.Text(0), std::string(q.Blob(1)));
      if (rc != SQLITE_DONE) return Error("reading the changelog");
    }
    folded = static_cast<int64_t>(blobs.size());
    struct Latest {
      std::string_view value;
      bool erased = false;
    };
    std::map<std::string_view, absl::flat_hash_map<absl::string_view, Latest>> latest;
    for (const auto& [node, blob] : blobs) {
      auto& keys = latest[node];
      const bool ok = ForEachChange(blob, [&](std::string_view k, const std::string_view* v) {
        Latest& slot = keys[absl::string_view(k.data(), k.size())];
        slot.erased = v == nullptr;
        slot.value = v != nullptr ? *v : std::string_view();
      });
      if (!ok) return Status::State("state file " + path_ + ": corrupt state changelog");
    }
    Stmt put(db_,
             "INSERT INTO dedup_state(node, key, value) VALUES(?1, ?2, ?3)"
             " ON CONFLICT(node, key) DO UPDATE SET value=excluded.value");
    Stmt del(db_, "DELETE FROM dedup_state WHERE node=?1 AND key=?2");
    std::vector<std::pair<absl::string_view, Latest>> sorted;
    for (const auto& [node, keys] : latest) {
      sorted.assign(keys.begin(), keys.end());
      std::sort(sorted.begin(), sorted.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& [key, v] : sorted) {
        Stmt& q = v.erased ? del : put;
        q.Reset();
        q.Bind(1, node).BindBlob(2, std::string_view(key.data(), key.size()));
        if (!v.erased) q.BindBlob(3, v.value);
        if (q.Step() != SQLITE_DONE) return Error("compacting dedup state");
      }
    }
    Stmt d(db_, "DELETE FROM dedup_changes WHERE id<=?1");
    d.Bind(1, max_id);
    return d.Step() == SQLITE_DONE ? Status::Ok() : Error("trimming the changelog");
  });
  if (!st.ok()) return st;
  if (rows != nullptr) *rows = folded;
  struct stat wal;
  if (folded > 0 || (::stat((path_ + "-wal").c_str(), &wal) == 0 && wal.st_size > kDedupWalBytes)) {
    // Best effort: SQLITE_BUSY (a reader) postpones it to the next compaction.
    sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  }
  return Status::Ok();
}

Status StateStore::DedupReset(const DedupResetData& data) {
  return WithTransaction(true, [&] {
    for (const char* sql : {"DELETE FROM dedup_channels", "DELETE FROM dedup_outbox",
                            "DELETE FROM dedup_changes", "DELETE FROM dedup_state",
                            "DELETE FROM dedup_sinks"}) {
      ONCEFLOW_RETURN_IF_ERROR(Exec(sql));
    }
    {
      Stmt q(db_, "INSERT INTO dedup_state(node, key, value) VALUES(?1, ?2, ?3)");
      for (const auto& [node, key, value] : data.state) {
        q.Reset();
        q.Bind(1, node).BindBlob(2, key).BindBlob(3, value);
        if (q.Step() != SQLITE_DONE) return Error("restoring dedup state");
      }
    }
    for (const DedupChannel& c : data.channels) {
      Stmt q(db_,
             "INSERT INTO dedup_channels(channel, produced, consumed, ended, pos_name, pos_offset)"
             " VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
      q.Bind(1, c.channel).Bind(2, c.produced).Bind(3, c.consumed).Bind(4, c.ended ? 1 : 0)
          .Bind(5, c.pos_name).Bind(6, c.pos_offset);
      if (q.Step() != SQLITE_DONE) return Error("restoring dedup positions");
    }
    for (const SinkCommit& c : data.sinks) {
      Stmt q(db_, "INSERT INTO dedup_sinks(node, instance, path, length) VALUES(?1, ?2, ?3, ?4)");
      q.Bind(1, c.node).Bind(2, c.instance).Bind(3, c.path).Bind(4, c.length);
      if (q.Step() != SQLITE_DONE) return Error("restoring dedup sink lengths");
    }
    return Status::Ok();
  });
}

Status StateStore::DedupLogSize(int64_t* rows, int64_t* bytes) {
  *rows = 0;
  *bytes = 0;
  for (const char* sql : {"SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM dedup_outbox",
                          "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM dedup_changes"}) {
    Stmt q(db_, sql);
    if (q.Step() != SQLITE_ROW) return Error("measuring the dedup log");
    *rows += q.Int(0);
    *bytes += q.Int(1);
  }
  return Status::Ok();
}

}  // namespace onceflow
