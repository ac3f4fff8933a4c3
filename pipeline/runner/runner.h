// Runs a job file: its stages in order, each skipped when its store is complete (resume) unless forced.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "pipeline/comm/communicator.h"
#include "pipeline/core/error.h"
#include "pipeline/core/config.h"
#include "pipeline/runner/stage.h"

namespace pipeline {

// Thrown identically on every rank after they agreed that something is wrong (validation); main
// reports it once and exits normally instead of aborting the job.
class CollectiveError : public Error {
 public:
  using Error::Error;
};

struct RunOptions {
  std::filesystem::path job_file;
  std::vector<std::string> stages;     // empty: the job's [job] stages
  std::vector<std::string> overrides;  // --set section.key=value
  bool force = false;                  // rerun stages whose stores are complete
  bool dry_run = false;                // plan and check, run nothing (dry_run_job)
};

// [job] keys plus every registered stage's keys, each as declared (for --help-keys).
ConfigSchema job_schema(const StageRegistry& registry);
// The same, but only the stages in `active` keep their required keys; the other stages' keys are still
// known (a typo is still an error) and optional.
ConfigSchema job_schema(const StageRegistry& registry, const std::vector<std::string>& active);

// Parses the job (throws ConfigError naming file/section/key) on every rank.
Config load_job(const StageRegistry& registry, const RunOptions& options);

// Runs the job's stages; returns normally when every stage is complete.
void run_job(const StageRegistry& registry, const RunOptions& options, const Config& job, Communicator& comm);

// `rhead run --dry-run`: per stage, what it would do (skip a complete store or run, its plan) and whether
// its checks pass now (inputs a previous stage would write are not required). Writes nothing. Returns the
// number of stages whose checks fail (their messages are printed): a job whose only failures name paths
// still to fill in is well-formed.
int dry_run_job(const StageRegistry& registry, const RunOptions& options, const Config& job, std::ostream& out);

// The run directory of a job ([job] run_dir, default runs/<name>).
std::filesystem::path run_dir_of(const Config& job);

}  // namespace pipeline
