#include "models/trainable.h"

#include <cmath>

#include "models/checkpoint.h"
#include "models/model_config.h"
#include "pipeline/core/error.h"

namespace models {
namespace {

bool is_norm(const std::string& logical) { return logical.find("norm") != std::string::npos; }
bool is_bias(const std::string& logical) { return logical.find("bias") != std::string::npos; }
bool is_output_projection(const std::string& logical) {
  return logical == "o_proj" || logical == "down_proj" || logical == "expert_down_proj";
}

}  // namespace

TrainableModel::TrainableModel(const ModelSpec& spec, uint64_t seed, double init_std)
    : m_spec((validate_model_spec(spec, "trainable model"), spec)), m_rope(spec) {
  auto gen = at::detail::createCPUGenerator(seed);
  const double out_std = init_std / std::sqrt(2.0 * static_cast<double>(spec.n_layer));
  for (const auto& t : expected_tensors(spec)) {
    if (!t.required) continue;  // tied lm_head
    torch::Tensor w;
    if (is_norm(t.logical)) {
      w = torch::ones(t.shape);
    } else if (is_bias(t.logical)) {
      w = torch::zeros(t.shape);
    } else {
      w = at::normal(0.0, is_output_projection(t.logical) ? out_std : init_std, t.shape, gen);
    }
    m_named.emplace_back(t.name, w.requires_grad_(true));
  }
  bind();
}

TrainableModel::TrainableModel(const ModelSpec& spec, const TensorMap& tensors)
    : m_spec((validate_model_spec(spec, "trainable model"), spec)), m_rope(spec) {
  validate_checkpoint(spec, tensors, "trainable model");
  for (const auto& t : expected_tensors(spec)) {
    if (!t.required) continue;
    torch::Tensor w = tensors.at(t.name).to(torch::kFloat32).clone();
    m_named.emplace_back(t.name, w.requires_grad_(true));
  }
  bind();
}

void TrainableModel::bind() {
  std::map<std::string, torch::Tensor> by_name(m_named.begin(), m_named.end());
  auto get = [&](const std::string& logical, int64_t layer = -1, int64_t expert = -1) {
    auto it = by_name.find(checkpoint_tensor_name(m_spec, logical, layer, expert));
    return it == by_name.end() ? torch::Tensor() : it->second;
  };
  m_embed = get("embed");
  m_final_norm = get("final_norm");
  m_lm_head = m_spec.tie_word_embeddings ? m_embed : get("lm_head");
  m_layers.assign(static_cast<size_t>(m_spec.n_layer), Layer{});
  for (int64_t l = 0; l < m_spec.n_layer; ++l) {
    Layer& y = m_layers[static_cast<size_t>(l)];
    y.attn_norm = get("attn_norm", l);
    y.mlp_norm = get("mlp_norm", l);
    y.q = get("q_proj", l);
    y.k = get("k_proj", l);
    y.v = get("v_proj", l);
    y.o = get("o_proj", l);
    if (m_spec.qkv_bias) {
      y.q_bias = get("q_bias", l);
      y.k_bias = get("k_bias", l);
      y.v_bias = get("v_bias", l);
    }
    if (m_spec.o_bias) y.o_bias = get("o_bias", l);
    if (m_spec.mlp == MlpKind::GatedSilu) {
      y.gate = get("gate_proj", l);
      y.up = get("up_proj", l);
      y.down = get("down_proj", l);
    } else {
      y.router = get("router", l);
      for (int64_t e = 0; e < m_spec.n_expert; ++e) {
        y.e_gate.push_back(get("expert_gate_proj", l, e));
        y.e_up.push_back(get("expert_up_proj", l, e));
        y.e_down.push_back(get("expert_down_proj", l, e));
      }
    }
  }
}

torch::Tensor TrainableModel::rms_norm(const torch::Tensor& x, const torch::Tensor& w) const {
  return w * (x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + m_spec.rms_norm_eps));
}

