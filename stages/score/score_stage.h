// score: per-model retrieval scores (docs/PAPER_NOTES.md, "Retrieval score") into <run_dir>/score.h5 (docs/STORE.md).
//
// Two sources, both allowed in one job:
//   generate  when [job] stages lists `generate` before `score`: every cell of the COMPLETE store
//             <run_dir>/generate.h5 is scored with the configured rule (score_ops.h) from its
//             capture_argmax, generated_ids, needle_ids and needle span; a test enters the average only when
//             its rouge1_recall is > success_threshold (failed tests are dropped, not counted as 0).
//   imports   [score] import = name=path.json, ... : official head_score JSON files (head_score_json.h),
//             paths relative to the current directory (jobs are run from the repository root).
// Distribution: cells are dealt round-robin over the sorted cell ids; each rank scores its cells from the
// read-only generate store, the per-test rows are gathered to rank 0, which orders them by
// (model, needle, context length, depth, id) — the official test order — and computes means and
// frequencies in that order, so score.h5 is bit-identical for any rank count. Per-model test counts are
// also all-reduced and cross-checked against the gathered rows.
// export_dir: every model's per-test scores are also written there as <model>.json in the official format.
#pragma once

#include "pipeline/runner/stage.h"

namespace stages {

class ScoreStage final : public pipeline::Stage {
 public:
  std::string name() const override { return "score"; }
  std::string summary() const override {
    return "retrieval scores per head from the generate store and/or official head_score JSON imports";
  }
  // {"generate"} when [job] stages lists generate before score (else only imports are scored).
  std::vector<std::string> inputs(const pipeline::Config& job) const override;
  // The imported head_score JSON files.
  std::vector<pipeline::InputFile> input_files(const pipeline::Config& job) const override;
  void declare(pipeline::ConfigSchema& schema) const override;
  void validate(const pipeline::StageContext& ctx) const override;
  void run(pipeline::StageContext& ctx) override;
  void inspect(const pipeline::store::Group& root, std::ostream& out) const override;
};

}  // namespace stages
