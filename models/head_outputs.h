// Per-head attention outputs: what each query head hands to o_proj (its probabilities times the values of
// its KV head), averaged over a token sequence. The mean-ablation mask (models::HeadMaskMode::Mean)
// substitutes these vectors for a masked head's output.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "models/decoder.h"

namespace models {

// The unmasked model fed `ids` one token per forward call (each a decode step, so the observer sees every
// position; no prefill) -> each head's attention output averaged over all positions: [n_layer, n_head,
// head_dim] fp32 on the CPU. Throws pipeline::InputError for an empty `ids`.
torch::Tensor mean_head_outputs(const Decoder& decoder, const std::vector<int64_t>& ids);

}  // namespace models
