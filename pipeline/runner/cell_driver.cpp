#include "pipeline/runner/cell_driver.h"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "pipeline/core/config.h"
#include "pipeline/core/error.h"
#include "pipeline/core/logging.h"
#include "pipeline/core/progress.h"

namespace pipeline {

namespace fs = std::filesystem;

namespace {

// Parses "a<attempt>.r<rank>.h5"; -1 when the name does not match (previous.h5, the set-aside store).
int64_t attempt_of(const fs::path& file) {
  std::string name = file.filename().string();
  if (name.size() < 4 || name[0] != 'a') return -1;
  auto dot = name.find('.');
  try {
    return std::stoll(name.substr(1, dot - 1));
  } catch (...) {
    return -1;
  }
}

// What this run wants of a finished cell before it reuses it (see cell_driver.h).
struct Wanted {
  const Config& job;
  std::string settings;            // the stage's current settings (ctx.header.settings)
  int64_t schema_version = 0;
  std::string group_section;  // Stage::cell_group_section()
  std::map<std::string, std::string> group_of;       // cell id -> group, every cell of the grid
  std::map<std::string, std::string> inputs_key_of;  // group -> digest of what it reads from the inputs
  std::map<std::string, std::string> files_key_of;   // group -> digest of the input files it reads

  std::string settings_of(const std::string& settings_text, const std::string& group) const {
    return settings_of_group(settings_text, group_section, group);
  }
  // "" when a file with these settings holds usable cells of `group`, else why not.
  std::string settings_mismatch(const std::string& file_settings, const std::string& group) const {
    const std::string before = settings_of(file_settings, group);
    return settings_change(before, settings_of(settings, group), job);
  }
};

struct ShardScan {
  std::map<std::string, fs::path> reusable;  // cell id -> the file holding it finished and usable
  int64_t from_previous = 0;                 // of those, cells in previous.h5
  int64_t next_attempt = 0;
  // Finished cells of the grid that are not usable, by reason (for the log).
  std::map<std::string, int64_t> stale;
};

// Rank 0 only: every finished cell of the grid, in the shard files of earlier attempts and in
// previous.h5, that this run can use: same schema version, same settings for its group (keys added to
// rhead since, at their defaults, excepted), same inputs_key. Cells no longer in the grid are left out.
// Unreadable shards are set aside as *.corrupt.
ShardScan scan_shards(const fs::path& dir, const Wanted& wanted) {
  ShardScan scan;
  if (!fs::is_directory(dir)) return scan;
  std::vector<fs::path> candidates;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".h5") candidates.push_back(entry.path());
  }
  std::sort(candidates.begin(), candidates.end());  // a<n>.r<r>.h5 before previous.h5: shards win
  for (const auto& file : candidates) {
    scan.next_attempt = std::max(scan.next_attempt, attempt_of(file) + 1);
    if (!store::is_readable_hdf5(file)) {
      fs::path aside = file.string() + ".corrupt";
      log::warn("resume: shard ", file.string(), " is unreadable (killed before its first flush?); moved to ",
                aside.string(), ", its cells will be recomputed");
      fs::rename(file, aside);
      continue;
    }
    store::File f = store::File::open(file);
    store::Group root = f.root();
    if (!root.has("cells")) continue;
    const bool same_schema =
        root.has_attr("schema_version") && root.attr_int("schema_version") == wanted.schema_version;
    const bool has_settings = root.has_attr("settings");
    const std::string file_settings = has_settings ? root.attr_string("settings") : std::string();
    std::map<std::string, std::string> mismatch_of_group;  // this file's verdict per group
    const bool previous = attempt_of(file) < 0;
    store::Group cells = root.open_group("cells");
    for (const auto& id : cells.children()) {
      auto want = wanted.group_of.find(id);
      if (want == wanted.group_of.end() || scan.reusable.count(id)) continue;
      store::Group g = cells.open_group(id);
      if (!g.has_attr("complete") || g.attr_int("complete") != 1) continue;
      const std::string& group = want->second;
      auto verdict = mismatch_of_group.find(group);
      if (verdict == mismatch_of_group.end()) {
        std::string why;
        if (!same_schema) {
          why = "in another store layout (schema_version)";
        } else if (!has_settings) {
          why = "by a version of rhead that did not record settings";
        } else if (std::string d = wanted.settings_mismatch(file_settings, group); !d.empty()) {
          why = "with other settings (" + d + ")";
        }
        verdict = mismatch_of_group.emplace(group, why).first;
      }
      std::string why = verdict->second;
      if (why.empty() && !g.has_attr("inputs_key")) {
        why = "by a version of rhead that did not record inputs_key";
      } else if (why.empty() && g.attr_string("inputs_key") != wanted.inputs_key_of.at(group)) {
        why = "from other inputs";
      } else if (why.empty() && g.has_attr("files_key") &&
                 g.attr_string("files_key") != wanted.files_key_of.at(group)) {
        // Cells from before files_key was recorded count as current, as their store does (runner.cpp).
        why = "from files that have changed since";
      }
      if (why.empty()) {
        scan.reusable[id] = file;
        if (previous) ++scan.from_previous;
      } else {
        ++scan.stale[why];
      }
    }
  }
  return scan;
}

