// correlate: cross-model similarity of the per-head mean-score maps in score.h5 (Figure 6; docs/PAPER_NOTES.md,
// "Correlation") into <run_dir>/correlate.h5 (docs/STORE.md): Pearson, Spearman and top-K Jaccard matrices over every
// model of the score store (sorted by name), with the configured rule for different shapes
// (correlate_ops.h), plus the job's named pairs ([correlate] pairs = a:b, ...). Small and exact: rank 0
// computes everything; the other ranks only validate.
#pragma once

#include "pipeline/runner/stage.h"

namespace stages {

class CorrelateStage final : public pipeline::Stage {
 public:
  std::string name() const override { return "correlate"; }
  std::string summary() const override {
    return "Pearson / Spearman / top-K overlap of retrieval-score maps across models (Figure 6)";
  }
  std::vector<std::string> inputs(const pipeline::Config&) const override { return {"score"}; }
  void declare(pipeline::ConfigSchema& schema) const override;
  void validate(const pipeline::StageContext& ctx) const override;
  void run(pipeline::StageContext& ctx) override;
  void inspect(const pipeline::store::Group& root, std::ostream& out) const override;
};

}  // namespace stages
