#include "tests/stages_e2e/kill_rank.h"

#include <string>

#include "pipeline/store/hdf5_file.h"

namespace test_support {

namespace fs = std::filesystem;

CommandResult run_and_kill_one_rank(const fs::path& dir, const fs::path& job_file, const fs::path& progress_file,
                                    int min_cells, double timeout_s) {
  const std::string job = job_file.string();
  const std::string progress = progress_file.string();
  // This run's processes: rhead ranks and their launcher.
  const std::string procs =
      "procs() { for p in $(pgrep -f 'rhead run " + job + "'); do c=$(cat /proc/$p/comm 2>/dev/null); "
      "case \"$c\" in rhead|mpiexec|mpirun|orterun|prterun) echo $p $c;; esac; done; }; ";
  return run_command(
      procs + "cd " + dir.string() + " && (" + mpiexec_prefix(2) + " " + rhead_exe().string() + " run " + job +
          " > first.log 2>&1 &); for i in $(seq 1 1200); do if [ -f " + progress + " ] && [ $(cut -d' ' -f1 " +
          progress + ") -ge " + std::to_string(min_cells) + " ]; then break; fi; sleep 0.02; done; "
          "pid=$(procs | awk '$2 == \"rhead\" {print $1}' | tail -n 1); echo killing $pid; kill -9 $pid; "
          "for i in $(seq 1 200); do [ -z \"$(procs)\" ] && break; sleep 0.1; done; "
          "[ -n \"$(procs)\" ] && echo STILL_RUNNING && procs; true",
      timeout_s);
}

int64_t count_finished_cells(const fs::path& shard_dir) {
  int64_t finished = 0;
  for (const auto& e : fs::directory_iterator(shard_dir)) {
    if (e.path().extension() != ".h5" || !pipeline::store::is_readable_hdf5(e.path())) continue;
    pipeline::store::File f = pipeline::store::File::open(e.path());
    auto cells = f.root().open_group("cells");
    for (const auto& id : cells.children()) {
      auto g = cells.open_group(id);
      finished += g.has_attr("complete") && g.attr_int("complete") == 1 ? 1 : 0;
    }
  }
  return finished;
}

}  // namespace test_support
