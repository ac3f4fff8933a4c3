// Kill -9 of one rank in the middle of a cell-based stage, for the kill-and-resume tests of the stages
// that run models (the selftest stage's own e2e test has the synthetic version).
#pragma once

#include <cstdint>
#include <filesystem>

#include "tests/common/test_support.h"

namespace test_support {

// From `dir`, starts `rhead run <job_file>` on 2 ranks in the background (log: dir/first.log), waits until
// the stage's progress file of rank 1 (<run_dir>/<stage>.shards/progress/rank1.txt) reports at least
// min_cells finished cells, kill -9 one rhead rank of this run (processes are matched by the job file's
// path, so the path must be unique to the test), and waits until every process of the run is gone.
// The output holds STILL_RUNNING (and the survivors) when some did not end.
CommandResult run_and_kill_one_rank(const std::filesystem::path& dir, const std::filesystem::path& job_file,
                                    const std::filesystem::path& progress_file, int min_cells,
                                    double timeout_s = 240.0);

// Cells with complete = 1 in the readable shard files (*.h5) of a stage's shard folder.
int64_t count_finished_cells(const std::filesystem::path& shard_dir);

}  // namespace test_support
