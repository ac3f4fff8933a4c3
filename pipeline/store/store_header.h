// The self-description every rhead store carries at its root (docs/STORE.md):
//   schema_version, stage, project_version, git_revision, job_file, job_text, created_utc,
//   settings, world_size, comm_backend, status ("running" until the very last write, then "complete").
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "pipeline/store/hdf5_file.h"

namespace pipeline::store {

struct StoreHeader {
  std::string stage;
  int64_t schema_version = 1;
  std::string job_file;
  std::string job_text;
  std::string settings;  // the stage's resolved keys (Config::resolved_text), "" in stores made before them
  int64_t world_size = 1;
  std::string comm_backend;
};

// Writes every header attribute (including a fresh random store_id) and status = "running".
void write_header(Group& root, const StoreHeader& header);
// Reads the header back (status not included).
StoreHeader read_header(const Group& root);
// status = "complete": the last write of a finished store.
void mark_complete(Group& root);
// The store's store_id attribute ("" when absent or unreadable): identifies one computation of a store,
// so a later stage can tell that an input was recomputed after it read it.
std::string store_id(const std::filesystem::path& path);
// True when `path` exists, opens, and has status == "complete".
bool is_complete(const std::filesystem::path& path);
// Throws StoreError when the store's schema_version is newer than this build understands, or when the
// store belongs to another stage; names both versions and what to do.
void require_readable(const Group& root, const std::string& expected_stage, int64_t max_schema_version);
// "2026-11-22T23:59:01Z"
std::string utc_now_iso8601();

}  // namespace pipeline::store
