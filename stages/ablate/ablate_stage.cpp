#include "stages/ablate/ablate_stage.h"

#include <algorithm>
#include <filesystem>

#include "pipeline/core/error.h"
#include "pipeline/core/logging.h"
#include "pipeline/runner/cell_driver.h"
#include "pipeline/store/store_header.h"
#include "stages/ablate/ablate_cells.h"
#include "stages/ablate/ablate_grid.h"
#include "stages/common/model_section.h"
#include "stages/niah/niah_keys.h"

namespace stages {

namespace fs = std::filesystem;
using pipeline::ConfigError;
using pipeline::KeyType;

namespace {

constexpr int64_t kScoreSchema = 1;  // newest score.h5 layout this stage reads

}  // namespace

void AblateStage::declare(pipeline::ConfigSchema& schema) const {
  declare_model_sections(schema);
  schema.required("ablate.haystack", KeyType::String, "haystack folder (the paper: the Paul Graham essays)")
      .optional("ablate.needles", KeyType::String, "", "needles JSONL (empty: the paper's San Francisco needle)")
      .optional("ablate.ks", KeyType::IntList, "0, 2, 5, 10, 15, 20, 30, 50, 100",
                "numbers of masked heads (clipped to the model's head count; 0 = unmasked baseline)")
      .optional("ablate.modes", KeyType::StringList, "uniform",
                "mask modes: uniform (the paper's: query zeroed), zero (head output zeroed) or mean (head output "
                "replaced by its mean over the first mean_tokens haystack tokens)")
      .optional("ablate.random_seeds", KeyType::Int, "5", "random non-retrieval head draws per K")
      .optional("ablate.k_retrieval", KeyType::Bool, "false",
                "also mask K = the model's number of retrieval heads (mean > retrieval_threshold), top and random")
      .optional("ablate.retrieval_threshold", KeyType::Float, "0.1", "heads above this mean score are never random picks")
      .optional("ablate.tracked_heads", KeyType::Int, "10", "top retrieval heads whose argmax positions are stored")
      .optional("ablate.tasks", KeyType::StringList, "",
                "downstream tasks under masking: name=kind:path.jsonl, kind qa (extractive QA), cot (chain of "
                "thought) or direct (answer only); paths relative to the current directory (docs/STORE.md)")
      .optional("ablate.task_max_new_tokens", KeyType::Int, "64", "greedy decoding cap of task items")
      .optional("ablate.task_stop_strings", KeyType::StringList, "\\n",
                "task items stop after a token containing one of these")
      .optional("ablate.task_limit", KeyType::Int, "0", "use only the first N items of each task file (0: all)")
      .optional("ablate.mean_tokens", KeyType::Int, "256",
                "mode mean: the first N haystack tokens (BOS included) over which each head's mean output is taken");
  declare_niah_keys(schema, "ablate", "head selections of one NIAH prompt");
}

std::vector<pipeline::InputFile> AblateStage::input_files(const pipeline::Config& job) const {
  const AblateSettings s = read_ablate_settings(job);
  std::vector<pipeline::InputFile> files = model_input_files(job);
  files.push_back({"", s.haystack_dir});
  if (!s.needles_file.empty()) files.push_back({"", s.needles_file});
  for (const TaskSpec& t : s.tasks) files.push_back({"", t.path});
  return files;
}

void AblateStage::plan(const pipeline::Config& job, std::ostream& out) const {
  const AblateSettings s = read_ablate_settings(job);
  plan_models(job, out);
  out << "  " << plan_path("haystack", s.haystack_dir) << "; needles "
      << (s.needles_file.empty() ? std::string("built-in (San Francisco)") : plan_path("file", s.needles_file)) << "\n";
  // Selections per model and mode: the unmasked baseline, then per K: top-K and one draw per seed.
  const int64_t n_k = static_cast<int64_t>(std::count_if(s.ks.begin(), s.ks.end(), [](int64_t k) { return k > 0; })) +
                      (s.k_retrieval ? 1 : 0);
  const int64_t selections = 1 + static_cast<int64_t>(s.modes.size()) * n_k * (1 + s.random_seeds);
  out << "  masks: modes " << s.modes.size() << " x K values " << n_k << (s.k_retrieval ? " (incl. K = own retrieval heads)" : "")
      << " x (top + " << s.random_seeds << " random) + unmasked = " << selections << " selections per model\n";
  const int64_t grid = static_cast<int64_t>(s.niah.lengths.size() * s.niah.depths.size());
  out << "  masked NIAH: " << s.niah.lengths.size() << " length(s) x " << s.niah.depths.size()
      << " depth(s) per needle and selection = " << selections * grid
      << " cells per model and needle\n";
  for (const TaskSpec& t : s.tasks) out << "  task " << t.name << ": " << plan_path("file", t.path) << "\n";
}

void AblateStage::validate(const pipeline::StageContext& ctx) const {
  const auto& c = ctx.config;
  AblateSettings s = read_ablate_settings(c);
  validate_niah_keys(s.niah, c, "ablate");
  RHEAD_CHECK(fs::is_directory(s.haystack_dir), ConfigError, "[config] ", c.source(), ": [ablate] haystack '",
              s.haystack_dir.string(), "' is not a folder");
  for (const auto& m : s.modes) parse_mask_mode(m, c.source());
  for (int64_t k : s.ks) {
    RHEAD_CHECK(k >= 0, ConfigError, "[config] ", c.source(), ": [ablate] ks: got ", k, ", expected >= 0");
  }
  RHEAD_CHECK(s.random_seeds >= 0 && s.tracked_heads >= 1, ConfigError, "[config] ", c.source(),
              ": [ablate] random_seeds must be >= 0 and tracked_heads >= 1");
  if (!s.needles_file.empty()) read_needles_jsonl(s.needles_file);
  RHEAD_CHECK(s.task_decode.max_new_tokens >= 1 && s.task_limit >= 0 && s.mean_tokens >= 1, ConfigError, "[config] ",
              c.source(), ": [ablate] got task_max_new_tokens = ", s.task_decode.max_new_tokens, ", task_limit = ",
              s.task_limit, ", mean_tokens = ", s.mean_tokens, "; expected task_max_new_tokens >= 1, task_limit >= 0 "
              "and mean_tokens >= 1");
  for (const auto& task : s.tasks) read_task_items(task, s.task_limit, c.source());
  pipeline::store::File score = pipeline::store::File::open(ctx.store_path("score"));
  pipeline::store::Group root = score.root();
  pipeline::store::require_readable(root, "score", kScoreSchema);
  pipeline::store::Group models_group = root.open_group("models");
  for (const auto& m : read_model_entries(c)) {
    RHEAD_CHECK(models_group.has(m.name), ConfigError, "[config] ", c.source(), ": [model.", m.name,
                "] has no scores in ", ctx.store_path("score").string(),
                ". Hint: the model names of generate/score and ablate must match");
  }
}

// Plan (head sets from score.h5, the grid), compute every cell on the ranks, then rank 0 summarises.
void AblateStage::run(pipeline::StageContext& ctx) {
  const AblateSettings s = read_ablate_settings(ctx.config);
  const std::vector<ModelEntry> entries = read_model_entries(ctx.config);
  const std::vector<Needle> needles =
      s.needles_file.empty() ? std::vector<Needle>{masked_niah_needle()} : read_needles_jsonl(s.needles_file);
  const std::vector<ModelHeads> heads = select_heads(ctx, s, entries);
  std::vector<std::vector<TaskItem>> task_items;  // read once (validate() checked every file)
  for (const auto& task : s.tasks) task_items.push_back(read_task_items(task, s.task_limit, ctx.config.source()));
  const AblateGrid grid = build_grid(s, entries, heads, needles.size(), task_items);

  const AblateWork work{ctx, s, entries, heads, grid, needles, task_items};
  AblateCellRunner runner(work);
  const pipeline::CellRunStats stats = pipeline::run_cells(ctx, grid.items, runner.hooks());
  if (ctx.comm.rank() != 0) return;
  pipeline::store::Group root = ctx.output->root();
  write_ablate_summary(root, work);
  pipeline::log::info("ablate: ", stats.total, " cells (", stats.already_done, " resumed)");
}

void AblateStage::inspect(const pipeline::store::Group& root, std::ostream& out) const {
  inspect_ablate_summary(root, out);
}

}  // namespace stages
