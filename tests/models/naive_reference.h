// A deliberately naive reference decoder for parity tests, written independently of models/:
// full T x T attention matrices with an explicit causal (and sliding-window) mask, K/V repeated
// per query head (repeat_interleave), RoPE angles from explicit loops, no KV cache, no chunking,
// the MoE as a loop over tokens and their chosen experts, everything in fp32.
// Head interventions are built by hand: "uniform" writes the uniform row 1/n over the allowed
// keys into the probability matrix, "zero"/"mean" overwrite the head's output rows.
#pragma once

#include <torch/torch.h>

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "models/model_spec.h"

namespace naive {

using WeightMap = std::map<std::string, torch::Tensor>;  // checkpoint name -> tensor

enum class Intervention { Uniform, Zero, Mean };

struct HeadIntervention {
  Intervention kind = Intervention::Uniform;
  std::set<std::pair<int64_t, int64_t>> heads;  // (layer, query head)
  torch::Tensor mean;                           // [L, H, d] for Mean
  int64_t from_row = 0;                         // applied to query rows >= from_row
};

struct Output {
  torch::Tensor logits;             // [T, V] fp32
  std::vector<torch::Tensor> probs; // per layer [H, T, T] fp32 (row i: query i over keys)
};

Output forward(const models::ModelSpec& spec, const WeightMap& weights,
               const std::vector<int64_t>& ids, const HeadIntervention* intervention = nullptr);

struct Generation {
  std::vector<int64_t> tokens;
  std::vector<torch::Tensor> last_rows;  // per step: [L, H, T_kv] probs of the newest query row
  std::vector<torch::Tensor> logits;     // per step: [V]
};

// Greedy decoding by full recompute: step s runs the whole sequence prompt + generated[0:s] and
// takes the last row. Intervention rows start at prompt.size() - 1 unless in_prefill.
Generation generate(const models::ModelSpec& spec, const WeightMap& weights,
                    const std::vector<int64_t>& prompt, int64_t n_steps,
                    const HeadIntervention* intervention = nullptr, bool in_prefill = false);

}  // namespace naive