// The lines of StageContext::input_files that cells of `group` read: the group's own and those of every
// cell (group "").
std::string input_files_of_group(const std::string& input_files, const std::string& group) {
  std::string out;
  std::istringstream in(input_files);
  for (std::string line; std::getline(in, line);) {
    const std::string g = line.substr(0, line.find('\t'));
    if (g.empty() || g == group) out += line + "\n";
  }
  return out;
}

std::string join_lines(const std::set<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += s + "\n";
  return out;
}

std::set<std::string> split_lines(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.insert(line);
  }
  return out;
}

// Rank 0: copies each reusable cell (every cell of the grid, once the stage has run) into
// <output>/cells, sorted by id.
int64_t merge_cells(const ShardScan& scan, store::File& output) {
  store::Group root = output.root();
  store::Group merged = root.has("cells") ? root.open_group("cells") : root.create_group("cells");
  std::map<fs::path, std::vector<std::string>> by_file;
  for (const auto& [id, file] : scan.reusable) by_file[file].push_back(id);
  int64_t copied = 0;
  for (const auto& [file, ids] : by_file) {
    store::File f = store::File::open(file);
    store::Group cells = f.root().open_group("cells");
    for (const auto& id : ids) {
      cells.copy_child_to(id, merged, id);
      ++copied;
    }
  }
  output.flush();
  return copied;
}

// Every cell id is unique and a valid HDF5 group name (a stage's bug otherwise).
void check_cell_ids(const std::string& stage, const std::vector<WorkItem>& cells) {
  std::set<std::string> ids;
  for (const auto& c : cells) {
    RHEAD_CHECK(ids.insert(c.id).second, InternalError, "[", stage, "] cell id '", c.id,
                "' appears twice in the grid (bug in the stage's cell list)");
    RHEAD_CHECK(!c.id.empty() && c.id.find('/') == std::string::npos && c.id != "." && c.id != "..",
                InternalError, "[", stage, "] cell id '", c.id, "' is not a valid group name");
  }
}

