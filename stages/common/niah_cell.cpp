#include "stages/common/niah_cell.h"

#include <algorithm>

#include "models/generation.h"
#include "pipeline/core/error.h"
#include "pipeline/core/sharding.h"
#include "stages/generate/rouge.h"

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

GreedyText greedy_text(const LoadedModel& model, const std::vector<int64_t>& ids, const NiahDecodeOptions& options,
                       std::optional<models::CaptureOptions> capture) {
  const models::Tokenizer& tok = *model.tokenizer;
  models::GenerationOptions gen;
  gen.max_new_tokens = options.max_new_tokens;
  gen.mask = options.mask;
  gen.prefix_cache = options.prefix_cache;
  gen.stop = [&](int64_t, const std::vector<int64_t>& generated) {
    std::string piece = tok.decode({generated.back()}, /*skip_special_tokens=*/false);
    for (const auto& stop : options.stop_strings) {
      if (!stop.empty() && piece.find(stop) != std::string::npos) return true;
    }
    return false;
  };
  gen.capture = std::move(capture);
  models::GenerationResult out = models::generate_greedy(*model.decoder, {ids}, gen);
  GreedyText t;
  t.generated = out.tokens.front();
  t.response = strip(tok.decode(t.generated, /*skip_special_tokens=*/true));
  t.capture = out.capture;
  return t;
}

NiahCellResult run_niah_cell(const LoadedModel& model, const PromptBuilder& builder, const Needle& needle,
                             int64_t context_length, int64_t depth_percent, const NiahDecodeOptions& options) {
  NiahCellResult r;
  r.prompt = builder.build(needle, context_length, static_cast<double>(depth_percent));
  const int64_t T = static_cast<int64_t>(r.prompt.ids.size());
  RHEAD_CHECK(T >= 2, pipeline::InputError, "[niah] ", model.entry.name, " L=", context_length, " depth=",
              depth_percent, ": prompt has ", T, " tokens; expected at least 2");
  if (r.prompt.answer_found()) {
    r.span_begin = std::max<int64_t>(r.prompt.answer_begin, 0);
    r.span_end = std::min<int64_t>(r.prompt.answer_end, T);
  }

  models::CaptureOptions cap;
  cap.argmax_on_bf16_row = options.argmax_on_bf16_row;
  if (options.span_mass) cap.spans = {{r.span_begin, r.span_end}};
  GreedyText out = greedy_text(model, r.prompt.ids, options, cap);

  r.generated = std::move(out.generated);
  const int64_t steps = static_cast<int64_t>(r.generated.size());
  r.response = std::move(out.response);
  r.rouge1_recall = niah_rouge1_recall(needle.real_needle, r.response);
  r.argmax = first_steps<int32_t>(out.capture->argmax(), steps, torch::kInt32);
  if (options.span_mass) r.span_mass = first_steps<float>(out.capture->span_mass(), steps, torch::kFloat32);
  return r;
}

NiahCellCost niah_cell_cost(int64_t context_length, int64_t buffer_tokens, int64_t depth_percent,
                            int64_t previous_depth_percent, int64_t prefill_chunk, int64_t max_new_tokens) {
  const int64_t prompt = std::max<int64_t>(context_length - buffer_tokens, 1);
  int64_t shared = 0;
  if (previous_depth_percent >= 0 && prefill_chunk > 0) {
    shared = std::min(depth_percent, previous_depth_percent) * prompt / 100 / prefill_chunk * prefill_chunk;
  }
  return {pipeline::generation_cost(context_length, prompt, max_new_tokens),
          pipeline::generation_cost(context_length, prompt - shared, max_new_tokens)};
}

}  // namespace stages