torch::Tensor TrainableModel::attention(const Layer& y, int64_t layer, const torch::Tensor& x,
                                        const torch::Tensor& cos, const torch::Tensor& sin) const {
  namespace F = torch::nn::functional;
  const int64_t B = x.size(0), T = x.size(1), KV = m_spec.n_kv_head, d = m_spec.head_dim;
  // Staged training: only the query heads the gate keeps are computed (a silenced head adds exactly
  // nothing, so leaving it out is the same function, and its q rows and o columns get no gradient).
  torch::Tensor q_w = y.q, q_b = y.q_bias, o_w = y.o, kept;  // kept: [H'] query heads, or undefined = all
  int64_t H = m_spec.n_head;
  if (!m_kept_heads.empty()) {
    kept = m_kept_heads[static_cast<size_t>(layer)];
    const torch::Tensor& rows = m_kept_rows[static_cast<size_t>(layer)];  // [H' d]: their q rows, o columns
    q_w = y.q.index_select(0, rows);
    if (q_b.defined()) q_b = q_b.index_select(0, rows);
    o_w = y.o.index_select(1, rows);
    H = kept.size(0);
  }
  auto q = F::linear(x, q_w, q_b).view({B, T, H, d}).transpose(1, 2);          // [B, H, T, d]
  auto k = F::linear(x, y.k, y.k_bias).view({B, T, KV, d}).transpose(1, 2);   // [B, KV, T, d]
  auto v = F::linear(x, y.v, y.v_bias).view({B, T, KV, d}).transpose(1, 2);   // [B, KV, T, d]
  q = Rope::apply(q, cos, sin);
  k = Rope::apply(k, cos, sin);
  if (kept.defined()) {  // query head h reads KV head h / (n_head / KV)
    auto kv_of = torch::div(kept, m_spec.n_head / KV, "floor");
    k = k.index_select(1, kv_of);
    v = v.index_select(1, kv_of);
  } else if (KV != H) {  // GQA: query head h reads KV head h / (H / KV)
    k = k.repeat_interleave(H / KV, 1);
    v = v.repeat_interleave(H / KV, 1);
  }
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(d));  // [B, H, T, T]
  auto pos = torch::arange(T, torch::kInt64);
  auto allowed = pos.view({-1, 1}) >= pos.view({1, -1});  // [T, T] query row >= key column
  if (m_spec.sliding_window && layer >= m_spec.sliding_window_first_layer) allowed = allowed & (pos.view({-1, 1}) - pos.view({1, -1}) < *m_spec.sliding_window);
  scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  auto out = torch::matmul(torch::softmax(scores, -1), v);  // [B, H, T, d]
  out = out.transpose(1, 2).reshape({B, T, H * d});
  return F::linear(out, o_w, y.o_bias);
}

torch::Tensor TrainableModel::mlp(const Layer& y, const torch::Tensor& x) const {
  namespace F = torch::nn::functional;
  return F::linear(torch::silu(F::linear(x, y.gate)) * F::linear(x, y.up), y.down);
}

torch::Tensor TrainableModel::moe(const Layer& y, const torch::Tensor& x) const {
  // Mixtral routing as in the Decoder: softmax over all experts, top-k, renormalised. Every expert runs
  // on every token and unselected ones get weight 0: wasteful (E x the FFN work) but simple, and the toy
  // zoo has 4 experts of a tiny FFN. Gradients reach the router through the renormalised top-k weights.
  namespace F = torch::nn::functional;
  auto routing = torch::softmax(F::linear(x, y.router), -1);                 // [B, T, E]
  auto [top, selected] = routing.topk(m_spec.n_expert_used, -1);              // [B, T, k]
  top = top / top.sum(-1, /*keepdim=*/true);
  auto weights = torch::zeros_like(routing).scatter(-1, selected, top);       // [B, T, E]
  torch::Tensor out = torch::zeros_like(x);
  for (int64_t e = 0; e < m_spec.n_expert; ++e) {
    const size_t i = static_cast<size_t>(e);
    auto h = F::linear(torch::silu(F::linear(x, y.e_gate[i])) * F::linear(x, y.e_up[i]), y.e_down[i]);
    out = out + h * weights.select(-1, e).unsqueeze(-1);
  }
  return out;
}

torch::Tensor TrainableModel::forward(const torch::Tensor& ids) const {
  RHEAD_CHECK(ids.dim() == 2 && ids.size(1) > 0 && ids.scalar_type() == torch::kInt64, pipeline::InputError,
              "[train] forward: ids must be int64 [B, T >= 1], got ", ids.sizes(), " ", ids.dtype());
  const int64_t B = ids.size(0), T = ids.size(1);
  auto positions = torch::arange(T, torch::kInt64).view({1, T}).expand({B, T});
  auto [cos, sin] = m_rope.cos_sin(positions, torch::kFloat32);
  auto x = torch::embedding(m_embed, ids);  // [B, T, D]
  for (size_t l = 0; l < m_layers.size(); ++l) {
    const Layer& y = m_layers[l];
    x = x + attention(y, static_cast<int64_t>(l), rms_norm(x, y.attn_norm), cos, sin);
    auto h = rms_norm(x, y.mlp_norm);
    x = x + (m_spec.mlp == MlpKind::SparseMoe ? moe(y, h) : mlp(y, h));
  }
  return torch::nn::functional::linear(rms_norm(x, m_final_norm), m_lm_head);
}

