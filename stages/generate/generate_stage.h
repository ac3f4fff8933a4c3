// generate: the paper's detection run. For every cell (model, needle, context length, depth) of this
// rank: build the prompt (faithful or fixed mode, stages/niah/prompt_builder.h), prefill, greedy
// decode with the attention capture fused into decoding (no second prefill), ROUGE-1 recall of the
// response against the needle's answer, and write the cell (layout: docs/STORE.md, generate.h5).
#pragma once

#include "pipeline/runner/stage.h"

namespace stages {

class GenerateStage final : public pipeline::Stage {
 public:
  std::string name() const override { return "generate"; }
  // 2: /cells/<id>/prompt_ids added (schema 1 stores lack it; everything else is unchanged).
  int64_t schema_version() const override { return 2; }
  std::string summary() const override {
    return "needle-in-a-haystack prompts, greedy decoding with fused attention capture, ROUGE-1";
  }
  // The toy zoo's train stage when the job trains its models (a retrained zoo reruns detection).
  std::vector<std::string> inputs(const pipeline::Config& job) const override;
  std::string cell_group_section() const override { return "model"; }  // a cell per model
  // The needles file, the haystack folder and every model's folder.
  std::vector<pipeline::InputFile> input_files(const pipeline::Config& job) const override;
  void declare(pipeline::ConfigSchema& schema) const override;
  void validate(const pipeline::StageContext& ctx) const override;
  void plan(const pipeline::Config& job, std::ostream& out) const override;
  void run(pipeline::StageContext& ctx) override;
  void inspect(const pipeline::store::Group& root, std::ostream& out) const override;
};

}  // namespace stages
