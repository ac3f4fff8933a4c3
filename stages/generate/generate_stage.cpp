#include "stages/generate/generate_stage.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "models/cpu_compute.h"
#include "pipeline/core/error.h"
#include "pipeline/core/logging.h"
#include "pipeline/core/sharding.h"
#include "pipeline/runner/cell_driver.h"
#include "stages/common/model_section.h"
#include "stages/niah/niah_cell.h"
#include "stages/niah/niah_keys.h"
#include "stages/niah/needles.h"
#include "stages/niah/prompt_builder.h"

namespace stages {

namespace fs = std::filesystem;
using pipeline::ConfigError;
using pipeline::KeyType;
using pipeline::str_cat;

namespace {

struct GenerateSettings {
  fs::path needles_file;
  fs::path haystack_dir;
  bool haystack_per_needle = true;
  NiahKeys niah;  // grid, prompts, decoding, batching (stages/niah/niah_keys.h)
  bool reuse_prefix = true;
  bool argmax_on_bf16_row = false;
  bool span_mass = true;
};

GenerateSettings read_settings(const pipeline::Config& c) {
  GenerateSettings s;
  s.needles_file = c.get_string("generate.needles");
  s.haystack_dir = c.get_string("generate.haystack");
  s.haystack_per_needle = c.get_bool("generate.haystack_per_needle");
  s.niah = read_niah_keys(c, "generate");
  s.reuse_prefix = c.get_bool("generate.reuse_prefix");
  s.argmax_on_bf16_row = c.get_bool("generate.argmax_on_bf16_row");
  s.span_mass = c.get_bool("generate.span_mass");
  return s;
}

// The haystack folder of needle i: <haystack>/part<i+1> (official layout) or <haystack> itself.
fs::path haystack_for(const GenerateSettings& s, size_t needle_index) {
  return s.haystack_per_needle ? s.haystack_dir / ("part" + std::to_string(needle_index + 1)) : s.haystack_dir;
}

struct GenerateCell {
  size_t model;
  size_t needle;
  int64_t length;
  int64_t depth;
};

std::string cell_id(const std::string& model, const GenerateCell& c) {
  return str_cat(model, ".n", c.needle, ".L", c.length, ".D", c.depth);
}

// The per-rank state of one loaded model: decoder, tokenizer, and one prompt builder per needle
// (each tokenizes its haystack once).
struct ModelState {
  std::unique_ptr<LoadedModel> model;
  models::PrefixCache prefix;  // the last prompt's prefill, for the next one
  std::vector<std::unique_ptr<PromptBuilder>> builders;  // [needle]
};

// The cells and their work items (item i computes grid[i]), appended to both.
void build_grid(const GenerateSettings& s, const std::vector<ModelEntry>& entries,
                const std::vector<models::ModelSpec>& shapes, size_t n_needles, std::vector<GenerateCell>& grid,
                std::vector<pipeline::WorkItem>& items) {
  // Item order is processing order (chained items, pipeline/core/sharding.h: each rank runs a contiguous
  // stretch of the list): from the deepest needle up, each prompt reuses the haystack before its needle
  // from the one before (models::PrefixCache; results are bit-identical). Needles that share one haystack
  // take turns at each depth, so that every prompt, not only the first needle's, follows one with the same
  // haystack at least as far as its own needle; with a haystack part per needle, each needle's cells stay
  // together.
  const size_t n_depths = s.niah.depths.size();
  // Fixed prompts know their needle's token and split the prefill there (models::PrefillCall); faithful
  // prompts run calls of prefill_chunk rows and reuse whole calls.
  NiahCostModel cost_model;
  cost_model.buffer_tokens = s.niah.buffer_tokens;
  cost_model.reuse_prefix = s.reuse_prefix;
  cost_model.split_at_needle = s.niah.prompt_mode == PromptMode::kFixed;
  cost_model.prefill_call = cost_model.split_at_needle ? s.niah.prefill_call : s.niah.prefill_chunk;
  cost_model.max_new_tokens = s.niah.decode.max_new_tokens;
  for (size_t m = 0; m < entries.size(); ++m) {
    cost_model.quadratic_crossover = attention_crossover(shapes[m]);
    for (size_t outer = 0; outer < (s.haystack_per_needle ? n_needles : 1); ++outer) {
      for (int64_t L : s.niah.lengths) {
        for (size_t k = 0; k < (s.haystack_per_needle ? 1 : n_needles) * n_depths; ++k) {
          const size_t n = s.haystack_per_needle ? outer : k % n_needles;
          const int64_t d = s.niah.depths[n_depths - 1 - (s.haystack_per_needle ? k : k / n_needles)];
          GenerateCell cell{m, n, L, d};
          // k > 0: the cell before has the same haystack and length.
          const NiahCellCost cost = niah_cell_cost(cost_model, L, d, k > 0 ? grid.back().depth : -1);
          pipeline::WorkItem item{cell_id(entries[m].name, cell), entries[m].name, cost.cold};
          if (s.reuse_prefix) item.cost_after_previous = cost.warm;
          item.batch = str_cat("L", L);  // a rank decodes its cells of one length together
          grid.push_back(cell);
          items.push_back(std::move(item));
        }
      }
    }
  }
}

// Rank 0, after the merge: root/models/<name> (path and shapes) and a log line of the mean recall.
void write_summary(pipeline::store::Group& root, const std::vector<ModelEntry>& entries,
                   const std::vector<models::ModelSpec>& shapes, const pipeline::CellRunStats& stats) {
  pipeline::store::Group models_group = root.create_group("models");
  pipeline::store::Group cells = root.open_group("cells");
  for (size_t m = 0; m < entries.size(); ++m) {
    const models::ModelSpec& spec = shapes[m];
    pipeline::store::Group g = models_group.create_group(entries[m].name);
    g.set_attr("path", fs::absolute(entries[m].path).string());
    g.set_attr("family", spec.family);
    g.set_attr("n_layer", spec.n_layer);
    g.set_attr("n_head", spec.n_head);
    g.set_attr("n_kv_head", spec.n_kv_head);
    g.set_attr("vocab_size", spec.vocab_size);
  }
  double recall_sum = 0;
  int64_t success = 0;
  for (const auto& id : cells.children()) {
    double r = cells.open_group(id).attr_double("rouge1_recall");
    recall_sum += r;
    success += r > 50 ? 1 : 0;
  }
  pipeline::log::info("generate: ", stats.total, " cells, mean ROUGE-1 recall ",
                      stats.total ? recall_sum / static_cast<double>(stats.total) : 0.0, ", ", success,
                      " above 50 (usable for scoring)");
}

}  // namespace

std::vector<std::string> GenerateStage::inputs(const pipeline::Config& job) const {
  const std::vector<std::string> stages = job.get_strings("job.stages");
  if (std::find(stages.begin(), stages.end(), "train") != stages.end()) return {"train"};
  return {};
}

std::vector<pipeline::InputFile> GenerateStage::input_files(const pipeline::Config& job) const {
  const GenerateSettings s = read_settings(job);
  std::vector<pipeline::InputFile> files = model_input_files(job);
  files.push_back({"", s.needles_file});
  files.push_back({"", s.haystack_dir});
  return files;
}

void GenerateStage::plan(const pipeline::Config& job, std::ostream& out) const {
  const GenerateSettings s = read_settings(job);
  plan_models(job, out);
  int64_t n_needles = 0;
  if (fs::exists(s.needles_file)) {
    try {
      n_needles = static_cast<int64_t>(read_needles_jsonl(s.needles_file).size());
    } catch (const std::exception&) {  // reported by the stage's checks
    }
  }
  out << "  " << plan_path("needles", s.needles_file) << ": " << n_needles << " needle(s); "
      << plan_path("haystack", s.haystack_dir) << (s.haystack_per_needle ? " (part<i> per needle)" : "") << "\n";
  const std::vector<int64_t>& lengths = s.niah.lengths;
  const int64_t per_model = n_needles * static_cast<int64_t>(lengths.size() * s.niah.depths.size());
  if (lengths.empty() || s.niah.depths.empty()) return;  // reported by the stage's checks
  out << "  grid: " << lengths.size() << " length(s) " << lengths.front() << ".." << lengths.back() << " x "
      << s.niah.depths.size() << " depth(s) x " << n_needles << " needle(s) = " << per_model << " cells per model, "
      << per_model * static_cast<int64_t>(read_model_entries(job).size()) << " in all\n";
}

void GenerateStage::declare(pipeline::ConfigSchema& schema) const {
  declare_model_sections(schema);
  schema.required("generate.needles", KeyType::String, "needles JSONL file (official format: needle, question, real_needle)")
      .required("generate.haystack", KeyType::String, "haystack folder of *.txt files")
      .optional("generate.haystack_per_needle", KeyType::Bool, "true",
                "needle i reads <haystack>/part<i+1> (the official detection layout)")
      .optional("generate.reuse_prefix", KeyType::Bool, "true",
                "reuse the previous prompt's KV cache up to where the two prompts' prefills part (every slot "
                "before the needle); results are bit-identical either way (false for benchmarks)")
      .optional("generate.argmax_on_bf16_row", KeyType::Bool, "false",
                "argmax of the bf16-cast attention row, as the official code (ties to the lowest position)")
      .optional("generate.span_mass", KeyType::Bool, "true", "also store attention mass inside the answer span")
      .tuning("generate.reuse_prefix");  // how the work is done, not what is computed
  declare_niah_keys(schema, "generate", "cells of one length");
}

void GenerateStage::validate(const pipeline::StageContext& ctx) const {
  const auto& c = ctx.config;
  GenerateSettings s = read_settings(c);
  std::vector<ModelEntry> models = read_model_entries(c);
  for (const auto& m : models) {
    RHEAD_CHECK(fs::is_directory(m.path), ConfigError, "[config] ", c.source(), ": [model.", m.name, "] path '",
                m.path, "' is not a folder. Hint: point it at a Hugging Face model folder (config.json, *.safetensors)");
    RHEAD_CHECK(fs::exists(fs::path(m.path) / "config.json"), ConfigError, "[config] ", c.source(), ": [model.",
                m.name, "] path '", m.path, "' has no config.json");
  }
  std::vector<Needle> needles = read_needles_jsonl(s.needles_file);
  for (size_t i = 0; i < needles.size(); ++i) {
    fs::path dir = haystack_for(s, i);
    RHEAD_CHECK(fs::is_directory(dir), ConfigError, "[config] ", c.source(), ": [generate] haystack: needle ", i,
                " reads '", dir.string(), "', which is not a folder",
                s.haystack_per_needle ? ". Hint: set haystack_per_needle = false for one shared folder" : "");
  }
  validate_niah_keys(s.niah, c, "generate");
}

void GenerateStage::run(pipeline::StageContext& ctx) {
  const GenerateSettings s = read_settings(ctx.config);
  const std::vector<ModelEntry> entries = read_model_entries(ctx.config);
  const std::vector<Needle> needles = read_needles_jsonl(s.needles_file);
  const int64_t max_length = *std::max_element(s.niah.lengths.begin(), s.niah.lengths.end());

  // Shapes from config.json alone: for the cost estimates and the store's header (rank 0 may not load
  // every model).
  std::vector<models::ModelSpec> shapes;
  for (const ModelEntry& entry : entries) shapes.push_back(read_model_shapes(entry).spec);
  std::vector<GenerateCell> grid;
  std::vector<pipeline::WorkItem> items;
  build_grid(s, entries, shapes, needles.size(), grid, items);

  std::map<std::string, ModelState> loaded;  // only the groups this rank runs
  ModelState* current = nullptr;
  pipeline::CellHooks hooks;
  // Nothing of a cell comes from the train store (an input only so that a retrained zoo reruns this stage):
  // what a cell reads are files, the needles, haystack and its model's folder (input_files), so that a
  // retrained zoo member recomputes its own cells alone.
  hooks.group_inputs = [](const std::string&) { return std::string(); };
  hooks.begin_group = [&](const std::string& group) {
    models::configure_cpu_compute(ctx.threads, /*flush_subnormals=*/true);  // models/cpu_compute.h
    size_t m = static_cast<size_t>(std::find_if(entries.begin(), entries.end(),
                                                [&](const ModelEntry& e) { return e.name == group; }) -
                                   entries.begin());
    ModelState& state = loaded[group];
    state.model = load_model(entries[m], s.niah.prefill_chunk, s.niah.prefill_call);
    const PromptOptions po =
        prompt_options_for(*state.model, s.niah.prompt_mode, s.niah.buffer_tokens, ctx.config.source());
    for (size_t n = 0; n < needles.size(); ++n) {
      state.builders.push_back(std::make_unique<PromptBuilder>(
          *state.model->tokenizer, read_detection_haystack(haystack_for(s, n), max_length), po));
    }
    current = &state;
    pipeline::log::debug("generate: model ", group, " ready on rank ", ctx.comm.rank());
  };
  NiahDecodeOptions decode = s.niah.decode;
  decode.argmax_on_bf16_row = s.argmax_on_bf16_row;
  decode.span_mass = s.span_mass;
  const auto write_cell = [&](const GenerateCell& cell, const NiahCellResult& r, pipeline::store::Group& out) {
    const models::ModelSpec& spec = current->model->folder.spec;
    const uint64_t steps = r.generated.size();
    const uint64_t L = static_cast<uint64_t>(spec.n_layer), H = static_cast<uint64_t>(spec.n_head);
    std::vector<int32_t> needle_v;
    for (int64_t j = r.span_begin; j < r.span_end; ++j) needle_v.push_back(static_cast<int32_t>(r.prompt.ids[j]));
    std::vector<int32_t> gen_v(r.generated.begin(), r.generated.end());
    // The whole prompt, so that an independent implementation (analysis/baselines/eager_reference.py)
    // can rerun the cell from the store alone.
    std::vector<int32_t> prompt_v(r.prompt.ids.begin(), r.prompt.ids.end());

    out.set_attr("model", entries[cell.model].name);
    write_niah_cell_attrs(out, r, cell.needle, cell.length, cell.depth);
    out.set_attr("prompt_mode", std::string(prompt_mode_name(s.niah.prompt_mode)));
    out.write("prompt_ids", prompt_v, {prompt_v.size()}, "token");
    out.write("needle_ids", needle_v, {needle_v.size()}, "span");
    out.write("generated_ids", gen_v, {steps}, "step");
    out.write_text("response", r.response);
    out.write("capture_argmax", r.argmax, {steps, L, H}, "step,layer,head");
    if (s.span_mass) out.write("capture_span_mass", r.span_mass, {steps, L, H}, "step,layer,head");
  };
  hooks.compute_batch = [&](const std::vector<size_t>& indices, std::vector<pipeline::store::Group>& outs) {
    decode.prefix_cache = s.reuse_prefix ? &current->prefix : nullptr;
    std::vector<NiahCellSpec> specs;
    for (size_t index : indices) {
      const GenerateCell& cell = grid[index];
      specs.push_back({current->builders[cell.needle].get(), &needles[cell.needle], cell.length, cell.depth});
    }
    const std::vector<NiahCellResult> results = run_niah_cells(*current->model, specs, decode);
    for (size_t i = 0; i < indices.size(); ++i) write_cell(grid[indices[i]], results[i], outs[i]);
  };
  hooks.max_batch = static_cast<size_t>(s.niah.decode_batch);
  pipeline::CellRunStats stats = pipeline::run_cells(ctx, items, hooks);
  for (const auto& [name, state] : loaded) {
    if (!s.reuse_prefix) break;
    const int64_t reused = state.prefix.reused_tokens(), computed = state.prefix.computed_tokens();
    pipeline::log::info("generate: ", name, " on rank ", ctx.comm.rank(), ": prefill ", computed, " tokens computed, ",
                        reused, " reused from the previous prompt (",
                        reused + computed > 0 ? 100 * reused / (reused + computed) : 0, " %)");
  }

  if (ctx.comm.rank() != 0) return;
  pipeline::store::Group root = ctx.output->root();
  write_summary(root, entries, shapes, stats);
}

void GenerateStage::inspect(const pipeline::store::Group& root, std::ostream& out) const {
  pipeline::store::Group cells = root.open_group("cells");
  std::map<std::string, std::pair<int64_t, double>> per_model;  // model -> (cells, recall sum)
  std::map<std::string, int64_t> success;
  for (const auto& id : cells.children()) {
    pipeline::store::Group g = cells.open_group(id);
    std::string model = g.attr_string("model");
    double r = g.attr_double("rouge1_recall");
    per_model[model].first += 1;
    per_model[model].second += r;
    success[model] += r > 50 ? 1 : 0;
  }
  for (const auto& [model, v] : per_model) {
    out << "model " << model << ": " << v.first << " cells, mean ROUGE-1 recall " << v.second / v.first << ", "
        << success[model] << " above 50\n";
  }
}

}  // namespace stages