void TrainableModel::set_head_gate(torch::Tensor gate) {
  RHEAD_CHECK(!gate.defined() || gate.sizes() == torch::IntArrayRef({m_spec.n_layer, m_spec.n_head}),
              pipeline::ShapeError, "[train] head gate: expected [n_layer, n_head] = [", m_spec.n_layer, ", ",
              m_spec.n_head, "], got ", gate.sizes());
  m_kept_heads.clear();
  m_kept_rows.clear();
  if (!gate.defined()) return;
  RHEAD_CHECK(((gate == 0) | (gate == 1)).all().item<bool>(), pipeline::InputError,
              "[train] head gate: expected only 0 (silenced) and 1 (kept) entries");
  const int64_t d = m_spec.head_dim;
  for (int64_t l = 0; l < m_spec.n_layer; ++l) {
    torch::Tensor kept = gate[l].nonzero().view({-1}).to(torch::kInt64);  // [H']
    m_kept_heads.push_back(kept);
    m_kept_rows.push_back((kept.view({-1, 1}) * d + torch::arange(d, torch::kInt64).view({1, -1})).view({-1}));
  }
}

std::vector<torch::Tensor> TrainableModel::parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& [name, t] : m_named) out.push_back(t);
  return out;
}

TensorMap TrainableModel::tensors() const {
  TensorMap out;
  for (const auto& [name, t] : m_named) out[name] = t.detach().clone();
  return out;
}

torch::Tensor TrainableModel::head_output_norms() const {
  std::vector<torch::Tensor> rows;
  for (const auto& y : m_layers) {
    // o: [D, H*d] -> [D, H, d]; the norm over D and d leaves one value per head.
    auto blocks = y.o.view({m_spec.hidden_size, m_spec.n_head, m_spec.head_dim});
    rows.push_back(blocks.pow(2).sum(at::IntArrayRef{0, 2}).sqrt());
  }
  return torch::stack(rows);  // [L, H]
}

int64_t TrainableModel::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, t] : m_named) n += t.numel();
  return n;
}

TensorMap upcycle_to_moe(const ModelSpec& dense_spec, const TensorMap& dense, const ModelSpec& moe_spec,
                         uint64_t seed, double router_std) {
  RHEAD_CHECK(dense_spec.mlp == MlpKind::GatedSilu && moe_spec.mlp == MlpKind::SparseMoe, pipeline::InputError,
              "[train] upcycle: expected a dense source and a sparse-MoE target spec");
  RHEAD_CHECK(dense_spec.hidden_size == moe_spec.hidden_size && dense_spec.n_layer == moe_spec.n_layer &&
                  dense_spec.intermediate_size == moe_spec.intermediate_size &&
                  dense_spec.n_head == moe_spec.n_head && dense_spec.n_kv_head == moe_spec.n_kv_head &&
                  dense_spec.vocab_size == moe_spec.vocab_size,
              pipeline::InputError, "[train] upcycle: the MoE spec must keep every dimension of the dense one");
  validate_checkpoint(dense_spec, dense, "upcycle source");
  auto gen = at::detail::createCPUGenerator(seed);
  auto dense_of = [&](const std::string& logical, int64_t layer) {
    return dense.at(checkpoint_tensor_name(dense_spec, logical, layer, -1)).to(torch::kFloat32).clone();
  };
  TensorMap out;
  for (const auto& t : expected_tensors(moe_spec)) {
    if (!t.required) continue;
    if (t.logical == "router") {
      out[t.name] = at::normal(0.0, router_std, t.shape, gen);
    } else if (t.logical.rfind("expert_", 0) == 0) {
      out[t.name] = dense_of(t.logical.substr(7), t.layer);  // expert_up_proj <- up_proj
    } else {
      out[t.name] = dense_of(t.logical, t.layer);
    }
  }
  return out;
}

}  // namespace models
