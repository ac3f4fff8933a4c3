// train: the toy model zoo of the embedded default (docs/ARCHITECTURE.md, "The toy zoo"), trained on
// the CPU with LibTorch on the toy world of stages/train/toy_world.h and saved as Hugging Face folders
// that every other stage loads like real models. The zoo mirrors the paper's Table 1:
//   base   Llama architecture, trained from scratch at `context` tokens
//   long   base + continued pretraining at long_factor x context with rope_theta = long_rope_theta
//   chat   base + fine-tuning on the chat template ("[INST] ... [/INST]")
//   moe    base upcycled to a Mixtral-format sparse MoE (FFN copied into experts, router added), fine-tuned
//   other  an independently initialised second family (other_family, Qwen2 by default: q/k/v bias)
// Phases: {base, other} then {long, chat, moe}; the models of a phase are dealt to ranks (largest first).
// A finished model folder carries train_meta.json with the hash of its recipe: a rerun skips it (resume),
// a changed recipe retrains it. Deterministic from [job] seed at a fixed thread count.
#pragma once

#include "pipeline/runner/stage.h"
#include "stages/common/splitmix64.h"

namespace stages {

// Sequence length of optimizer step `step` of `steps`: from `shortest` rising linearly to `context` over
// the first half (multiples of 16), then `context`; for continued pretraining (`continued`, long) each
// later step is at `context` with probability full_share, else at a length drawn uniformly from
// {shortest, shortest + 16, ..., context}. Draws from rng only in that last phase.
int64_t training_length(int64_t step, int64_t steps, int64_t shortest, int64_t context, bool continued,
                        double full_share, SplitMix64& rng);

class TrainStage final : public pipeline::Stage {
 public:
  std::string name() const override { return "train"; }
  std::string summary() const override { return "train the toy model zoo (base, long, chat, moe, other) on the CPU"; }
  void declare(pipeline::ConfigSchema& schema) const override;
  void validate(const pipeline::StageContext& ctx) const override;
  void plan(const pipeline::Config& job, std::ostream& out) const override;
  void run(pipeline::StageContext& ctx) override;
  void inspect(const pipeline::store::Group& root, std::ostream& out) const override;
};

}  // namespace stages
