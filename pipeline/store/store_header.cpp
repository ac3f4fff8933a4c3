#include "pipeline/store/store_header.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>

#include "pipeline/core/error.h"
#include "pipeline/core/version.h"

namespace pipeline::store {

std::string utc_now_iso8601() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string new_store_id() {
  std::random_device rd;
  uint64_t t = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ (t * 0x9e3779b97f4a7c15ull);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r));
  return buf;
}

void write_header(Group& root, const StoreHeader& h) {
  root.set_attr("store_id", new_store_id());
  root.set_attr("schema_version", h.schema_version);
  root.set_attr("stage", h.stage);
  root.set_attr("project", std::string("rhead"));
  root.set_attr("project_version", std::string(kProjectVersion));
  root.set_attr("git_revision", std::string(kGitRevision));
  root.set_attr("job_file", h.job_file);
  root.set_attr("job_text", h.job_text);
  root.set_attr("settings", h.settings);
  root.set_attr("created_utc", utc_now_iso8601());
  root.set_attr("world_size", h.world_size);
  root.set_attr("comm_backend", h.comm_backend);
  root.set_attr("status", std::string("running"));
}

StoreHeader read_header(const Group& root) {
  StoreHeader h;
  h.stage = root.attr_string("stage");
  h.schema_version = root.attr_int("schema_version");
  h.job_file = root.attr_string("job_file");
  h.job_text = root.attr_string("job_text");
  if (root.has_attr("settings")) h.settings = root.attr_string("settings");
  h.world_size = root.attr_int("world_size");
  h.comm_backend = root.attr_string("comm_backend");
  return h;
}

void mark_complete(Group& root) { root.set_attr("status", std::string("complete")); }

std::string store_id(const std::filesystem::path& path) {
  if (!is_readable_hdf5(path)) return "";
  File f = File::open(path);
  Group root = f.root();
  return root.has_attr("store_id") ? root.attr_string("store_id") : "";
}

bool is_complete(const std::filesystem::path& path) {
  if (!is_readable_hdf5(path)) return false;
  File f = File::open(path);
  Group root = f.root();
  return root.has_attr("status") && root.attr_string("status") == "complete";
}

void require_readable(const Group& root, const std::string& expected_stage, int64_t max_schema_version) {
  RHEAD_CHECK(root.has_attr("schema_version") && root.has_attr("stage"), StoreError, "[store] ",
              root.file_path(), ": not an rhead store (no schema_version/stage attributes)");
  std::string stage = root.attr_string("stage");
  RHEAD_CHECK(stage == expected_stage, StoreError, "[store] ", root.file_path(), ": written by stage '", stage,
              "', expected stage '", expected_stage, "'");
  int64_t version = root.attr_int("schema_version");
  RHEAD_CHECK(version <= max_schema_version, StoreError, "[store] ", root.file_path(), ": schema_version ",
              version, " is newer than this rhead understands (up to ", max_schema_version, " for stage '",
              stage, "'). Hint: read it with a newer rhead (the store says git_revision ",
              root.has_attr("git_revision") ? root.attr_string("git_revision") : "?",
              "), or rerun the stage with --force using this one");
  RHEAD_CHECK(root.has_attr("status") && root.attr_string("status") == "complete", StoreError, "[store] ",
              root.file_path(), ": status is '", root.has_attr("status") ? root.attr_string("status") : "?",
              "', expected 'complete'. Hint: the stage did not finish; rerun the job to resume it");
}

}  // namespace pipeline::store
