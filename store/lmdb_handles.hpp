// The LMDB C API in RAII handles and small helpers, for the store (store/lmdb_store.cpp) and the
// operator's read-only inspector (store/lmdb_inspect.cpp). Failures are StoreErrors.
//
// Rules (lmdb.h): a txn not committed aborts in its destructor; cursors are closed before their
// txn ends; bytes are decoded or copied out of an MDB_val at once, never kept past the next write
// or txn end.
#pragma once

#include <lmdb.h>

#include <cerrno>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "store/store.hpp"

namespace navietakie::lmdb {

[[noreturn]] inline void fail(int rc, const std::string& what) {
  if (rc == MDB_MAP_FULL || rc == ENOSPC) {
    throw StoreError(StoreError::Kind::full, what + ": " + mdb_strerror(rc));
  }
  throw StoreError(StoreError::Kind::io, what + ": " + mdb_strerror(rc));
}

inline void check(int rc, const char* what) {
  if (rc != MDB_SUCCESS) fail(rc, what);
}

// LMDB never writes through the pointer of a key or value it is given.
inline MDB_val to_val(std::string_view bytes) { return MDB_val{bytes.size(), const_cast<char*>(bytes.data())}; }
inline std::string_view view(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

// ---- RAII handles (move-only) ----

class Env {
 public:
  Env() { check(mdb_env_create(&env_), "mdb_env_create"); }
  ~Env() {
    if (env_ != nullptr) mdb_env_close(env_);
  }
  Env(Env&& other) noexcept : env_(std::exchange(other.env_, nullptr)) {}
  Env& operator=(Env&& other) noexcept {
    std::swap(env_, other.env_);
    return *this;
  }
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  MDB_env* get() const { return env_; }

 private:
  MDB_env* env_ = nullptr;
};

class Txn {
 public:
  static Txn begin(MDB_env* env, MDB_txn* parent, unsigned flags) {
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env, parent, flags, &txn), "mdb_txn_begin");
    return Txn(txn);
  }
  ~Txn() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
  }
  Txn(Txn&& other) noexcept : txn_(std::exchange(other.txn_, nullptr)) {}
  Txn& operator=(Txn&& other) noexcept {
    std::swap(txn_, other.txn_);
    return *this;
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  // LMDB frees the handle whether or not the commit succeeds, so it is released first.
  void commit() { check(mdb_txn_commit(std::exchange(txn_, nullptr)), "mdb_txn_commit"); }
  MDB_txn* get() const { return txn_; }

 private:
  explicit Txn(MDB_txn* txn) : txn_(txn) {}
  MDB_txn* txn_ = nullptr;
};

class Cursor {
 public:
  Cursor(MDB_txn* txn, MDB_dbi dbi) { check(mdb_cursor_open(txn, dbi, &cursor_), "mdb_cursor_open"); }
  ~Cursor() {
    if (cursor_ != nullptr) mdb_cursor_close(cursor_);
  }
  Cursor(Cursor&& other) noexcept : cursor_(std::exchange(other.cursor_, nullptr)) {}
  Cursor& operator=(Cursor&& other) noexcept {
    std::swap(cursor_, other.cursor_);
    return *this;
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;

  // Deletes the entry the cursor is on; the caller checks the result (a write failure).
  int del() { return mdb_cursor_del(cursor_, 0); }

  // false when there is no such entry (MDB_NOTFOUND).
  bool get(MDB_val& key, MDB_val& data, MDB_cursor_op op) {
    const int rc = mdb_cursor_get(cursor_, &key, &data, op);
    if (rc == MDB_NOTFOUND) return false;
    check(rc, "mdb_cursor_get");
    return true;
  }

 private:
  MDB_cursor* cursor_ = nullptr;
};

// The value under key, viewed in place: valid only until the next write in txn or its end.
inline std::optional<std::string_view> lookup(MDB_txn* txn, MDB_dbi dbi, std::string_view key) {
  MDB_val k = to_val(key);
  MDB_val data{};
  const int rc = mdb_get(txn, dbi, &k, &data);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  check(rc, "mdb_get");
  return view(data);
}

}  // namespace navietakie::lmdb
