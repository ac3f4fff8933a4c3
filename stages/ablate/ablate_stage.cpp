#include "stages/ablate/ablate_stage.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

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
  std::vector<int64_t> lengths, depths, ks;
  std::vector<std::string> modes;
  int64_t random_seeds = 5;
  double retrieval_threshold = 0.1;
  PromptMode prompt_mode = PromptMode::kFaithful;
  int64_t buffer_tokens = 200;
  int64_t prefill_chunk = 512;
  int64_t tracked_heads = 10;
  NiahDecodeOptions decode;
};

AblateSettings read_settings(const pipeline::Config& c) {
  AblateSettings s;
  s.haystack_dir = c.get_string("ablate.haystack");
  s.needles_file = c.get_string("ablate.needles");
  s.lengths = c.get_ints("ablate.lengths");
  s.depths = c.get_ints("ablate.depths");
  s.ks = c.get_ints("ablate.ks");
  s.modes = c.get_strings("ablate.modes");
  s.random_seeds = c.get_int("ablate.random_seeds");
  s.retrieval_threshold = c.get_float("ablate.retrieval_threshold");
  s.prompt_mode = parse_prompt_mode(c.get_string("ablate.prompt_mode"), "[ablate] prompt_mode");
  s.buffer_tokens = c.get_int("ablate.buffer_tokens");
  s.prefill_chunk = c.get_int("ablate.prefill_chunk");
  s.tracked_heads = c.get_int("ablate.tracked_heads");
  s.decode.max_new_tokens = c.get_int("ablate.max_new_tokens");
  s.decode.stop_strings = c.get_strings("ablate.stop_strings");
  return s;
}