// This rank's cells (positions `mine` in `todo`; todo_index maps them to the stage's cell list) into its
// shard, a run of cells per call: the items from one on with the same group and batch key, up to max_batch.
// Cells are flushed with complete = 1 after each run, so a kill -9 loses at most the run in flight.
int64_t compute_cells(const StageContext& ctx, const CellHooks& hooks, const Wanted& wanted,
                      const std::vector<WorkItem>& todo, const std::vector<size_t>& todo_index,
                      const std::vector<size_t>& mine, int64_t attempt, store::File& shard, store::Group& cells_group,
                      Progress& progress) {
  int64_t computed_here = 0;
  std::string current_group;
  bool first = true;
  const size_t max_batch = hooks.compute_batch ? std::max<size_t>(hooks.max_batch, 1) : 1;
  for (size_t at = 0; at < mine.size();) {
    const WorkItem& item = todo[mine[at]];
    if (first || item.group != current_group) {
      if (hooks.begin_group) hooks.begin_group(item.group);
      current_group = item.group;
      first = false;
    }
    // This run: the items from `at` on with the same group and batch key, up to max_batch.
    size_t end = at + 1;
    if (!item.batch.empty()) {
      while (end < mine.size() && end - at < max_batch && todo[mine[end]].group == item.group &&
             todo[mine[end]].batch == item.batch) {
        ++end;
      }
    }
    std::vector<size_t> indices;
    std::vector<store::Group> outs;
    for (size_t j = at; j < end; ++j) {
      store::Group g = cells_group.create_group(todo[mine[j]].id);
      g.set_attr("attempt", attempt);
      g.set_attr("rank", static_cast<int64_t>(ctx.comm.rank()));
      g.set_attr("inputs_key", wanted.inputs_key_of.at(todo[mine[j]].group));
      g.set_attr("files_key", wanted.files_key_of.at(todo[mine[j]].group));
      indices.push_back(todo_index[mine[j]]);
      outs.push_back(std::move(g));
    }
    if (hooks.compute_batch && (!item.batch.empty() || !hooks.compute)) {
      hooks.compute_batch(indices, outs);
    } else {
      hooks.compute(indices.front(), outs.front());
    }
    for (store::Group& g : outs) g.set_attr("complete", int64_t{1});  // after all of the cells' data
    shard.flush();  // a kill -9 from here on keeps these cells
    computed_here += static_cast<int64_t>(outs.size());
    progress.advance(static_cast<int64_t>(outs.size()));
    at = end;
  }
  return computed_here;
}

// Every rank's busy time (cells computed, seconds before any collective wait), logged on rank 0, so that
// a user sees how well the work was balanced.
void log_balance(const StageContext& ctx, int64_t computed_here, double busy_s) {
  Communicator& comm = ctx.comm;
  const std::vector<std::string> busy = comm.allgather_bytes(str_cat(computed_here, " ", busy_s));
  std::ostringstream line;
  double slowest = 0, sum = 0;
  for (size_t r = 0; r < busy.size(); ++r) {
    std::istringstream in(busy[r]);
    int64_t n = 0;
    double t = 0;
    in >> n >> t;
    slowest = std::max(slowest, t);
    sum += t;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s r%zu %lld cells %.1f s", r ? "," : "", r, static_cast<long long>(n), t);
    line << buf;
  }
  char balance[32];
  std::snprintf(balance, sizeof balance, "%.2f", sum > 0 ? slowest * static_cast<double>(busy.size()) / sum : 1.0);
  if (comm.size() > 1) log::info(ctx.stage_name, ": busy time per rank:", line.str(), " (slowest / mean ", balance, ")");
}

}  // namespace

std::string settings_of_group(const std::string& settings, const std::string& section, const std::string& group) {
  if (section.empty()) return settings;
  const std::string any = section + ".", own = section + "." + group + ".";
  std::string out;
  std::istringstream in(settings);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(any, 0) == 0 && line.rfind(own, 0) != 0) continue;
    out += line + "\n";
  }
  return out;
}

