// The per-cell driver shared by every cell-based stage: sharding, per-rank shard files flushed after
// each finished cell, resume (finished cells are never recomputed), progress, and the final merge into
// the stage's store under /cells/<cell id>. Stages may compute runs of cells in one call (compute_batch).
//
// On disk during a stage:  <run_dir>/<stage>.shards/a<attempt>.r<rank>.h5   /cells/<id>/...
// A cell counts as finished when its group carries the attribute complete = 1, written after all of its
// data and followed by a flush. Each (re)run is a new attempt with new shard files, so a file damaged by
// a kill is never appended to; unreadable shards are set aside as *.corrupt and their cells recomputed.
//
// A finished cell is reused, from the shards of an earlier attempt or from <stage>.shards/previous.h5
// (the store of an earlier complete run, set aside by the runner because the job file or an input
// changed), only when it was computed under what this run would compute it with:
//  - the same schema version and the same settings (the file's `settings` attribute; for a stage whose
//    cell_group_section() is "model", only its own keys and the cell's model's [model.<name>] keys count;
//    keys added to rhead since, left at their defaults, are no change: settings_change);
//  - the same inputs: each cell records inputs_key, a digest of what its group reads from the input
//    stores (CellHooks::group_inputs), and files_key, a digest of the fingerprints of the files its
//    group reads (Stage::input_files: the stage's shared files and its model's folder). Cells from
//    before files_key was recorded count as reading unchanged files, as their stores do (runner.cpp).
// So adding a model to a finished job, or replacing one model's weights, computes that model's cells
// alone; an edited needles file recomputes every cell.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "pipeline/core/fingerprint.h"  // content_digest
#include "pipeline/core/sharding.h"
#include "pipeline/runner/stage.h"

namespace pipeline {

struct CellHooks {
  // Called once per group before this rank's first cell of that group (e.g. load the model).
  std::function<void(const std::string& group)> begin_group;
  // Computes item `index` of the cell list and writes its results into `out` (a fresh group).
  std::function<void(size_t index, store::Group& out)> compute;
  // Optional: computes items indices[i] into outs[i] in one call. The driver passes runs of this rank's
  // consecutive items with the same group and the same non-empty WorkItem::batch key, at most
  // max_batch of them (other items go to `compute`). A run's cells are flushed together after the call,
  // so a kill loses at most one run. A result must not depend on the run it was computed in (ranks and
  // resumes form different runs).
  std::function<void(const std::vector<size_t>& indices, std::vector<store::Group>& outs)> compute_batch;
  size_t max_batch = 1;
  // Optional: what a group's cells read from the input stores, as text (for instance a digest of one
  // model's head scores). Unset: the store_id of every input, so any recomputed input invalidates
  // every cell.
  std::function<std::string(const std::string& group)> group_inputs;
};

struct CellRunStats {
  int64_t total = 0;           // cells in the stage
  int64_t already_done = 0;    // found finished in shards of earlier attempts or the previous store
  int64_t computed = 0;        // computed now, all ranks
  int64_t attempt = 0;         // this attempt's number (0 for a fresh stage)
};

// Runs on every rank; returns after every rank finished and rank 0 merged all cells into ctx.output.
CellRunStats run_cells(StageContext& ctx, const std::vector<WorkItem>& cells, const CellHooks& hooks);

// The lines of a stage's settings text (Config::resolved_text) that a cell of group `group` depends on,
// for a stage whose cell_group_section() is `section`: every line except the keys of the other groups'
// [<section>.<name>] sections (all of them when `section` is "").
std::string settings_of_group(const std::string& settings, const std::string& section, const std::string& group);

}  // namespace pipeline
