// Key lists: which keys each version (checkpoint id) wrote to the `state` table, kept in
// the `state_keys` table (schema version 4; see store.cc TABLES) so that the rows of one
// version can be found without an index on `state(version)`.
//
// Why not that index: every state row then went into two B-trees. At 100,000 keys a full
// checkpoint's commit took 120 ms with the index and 70 ms without it, and a checkpoint
// is what a bounded run ends with while the other cores sit idle. A version's key list
// costs one blob row per 64 KiB of key bytes instead of one index row per key. Only
// Delete, Prune and the clean-up of pending checkpoints look rows up by version, and they
// look up each listed key by the table's primary key (node, key, version).
//
// Invariant: every state row (node, key, version v) has its key in a list of v under
// `node`. A list may also name keys that have no row of v (the row was compacted away, or
// a copy found the key already there), and may name a key twice; readers treat a listed
// key as "maybe written by v".
//
// Blob format: the keys one after another, each as a LEB128 varint length followed by the
// key's bytes. Rows of one version are numbered by seq from 1, in the order written.
//
// Threading: none (the caller's connection and transaction).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "runtime/core/status.h"

namespace onceflow {

// Appends keys to the lists of one version; Finish() writes what is buffered. Writes go
// to the caller's open transaction.
class KeyListWriter {
 public:
  KeyListWriter(sqlite3* db, const std::string& path, int64_t version)
      : db_(db), path_(path), version_(version) {}
  // Notes that `version` wrote a row for (node, key).
  Status Add(std::string_view node, std::string_view key);
  Status Finish();

 private:
  static constexpr size_t kChunkBytes = 64 << 10;
  Status Flush();

  sqlite3* db_;
  const std::string& path_;
  int64_t version_;
  int64_t seq_ = -1;  // the last seq written; -1 until read from the table
  std::string node_;
  std::string keys_;
};

// Calls fn(node, key) for every key listed for `version`, in the order they were listed.
// The lists are read whole before the first call, so fn may write to any table.
Status ForEachListedKey(sqlite3* db, const std::string& path, int64_t version,
                        const std::function<Status(std::string_view node, std::string_view key)>& fn);

// Deletes every state row of `version` (found through its lists), then the lists.
Status DeleteVersionRows(sqlite3* db, const std::string& path, int64_t version);

// Schema 3 -> 4: creates `state_keys`, lists the keys of every version already in `state`
// and drops the index state_by_version it replaces. Inside the caller's transaction.
Status MigrateToKeyLists(sqlite3* db, const std::string& path);

}  // namespace onceflow
