#include "stages/ablate/ablate_grid.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string_view>

#include "pipeline/core/error.h"
#include "pipeline/core/fingerprint.h"
#include "pipeline/core/logging.h"
#include "pipeline/store/hdf5_file.h"

namespace stages {

namespace fs = std::filesystem;
using pipeline::ConfigError;
using pipeline::str_cat;

AblateSettings read_ablate_settings(const pipeline::Config& c) {
  AblateSettings s;
  s.haystack_dir = c.get_string("ablate.haystack");
  s.needles_file = c.get_string("ablate.needles");
  s.niah = read_niah_keys(c, "ablate");
  s.ks = c.get_ints("ablate.ks");
  std::sort(s.ks.begin(), s.ks.end());
  s.k_retrieval = c.get_bool("ablate.k_retrieval");
  s.modes = c.get_strings("ablate.modes");
  s.random_seeds = c.get_int("ablate.random_seeds");
  s.retrieval_threshold = c.get_float("ablate.retrieval_threshold");
  s.tracked_heads = c.get_int("ablate.tracked_heads");
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

models::HeadMaskMode parse_mask_mode(const std::string& mode, const std::string& job_source) {
  if (mode == "uniform") return models::HeadMaskMode::Uniform;
  if (mode == "zero") return models::HeadMaskMode::Zero;
  if (mode == "mean") return models::HeadMaskMode::Mean;
  throw ConfigError(
      str_cat("[config] ", job_source, ": [ablate] modes: got '", mode, "', expected uniform, zero or mean"));
}

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

std::vector<int32_t> flatten(const std::vector<HeadId>& heads) {
  std::vector<int32_t> out;
  for (const auto& h : heads) {
    out.push_back(h.layer);
    out.push_back(h.head);
  }
  return out;
}

namespace {

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

// The job's Ks, plus (k_retrieval) this model's own number of retrieval heads: the paper's "mask as many
// heads as there are retrieval heads" comparison, whatever the model's size.
std::vector<int64_t> ks_for(const AblateSettings& s, const ScoreMap& map, const std::string& model) {
  std::vector<int64_t> ks = s.ks;
  if (!s.k_retrieval) return ks;
  const int64_t n_retrieval = static_cast<int64_t>(
      std::count_if(map.value.begin(), map.value.end(), [&](double v) { return v > s.retrieval_threshold; }));
  pipeline::log::info("ablate: model ", model, ": ", n_retrieval, " retrieval heads (mean > ", s.retrieval_threshold,
                      ") of ", map.n_layer * map.n_head);
  if (n_retrieval > 0 && std::find(ks.begin(), ks.end(), n_retrieval) == ks.end()) {
    ks.insert(std::upper_bound(ks.begin(), ks.end(), n_retrieval), n_retrieval);
  }
  return ks;
}

// The unmasked baseline, then per mode and K: the top-K heads and one seeded random draw of K
// non-retrieval heads per seed index.
std::vector<Selection> selections_for(const AblateSettings& s, const ScoreMap& map, const std::string& model,
                                      uint64_t job_seed) {
  const int64_t n_heads = map.n_layer * map.n_head;
  std::vector<Selection> out{{"none", "none", 0, -1, {}}};
  const std::vector<int64_t> ks = ks_for(s, map, model);
  for (const auto& mode : s.modes) {
    for (int64_t k : ks) {
      if (k == 0) continue;
      if (k > n_heads) {
        pipeline::log::info("ablate: model ", model, " has ", n_heads, " heads; K = ", k, " skipped");
        continue;
      }
      out.push_back({mode, "top", k, -1, top_k_heads(map, k)});
      for (int64_t seed = 0; seed < s.random_seeds; ++seed) {
        RandomHeadOptions opt;
        opt.k = k;
        opt.seed = job_seed * 1000003ull + static_cast<uint64_t>(seed);
        opt.exclude_above = s.retrieval_threshold;
        try {
          out.push_back({mode, "rand" + std::to_string(seed), k, seed, random_non_retrieval_heads(map, opt)});
        } catch (const pipeline::Error& e) {
          pipeline::log::warn("ablate: model ", model, ", K = ", k, ": no random draw (", e.what(), ")");
          break;
        }
      }
    }
  }
  return out;
}

}  // namespace

std::vector<ModelHeads> select_heads(const pipeline::StageContext& ctx, const AblateSettings& s,
                                     const std::vector<ModelEntry>& entries) {
  std::vector<ModelHeads> heads(entries.size());
  pipeline::store::File score = pipeline::store::File::open(ctx.store_path("score"));
  pipeline::store::Group models_group = score.root().open_group("models");
  for (size_t m = 0; m < entries.size(); ++m) {
    const ScoreMap map = read_score_map(models_group, entries[m].name);
    // A model whose map is unchanged keeps its finished cells when score is recomputed (cell_driver.h).
    heads[m].score_fingerprint =
        str_cat("score /models/", entries[m].name, "/mean [", map.n_layer, ", ", map.n_head, "] ",
                pipeline::content_digest(std::string_view(reinterpret_cast<const char*>(map.value.data()),
                                                          map.value.size() * sizeof(double))));
    heads[m].tracked = top_k_heads(map, std::min<int64_t>(s.tracked_heads, map.n_layer * map.n_head));
    heads[m].selections = selections_for(s, map, entries[m].name, ctx.seed);
  }
  return heads;
}

namespace {

std::string cell_id(const std::string& model, const Selection& sel, const AblateCell& c,
                    const std::vector<TaskSpec>& tasks) {
  const std::string head_set = str_cat(model, ".", sel.mode, ".", sel.selection, ".K", sel.k);
  if (c.kind == CellKind::kTask) return str_cat(head_set, ".task.", tasks[c.task].name, ".i", c.item);
  return str_cat(head_set, ".n", c.needle, ".L", c.length, ".D", c.depth);
}

// Cost estimates for the sharding only (pipeline/core/sharding.h: cost, and cost_after_previous for an
// item that follows the one before on the same rank).
class GridBuilder {
 public:
  GridBuilder(const AblateSettings& s, const std::vector<ModelEntry>& entries, const std::vector<ModelHeads>& heads)
      : m_s(s), m_entries(entries), m_heads(heads) {
    m_niah.buffer_tokens = s.niah.buffer_tokens;  // as in generate; every NIAH prompt reuses the one before
    m_niah.split_at_needle = s.niah.prompt_mode == PromptMode::kFixed;
    m_niah.prefill_call = m_niah.split_at_needle ? s.niah.prefill_call : s.niah.prefill_chunk;
    m_niah.max_new_tokens = s.niah.decode.max_new_tokens;
  }

  // Per length, depths from the deepest up, needles taking turns, every selection of one prompt together.
  void add_niah_cells(size_t m, size_t n_needles) {
    m_niah.quadratic_crossover = attention_crossover(read_model_shapes(m_entries[m]).spec);
    const size_t n_sel = m_heads[m].selections.size();
    for (int64_t L : m_s.niah.lengths) {
      int64_t previous_depth = -1;  // of the NIAH prompt before, at this length
      for (auto d = m_s.niah.depths.rbegin(); d != m_s.niah.depths.rend(); ++d) {
        for (size_t n = 0; n < n_needles; ++n) {
          const NiahCellCost cost = niah_cell_cost(m_niah, L, *d, previous_depth);
          for (size_t sel = 0; sel < n_sel; ++sel) {
            // Every selection after the first reuses the whole prefill: decode steps only.
            add({CellKind::kNiah, m, sel, n, L, *d, 0, 0}, cost.cold,
                sel > 0 ? pipeline::generation_cost(L, 0, m_niah.max_new_tokens, m_niah.quadratic_crossover)
                        : cost.warm);
            m_grid.items.back().batch = str_cat("L", L, ".D", *d, ".n", n);  // the selections of one prompt
          }
          previous_depth = *d;
        }
      }
    }
  }

  // Every item of every task under every selection; call after add_niah_cells (its crossover).
  void add_task_cells(size_t m, const std::vector<std::vector<TaskItem>>& task_items) {
    const int64_t steps = m_s.task_decode.max_new_tokens;
    const double crossover = m_niah.quadratic_crossover;
    for (size_t t = 0; t < m_s.tasks.size(); ++t) {
      for (size_t i = 0; i < task_items[t].size(); ++i) {
        // A balance estimate only (the tokenizer is not loaded yet): ~4 characters per prompt token.
        const auto approx_tokens = static_cast<int64_t>(task_user_text(task_items[t][i]).size() / 4);
        for (size_t sel = 0; sel < m_heads[m].selections.size(); ++sel) {
          add({CellKind::kTask, m, sel, 0, 0, 0, t, i},
              pipeline::generation_cost(approx_tokens, approx_tokens, steps, crossover),
              pipeline::generation_cost(approx_tokens, sel > 0 ? 0 : approx_tokens, steps, crossover));
        }
      }
    }
  }

  AblateGrid take() { return std::move(m_grid); }

 private:
  void add(const AblateCell& c, double cost, double cost_after_previous) {
    m_grid.cells.push_back(c);
    const std::string& model = m_entries[c.model].name;
    m_grid.items.push_back({cell_id(model, m_heads[c.model].selections[c.selection], c, m_s.tasks), model, cost,
                            cost_after_previous});
  }

  const AblateSettings& m_s;
  const std::vector<ModelEntry>& m_entries;
  const std::vector<ModelHeads>& m_heads;
  NiahCostModel m_niah;
  AblateGrid m_grid;
};

}  // namespace

AblateGrid build_grid(const AblateSettings& s, const std::vector<ModelEntry>& entries,
                      const std::vector<ModelHeads>& heads, size_t n_needles,
                      const std::vector<std::vector<TaskItem>>& task_items) {
  GridBuilder builder(s, entries, heads);
  for (size_t m = 0; m < entries.size(); ++m) {
    builder.add_niah_cells(m, n_needles);
    builder.add_task_cells(m, task_items);
  }
  return builder.take();
}

}  // namespace stages
