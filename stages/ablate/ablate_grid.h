// ablate's plan of work: its settings, the head sets it masks per model (from score.h5) and the grid of
// cells (masked NIAH tests and task items under every head set), with their sharding cost estimates.
// No model is loaded here: rank 0 and every other rank derive the same grid from the job and score.h5.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "models/head_mask.h"
#include "pipeline/core/config.h"
#include "pipeline/core/sharding.h"
#include "pipeline/runner/stage.h"
#include "stages/ablate/ablate_ops.h"
#include "stages/common/model_section.h"
#include "stages/niah/niah_cell.h"
#include "stages/niah/niah_keys.h"

namespace stages {

struct AblateSettings {
  std::filesystem::path haystack_dir;
  std::string needles_file;  // empty: the built-in San Francisco needle
  NiahKeys niah;  // grid, prompts, decoding, batching (stages/niah/niah_keys.h)
  std::vector<int64_t> ks;  // sorted
  bool k_retrieval = false;
  std::vector<std::string> modes;
  int64_t random_seeds = 5;
  double retrieval_threshold = 0.1;
  int64_t tracked_heads = 10;
  std::vector<TaskSpec> tasks;    // downstream tasks under masking
  NiahDecodeOptions task_decode;  // their cap and stop strings (mask set per cell)
  int64_t task_limit = 0;         // > 0: only the first task_limit items of each task file
  int64_t mean_tokens = 256;      // mode mean: haystack tokens the per-head mean outputs are taken over
};

// The [ablate] keys of a job (declared by AblateStage::declare).
AblateSettings read_ablate_settings(const pipeline::Config& c);

// "uniform" | "zero" | "mean" -> the mask mode; anything else is a ConfigError naming the job file.
models::HeadMaskMode parse_mask_mode(const std::string& mode, const std::string& job_source);

// The items of one task file (the first `limit` when limit > 0); every line is checked either way.
std::vector<TaskItem> read_task_items(const TaskSpec& task, int64_t limit, const std::string& job_source);

// One head set to test: which heads are masked, how they were chosen.
struct Selection {
  std::string mode;       // "none" for the unmasked baseline
  std::string selection;  // "none" | "top" | "rand<seed index>"
  int64_t k = 0;
  int64_t seed = -1;      // random draws only
  std::vector<HeadId> heads;
};

// What ablate tests of one model.
struct ModelHeads {
  std::vector<Selection> selections;  // [0]: the unmasked baseline; then per mode and K: top-K, random draws
  std::vector<HeadId> tracked;        // its top heads, whose argmax positions every NIAH cell stores
  std::string score_fingerprint;      // what its cells read from score.h5 (shape and digest of its map)
};

// Per model of `entries`, from score.h5: the head sets (every rank draws the same: seeded by the job
// seed) and the tracked heads.
std::vector<ModelHeads> select_heads(const pipeline::StageContext& ctx, const AblateSettings& s,
                                     const std::vector<ModelEntry>& entries);

enum class CellKind {
  kNiah,  // one masked NIAH test
  kTask,  // one downstream task item under a head selection
};

struct AblateCell {
  CellKind kind = CellKind::kNiah;
  size_t model = 0;
  size_t selection = 0;           // into the model's selections
  size_t needle = 0;              // kNiah
  int64_t length = 0, depth = 0;  // kNiah
  size_t task = 0, item = 0;      // kTask: into the settings' tasks and that task's items
};

// The cells and their work items (same order, one to one): item i computes cells[i].
struct AblateGrid {
  std::vector<AblateCell> cells;
  std::vector<pipeline::WorkItem> items;
};

// Item order is processing order (chained items: each rank runs a contiguous stretch of the list), and
// the masks act on decode steps only, so every selection of one prompt follows the others and reuses its
// whole prefill; depths run from the deepest needle up, and the needles (one shared haystack) take turns
// at each depth, so a prompt reuses the haystack before its needle from the one before (models::PrefixCache).
AblateGrid build_grid(const AblateSettings& s, const std::vector<ModelEntry>& entries,
                      const std::vector<ModelHeads>& heads, size_t n_needles,
                      const std::vector<std::vector<TaskItem>>& task_items);

// Heads as [layer, head] pairs, flattened (the stores' "head,layer_head" datasets).
std::vector<int32_t> flatten(const std::vector<HeadId>& heads);

}  // namespace stages