CellRunStats run_cells(StageContext& ctx, const std::vector<WorkItem>& cells, const CellHooks& hooks) {
  Communicator& comm = ctx.comm;
  const fs::path shard_dir = ctx.run_dir / (ctx.stage_name + ".shards");
  CellRunStats stats;
  stats.total = static_cast<int64_t>(cells.size());

  check_cell_ids(ctx.stage_name, cells);

  // What a finished cell must match to be reused (see cell_driver.h).
  Wanted wanted{ctx.config, ctx.header.settings, ctx.header.schema_version, ctx.cell_group_section, {}, {}, {}};
  for (const auto& c : cells) {
    wanted.group_of[c.id] = c.group;
    if (!wanted.inputs_key_of.count(c.group)) {
      wanted.inputs_key_of[c.group] = content_digest(hooks.group_inputs ? hooks.group_inputs(c.group) : ctx.input_ids);
      wanted.files_key_of[c.group] = content_digest(input_files_of_group(ctx.input_files, c.group));
    }
  }

  // Resume: rank 0 reads the shards of earlier attempts and the set-aside previous store; everyone
  // learns which cells are finished with the key this run wants.
  std::string done_text;
  int64_t attempt = 0, from_previous = 0;
  if (comm.rank() == 0) {
    fs::create_directories(shard_dir);
    ShardScan scan = scan_shards(shard_dir, wanted);
    for (const auto& [why, n] : scan.stale) {
      log::warn(ctx.stage_name, ": ", n, " finished cells in ", shard_dir.string(), " were computed ", why,
                "; discarding them");
    }
    std::set<std::string> done;
    for (const auto& entry : scan.reusable) done.insert(entry.first);
    done_text = join_lines(done);
    attempt = scan.next_attempt;
    from_previous = scan.from_previous;
  }
  comm.broadcast_string(done_text, 0);
  comm.broadcast(&attempt, sizeof attempt, 0);
  comm.broadcast(&from_previous, sizeof from_previous, 0);
  const std::set<std::string> done = split_lines(done_text);
  stats.attempt = attempt;

  std::vector<WorkItem> todo;
  std::vector<size_t> todo_index;  // position in `cells`
  for (size_t i = 0; i < cells.size(); ++i) {
    if (done.count(cells[i].id)) {
      ++stats.already_done;
    } else {
      todo.push_back(cells[i]);
      todo_index.push_back(i);
    }
  }
  if (stats.already_done > from_previous) {
    log::info(ctx.stage_name, ": resume: ", stats.already_done - from_previous, " of ", stats.total,
              " cells already finished in earlier attempts; computing the other ", todo.size());
  }
  if (from_previous > 0) {
    log::info(ctx.stage_name, ": keeping ", from_previous, " of ", stats.total, " cells from the previous store ",
              "(same settings and inputs for their ",
              ctx.cell_group_section.empty() ? "group" : ctx.cell_group_section, ")");
  }

  const Assignment assignment = assign_work(todo, comm.size());
  const auto& mine = assignment.items_of_rank[comm.rank()];
  log::info(ctx.stage_name, ": ", todo.size(), " cells over ", comm.size(), " rank(s); max/min rank load ",
            *std::max_element(assignment.load_of_rank.begin(), assignment.load_of_rank.end()), " / ",
            *std::min_element(assignment.load_of_rank.begin(), assignment.load_of_rank.end()), " cost units");

  int64_t computed_here = 0;
  const double start_s = log::seconds_since_start();
  {
    Progress progress(ctx.stage_name, static_cast<int64_t>(mine.size()), comm.rank(), comm.size(),
                      shard_dir / "progress", ctx.progress_interval_s);
    if (!mine.empty()) {
      fs::path file = shard_dir / str_cat("a", attempt, ".r", comm.rank(), ".h5");
      store::File shard = store::File::create(file);
      {
        store::Group root = shard.root();
        store::write_header(root, ctx.header);
        root.set_attr("attempt", attempt);
        root.set_attr("rank", static_cast<int64_t>(comm.rank()));
        root.create_group("cells");
      }
      shard.flush();
      store::Group cells_group = shard.root().open_group("cells");
      computed_here =
          compute_cells(ctx, hooks, wanted, todo, todo_index, mine, attempt, shard, cells_group, progress);
    }
    progress.finish();
  }
  const double busy_s = log::seconds_since_start() - start_s;  // before any collective waits
  stats.computed = comm.allreduce_sum(computed_here);
  log_balance(ctx, computed_here, busy_s);
  comm.barrier();

  if (comm.rank() == 0) {
    int64_t merged = merge_cells(scan_shards(shard_dir, wanted), *ctx.output);
    RHEAD_CHECK(merged == stats.total, InternalError, "[", ctx.stage_name, "] merged ", merged,
                " cells from the shards, expected ", stats.total, " (bug: please report)");
    store::Group root = ctx.output->root();
    root.set_attr("cells_total", stats.total);
    root.set_attr("cells_resumed", stats.already_done);
    root.set_attr("cells_computed_last_attempt", stats.computed);
    root.set_attr("attempts", attempt + 1);
    ctx.output->flush();
  }
  comm.barrier();
  return stats;
}

}  // namespace pipeline
