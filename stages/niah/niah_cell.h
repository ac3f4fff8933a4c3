// One needle-in-a-haystack test on a loaded model, shared by generate (detection) and ablate
// (masked NIAH): build the prompt, prefill prompt[0:T-1], greedy-decode from prompt[T-1] with the
// attention capture fused into decoding (and an optional head mask), stop on the stop strings,
// decode and score the response with ROUGE-1 recall. greedy_text is the decoding part alone (ablate's
// downstream task cells).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/generation.h"
#include "models/head_mask.h"
#include "pipeline/store/hdf5_file.h"
#include "stages/common/model_section.h"
#include "stages/niah/needles.h"
#include "stages/niah/prompt_builder.h"

namespace stages {

struct NiahDecodeOptions {
  int64_t max_new_tokens = 50;
  std::vector<std::string> stop_strings;  // stop after a token whose text contains one of these
  bool argmax_on_bf16_row = false;
  bool span_mass = false;                 // also capture the attention mass inside the answer span
  const models::HeadMask* mask = nullptr; // decode-step masking (ablation)
  models::PrefixCache* prefix_cache = nullptr;  // reuse the previous prompt's prefix (models/generation.h)
};

struct NiahCellResult {
  BuiltPrompt prompt;
  int64_t span_begin = 0, span_end = 0;  // answer span clamped to [0, T]; empty when not found
  std::vector<int64_t> generated;        // greedy tokens
  std::string response;                  // decoded (special tokens skipped), whitespace-stripped
  double rouge1_recall = 0.0;            // x 100, against the needle's real_needle
  std::vector<int32_t> argmax;           // [steps, n_layer, n_head] argmax key positions
  std::vector<float> span_mass;          // [steps, n_layer, n_head] when requested
};

// Greedy output of one prompt, decoded.
struct GreedyText {
  std::vector<int64_t> generated;                     // greedy tokens (the stop token included)
  std::string response;                               // decoded (special tokens skipped), whitespace-stripped
  std::shared_ptr<models::AttentionCapture> capture;  // [1, max_new_tokens, L, H] when asked for
};

// prompt ids (>= 1) -> greedy decode with options' cap, stop strings and mask (argmax_on_bf16_row and
// span_mass are the caller's business: pass its capture options, or none for no capture).
GreedyText greedy_text(const LoadedModel& model, const std::vector<int64_t>& ids, const NiahDecodeOptions& options,
                       std::optional<models::CaptureOptions> capture = std::nullopt);

// Prompt options for one loaded model: its chat template when [model.<name>] chat = true (ConfigError
// naming job_source when the family has none) and its period ids ([model.<name>] period_provider).
PromptOptions prompt_options_for(const LoadedModel& model, PromptMode mode, int64_t buffer_tokens,
                                 const std::string& job_source);

NiahCellResult run_niah_cell(const LoadedModel& model, const PromptBuilder& builder, const Needle& needle,
                             int64_t context_length, int64_t depth_percent, const NiahDecodeOptions& options);

// Several NIAH tests decoded together (models::generate_greedy_each: prefills one after the other
// through options.prefix_cache, then one decode step for all unfinished prompts at a time), as many at
// a time as keep their KV caches under kNiahBatchKvBytes (a real model's long contexts: one at a time).
// Each result is bit for bit run_niah_cell's where the decoder's decode is batch invariant (fp32 CPU);
// elsewhere the cells run one at a time, so a result never depends on the batch.
constexpr int64_t kNiahBatchKvBytes = int64_t{2} << 30;
struct NiahCellSpec {
  const PromptBuilder* builder = nullptr;
  const Needle* needle = nullptr;
  int64_t context_length = 0, depth_percent = 0;
  const models::HeadMask* mask = nullptr;  // this cell's decode-step mask (options.mask is not used)
};
std::vector<NiahCellResult> run_niah_cells(const LoadedModel& model, const std::vector<NiahCellSpec>& cells,
                                           const NiahDecodeOptions& options);

// The attributes every stored NIAH cell carries (generate and ablate): needle_index, context_length,
// depth_percent, prompt_tokens, needle_begin / needle_end (-1 when the answer was not found) and
// rouge1_recall (docs/STORE.md).
void write_niah_cell_attrs(pipeline::store::Group& out, const NiahCellResult& r, size_t needle, int64_t context_length,
                           int64_t depth_percent);

// How a stage computes its NIAH cells, for their sharding estimates (niah_cell_cost).
struct NiahCostModel {
  int64_t buffer_tokens = 0;        // a prompt is about context_length - buffer_tokens tokens
  bool reuse_prefix = true;         // a prompt reuses the prefill of the one before it (models::PrefixCache)
  bool split_at_needle = false;     // fixed prompts know their needle's token: it splits the prefill
  int64_t prefill_call = 0;         // rows per prefill call (0: the whole prompt in one)
  int64_t max_new_tokens = 0;       // decode steps after the prompt
  double quadratic_crossover = 1;   // attention_crossover of the model
};

// Sharding estimates for one NIAH cell (pipeline/core/sharding.h, WorkItem::cost and
// cost_after_previous): a prompt, then the decode steps, in prefill calls (NiahCostModel). With
// split_at_needle the needle splits the prefill (models::PrefillCall: the call holding the needle runs
// whole and again from the needle); with reuse_prefix, after a prompt of the same haystack and length
// whose needle sat at previous_depth_percent (< 0: none) at or after its own, the prefill then computes
// only the rows from its needle on; otherwise from the whole calls before the shallower needle. Rows are
// weighted by their position (pipeline::generation_range_cost): rows near the end of a long prompt
// attend to more keys, so a deep needle's short prefill costs more per row.
struct NiahCellCost {
  double cold = 0, warm = 0;
};
NiahCellCost niah_cell_cost(const NiahCostModel& model, int64_t context_length, int64_t depth_percent,
                            int64_t previous_depth_percent);

// The position at which a token's attention FLOPs (4 q_dim p per layer) equal its projections' (twice
// the q, k, v, o and MLP weights per layer; active experts only): the quadratic_crossover of
// pipeline::generation_range_cost for this model: 2304 for the benchmark's hidden-512 model, 24704 for
// Llama-2-7B.
double attention_crossover(const models::ModelSpec& spec);

}  // namespace stages
