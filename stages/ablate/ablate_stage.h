// ablate: the paper's causal test (docs/PAPER_NOTES.md, "Masking"). For each model, mask mode and K: mask the top-K
// retrieval heads (ranked by score.h5) or K seeded random NON-retrieval heads (one draw per seed), and
// rerun the needle-in-a-haystack grid (Paul Graham essays + the San Francisco needle by default). Each
// cell records ROUGE-1 recall, the response, its error type, and the argmax positions of the model's
// top retrieval heads at every decode step (for the error analysis and the failure-case figure).
// Downstream tasks ([ablate] tasks: extractive QA, chain of thought, answer only; JSONL files) run under
// the same head selections, one cell per item, scored by SQuAD F1 / EM (Figures 8 and 10; docs/PAPER_NOTES.md,
// "QA and chain of thought").
// Mask modes uniform (the paper's), zero, and mean (per-head mean outputs over the haystack's first
// mean_tokens tokens). K = 0 (no mask) is run once per model as the baseline. Layout: docs/STORE.md, ablate.h5.
#pragma once

#include "pipeline/runner/stage.h"

namespace stages {

class AblateStage final : public pipeline::Stage {
 public:
  std::string name() const override { return "ablate"; }
  std::string summary() const override {
    return "mask top-K retrieval heads vs K random non-retrieval heads; masked NIAH, error types";
  }
  std::vector<std::string> inputs(const pipeline::Config&) const override { return {"score"}; }
  std::string cell_group_section() const override { return "model"; }  // a cell per model
  // 2: sink_fraction counts only the tracked heads a cell did not mask (schema 1 counted masked ones too).
  int64_t schema_version() const override { return 2; }
  // The haystack folder, the needles and task files, and every model's folder.
  std::vector<pipeline::InputFile> input_files(const pipeline::Config& job) const override;
  void declare(pipeline::ConfigSchema& schema) const override;
  void validate(const pipeline::StageContext& ctx) const override;
  void plan(const pipeline::Config& job, std::ostream& out) const override;
  void run(pipeline::StageContext& ctx) override;
  void inspect(const pipeline::store::Group& root, std::ostream& out) const override;
};

}  // namespace stages
