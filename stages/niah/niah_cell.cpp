#include "stages/niah/niah_cell.h"

#include <algorithm>

#include "models/generation.h"
#include "pipeline/core/error.h"
#include "pipeline/core/sharding.h"
#include "stages/niah/rouge.h"

namespace stages {

namespace {

std::string strip(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// A [B=1, max_steps, L, H] capture tensor -> this sequence's first `steps` rows, flattened.
template <class T>
std::vector<T> first_steps(const torch::Tensor& t, int64_t steps, torch::ScalarType type) {
  torch::Tensor rows = t.select(0, 0).slice(0, 0, steps).contiguous().to(type);
  return std::vector<T>(rows.data_ptr<T>(), rows.data_ptr<T>() + rows.numel());
}

}  // namespace

PromptOptions prompt_options_for(const LoadedModel& model, PromptMode mode, int64_t buffer_tokens,
                                 const std::string& job_source) {
  const models::ModelSpec& spec = model.folder.spec;
  const ModelEntry& entry = model.entry;
  PromptOptions po;
  po.mode = mode;
  po.buffer_tokens = buffer_tokens;
  if (entry.chat) {
    RHEAD_CHECK(!spec.chat_template.empty(), pipeline::ConfigError, "[config] ", job_source, ": [model.", entry.name,
                "] chat = true, but family '", spec.family, "' has no [chat] template");
    po.prompt_template = PromptTemplate::chat(spec.chat_template);
  }
  po.period_ids = entry.period_provider == "own" ? period_ids_from_pieces(*model.tokenizer, spec.sentence_end_tokens)
                                                 : official_period_ids(entry.period_provider, *model.tokenizer);
  return po;
}

namespace {

models::GenerationOptions generation_options(const models::Tokenizer& tok, const NiahDecodeOptions& options,
                                             std::optional<models::CaptureOptions> capture) {
  models::GenerationOptions gen;
  gen.max_new_tokens = options.max_new_tokens;
  gen.mask = options.mask;
  gen.prefix_cache = options.prefix_cache;
  gen.stop = [&tok, stops = options.stop_strings](int64_t, const std::vector<int64_t>& generated) {
    std::string piece = tok.decode({generated.back()}, /*skip_special_tokens=*/false);
    for (const auto& stop : stops) {
      if (!stop.empty() && piece.find(stop) != std::string::npos) return true;
    }
    return false;
  };
  gen.capture = std::move(capture);
  return gen;
}

}  // namespace

GreedyText greedy_text(const LoadedModel& model, const std::vector<int64_t>& ids, const NiahDecodeOptions& options,
                       std::optional<models::CaptureOptions> capture) {
  const models::Tokenizer& tok = *model.tokenizer;
  models::GenerationResult out =
      models::generate_greedy(*model.decoder, {ids}, generation_options(tok, options, std::move(capture)));
  GreedyText t;
  t.generated = out.tokens.front();
  t.response = strip(tok.decode(t.generated, /*skip_special_tokens=*/true));
  t.capture = out.capture;
  return t;
}

NiahCellResult run_niah_cell(const LoadedModel& model, const PromptBuilder& builder, const Needle& needle,
                             int64_t context_length, int64_t depth_percent, const NiahDecodeOptions& options) {
  return std::move(run_niah_cells(model, {{&builder, &needle, context_length, depth_percent, options.mask}}, options).front());
}

std::vector<NiahCellResult> run_niah_cells(const LoadedModel& model, const std::vector<NiahCellSpec>& cells,
                                           const NiahDecodeOptions& options) {
  const models::Tokenizer& tok = *model.tokenizer;
  std::vector<NiahCellResult> results(cells.size());
  std::vector<std::vector<int64_t>> prompts;
  std::vector<models::GenerationOptions> gens;
  for (size_t i = 0; i < cells.size(); ++i) {
    const NiahCellSpec& c = cells[i];
    NiahCellResult& r = results[i];
    r.prompt = c.builder->build(*c.needle, c.context_length, static_cast<double>(c.depth_percent));
    const int64_t T = static_cast<int64_t>(r.prompt.ids.size());
    RHEAD_CHECK(T >= 2, pipeline::InputError, "[niah] ", model.entry.name, " L=", c.context_length, " depth=",
                c.depth_percent, ": prompt has ", T, " tokens; expected at least 2");
    if (r.prompt.answer_found()) {
      r.span_begin = std::max<int64_t>(r.prompt.answer_begin, 0);
      r.span_end = std::min<int64_t>(r.prompt.answer_end, T);
    }
    models::CaptureOptions cap;
    cap.argmax_on_bf16_row = options.argmax_on_bf16_row;
    if (options.span_mass) cap.spans = {{r.span_begin, r.span_end}};
    prompts.push_back(r.prompt.ids);
    gens.push_back(generation_options(tok, options, cap));
    gens.back().mask = c.mask;
    gens.back().prefill_split = r.prompt.needle_begin;  // -1 in faithful mode: whole calls are reused there
  }
  // Batch only where decoding together gives every cell its bits alone (models::Decoder::decode_step),
  // and only as many cells as keep their KV caches under kNiahBatchKvBytes together.
  std::vector<models::GenerationResult> outs;
  if (model.decoder->batch_invariant_decode()) {
    const models::ModelSpec& spec = model.folder.spec;
    const int64_t kv_bytes_per_token = 2 * spec.n_layer * spec.n_kv_head * spec.head_dim *
                                       static_cast<int64_t>(c10::elementSize(model.decoder->compute_dtype()));
    for (size_t first = 0; first < prompts.size();) {
      size_t end = first;
      for (int64_t bytes = 0; end < prompts.size(); ++end) {
        bytes += (static_cast<int64_t>(prompts[end].size()) + options.max_new_tokens) * kv_bytes_per_token;
        if (end > first && bytes > kNiahBatchKvBytes) break;
      }
      std::vector<std::vector<int64_t>> some(prompts.begin() + first, prompts.begin() + end);
      std::vector<models::GenerationOptions> some_gens(gens.begin() + first, gens.begin() + end);
      for (auto& out : models::generate_greedy_each(*model.decoder, some, some_gens)) outs.push_back(std::move(out));
      first = end;
    }
  } else {
    for (size_t i = 0; i < prompts.size(); ++i) outs.push_back(models::generate_greedy(*model.decoder, {prompts[i]}, gens[i]));
  }
  for (size_t i = 0; i < cells.size(); ++i) {
    NiahCellResult& r = results[i];
    r.generated = outs[i].tokens.front();
    const int64_t steps = static_cast<int64_t>(r.generated.size());
    r.response = strip(tok.decode(r.generated, /*skip_special_tokens=*/true));
    r.rouge1_recall = niah_rouge1_recall(cells[i].needle->real_needle, r.response);
    r.argmax = first_steps<int32_t>(outs[i].capture->argmax(), steps, torch::kInt32);
    if (options.span_mass) r.span_mass = first_steps<float>(outs[i].capture->span_mass(), steps, torch::kFloat32);
  }
  return results;
}

void write_niah_cell_attrs(pipeline::store::Group& out, const NiahCellResult& r, size_t needle, int64_t context_length,
                           int64_t depth_percent) {
  out.set_attr("needle_index", static_cast<int64_t>(needle));
  out.set_attr("context_length", context_length);
  out.set_attr("depth_percent", depth_percent);
  out.set_attr("prompt_tokens", static_cast<int64_t>(r.prompt.ids.size()));
  out.set_attr("needle_begin", r.prompt.answer_found() ? r.span_begin : int64_t{-1});
  out.set_attr("needle_end", r.prompt.answer_found() ? r.span_end : int64_t{-1});
  out.set_attr("rouge1_recall", r.rouge1_recall);
}

double attention_crossover(const models::ModelSpec& spec) {
  const double d = static_cast<double>(spec.hidden_size);
  const double attention = static_cast<double>(2 * spec.q_dim() + 2 * spec.kv_dim()) * d;  // q, k, v, o
  const double experts = spec.mlp == models::MlpKind::SparseMoe ? static_cast<double>(spec.n_expert_used) : 1.0;
  const double mlp = 3.0 * static_cast<double>(spec.intermediate_size) * d * experts;
  // Per layer and token: 2 (attention + mlp) FLOPs of projections, 4 q_dim p of attention at position p.
  return std::max(1.0, (attention + mlp) / (2.0 * static_cast<double>(spec.q_dim())));
}

NiahCellCost niah_cell_cost(const NiahCostModel& model, int64_t context_length, int64_t depth_percent,
                            int64_t previous_depth_percent) {
  const int64_t prefill_call = model.prefill_call, max_new_tokens = model.max_new_tokens;
  const bool split_at_needle = model.split_at_needle;
  const double quadratic_crossover = model.quadratic_crossover;
  const int64_t prompt = std::max<int64_t>(context_length - model.buffer_tokens, 1);
  const int64_t needle = depth_percent * prompt / 100;  // about where the needle splits the prefill
  // The call holding the needle runs whole and again from the needle (models::PrefillCall).
  const int64_t call_begin = prefill_call > 0 ? needle / prefill_call * prefill_call : 0;
  const int64_t call_end = prefill_call > 0 ? std::min(call_begin + prefill_call, prompt) : prompt;
  const bool split = split_at_needle && needle > call_begin && needle < call_end;
  const auto cost = [&](int64_t first) {  // rows [first, prompt), the split call's rows again, then decode
    double c = pipeline::generation_range_cost(first, prompt, max_new_tokens, quadratic_crossover);
    if (split && first < needle) c += pipeline::generation_range_cost(needle, call_end, 0, quadratic_crossover);
    return c;
  };
  double warm = cost(0);
  if (model.reuse_prefix && previous_depth_percent >= 0) {
    const int64_t previous = previous_depth_percent * prompt / 100;
    const int64_t common = std::min(previous, needle);  // the prompts part at the shallower needle
    const int64_t whole_calls = prefill_call > 0 ? common / prefill_call * prefill_call : 0;
    warm = split_at_needle && previous >= needle ? cost(needle) : cost(whole_calls);
  }
  return {cost(0), warm};
}

}  // namespace stages
