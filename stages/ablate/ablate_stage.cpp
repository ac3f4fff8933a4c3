#include "stages/ablate/ablate_stage.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "models/cpu_compute.h"
#include "pipeline/core/error.h"
#include "pipeline/core/logging.h"
#include "pipeline/core/sharding.h"
#include "pipeline/runner/cell_driver.h"
#include "pipeline/store/store_header.h"
#include "stages/ablate/ablate_ops.h"
#include "stages/common/model_section.h"
#include "stages/common/niah_cell.h"

namespace stages {

namespace fs = std::filesystem;
using pipeline::ConfigError;
using pipeline::KeyType;
using pipeline::str_cat;

namespace {

constexpr int64_t kScoreSchema = 1;  // newest score.h5 layout this stage reads
constexpr const char* kErrorNames[] = {"correct", "incomplete", "wrong_extraction", "hallucination"};

struct AblateSettings {
  fs::path haystack_dir;
  std::string needles_file;  // empty: the built-in San Francisco needle
  std::vector<int64_t> lengths, depths, ks;  // ks sorted
  bool k_retrieval = false;
  std::vector<std::string> modes;
  int64_t random_seeds = 5;
  double retrieval_threshold = 0.1;
  PromptMode prompt_mode = PromptMode::kFaithful;
  int64_t buffer_tokens = 200;
  int64_t prefill_chunk = 128;
  int64_t prefill_call = 512;
  int64_t decode_batch = 32;
  int64_t tracked_heads = 10;
  NiahDecodeOptions decode;
  std::vector<TaskSpec> tasks;  // downstream tasks under masking
  NiahDecodeOptions task_decode;  // their cap and stop strings (mask set per cell)
  int64_t task_limit = 0;         // > 0: only the first task_limit items of each task file
  int64_t mean_tokens = 256;      // mode mean: haystack tokens the per-head mean outputs are taken over
};

AblateSettings read_settings(const pipeline::Config& c) {
  AblateSettings s;
  s.haystack_dir = c.get_string("ablate.haystack");
  s.needles_file = c.get_string("ablate.needles");
  s.lengths = c.get_ints("ablate.lengths");
  s.depths = c.get_ints("ablate.depths");
  s.ks = c.get_ints("ablate.ks");
  std::sort(s.ks.begin(), s.ks.end());
  s.k_retrieval = c.get_bool("ablate.k_retrieval");
  s.modes = c.get_strings("ablate.modes");
  s.random_seeds = c.get_int("ablate.random_seeds");
  s.retrieval_threshold = c.get_float("ablate.retrieval_threshold");
  s.prompt_mode = parse_prompt_mode(c.get_string("ablate.prompt_mode"), "[ablate] prompt_mode");
  s.buffer_tokens = c.get_int("ablate.buffer_tokens");
  s.prefill_chunk = c.get_int("ablate.prefill_chunk");
  s.prefill_call = c.get_int("ablate.prefill_call");
  RHEAD_CHECK(s.prefill_chunk >= 0 && s.prefill_call >= 0, ConfigError, "[config] ", c.source(),
              ": [ablate] prefill_chunk and prefill_call: got ", s.prefill_chunk, " and ", s.prefill_call,
              ", expected >= 0 (0: the whole call / the whole prompt)");
  s.decode_batch = c.get_int("ablate.decode_batch");
  s.tracked_heads = c.get_int("ablate.tracked_heads");
  s.decode.max_new_tokens = c.get_int("ablate.max_new_tokens");
  s.decode.stop_strings = c.get_strings("ablate.stop_strings");
  for (const auto& entry : c.get_strings("ablate.tasks")) {
    TaskSpec spec = parse_task_entry(entry, c.source());
    for (const auto& other : s.tasks) {
      RHEAD_CHECK(other.name != spec.name, ConfigError, "[config] ", c.source(), ": [ablate] tasks: name '", spec.name,
                  "' is used twice; expected one entry per task name");
    }
    s.tasks.push_back(std::move(spec));
  }
  s.task_decode.max_new_tokens = c.get_int("ablate.task_max_new_tokens");
  s.task_decode.stop_strings = c.get_strings("ablate.task_stop_strings");
  s.task_limit = c.get_int("ablate.task_limit");
  s.mean_tokens = c.get_int("ablate.mean_tokens");
  return s;
}

models::HeadMaskMode parse_mode(const std::string& mode, const std::string& source) {
  if (mode == "uniform") return models::HeadMaskMode::Uniform;
  if (mode == "zero") return models::HeadMaskMode::Zero;
  if (mode == "mean") return models::HeadMaskMode::Mean;
  throw ConfigError(str_cat("[config] ", source, ": [ablate] modes: got '", mode, "', expected uniform, zero or mean"));
}

// The items of one task file (the first `limit` when limit > 0); every line is checked either way.
std::vector<TaskItem> read_task_items(const TaskSpec& task, int64_t limit, const std::string& job_source) {
  std::ifstream in(task.path, std::ios::binary);
  RHEAD_CHECK(in.good(), ConfigError, "[config] ", job_source, ": [ablate] tasks: task '", task.name,
              "': cannot open '", task.path, "'. Hint: paths are relative to the current directory (",
              fs::current_path().string(), ")");
  std::ostringstream text;
  text << in.rdbuf();
  std::vector<TaskItem> items = parse_task_jsonl(text.str(), task.kind, task.path);
  if (limit > 0 && static_cast<int64_t>(items.size()) > limit) items.resize(static_cast<size_t>(limit));
  return items;
}

// A task item's prompt text for the model: the user text alone (base), or inside the family's chat
// template: "{user}" (exactly once, PromptTemplate::chat checked it) replaced by the user text and
// "{system}" by the template's system text, as the NIAH chat prompts are built.
std::string task_prompt_text(const PromptTemplate& t, const std::string& user) {
  if (t.kind == PromptTemplate::Kind::kBase) return user;
  const auto fill = [&](std::string part) {
    for (size_t p = part.find("{system}"); p != std::string::npos; p = part.find("{system}", p + t.system.size())) {
      part.replace(p, 8, t.system);
    }
    return part;
  };
  const size_t slot = t.chat_text.find("{user}");
  return fill(t.chat_text.substr(0, slot)) + user + fill(t.chat_text.substr(slot + 6));
}

// Sums every query head's attention output (probs @ V of its KV head: what o_proj receives, and what
// mode mean substitutes) over the decode steps it observes. sum: [n_layer, n_head, head_dim] fp32.
class HeadOutputSum final : public models::AttentionObserver {
 public:
  HeadOutputSum(const models::ModelSpec& spec, models::KvCache& cache)
      : m_spec(spec),
        m_cache(cache),
        m_sum(torch::zeros({spec.n_layer, spec.n_head, spec.head_dim}, torch::dtype(torch::kFloat32).device(cache.device()))) {}

