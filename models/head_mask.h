// Head masking (ablation) for a set of (layer, QUERY head) pairs. Modes:
//   Uniform  the paper's reference (official code: query_states[:, head] = 0): the head's query is
//            zeroed after RoPE, so every logit is 0 and softmax is uniform over the keys the head may
//            attend to (the whole cache incl. the current token; padding excluded; with a sliding
//            window, the window). Head output = mean of those value vectors.
//   Zero     the head's attention output is zeroed before o_proj.
//   Mean     the head's attention output is replaced by a supplied vector mean[layer][head]: [d_head].
// Applied at decode steps (forward calls of one token); in prefill too when in_prefill is set.
// Observer (capture) semantics for masked heads: it sees the probabilities actually used. Uniform:
// the uniform row, whose argmax is the first attendable key under the lowest-index tie rule
// (position 0 without a sliding window). Zero / Mean: the head's normal, unmodified row.
// An empty set is guaranteed to change nothing (bit-identical): no masking op runs at all.
#pragma once

#include <torch/torch.h>

#include <utility>
#include <vector>

#include "models/model_spec.h"
#include "pipeline/core/error.h"

namespace models {

enum class HeadMaskMode { Uniform, Zero, Mean };

inline const char* head_mask_mode_name(HeadMaskMode mode) {
  switch (mode) {
    case HeadMaskMode::Uniform: return "uniform";
    case HeadMaskMode::Zero: return "zero";
    case HeadMaskMode::Mean: return "mean";
  }
  return "unknown";
}

class HeadMask {
 public:
  HeadMask() = default;

  // heads: (layer, query head) pairs, duplicates allowed. mean: [n_layer, n_head, head_dim]
  // (any float dtype), required for Mean, ignored otherwise.
  HeadMask(const ModelSpec& spec, HeadMaskMode mode, const std::vector<std::pair<int64_t, int64_t>>& heads,
           bool in_prefill = false, torch::Tensor mean = {})
      : m_mode(mode), m_in_prefill(in_prefill) {
    m_keep.resize(static_cast<size_t>(spec.n_layer));
    m_count.assign(static_cast<size_t>(spec.n_layer), 0);
    std::vector<std::vector<float>> keep(static_cast<size_t>(spec.n_layer),
                                         std::vector<float>(static_cast<size_t>(spec.n_head), 1.0f));
    for (const auto& [layer, head] : heads) {
      RHEAD_CHECK(layer >= 0 && layer < spec.n_layer && head >= 0 && head < spec.n_head,
                  pipeline::InputError, "[model] head mask: head (", layer, ", ", head,
                  ") out of range; expected layer < ", spec.n_layer, " and head < ", spec.n_head);
      auto& k = keep[static_cast<size_t>(layer)][static_cast<size_t>(head)];
      if (k != 0.0f) ++m_count[static_cast<size_t>(layer)];
      k = 0.0f;
    }
    for (size_t l = 0; l < keep.size(); ++l) {
      if (m_count[l] > 0) m_keep[l] = torch::tensor(keep[l], torch::kFloat32);
    }
    if (mode == HeadMaskMode::Mean) {
      RHEAD_CHECK(mean.defined() && mean.dim() == 3 && mean.size(0) == spec.n_layer &&
                      mean.size(1) == spec.n_head && mean.size(2) == spec.head_dim,
                  pipeline::ShapeError, "[model] head mask 'mean': mean tensor has shape ",
                  mean.defined() ? mean.sizes() : torch::IntArrayRef{}, ", expected [",
                  spec.n_layer, ", ", spec.n_head, ", ", spec.head_dim, "]");
      m_mean = mean.to(torch::kFloat32).contiguous();
    }
  }

  HeadMaskMode mode() const { return m_mode; }
  bool in_prefill() const { return m_in_prefill; }
  bool empty() const {
    for (auto c : m_count) if (c > 0) return false;
    return true;
  }
  // Whether any head of `layer` is masked.
  bool active(int64_t layer) const {
    return layer < static_cast<int64_t>(m_count.size()) && m_count[static_cast<size_t>(layer)] > 0;
  }
  // [n_head] fp32 on the CPU: 1 keep, 0 masked (defined only when active(layer)).
  const torch::Tensor& keep(int64_t layer) const { return m_keep[static_cast<size_t>(layer)]; }
  // [n_head, head_dim] fp32 (Mean mode only).
  torch::Tensor mean(int64_t layer) const { return m_mean[layer]; }

 private:
  HeadMaskMode m_mode = HeadMaskMode::Uniform;
  bool m_in_prefill = false;
  std::vector<torch::Tensor> m_keep;
  std::vector<int64_t> m_count;
  torch::Tensor m_mean;
};

}  // namespace models
