#include "pipeline/runner/cell_driver.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "pipeline/core/config.h"
#include "pipeline/core/error.h"
#include "pipeline/core/logging.h"
#include "pipeline/core/progress.h"

namespace pipeline {

namespace fs = std::filesystem;

namespace {

struct ShardScan {
  std::set<std::string> done;  // finished cell ids
  int64_t next_attempt = 0;
  std::vector<fs::path> files;  // readable shard files, sorted
};

// Parses "a<attempt>.r<rank>.h5"; -1 when the name does not match.
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

// Rank 0 only: every finished cell in the shard files of earlier attempts.
ShardScan scan_shards(const fs::path& dir) {
  ShardScan scan;
  if (!fs::is_directory(dir)) return scan;
  std::vector<fs::path> candidates;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".h5") candidates.push_back(entry.path());
  }
  std::sort(candidates.begin(), candidates.end());
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
    store::Group cells = root.open_group("cells");
    for (const auto& id : cells.children()) {
      store::Group g = cells.open_group(id);
      if (g.has_attr("complete") && g.attr_int("complete") == 1) scan.done.insert(id);
    }
    scan.files.push_back(file);
  }
  return scan;
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

// Rank 0: copies each finished cell once (first shard wins) into <output>/cells, sorted by id.
int64_t merge_shards(const fs::path& dir, store::File& output) {
  store::Group root = output.root();
  store::Group merged = root.has("cells") ? root.open_group("cells") : root.create_group("cells");
  std::set<std::string> copied;
  for (const auto& file : scan_shards(dir).files) {
    store::File f = store::File::open(file);
    store::Group cells = f.root().open_group("cells");
    for (const auto& id : cells.children()) {
      store::Group g = cells.open_group(id);
      if (!g.has_attr("complete") || g.attr_int("complete") != 1 || copied.count(id)) continue;
      cells.copy_child_to(id, merged, id);
      copied.insert(id);
    }
  }
  output.flush();
  return static_cast<int64_t>(copied.size());
}

}  // namespace

CellRunStats run_cells(StageContext& ctx, const std::vector<WorkItem>& cells, const CellHooks& hooks) {
  Communicator& comm = ctx.comm;
  const fs::path shard_dir = ctx.run_dir / (ctx.stage_name + ".shards");
  CellRunStats stats;
  stats.total = static_cast<int64_t>(cells.size());

  {
    std::set<std::string> ids;
    for (const auto& c : cells) {
      RHEAD_CHECK(ids.insert(c.id).second, InternalError, "[", ctx.stage_name, "] cell id '", c.id,
                  "' appears twice in the grid (bug in the stage's cell list)");
      RHEAD_CHECK(!c.id.empty() && c.id.find('/') == std::string::npos && c.id != "." && c.id != "..",
                  InternalError, "[", ctx.stage_name, "] cell id '", c.id, "' is not a valid group name");
    }
  }

  // Resume: rank 0 reads the shards of earlier attempts; everyone learns the finished set.
  std::string done_text;
  int64_t attempt = 0;
  if (comm.rank() == 0) {
    // Shards of an attempt with other settings (the job file changed in between) are not this job's
    // cells: discard them rather than mix two settings in one store. Shards without settings.txt
    // (written before it existed) are kept.
    const fs::path settings_file = shard_dir / "settings.txt";
    if (fs::exists(settings_file)) {
      std::ifstream in(settings_file, std::ios::binary);
      const std::string before((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (before != ctx.header.settings) {
        log::warn(ctx.stage_name, ": the shards in ", shard_dir.string(), " were computed with other settings (",
                  settings_difference(before, ctx.header.settings), "); discarding them");
        fs::remove_all(shard_dir);
      }
    }
    fs::create_directories(shard_dir);
    {
      std::ofstream out(settings_file, std::ios::binary | std::ios::trunc);
      out << ctx.header.settings;
      RHEAD_CHECK(out.good(), StoreError, "[", ctx.stage_name, "] cannot write ", settings_file.string(),
                  " (is the run directory writable?)");
    }
    ShardScan scan = scan_shards(shard_dir);
    done_text = join_lines(scan.done);
    attempt = scan.next_attempt;
  }
  comm.broadcast_string(done_text, 0);
  comm.broadcast(&attempt, sizeof attempt, 0);
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
  if (stats.already_done > 0) {
    log::info(ctx.stage_name, ": resume: ", stats.already_done, " of ", stats.total,
              " cells already finished in earlier attempts; computing the other ", todo.size());
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
          g.set_attr("rank", static_cast<int64_t>(comm.rank()));
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
    }
    progress.finish();
  }
  const double busy_s = log::seconds_since_start() - start_s;  // before any collective waits
  stats.computed = comm.allreduce_sum(computed_here);
  {
    // Every rank's busy time, so that a user sees how well the work was balanced.
    const std::vector<std::string> busy =
        comm.allgather_bytes(str_cat(computed_here, " ", busy_s));
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
  comm.barrier();

  if (comm.rank() == 0) {
    int64_t merged = merge_shards(shard_dir, *ctx.output);
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
