// Rotary position embedding, Hugging Face "rotate_half" convention (Llama/Mistral/Qwen2/Mixtral):
//   inv_freq[i] = 1 / theta^(2i / d), angle(p, i) = t(p) * inv_freq[i], emb = cat(angle, angle),
//   x' = x * cos(emb) + rotate_half(x) * sin(emb),  rotate_half(x) = cat(-x[d/2:], x[:d/2]).
// Scaling (ModelSpec::rope_scaling):
//   Linear   t(p) = p / factor (HF LlamaLinearScalingRotaryEmbedding).
//   Dynamic  NTK: when seq_len > max_position_embeddings the base becomes
//            theta * (factor * seq_len / max_pos - (factor - 1))^(d / (d - 2)), where seq_len is the
//            sequence's highest position in this forward call + 1 (HF >= 4.38 semantics, stateless;
//            HF 4.37 kept the largest base seen so far. Keys already cached keep their rotation.)
// cos/sin are computed in fp32 (like HF's cache) and cast to the compute dtype before use.
#pragma once

#include <torch/torch.h>

#include "models/model_spec.h"

namespace models {

class Rope {
 public:
  explicit Rope(const ModelSpec& spec);

  // positions: [B, T] int64 (>= 0) -> {cos, sin}: [B, 1, T, head_dim] in `dtype`, on positions' device.
  std::pair<torch::Tensor, torch::Tensor> cos_sin(const torch::Tensor& positions,
                                                  torch::ScalarType dtype) const;

  // x: [B, n, T, d], cos/sin: [B, 1, T, d] -> [B, n, T, d] (new tensor).
  static torch::Tensor apply(const torch::Tensor& x, const torch::Tensor& cos,
                             const torch::Tensor& sin);

 private:
  torch::Tensor inv_freq_for_base(double base, const torch::Device& device) const;  // [d/2] fp32

  int64_t m_head_dim;
  double m_theta;
  RopeScaling m_scaling;
  double m_factor;
  int64_t m_max_position;
};

}  // namespace models
