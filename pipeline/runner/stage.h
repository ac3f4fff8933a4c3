// The Stage interface and the explicit stage registry (stages/registry.cpp fills it).
//
// A stage is one class in one folder under stages/. Its name is its job-file section ([<name>]), its
// store file (<run_dir>/<name>.h5) and its registry key. The runner calls, in order and on every rank:
// declare (schema) -> validate (cheap checks; all ranks agree before any collective) -> run.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/comm/communicator.h"
#include "pipeline/core/config.h"
#include "pipeline/store/hdf5_file.h"
#include "pipeline/store/store_header.h"

namespace pipeline {

// A file or folder a stage reads besides the stores of its input stages (needles, haystacks, task
// files, model folders). The runner fingerprints each (core/fingerprint.h) and reruns the stage when one
// changed since its store was made; a cell stage then recomputes only the cells that read it.
struct InputFile {
  std::string group;           // the cell group (a model's name) that reads it; "": every cell
  std::filesystem::path path;  // as the job file names it
};

struct StageContext {
  StageContext(const Config& job, Communicator& world, std::string stage, std::filesystem::path dir)
      : config(job), comm(world), stage_name(std::move(stage)), run_dir(std::move(dir)) {}

  const Config& config;                 // the whole job file (every stage's section)
  Communicator& comm;                   // the world
  std::string stage_name;
  std::filesystem::path run_dir;
  uint64_t seed = 0;                    // [job] seed
  int threads = 1;                      // compute threads for this rank ([job] threads, resolved)
  double progress_interval_s = 10.0;
  store::StoreHeader header;            // stamped into the output and shard files
  store::File* output = nullptr;        // rank 0 only: <run_dir>/<stage>.h5 being written (status running)
  std::string input_ids;                // "input_store_id.<stage> = <id>" per input, one a line (runner)
  std::string cell_group_section;       // Stage::cell_group_section() (runner)
  std::string input_files;              // "<group>\t<path>\t<fingerprint>" per Stage::input_files (runner)

  std::filesystem::path store_path(const std::string& stage) const { return run_dir / (stage + ".h5"); }
};

class Stage {
 public:
  virtual ~Stage() = default;
  virtual std::string name() const = 0;
  virtual std::string summary() const = 0;               // one line for `rhead --help`
  virtual int64_t schema_version() const { return 1; }   // bump on any layout change (docs/STORE.md)
  // Stages whose stores this one reads (may depend on the job). The runner checks they are complete, and
  // reruns this stage when one of them was recomputed after this stage's store was made.
  virtual std::vector<std::string> inputs(const Config& /*job*/) const { return {}; }
  // The job-file section family its cell groups are named after, e.g. "model" when every cell belongs to
  // one model (its WorkItem group is the model's name, its keys [model.<name>]): a cell of group G then
  // depends on every key of the stage but those of the other groups' [<section>.<name>] sections, so that
  // a rerun after one model was added or edited keeps the other models' cells (cell_driver.h). "" (the
  // default): a cell depends on every key the stage reads.
  virtual std::string cell_group_section() const { return ""; }
  // Files and folders it reads besides its input stores (see InputFile); read only by the runner.
  virtual std::vector<InputFile> input_files(const Config& /*job*/) const { return {}; }
  virtual void declare(ConfigSchema& /*schema*/) const {}         // its [<name>] keys
  virtual void validate(const StageContext& /*ctx*/) const {}     // throw ConfigError/InputError
  // What the stage would do for this job, for `rhead run --dry-run` (models, grid, cell counts); reads
  // only the job, never a model or a store.
  virtual void plan(const Config& /*job*/, std::ostream& /*out*/) const {}
  virtual void run(StageContext& ctx) = 0;
  // Human summary of a finished store of this stage, for `rhead inspect`.
  virtual void inspect(const store::Group& /*root*/, std::ostream& /*out*/) const {}
};

class StageRegistry {
 public:
  void add(std::unique_ptr<Stage> stage);
  Stage* find(const std::string& name) const;  // nullptr when unknown
  std::vector<std::string> names() const;            // registration order
 private:
  std::vector<std::unique_ptr<Stage>> m_stages;
};

}  // namespace pipeline