models::HeadMaskMode parse_mode(const std::string& mode, const std::string& source) {
  if (mode == "uniform") return models::HeadMaskMode::Uniform;
  if (mode == "zero") return models::HeadMaskMode::Zero;
  throw ConfigError(str_cat("[config] ", source, ": [ablate] modes: got '", mode,
                            "', expected uniform or zero (mean ablation needs per-head means: not yet wired)"));
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

struct AblateCell {
  size_t model;
  size_t selection;  // into the model's selections
  size_t needle;
  int64_t length, depth;
};

std::string cell_id(const std::string& model, const Selection& sel, const AblateCell& c) {
  return str_cat(model, ".", sel.mode, ".", sel.selection, ".K", sel.k, ".n", c.needle, ".L", c.length, ".D", c.depth);
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
      .optional("ablate.modes", KeyType::StringList, "uniform", "mask modes: uniform (the paper's) or zero")
      .optional("ablate.random_seeds", KeyType::Int, "5", "random non-retrieval head draws per K")
      .optional("ablate.retrieval_threshold", KeyType::Float, "0.1", "heads above this mean score are never random picks")
      .optional("ablate.prompt_mode", KeyType::String, "faithful", "faithful or fixed (docs/PROMPTS.md)")
      .optional("ablate.buffer_tokens", KeyType::Int, "200", "tokens kept free for the question")
      .optional("ablate.max_new_tokens", KeyType::Int, "50", "greedy decoding cap")
      .optional("ablate.stop_strings", KeyType::StringList, "\\n", "stop after a token containing one of these")
      .optional("ablate.prefill_chunk", KeyType::Int, "512", "query rows per prefill attention chunk")
      .optional("ablate.tracked_heads", KeyType::Int, "10", "top retrieval heads whose argmax positions are stored");
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
  {
    pipeline::store::File score = pipeline::store::File::open(ctx.store_path("score"));
    pipeline::store::Group models_group = score.root().open_group("models");
    for (size_t m = 0; m < entries.size(); ++m) {
      const ScoreMap map = read_score_map(models_group, entries[m].name);
      const int64_t n_heads = map.n_layer * map.n_head;
      tracked[m] = top_k_heads(map, std::min<int64_t>(s.tracked_heads, n_heads));
      selections[m].push_back({"none", "none", 0, -1, {}});
      for (const auto& mode : s.modes) {
        for (int64_t k : s.ks) {
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

  std::vector<AblateCell> grid;
  std::vector<pipeline::WorkItem> items;
  for (size_t m = 0; m < entries.size(); ++m) {
    for (size_t sel = 0; sel < selections[m].size(); ++sel) {
      for (size_t n = 0; n < needles.size(); ++n) {
        for (int64_t L : s.lengths) {
          for (int64_t d : s.depths) {
            AblateCell c{m, sel, n, L, d};
            grid.push_back(c);
            items.push_back({cell_id(entries[m].name, selections[m][sel], c), entries[m].name, pipeline::cell_cost(L)});
          }
        }
      }
    }
  }

  std::unique_ptr<LoadedModel> model;
  std::unique_ptr<PromptBuilder> builder;
  std::string haystack;
  pipeline::CellHooks hooks;
  hooks.begin_group = [&](const std::string& group) {
    at::set_num_threads(ctx.threads);
    auto it = std::find_if(entries.begin(), entries.end(), [&](const ModelEntry& e) { return e.name == group; });
    model = load_model(*it, s.prefill_chunk);
    const PromptOptions po = prompt_options_for(*model, s.prompt_mode, s.buffer_tokens, ctx.config.source());
    // The masked-NIAH harness repeats the essays until the token count reaches the longest context.
    haystack = read_token_haystack(s.haystack_dir, *model->tokenizer, max_length);
    builder = std::make_unique<PromptBuilder>(*model->tokenizer, haystack, po);
  };
  hooks.compute = [&](size_t index, pipeline::store::Group& out) {
    const AblateCell& cell = grid[index];
    const Selection& sel = selections[cell.model][cell.selection];
    const models::ModelSpec& spec = model->folder.spec;
    std::vector<std::pair<int64_t, int64_t>> pairs;
    for (const auto& h : sel.heads) pairs.emplace_back(h.layer, h.head);
    std::unique_ptr<models::HeadMask> mask;
    if (!pairs.empty()) mask = std::make_unique<models::HeadMask>(spec, parse_mode(sel.mode, ""), pairs);
    NiahDecodeOptions decode = s.decode;
    decode.mask = mask.get();
    NiahCellResult r = run_niah_cell(*model, *builder, needles[cell.needle], cell.length, cell.depth, decode);

    // Error analysis over the model's top retrieval heads.
    ArgmaxCapture capture{static_cast<int64_t>(r.generated.size()), spec.n_layer, spec.n_head, r.argmax};
    const auto& top = tracked[cell.model];
    NiahErrorReport report = analyze_niah_cell(r.rouge1_recall, r.response, r.prompt.context, capture, top);
    std::vector<int32_t> top_pos;  // [step, tracked]
    for (int64_t step = 0; step < capture.n_step; ++step) {
      for (const auto& h : top) {
        top_pos.push_back(r.argmax[static_cast<size_t>((step * spec.n_layer + h.layer) * spec.n_head + h.head)]);
      }
    }
    std::vector<int32_t> gen_v(r.generated.begin(), r.generated.end());
    out.set_attr("model", entries[cell.model].name);
    out.set_attr("mode", sel.mode);
    out.set_attr("selection", sel.selection);
    out.set_attr("k", sel.k);
    out.set_attr("seed", sel.seed);
    out.set_attr("needle_index", static_cast<int64_t>(cell.needle));
    out.set_attr("context_length", cell.length);
    out.set_attr("depth_percent", cell.depth);
    out.set_attr("prompt_tokens", static_cast<int64_t>(r.prompt.ids.size()));
    out.set_attr("needle_begin", r.prompt.answer_found() ? r.span_begin : int64_t{-1});
    out.set_attr("needle_end", r.prompt.answer_found() ? r.span_end : int64_t{-1});
    out.set_attr("rouge1_recall", r.rouge1_recall);
    out.set_attr("error_type", std::string(niah_error_type_name(report.type)));
    out.set_attr("sink_fraction", report.sink_fraction);
    out.write("masked_heads", flatten(sel.heads), {sel.heads.size(), 2}, "head,layer_head");
    out.write("generated_ids", gen_v, {gen_v.size()}, "step");
    out.write_text("response", r.response);
    out.write("top_head_argmax", top_pos, {gen_v.size(), top.size()}, "step,tracked_head");
  };
  pipeline::CellRunStats stats = pipeline::run_cells(ctx, items, hooks);
  if (ctx.comm.rank() != 0) return;

  // Summary per model: one row per (mode, selection, K): mean recall and error-type counts.
  pipeline::store::Group root = ctx.output->root();
  pipeline::store::Group cells = root.open_group("cells");
  pipeline::store::Group summary = root.create_group("summary");
  for (size_t m = 0; m < entries.size(); ++m) {
    pipeline::store::Group g = summary.create_group(entries[m].name);
    g.write("tracked_heads", flatten(tracked[m]), {tracked[m].size(), 2}, "tracked_head,layer_head");
    std::vector<std::string> rows;
    std::vector<double> mean_recall;
    std::vector<int64_t> n_cells, k_of_row, errors;
    for (const auto& sel : selections[m]) {
      double sum = 0;
      int64_t n = 0;
      std::vector<int64_t> err(4, 0);
      for (const auto& c : grid) {
        if (c.model != m || &selections[m][c.selection] != &sel) continue;
        pipeline::store::Group cg = cells.open_group(cell_id(entries[m].name, sel, c));
        sum += cg.attr_double("rouge1_recall");
        ++n;
        std::string type = cg.attr_string("error_type");
        for (size_t e = 0; e < 4; ++e) err[e] += type == kErrorNames[e] ? 1 : 0;
      }
      rows.push_back(sel.mode + "/" + sel.selection);
      k_of_row.push_back(sel.k);
      mean_recall.push_back(n ? sum / static_cast<double>(n) : 0.0);
      n_cells.push_back(n);
      errors.insert(errors.end(), err.begin(), err.end());
    }
    g.write_texts("rows", rows, "row");
    g.write("k", k_of_row, {k_of_row.size()}, "row");
    g.write("mean_recall", mean_recall, {mean_recall.size()}, "row");
    g.write("n_cells", n_cells, {n_cells.size()}, "row");
    g.write("error_counts", errors, {rows.size(), 4}, "row,error_type");
    g.set_attr("error_types", std::string("correct,incomplete,wrong_extraction,hallucination"));
  }
  pipeline::log::info("ablate: ", stats.total, " cells (", stats.already_done, " resumed)");
}

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
  }
}

}  // namespace stages