  // probs: [1, n_head, n_key] over cache slots [key_begin, key_begin + n_key).
  void on_decode_attention(int64_t layer, const torch::Tensor& probs, int64_t key_begin, const torch::Tensor&) override {
    const int64_t n_key = probs.size(2);
    // values [n_kv, n_key, d]; query head h = kv * group + g, as in models/attention.cpp.
    torch::Tensor v = m_cache.values(layer).select(0, 0).narrow(1, key_begin, n_key).to(torch::kFloat32);
    torch::Tensor p = probs.select(0, 0).reshape({m_spec.n_kv_head, m_spec.n_group(), n_key});
    m_sum[layer] += torch::matmul(p, v).reshape({m_spec.n_head, m_spec.head_dim});
  }
  const torch::Tensor& sum() const { return m_sum; }

 private:
  const models::ModelSpec& m_spec;
  models::KvCache& m_cache;
  torch::Tensor m_sum;
};

// Mode mean's per-head vectors: the unmasked model fed ids one token per forward call (each a decode step,
// so every position is observed; no prefill) -> mean attention output per head [n_layer, n_head, head_dim]
// fp32 on the CPU, averaged over all positions.
torch::Tensor mean_head_outputs(const models::Decoder& decoder, const std::vector<int64_t>& ids) {
  const int64_t n = static_cast<int64_t>(ids.size());
  RHEAD_CHECK(n >= 1, pipeline::InputError, "[ablate] mode mean: no haystack tokens to average head outputs over");
  models::KvCache cache = decoder.new_cache(1, n);
  HeadOutputSum sum(decoder.spec(), cache);
  models::ForwardOptions step;
  step.observer = &sum;
  torch::NoGradGuard no_grad;
  for (int64_t id : ids) {
    decoder.forward(torch::tensor(std::vector<int64_t>{id}, torch::kInt64).view({1, 1}), cache, step);
  }
  return (sum.sum() / static_cast<double>(n)).to(torch::kCPU).contiguous();
}

// A model's retrieval-score map [layer, head] from score.h5.
ScoreMap read_score_map(const pipeline::store::Group& models_group, const std::string& model) {
  pipeline::store::Array<double> mean = models_group.open_group(model).read_double("mean");
  RHEAD_CHECK(mean.shape.size() == 2, pipeline::StoreError, "[ablate] ", models_group.file_path(), ":/models/",
              model, "/mean: expected [layer, head]");
  ScoreMap map;
  map.n_layer = static_cast<int64_t>(mean.shape[0]);
  map.n_head = static_cast<int64_t>(mean.shape[1]);
  map.value = mean.data;
  return map;
}

// One head set to test: which heads are masked, how they were chosen.
struct Selection {
  std::string mode;       // "none" for the unmasked baseline
  std::string selection;  // "none" | "top" | "rand<seed index>"
  int64_t k = 0;
  int64_t seed = -1;      // random draws only
  std::vector<HeadId> heads;
};

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

std::string cell_id(const std::string& model, const Selection& sel, const AblateCell& c,
                    const std::vector<TaskSpec>& tasks) {
  switch (c.kind) {
    case CellKind::kNiah:
      return str_cat(model, ".", sel.mode, ".", sel.selection, ".K", sel.k, ".n", c.needle, ".L", c.length, ".D", c.depth);
    case CellKind::kTask:
      return str_cat(model, ".", sel.mode, ".", sel.selection, ".K", sel.k, ".task.", tasks[c.task].name, ".i", c.item);
  }
  return "";
}

std::vector<int32_t> flatten(const std::vector<HeadId>& heads) {
  std::vector<int32_t> out;
  for (const auto& h : heads) {
    out.push_back(h.layer);
    out.push_back(h.head);
  }
  return out;
}

}  // namespace

void AblateStage::declare(pipeline::ConfigSchema& schema) const {
  declare_model_sections(schema);
  schema.required("ablate.haystack", KeyType::String, "haystack folder (the paper: the Paul Graham essays)")
      .optional("ablate.needles", KeyType::String, "", "needles JSONL (empty: the paper's San Francisco needle)")
      .optional("ablate.lengths", KeyType::IntList, "linspace(1000, 50000, 20)", "context lengths in tokens")
      .optional("ablate.depths", KeyType::IntList, "linspace(0, 100, 10)", "needle depths in percent")
      .optional("ablate.ks", KeyType::IntList, "0, 2, 5, 10, 15, 20, 30, 50, 100",
                "numbers of masked heads (clipped to the model's head count; 0 = unmasked baseline)")
      .optional("ablate.modes", KeyType::StringList, "uniform",
                "mask modes: uniform (the paper's: query zeroed), zero (head output zeroed) or mean (head output "
                "replaced by its mean over the first mean_tokens haystack tokens)")
      .optional("ablate.random_seeds", KeyType::Int, "5", "random non-retrieval head draws per K")
      .optional("ablate.k_retrieval", KeyType::Bool, "false",
                "also mask K = the model's number of retrieval heads (mean > retrieval_threshold), top and random")
      .optional("ablate.retrieval_threshold", KeyType::Float, "0.1", "heads above this mean score are never random picks")
      .optional("ablate.prompt_mode", KeyType::String, "faithful", "faithful or fixed (docs/PROMPTS.md)")
      .optional("ablate.buffer_tokens", KeyType::Int, "200", "tokens kept free for the question")
      .optional("ablate.max_new_tokens", KeyType::Int, "50", "greedy decoding cap")
      .optional("ablate.stop_strings", KeyType::StringList, "\\n", "stop after a token containing one of these")
      .optional("ablate.prefill_chunk", KeyType::Int, "128", "query rows per attention block inside a prefill call (0: the whole call)")
      .optional("ablate.prefill_call", KeyType::Int, "512",
                "prompt tokens per forward call of a fixed-mode prefill (0: the whole prompt); the call holding the "
                "needle runs twice, so the next prompt reuses every slot before its needle (faithful prompts: calls "
                "of prefill_chunk tokens; every mask of one prompt reuses its whole prefill either way)")
      .optional("ablate.decode_batch", KeyType::Int, "32",
                "head selections of one NIAH prompt decoded together, one KV cache each, at most 2 GiB of them; "
                "results are bit-identical for any value where decoding is batch invariant (fp32 on CPU), "
                "elsewhere cells run one at a time; 1: one at a time")
      .optional("ablate.tracked_heads", KeyType::Int, "10", "top retrieval heads whose argmax positions are stored")
      .optional("ablate.tasks", KeyType::StringList, "",
                "downstream tasks under masking: name=kind:path.jsonl, kind qa (extractive QA), cot (chain of "
                "thought) or direct (answer only); paths relative to the current directory (docs/STORE.md)")
      .optional("ablate.task_max_new_tokens", KeyType::Int, "64", "greedy decoding cap of task items")
      .optional("ablate.task_stop_strings", KeyType::StringList, "\\n",
                "task items stop after a token containing one of these")
      .optional("ablate.task_limit", KeyType::Int, "0", "use only the first N items of each task file (0: all)")
      .optional("ablate.mean_tokens", KeyType::Int, "256",
                "mode mean: the first N haystack tokens (BOS included) over which each head's mean output is taken")
      // How the work is batched, not what is computed: a resumed run may change them.
      .tuning("ablate.prefill_chunk")
      .tuning("ablate.prefill_call")
      .tuning("ablate.decode_batch");
}

std::vector<pipeline::InputFile> AblateStage::input_files(const pipeline::Config& job) const {
  const AblateSettings s = read_settings(job);
  std::vector<pipeline::InputFile> files = model_input_files(job);
  files.push_back({"", s.haystack_dir});
  if (!s.needles_file.empty()) files.push_back({"", s.needles_file});
  for (const TaskSpec& t : s.tasks) files.push_back({"", t.path});
  return files;
}

void AblateStage::plan(const pipeline::Config& job, std::ostream& out) const {
  const AblateSettings s = read_settings(job);
  plan_models(job, out);
  out << "  " << plan_path("haystack", s.haystack_dir) << "; needles "
      << (s.needles_file.empty() ? std::string("built-in (San Francisco)") : plan_path("file", s.needles_file)) << "\n";
  // Selections per model and mode: the unmasked baseline, then per K: top-K and one draw per seed.
  const int64_t n_k = static_cast<int64_t>(std::count_if(s.ks.begin(), s.ks.end(), [](int64_t k) { return k > 0; })) +
                      (s.k_retrieval ? 1 : 0);
  const int64_t selections = 1 + static_cast<int64_t>(s.modes.size()) * n_k * (1 + s.random_seeds);
  out << "  masks: modes " << s.modes.size() << " x K values " << n_k << (s.k_retrieval ? " (incl. K = own retrieval heads)" : "")
      << " x (top + " << s.random_seeds << " random) + unmasked = " << selections << " selections per model\n";
  out << "  masked NIAH: " << s.lengths.size() << " length(s) x " << s.depths.size() << " depth(s) per needle and "
      << "selection = " << selections * static_cast<int64_t>(s.lengths.size() * s.depths.size())
      << " cells per model and needle\n";
  for (const TaskSpec& t : s.tasks) out << "  task " << t.name << ": " << plan_path("file", t.path) << "\n";
}

void AblateStage::validate(const pipeline::StageContext& ctx) const {
  const auto& c = ctx.config;
  AblateSettings s = read_settings(c);
  RHEAD_CHECK(fs::is_directory(s.haystack_dir), ConfigError, "[config] ", c.source(), ": [ablate] haystack '",
              s.haystack_dir.string(), "' is not a folder");
  for (const auto& m : s.modes) parse_mode(m, c.source());
  for (int64_t k : s.ks) {
    RHEAD_CHECK(k >= 0, ConfigError, "[config] ", c.source(), ": [ablate] ks: got ", k, ", expected >= 0");
  }
  RHEAD_CHECK(s.random_seeds >= 0 && s.tracked_heads >= 1, ConfigError, "[config] ", c.source(),
              ": [ablate] random_seeds must be >= 0 and tracked_heads >= 1");
  for (int64_t L : s.lengths) {
    RHEAD_CHECK(L > s.buffer_tokens, ConfigError, "[config] ", c.source(), ": [ablate] lengths: got ", L,
                ", expected every length > buffer_tokens (", s.buffer_tokens, ")");
  }
  if (!s.needles_file.empty()) read_needles_jsonl(s.needles_file);
  RHEAD_CHECK(s.decode_batch >= 1, ConfigError, "[config] ", c.source(), ": [ablate] decode_batch: got ", s.decode_batch,
              ", expected >= 1 (1: one cell at a time)");
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

void AblateStage::run(pipeline::StageContext& ctx) {
  const AblateSettings s = read_settings(ctx.config);
  const std::vector<ModelEntry> entries = read_model_entries(ctx.config);
  const std::vector<Needle> needles =
      s.needles_file.empty() ? std::vector<Needle>{masked_niah_needle()} : read_needles_jsonl(s.needles_file);
  const int64_t max_length = *std::max_element(s.lengths.begin(), s.lengths.end());

  // Head sets per model, from the score store (every rank derives the same sets: seeded draws).
  std::vector<std::vector<Selection>> selections(entries.size());
  std::vector<std::vector<HeadId>> tracked(entries.size());
  // What a model's cells read from score.h5: its score map (a digest of its shape and values). A model
  // whose map is unchanged keeps its finished cells when score is recomputed (pipeline/runner/cell_driver.h).
  std::map<std::string, std::string> score_fingerprint;
  {
    pipeline::store::File score = pipeline::store::File::open(ctx.store_path("score"));
    pipeline::store::Group models_group = score.root().open_group("models");
    for (size_t m = 0; m < entries.size(); ++m) {
      const ScoreMap map = read_score_map(models_group, entries[m].name);
      const int64_t n_heads = map.n_layer * map.n_head;
      score_fingerprint[entries[m].name] =
          str_cat("score /models/", entries[m].name, "/mean [", map.n_layer, ", ", map.n_head, "] ",
                  pipeline::content_digest(std::string_view(reinterpret_cast<const char*>(map.value.data()),
                                                            map.value.size() * sizeof(double))));
      tracked[m] = top_k_heads(map, std::min<int64_t>(s.tracked_heads, n_heads));
      selections[m].push_back({"none", "none", 0, -1, {}});
      // The job's Ks, plus (k_retrieval) this model's own number of retrieval heads: the paper's
      // "mask as many heads as there are retrieval heads" comparison, whatever the model's size.
      std::vector<int64_t> ks = s.ks;
      if (s.k_retrieval) {
        const int64_t n_retrieval = static_cast<int64_t>(std::count_if(
            map.value.begin(), map.value.end(), [&](double v) { return v > s.retrieval_threshold; }));
        pipeline::log::info("ablate: model ", entries[m].name, ": ", n_retrieval, " retrieval heads (mean > ",
                            s.retrieval_threshold, ") of ", n_heads);
        if (n_retrieval > 0 && std::find(ks.begin(), ks.end(), n_retrieval) == ks.end()) {
          ks.insert(std::upper_bound(ks.begin(), ks.end(), n_retrieval), n_retrieval);
        }
      }
      for (const auto& mode : s.modes) {
        for (int64_t k : ks) {
          if (k == 0) continue;
          if (k > n_heads) {
            pipeline::log::info("ablate: model ", entries[m].name, " has ", n_heads, " heads; K = ", k, " skipped");
            continue;
          }
          selections[m].push_back({mode, "top", k, -1, top_k_heads(map, k)});
          for (int64_t seed = 0; seed < s.random_seeds; ++seed) {
            RandomHeadOptions opt;
            opt.k = k;
            opt.seed = ctx.seed * 1000003ull + static_cast<uint64_t>(seed);
            opt.exclude_above = s.retrieval_threshold;
            try {
              selections[m].push_back({mode, "rand" + std::to_string(seed), k, seed, random_non_retrieval_heads(map, opt)});
            } catch (const pipeline::Error& e) {
              pipeline::log::warn("ablate: model ", entries[m].name, ", K = ", k, ": no random draw (", e.what(), ")");
              break;
            }
          }
        }
      }
    }
  }

  // Task items, read once (validate() checked every file).
  std::vector<std::vector<TaskItem>> task_items;
  for (const auto& task : s.tasks) task_items.push_back(read_task_items(task, s.task_limit, ctx.config.source()));

  std::vector<AblateCell> grid;
  std::vector<pipeline::WorkItem> items;
  // cost_after_previous: an estimate for the sharding only (pipeline/core/sharding.h, chained items).
  const auto add = [&](const AblateCell& c, double cost, double cost_after_previous) {
    grid.push_back(c);
    items.push_back({cell_id(entries[c.model].name, selections[c.model][c.selection], c, s.tasks), entries[c.model].name,
                     cost, cost_after_previous});
  };
  // Item order is processing order (chained items: each rank runs a contiguous stretch of the list), and
  // the masks act on decode steps only, so every selection of one prompt follows the others and reuses
  // its whole prefill; depths run from the deepest needle up, and the needles (one shared haystack) take
  // turns at each depth, so a prompt reuses the haystack before its needle from the one before
  // (models::PrefixCache).
  const int64_t niah_steps = s.decode.max_new_tokens, task_steps = s.task_decode.max_new_tokens;
  const bool split_at_needle = s.prompt_mode == PromptMode::kFixed;  // as in generate
  const int64_t call = split_at_needle ? s.prefill_call : s.prefill_chunk;
  for (size_t m = 0; m < entries.size(); ++m) {
    const double crossover = attention_crossover(read_model_shapes(entries[m]).spec);
    for (int64_t L : s.lengths) {
      int64_t previous_depth = -1;  // of the NIAH prompt before, at this length
      for (auto d = s.depths.rbegin(); d != s.depths.rend(); ++d) {
        for (size_t n = 0; n < needles.size(); ++n) {
          const NiahCellCost cost = niah_cell_cost(L, s.buffer_tokens, *d, previous_depth, true, split_at_needle, call,
                                                   niah_steps, crossover);
          for (size_t sel = 0; sel < selections[m].size(); ++sel) {
            // Every selection after the first reuses the whole prefill: decode steps only.
            add({CellKind::kNiah, m, sel, n, L, *d, 0, 0}, cost.cold,
                sel > 0 ? pipeline::generation_cost(L, 0, niah_steps, crossover) : cost.warm);
            items.back().batch = str_cat("L", L, ".D", *d, ".n", n);  // the selections of one prompt
          }
          previous_depth = *d;
        }
      }
    }
    for (size_t t = 0; t < s.tasks.size(); ++t) {
      for (size_t i = 0; i < task_items[t].size(); ++i) {
        // A balance estimate only (the tokenizer is not loaded yet): ~4 characters per prompt token.
        const auto approx_tokens = static_cast<int64_t>(task_user_text(task_items[t][i]).size() / 4);
        for (size_t sel = 0; sel < selections[m].size(); ++sel) {
          add({CellKind::kTask, m, sel, 0, 0, 0, t, i},
              pipeline::generation_cost(approx_tokens, approx_tokens, task_steps, crossover),
              pipeline::generation_cost(approx_tokens, sel > 0 ? 0 : approx_tokens, task_steps, crossover));
        }
      }
    }
  }

  std::unique_ptr<LoadedModel> model;
  models::PrefixCache prefix;  // the loaded model's last prompt (reset with the model)
  std::unique_ptr<PromptBuilder> builder;
  PromptTemplate task_template;
  std::string haystack;
  // Mode mean's vectors for the loaded model [n_layer, n_head, head_dim]: computed on this rank's first
  // mean-mode cell (deterministic, so every rank gets the same bits; not stored: the job determines them).
  torch::Tensor head_mean;
  pipeline::CellHooks hooks;
  hooks.group_inputs = [&](const std::string& group) { return score_fingerprint.at(group); };
  hooks.begin_group = [&](const std::string& group) {
    models::configure_cpu_compute(ctx.threads, /*flush_subnormals=*/true);  // models/cpu_compute.h
    auto it = std::find_if(entries.begin(), entries.end(), [&](const ModelEntry& e) { return e.name == group; });
    prefix = models::PrefixCache();
    model = load_model(*it, s.prefill_chunk, s.prefill_call);
    const PromptOptions po = prompt_options_for(*model, s.prompt_mode, s.buffer_tokens, ctx.config.source());
    task_template = po.prompt_template;
    // The masked-NIAH harness repeats the essays until the token count reaches the longest context.
    haystack = read_token_haystack(s.haystack_dir, *model->tokenizer, max_length);
    builder = std::make_unique<PromptBuilder>(*model->tokenizer, haystack, po);
    head_mean = torch::Tensor();
  };
  const auto mean_of_heads = [&]() -> const torch::Tensor& {
    if (!head_mean.defined()) {
      const std::string text = read_token_haystack(s.haystack_dir, *model->tokenizer, s.mean_tokens);
      std::vector<int64_t> ids = model->tokenizer->encode(text, /*add_special_tokens=*/true);
      ids.resize(std::min<size_t>(ids.size(), static_cast<size_t>(s.mean_tokens)));
      head_mean = mean_head_outputs(*model->decoder, ids);
    }
    return head_mean;
  };
  // The cell's head mask (none for an empty selection) and the attributes every cell carries.
  const auto mask_of = [&](const AblateCell& cell) -> std::unique_ptr<models::HeadMask> {
    const Selection& sel = selections[cell.model][cell.selection];
    std::vector<std::pair<int64_t, int64_t>> pairs;
    for (const auto& h : sel.heads) pairs.emplace_back(h.layer, h.head);
    if (pairs.empty()) return nullptr;
    const models::HeadMaskMode mode = parse_mode(sel.mode, "");
    return std::make_unique<models::HeadMask>(model->folder.spec, mode, pairs, /*in_prefill=*/false,
                                              mode == models::HeadMaskMode::Mean ? mean_of_heads() : torch::Tensor());
  };
  const auto write_selection = [&](const AblateCell& cell, pipeline::store::Group& out) {
    const Selection& sel = selections[cell.model][cell.selection];
    out.set_attr("model", entries[cell.model].name);
    out.set_attr("mode", sel.mode);
    out.set_attr("selection", sel.selection);
    out.set_attr("k", sel.k);
    out.set_attr("seed", sel.seed);
    out.write("masked_heads", flatten(sel.heads), {sel.heads.size(), 2}, "head,layer_head");
  };
  const auto write_niah = [&](const AblateCell& cell, const NiahCellResult& r, pipeline::store::Group& out) {
    const models::ModelSpec& spec = model->folder.spec;
    // Error analysis over the model's top retrieval heads (the sink share over those this cell left unmasked).
    ArgmaxCapture capture{static_cast<int64_t>(r.generated.size()), spec.n_layer, spec.n_head, r.argmax};
    const auto& top = tracked[cell.model];
    const std::vector<HeadId>& masked = selections[cell.model][cell.selection].heads;
    NiahErrorReport report = analyze_niah_cell(r.rouge1_recall, r.response, r.prompt.context, capture, top, masked);
    std::vector<int32_t> top_pos;  // [step, tracked]
    for (int64_t step = 0; step < capture.n_step; ++step) {
      for (const auto& h : top) {
        top_pos.push_back(r.argmax[static_cast<size_t>((step * spec.n_layer + h.layer) * spec.n_head + h.head)]);
      }
    }
    std::vector<int32_t> gen_v(r.generated.begin(), r.generated.end());
    write_niah_cell_attrs(out, r, cell.needle, cell.length, cell.depth);
    out.set_attr("error_type", std::string(niah_error_type_name(report.type)));
    out.set_attr("sink_fraction", report.sink_fraction);
    out.write("generated_ids", gen_v, {gen_v.size()}, "step");
    out.write_text("response", r.response);
    out.write("top_head_argmax", top_pos, {gen_v.size(), top.size()}, "step,tracked_head");
  };
  // The head selections of one NIAH prompt decode together (one prefill, reused; a mask per sequence).
  hooks.compute_batch = [&](const std::vector<size_t>& indices, std::vector<pipeline::store::Group>& outs) {
    std::vector<std::unique_ptr<models::HeadMask>> masks;
    std::vector<NiahCellSpec> specs;
    for (size_t index : indices) {
      const AblateCell& cell = grid[index];
      masks.push_back(mask_of(cell));
      specs.push_back({builder.get(), &needles[cell.needle], cell.length, cell.depth, masks.back().get()});
    }
    NiahDecodeOptions decode = s.decode;
    decode.prefix_cache = &prefix;
    const std::vector<NiahCellResult> results = run_niah_cells(*model, specs, decode);
    for (size_t i = 0; i < indices.size(); ++i) {
      write_selection(grid[indices[i]], outs[i]);
      write_niah(grid[indices[i]], results[i], outs[i]);
    }
  };
  hooks.max_batch = static_cast<size_t>(s.decode_batch);
  hooks.compute = [&](size_t index, pipeline::store::Group& out) {
    const AblateCell& cell = grid[index];
    const std::unique_ptr<models::HeadMask> mask = mask_of(cell);
    write_selection(cell, out);
    if (cell.kind == CellKind::kTask) {
      const TaskSpec& task = s.tasks[cell.task];
      const TaskItem& item = task_items[cell.task][cell.item];
      const std::string text = task_prompt_text(task_template, task_user_text(item));
      const std::vector<int64_t> ids = model->tokenizer->encode(text, task_template.add_special_tokens);
      RHEAD_CHECK(!ids.empty(), pipeline::InputError, "[ablate] ", task.path, ": item ", cell.item,
                  " tokenizes to no tokens; expected a prompt");
      NiahDecodeOptions decode = s.task_decode;
      decode.mask = mask.get();
      decode.prefix_cache = &prefix;
      const GreedyText g = greedy_text(*model, ids, decode);
      const TaskScore score = score_task_response(item, task.kind, g.response);
      std::vector<int32_t> gen_v(g.generated.begin(), g.generated.end());
      out.set_attr("task", task.name);
      out.set_attr("task_kind", std::string(task_kind_name(task.kind)));
      out.set_attr("item", static_cast<int64_t>(cell.item));
      out.set_attr("f1", score.f1);
      out.set_attr("exact_match", score.exact_match);
      out.set_attr("prompt_tokens", static_cast<int64_t>(ids.size()));
      out.write("generated_ids", gen_v, {gen_v.size()}, "step");
      out.write_text("response", g.response);
      out.write_text("prediction", score.prediction);
      return;
    }

    NiahDecodeOptions decode = s.decode;
    decode.mask = mask.get();
    decode.prefix_cache = &prefix;
    write_niah(cell, run_niah_cell(*model, *builder, needles[cell.needle], cell.length, cell.depth, decode), out);
  };
  pipeline::CellRunStats stats = pipeline::run_cells(ctx, items, hooks);
  if (ctx.comm.rank() != 0) return;

  // Summary per model: one row per (mode, selection, K): NIAH mean recall and error-type counts, and per
  // task the mean F1 / EM over its items. Rows are the model's selections, in order.
  pipeline::store::Group root = ctx.output->root();
  pipeline::store::Group cells = root.open_group("cells");
  pipeline::store::Group summary = root.create_group("summary");
  for (size_t m = 0; m < entries.size(); ++m) {
    const std::vector<Selection>& sels = selections[m];
    std::vector<double> recall_sum(sels.size(), 0.0);
    std::vector<int64_t> n_cells(sels.size(), 0), errors(4 * sels.size(), 0);
    // [task][selection]
    std::vector<std::vector<double>> f1_sum(s.tasks.size(), std::vector<double>(sels.size(), 0.0));
    std::vector<std::vector<double>> em_sum = f1_sum;
    std::vector<std::vector<int64_t>> n_items(s.tasks.size(), std::vector<int64_t>(sels.size(), 0));
    for (size_t i = 0; i < grid.size(); ++i) {
      const AblateCell& c = grid[i];
      if (c.model != m) continue;
      pipeline::store::Group cg = cells.open_group(items[i].id);
      if (c.kind == CellKind::kTask) {
        f1_sum[c.task][c.selection] += cg.attr_double("f1");
        em_sum[c.task][c.selection] += cg.attr_double("exact_match");
        ++n_items[c.task][c.selection];
        continue;
      }
      recall_sum[c.selection] += cg.attr_double("rouge1_recall");
      ++n_cells[c.selection];
      const std::string type = cg.attr_string("error_type");
      for (size_t e = 0; e < 4; ++e) errors[4 * c.selection + e] += type == kErrorNames[e] ? 1 : 0;
    }
    const auto mean = [](double sum, int64_t n) { return n ? sum / static_cast<double>(n) : 0.0; };
    std::vector<std::string> rows;
    std::vector<int64_t> k_of_row;
    std::vector<double> mean_recall;
    for (size_t r = 0; r < sels.size(); ++r) {
      rows.push_back(sels[r].mode + "/" + sels[r].selection);
      k_of_row.push_back(sels[r].k);
      mean_recall.push_back(mean(recall_sum[r], n_cells[r]));
    }
    pipeline::store::Group g = summary.create_group(entries[m].name);
    g.write("tracked_heads", flatten(tracked[m]), {tracked[m].size(), 2}, "tracked_head,layer_head");
    g.write_texts("rows", rows, "row");
    g.write("k", k_of_row, {k_of_row.size()}, "row");
    g.write("mean_recall", mean_recall, {mean_recall.size()}, "row");
    g.write("n_cells", n_cells, {n_cells.size()}, "row");
    g.write("error_counts", errors, {rows.size(), 4}, "row,error_type");
    g.set_attr("error_types", std::string("correct,incomplete,wrong_extraction,hallucination"));
    if (s.tasks.empty()) continue;
    pipeline::store::Group tasks_group = g.create_group("tasks");
    for (size_t t = 0; t < s.tasks.size(); ++t) {
      std::vector<double> f1, em;
      for (size_t r = 0; r < sels.size(); ++r) {
        f1.push_back(mean(f1_sum[t][r], n_items[t][r]));
        em.push_back(mean(em_sum[t][r], n_items[t][r]));
      }
      pipeline::store::Group tg = tasks_group.create_group(s.tasks[t].name);
      tg.set_attr("kind", std::string(task_kind_name(s.tasks[t].kind)));
      tg.write_texts("rows", rows, "row");
      tg.write("k", k_of_row, {k_of_row.size()}, "row");
      tg.write("n_items", n_items[t], {n_items[t].size()}, "row");
      tg.write("f1", f1, {f1.size()}, "row");
      tg.write("exact_match", em, {em.size()}, "row");
    }
  }
  pipeline::log::info("ablate: ", stats.total, " cells (", stats.already_done, " resumed)");
}

namespace {

// "12.3" or, for several values, "mean (min..max)".
std::string mean_and_spread(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  char text[64];
  if (v.size() == 1) {
    std::snprintf(text, sizeof text, "%5.1f", v.front());
  } else {
    std::snprintf(text, sizeof text, "%5.1f (%.1f..%.1f)", sum / static_cast<double>(v.size()),
                  *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
  }
  return text;
}

// One line per task and row; the random draws of a (mode, K) folded into one "mode/rand*" line.
void inspect_tasks(const pipeline::store::Group& tasks, std::ostream& out) {
  out << "  tasks: F1 / EM in percent, mean over items (rand*: mean over seeds, min..max)\n"
      << "    task         kind    row               K      n     F1                    EM\n";
  for (const auto& name : tasks.children()) {
    pipeline::store::Group t = tasks.open_group(name);
    const std::string kind = t.attr_string("kind");
    const auto rows = t.read_texts("rows");
    const auto k = t.read_int64("k").data;
    const auto n = t.read_int64("n_items").data;
    const auto f1 = t.read_double("f1").data;
    const auto em = t.read_double("exact_match").data;
    // Row label -> (K, n, F1 values, EM values), in first-appearance order.
    std::vector<std::string> order;
    std::map<std::string, std::tuple<int64_t, int64_t, std::vector<double>, std::vector<double>>> folded;
    for (size_t r = 0; r < rows.size(); ++r) {
      std::string label = rows[r];
      const size_t slash = label.find('/');
      if (label.compare(slash + 1, 4, "rand") == 0) label = label.substr(0, slash) + "/rand*";
      label += "@" + std::to_string(k[r]);
      auto it = folded.find(label);
      if (it == folded.end()) {
        order.push_back(label);
        it = folded.emplace(label, std::make_tuple(k[r], n[r], std::vector<double>{}, std::vector<double>{})).first;
      }
      std::get<2>(it->second).push_back(f1[r]);
      std::get<3>(it->second).push_back(em[r]);
    }
    for (const auto& label : order) {
      const auto& [kk, nn, f, e] = folded.at(label);
      char line[256];
      std::snprintf(line, sizeof line, "    %-12s %-7s %-14s %4lld %6lld   %-21s %s\n", name.c_str(), kind.c_str(),
                    label.substr(0, label.rfind('@')).c_str(), static_cast<long long>(kk), static_cast<long long>(nn),
                    mean_and_spread(f).c_str(), mean_and_spread(e).c_str());
      out << line;
    }
  }
}

}  // namespace

void AblateStage::inspect(const pipeline::store::Group& root, std::ostream& out) const {
  pipeline::store::Group summary = root.open_group("summary");
  for (const auto& model : summary.children()) {
    pipeline::store::Group g = summary.open_group(model);
    auto rows = g.read_texts("rows");
    auto k = g.read_int64("k").data;
    auto recall = g.read_double("mean_recall").data;
    auto errors = g.read_int64("error_counts").data;
    // K -> (top recall, random recalls), per mode.
    std::map<std::string, std::map<int64_t, std::pair<double, std::vector<double>>>> table;
    double baseline = 0;
    std::map<std::string, std::map<int64_t, std::vector<int64_t>>> top_errors;
    for (size_t r = 0; r < rows.size(); ++r) {
      std::string mode = rows[r].substr(0, rows[r].find('/'));
      std::string sel = rows[r].substr(rows[r].find('/') + 1);
      if (sel == "none") {
        baseline = recall[r];
        continue;
      }
      if (sel == "top") {
        table[mode][k[r]].first = recall[r];
        top_errors[mode][k[r]] = std::vector<int64_t>(errors.begin() + 4 * r, errors.begin() + 4 * r + 4);
      } else {
        table[mode][k[r]].second.push_back(recall[r]);
      }
    }
    out << "model " << model << ": NIAH ROUGE-1 recall, unmasked " << baseline << "\n";
    for (const auto& [mode, by_k] : table) {
      out << "  mode " << mode << "\n      K   top-K   random (mean +- sd, n)   top-K errors: incomplete / wrong / halluc.\n";
      for (const auto& [kk, v] : by_k) {
        double mean = 0, sd = 0;
        for (double x : v.second) mean += x;
        if (!v.second.empty()) mean /= static_cast<double>(v.second.size());
        for (double x : v.second) sd += (x - mean) * (x - mean);
        if (v.second.size() > 1) sd = std::sqrt(sd / static_cast<double>(v.second.size() - 1));
        const auto& e = top_errors[mode][kk];
        char line[200];
        std::snprintf(line, sizeof line, "  %5lld  %6.1f   %6.1f +- %5.1f (%zu)          %lld / %lld / %lld\n",
                      static_cast<long long>(kk), v.first, mean, sd, v.second.size(),
                      static_cast<long long>(e.size() == 4 ? e[1] : 0), static_cast<long long>(e.size() == 4 ? e[2] : 0),
                      static_cast<long long>(e.size() == 4 ? e[3] : 0));
        out << line;
      }
    }
    if (g.has("tasks")) inspect_tasks(g.open_group("tasks"), out);
  }
}

}  // namespace stages
