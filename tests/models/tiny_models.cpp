#include "tests/models/tiny_models.h"

#include <cmath>
#include <stdexcept>

namespace tiny {

std::vector<std::string> family_names() {
  return {"llama", "mistral", "qwen2", "mixtral", "yi", "llama_linear"};
}

models::ModelSpec make_spec(const std::string& family) {
  models::ModelSpec s;
  s.family = family;
  s.vocab_size = 101;
  s.hidden_size = 64;
  s.intermediate_size = 96;
  s.n_layer = 2;
  s.n_head = 4;
  s.n_kv_head = 4;
  s.head_dim = 16;
  s.max_position_embeddings = 256;
  s.rms_norm_eps = 1e-6;
  s.tensor_names = {
      {"embed", "model.embed_tokens.weight"},
      {"final_norm", "model.norm.weight"},
      {"lm_head", "lm_head.weight"},
      {"attn_norm", "model.layers.{layer}.input_layernorm.weight"},
      {"mlp_norm", "model.layers.{layer}.post_attention_layernorm.weight"},
      {"q_proj", "model.layers.{layer}.self_attn.q_proj.weight"},
      {"k_proj", "model.layers.{layer}.self_attn.k_proj.weight"},
      {"v_proj", "model.layers.{layer}.self_attn.v_proj.weight"},
      {"o_proj", "model.layers.{layer}.self_attn.o_proj.weight"},
      {"q_bias", "model.layers.{layer}.self_attn.q_proj.bias"},
      {"k_bias", "model.layers.{layer}.self_attn.k_proj.bias"},
      {"v_bias", "model.layers.{layer}.self_attn.v_proj.bias"},
      {"o_bias", "model.layers.{layer}.self_attn.o_proj.bias"},
      {"gate_proj", "model.layers.{layer}.mlp.gate_proj.weight"},
      {"up_proj", "model.layers.{layer}.mlp.up_proj.weight"},
      {"down_proj", "model.layers.{layer}.mlp.down_proj.weight"},
      {"router", "model.layers.{layer}.block_sparse_moe.gate.weight"},
      {"expert_gate_proj", "model.layers.{layer}.block_sparse_moe.experts.{expert}.w1.weight"},
      {"expert_up_proj", "model.layers.{layer}.block_sparse_moe.experts.{expert}.w3.weight"},
      {"expert_down_proj", "model.layers.{layer}.block_sparse_moe.experts.{expert}.w2.weight"},
  };
  if (family == "llama") {
    s.n_layer = 3;
  } else if (family == "mistral") {
    s.n_kv_head = 2;
    s.sliding_window = 6;
    s.rope_theta = 1e6;
  } else if (family == "qwen2") {
    s.qkv_bias = true;
    s.rope_theta = 1e6;
    s.sliding_window = 5;  // Qwen2 style: only layers >= max_window_layers use it
    s.sliding_window_first_layer = 1;
  } else if (family == "mixtral") {
    s.n_kv_head = 2;
    s.mlp = models::MlpKind::SparseMoe;
    s.n_expert = 4;
    s.n_expert_used = 2;
    s.intermediate_size = 48;
  } else if (family == "yi") {
    s.n_head = 8;
    s.n_kv_head = 2;
    s.head_dim = 8;
    s.rope_theta = 5e6;
  } else if (family == "llama_linear") {
    s.rope_scaling = models::RopeScaling::Linear;
    s.rope_scaling_factor = 4.0;
    s.tie_word_embeddings = true;
    s.o_bias = true;
  } else {
    throw std::invalid_argument("tiny: unknown family " + family);
  }
  return s;
}

naive::WeightMap random_weights(const models::ModelSpec& s, uint64_t seed) {
  torch::manual_seed(seed);
  naive::WeightMap w;
  const int64_t D = s.hidden_size, F = s.intermediate_size;
  auto name = [&](const std::string& logical, int64_t layer = -1, int64_t expert = -1) {
    return models::checkpoint_tensor_name(s, logical, layer, expert);
  };
  auto randn = [](std::vector<int64_t> shape, double std) { return torch::randn(shape) * std; };
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(D));
  w[name("embed")] = randn({s.vocab_size, D}, 1.0);
  w[name("final_norm")] = 1.0 + randn({D}, 0.1);
  if (!s.tie_word_embeddings) w[name("lm_head")] = randn({s.vocab_size, D}, 3.0 * inv_sqrt_d);
  for (int64_t l = 0; l < s.n_layer; ++l) {
    w[name("attn_norm", l)] = 1.0 + randn({D}, 0.1);
    w[name("mlp_norm", l)] = 1.0 + randn({D}, 0.1);
    w[name("q_proj", l)] = randn({s.q_dim(), D}, 2.0 * inv_sqrt_d);  // peaky attention
    w[name("k_proj", l)] = randn({s.kv_dim(), D}, 2.0 * inv_sqrt_d);
    w[name("v_proj", l)] = randn({s.kv_dim(), D}, inv_sqrt_d);
    w[name("o_proj", l)] = randn({D, s.q_dim()}, 1.0 / std::sqrt(static_cast<double>(s.q_dim())));
    if (s.qkv_bias) {
      w[name("q_bias", l)] = randn({s.q_dim()}, 0.5);
      w[name("k_bias", l)] = randn({s.kv_dim()}, 0.5);
      w[name("v_bias", l)] = randn({s.kv_dim()}, 0.5);
    }
    if (s.o_bias) w[name("o_bias", l)] = randn({D}, 0.1);
    if (s.mlp == models::MlpKind::GatedSilu) {
      w[name("gate_proj", l)] = randn({F, D}, inv_sqrt_d);
      w[name("up_proj", l)] = randn({F, D}, inv_sqrt_d);
      w[name("down_proj", l)] = randn({D, F}, 1.0 / std::sqrt(static_cast<double>(F)));
    } else {
      w[name("router", l)] = randn({s.n_expert, D}, 2.0 * inv_sqrt_d);
      for (int64_t e = 0; e < s.n_expert; ++e) {
        w[name("expert_gate_proj", l, e)] = randn({F, D}, inv_sqrt_d);
        w[name("expert_up_proj", l, e)] = randn({F, D}, inv_sqrt_d);
        w[name("expert_down_proj", l, e)] = randn({D, F}, 1.0 / std::sqrt(static_cast<double>(F)));
      }
    }
  }
  return w;
}

Model make_model(const std::string& family, uint64_t seed) {
  Model m;
  m.spec = make_spec(family);
  m.weights = random_weights(m.spec, seed);
  return m;
}

models::TensorLookup Model::lookup() const {
  return [this](const std::string& name) -> torch::Tensor {
    auto it = weights.find(name);
    return it == weights.end() ? torch::Tensor() : it->second;
  };
}

}  // namespace tiny
