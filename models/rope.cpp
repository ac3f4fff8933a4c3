#include "models/rope.h"

#include <cmath>

#include "pipeline/core/error.h"

namespace models {

Rope::Rope(const ModelSpec& spec)
    : m_head_dim(spec.head_dim),
      m_theta(spec.rope_theta),
      m_scaling(spec.rope_scaling),
      m_factor(spec.rope_scaling_factor),
      m_max_position(spec.max_position_embeddings) {
  RHEAD_CHECK(m_head_dim > 0 && m_head_dim % 2 == 0, pipeline::ConfigError,
              "[model] head_dim: got ", m_head_dim, ", expected a positive even number (RoPE)");
  RHEAD_CHECK(m_theta > 0, pipeline::ConfigError, "[model] rope_theta: got ", m_theta,
              ", expected > 0");
  if (m_scaling != RopeScaling::None) {
    RHEAD_CHECK(m_factor > 0, pipeline::ConfigError, "[model] rope_scaling.factor: got ", m_factor,
                ", expected > 0");
  }
  if (m_scaling == RopeScaling::Dynamic) {
    RHEAD_CHECK(m_max_position > 0, pipeline::ConfigError,
                "[model] max_position_embeddings: got ", m_max_position,
                ", expected > 0 for dynamic NTK rope scaling");
  }
}

torch::Tensor Rope::inv_freq_for_base(double base, const torch::Device& device) const {
  // HF: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), all in fp32.
  auto exponent = torch::arange(0, m_head_dim, 2, torch::dtype(torch::kInt64).device(device))
                      .to(torch::kFloat32) /
                  static_cast<double>(m_head_dim);
  return 1.0 / torch::pow(base, exponent);
}

std::pair<torch::Tensor, torch::Tensor> Rope::cos_sin(const torch::Tensor& positions,
                                                      torch::ScalarType dtype) const {
  // positions: [B, T] -> t: [B, T, 1] fp32
  auto t = positions.to(torch::kFloat32).unsqueeze(-1);
  torch::Tensor inv_freq;  // [d/2] or [B, 1, d/2]
  if (m_scaling == RopeScaling::Linear) {
    t = t / m_factor;
  }
  if (m_scaling == RopeScaling::Dynamic) {
    const int64_t batch = positions.size(0);
    auto max_pos = std::get<0>(positions.max(1)).cpu();  // [B]: one host read per call
    std::vector<torch::Tensor> rows;
    rows.reserve(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t seq_len = max_pos[b].item<int64_t>() + 1;
      double base = m_theta;
      if (seq_len > m_max_position) {
        base = m_theta * std::pow(m_factor * static_cast<double>(seq_len) /
                                          static_cast<double>(m_max_position) -
                                      (m_factor - 1.0),
                                  static_cast<double>(m_head_dim) /
                                      static_cast<double>(m_head_dim - 2));
      }
      rows.push_back(inv_freq_for_base(base, positions.device()));
    }
    inv_freq = torch::stack(rows).unsqueeze(1);  // [B, 1, d/2]
  } else {
    inv_freq = inv_freq_for_base(m_theta, positions.device());
  }
  auto freqs = t * inv_freq;                       // [B, T, d/2]
  auto emb = torch::cat({freqs, freqs}, -1);       // [B, T, d]
  return {emb.cos().to(dtype).unsqueeze(1), emb.sin().to(dtype).unsqueeze(1)};
}

torch::Tensor Rope::apply(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  auto rotated = torch::cat({-x2, x1}, -1);
  return x * cos + rotated * sin;
}

}  // namespace models
