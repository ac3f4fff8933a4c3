#include "models/decoder.h"

#include <sstream>

#include "models/projection.h"
#include "pipeline/core/error.h"

namespace models {
namespace {

std::string shape_str(torch::IntArrayRef shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

// The decoder accepts exactly the specs the loader accepts (models/model_config.cpp).
void validate_spec(const ModelSpec& s) { validate_model_spec(s, "decoder"); }

}  // namespace

Decoder::Decoder(const ModelSpec& spec, const TensorLookup& lookup, DecoderOptions options)
    : m_spec(spec), m_options(options), m_dtype(to_scalar_type(options.compute_dtype)),
      m_rope((validate_spec(spec), spec)) {
  const int64_t D = spec.hidden_size, F = spec.intermediate_size, V = spec.vocab_size;
  const int64_t qd = spec.q_dim(), kvd = spec.kv_dim();
  auto load = [&](const std::string& logical, std::vector<int64_t> expected, int64_t layer = -1,
                  int64_t expert = -1) {
    const std::string name = checkpoint_tensor_name(spec, logical, layer, expert);
    torch::Tensor t = lookup(name);
    RHEAD_CHECK(t.defined(), pipeline::InputError, "[model] ", name, " (", logical,
                "): missing from the checkpoint");
    RHEAD_CHECK(t.sizes() == torch::IntArrayRef(expected), pipeline::ShapeError, "[model] ", name,
                " (", logical, "): shape ", shape_str(t.sizes()), " in checkpoint, expected ",
                shape_str(expected), " from the model spec");
    RHEAD_CHECK(t.is_floating_point(), pipeline::InputError, "[model] ", name, ": dtype ",
                t.dtype(), ", expected a floating-point tensor");
    return t.to(m_options.device, m_dtype).contiguous();
  };

  m_embed = load("embed", {V, D});
  m_final_norm = load("final_norm", {D});
  m_lm_head = spec.tie_word_embeddings ? m_embed : load("lm_head", {V, D});
  m_layers.resize(static_cast<size_t>(spec.n_layer));
  for (int64_t l = 0; l < spec.n_layer; ++l) {
    Layer& layer = m_layers[static_cast<size_t>(l)];
    layer.attn_norm = load("attn_norm", {D}, l);
    layer.mlp_norm = load("mlp_norm", {D}, l);
    layer.attn.w_qkv = torch::cat(
        {load("q_proj", {qd, D}, l), load("k_proj", {kvd, D}, l), load("v_proj", {kvd, D}, l)});
    if (spec.qkv_bias) {
      layer.attn.b_qkv = torch::cat(
          {load("q_bias", {qd}, l), load("k_bias", {kvd}, l), load("v_bias", {kvd}, l)});
    }
    layer.attn.w_o = load("o_proj", {D, qd}, l);
    if (spec.o_bias) layer.attn.b_o = load("o_bias", {D}, l);
    if (spec.mlp == MlpKind::GatedSilu) {
      layer.w_gate_up = torch::cat({load("gate_proj", {F, D}, l), load("up_proj", {F, D}, l)});
      layer.w_down = load("down_proj", {D, F}, l);
    } else {
      layer.router = load("router", {spec.n_expert, D}, l);
      for (int64_t e = 0; e < spec.n_expert; ++e) {
        Expert expert;
        expert.w_gate_up = torch::cat(
            {load("expert_gate_proj", {F, D}, l, e), load("expert_up_proj", {F, D}, l, e)});
        expert.w_down = load("expert_down_proj", {D, F}, l, e);
        layer.experts.push_back(std::move(expert));
      }
    }
  }
}

KvCache Decoder::new_cache(int64_t batch, int64_t capacity) const {
  return KvCache(m_spec.n_layer, batch, m_spec.n_kv_head, m_spec.head_dim, capacity, m_dtype,
                 m_options.device);
}

torch::Tensor Decoder::rms_norm(const torch::Tensor& x, const torch::Tensor& weight) const {
  // HF LlamaRMSNorm: fp32 variance, cast back to the input dtype, then times the weight.
  auto xf = x.to(torch::kFloat32);
  auto variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  auto normed = xf * torch::rsqrt(variance + m_spec.rms_norm_eps);
  return weight * normed.to(x.scalar_type());
}

torch::Tensor Decoder::mlp(const Layer& layer, const torch::Tensor& x) const {
  const int64_t F = m_spec.intermediate_size;
  auto gate_up = project(x, layer.w_gate_up);  // [B, T, 2F]
  auto hidden = torch::silu(gate_up.narrow(-1, 0, F)) * gate_up.narrow(-1, F, F);
  return project(hidden, layer.w_down);
}

torch::Tensor Decoder::moe(const Layer& layer, const torch::Tensor& x) const {
  // HF MixtralSparseMoeBlock: fp32 softmax over router logits, top-k, renormalised top-k weights
  // (cast to the compute dtype), experts applied to their tokens, index_add in expert order.
  const int64_t F = m_spec.intermediate_size;
  auto flat = x.reshape({-1, x.size(-1)});                                  // [N, D]
  auto router_logits = project(flat, layer.router);  // [N, E]
  auto routing = torch::softmax(router_logits.to(torch::kFloat32), -1);
  auto [weights, selected] = routing.topk(m_spec.n_expert_used, -1);      // [N, k]
  weights = (weights / weights.sum(-1, /*keepdim=*/true)).to(flat.scalar_type());
  auto out = torch::zeros_like(flat);
  for (int64_t e = 0; e < m_spec.n_expert; ++e) {
    auto hits = (selected == e).nonzero();  // [M, 2]: (token, slot)
    if (hits.size(0) == 0) continue;
    auto tokens = hits.select(1, 0);
    auto slots = hits.select(1, 1);
    const Expert& expert = layer.experts[static_cast<size_t>(e)];
    auto gate_up = project(flat.index_select(0, tokens), expert.w_gate_up);
    auto hidden = torch::silu(gate_up.narrow(-1, 0, F)) * gate_up.narrow(-1, F, F);
    auto y = project(hidden, expert.w_down);  // [M, D]
    auto w = weights.index({tokens, slots}).unsqueeze(-1);           // [M, 1]
    out.index_add_(0, tokens, y * w);
  }
  return out.view(x.sizes());
}

AttentionCall Decoder::attention_call(const KvCache& cache, int64_t n_new, const ForwardOptions& options) const {
  AttentionCall call;
  call.t0 = cache.length();
  call.n_new = n_new;
  // Unchunked: one chunk spanning every slot up to this call's last one.
  call.chunk = m_options.prefill_chunk > 0 ? m_options.prefill_chunk : call.t0 + n_new;
  call.sliding_window = m_spec.sliding_window;
  call.sliding_window_first_layer = m_spec.sliding_window_first_layer;
  call.pad = cache.pad();
  call.has_padding = cache.has_padding();
  call.mask = (options.mask != nullptr && !options.mask->empty()) ? options.mask : nullptr;
  call.observer = options.observer;
  auto slots = torch::arange(call.t0, call.t0 + n_new, torch::dtype(torch::kInt64).device(m_options.device));
  auto positions = (slots.view({1, -1}) - cache.pad().view({-1, 1})).clamp_min(0);  // [B, T]
  std::tie(call.cos, call.sin) = m_rope.cos_sin(positions, m_dtype);
  return call;
}

torch::Tensor Decoder::feed_forward(const Layer& layer, const torch::Tensor& x) const {
  auto h = rms_norm(x, layer.mlp_norm);
  return m_spec.mlp == MlpKind::SparseMoe ? moe(layer, h) : mlp(layer, h);
}

torch::Tensor Decoder::forward(const torch::Tensor& ids, KvCache& cache,
                               const ForwardOptions& options) const {
  RHEAD_CHECK(ids.dim() == 2 && ids.size(0) == cache.batch() && ids.size(1) > 0,
              pipeline::InputError, "[model] forward: ids shape ", shape_str(ids.sizes()),
              ", expected [", cache.batch(), ", T >= 1]");
  RHEAD_CHECK(cache.n_layer() == m_spec.n_layer && cache.dtype() == m_dtype,
              pipeline::InputError, "[model] forward: KV cache does not belong to this decoder");
  RHEAD_CHECK(options.observer == nullptr || ids.size(1) == 1, pipeline::InputError,
              "[model] forward: an attention observer needs a single-token call, got ",
              ids.size(1), " tokens");
  torch::NoGradGuard no_grad;
  const int64_t n_new = ids.size(1);
  cache.reserve(cache.length() + n_new);
  const AttentionCall call = attention_call(cache, n_new, options);

  auto x = torch::embedding(m_embed, ids.to(m_options.device));  // [B, T, D]
  for (int64_t l = 0; l < m_spec.n_layer; ++l) {
    const Layer& layer = m_layers[static_cast<size_t>(l)];
    x = x + attention_forward(m_spec, layer.attn, rms_norm(x, layer.attn_norm), l, cache, call);
    x = x + feed_forward(layer, x);
  }
  cache.advance(n_new);
  if (!options.all_logits) x = x.narrow(1, n_new - 1, 1);
  x = rms_norm(x, m_final_norm);
  return project(x, m_lm_head).to(torch::kFloat32);
}

bool Decoder::batch_invariant_decode() const {
  return m_dtype == torch::kFloat32 && m_options.device.is_cpu();
}

torch::Tensor Decoder::decode_step(const std::vector<int64_t>& ids, const std::vector<KvCache*>& caches,
                                   const std::vector<ForwardOptions>& options) const {
  const auto n = static_cast<int64_t>(ids.size());
  RHEAD_CHECK(n > 0 && caches.size() == ids.size() && options.size() == ids.size(), pipeline::InputError,
              "[model] decode_step: ", ids.size(), " ids, ", caches.size(), " caches, ", options.size(),
              " options; expected the same number >= 1");
  torch::NoGradGuard no_grad;
  std::vector<AttentionCall> calls;
  for (int64_t b = 0; b < n; ++b) {
    KvCache& cache = *caches[static_cast<size_t>(b)];
    RHEAD_CHECK(cache.batch() == 1 && cache.n_layer() == m_spec.n_layer && cache.dtype() == m_dtype,
                pipeline::InputError, "[model] decode_step: cache ", b,
                " is not a one-sequence KV cache of this decoder (batch ", cache.batch(), ")");
    RHEAD_CHECK(!options[static_cast<size_t>(b)].all_logits, pipeline::InputError,
                "[model] decode_step: all_logits makes no sense for one token");
    cache.reserve(cache.length() + 1);
    calls.push_back(attention_call(cache, 1, options[static_cast<size_t>(b)]));
  }
  auto x = torch::embedding(m_embed, torch::tensor(ids, torch::kInt64).to(m_options.device).view({n, 1}));  // [B, 1, D]
  std::vector<torch::Tensor> heads(static_cast<size_t>(n));
  for (int64_t l = 0; l < m_spec.n_layer; ++l) {
    const Layer& layer = m_layers[static_cast<size_t>(l)];
    // The projections see every sequence's row at once (W read once); attention runs per sequence on its
    // own cache. The ops are attention_forward's, so each row equals a forward() of its sequence alone
    // wherever the projections are batch invariant (batch_invariant_decode()).
    auto qkv = project(rms_norm(x, layer.attn_norm), layer.attn.w_qkv, layer.attn.b_qkv);  // [B, 1, (H + 2 n_kv) d]
    for (int64_t b = 0; b < n; ++b) {
      heads[static_cast<size_t>(b)] = attention_core(m_spec, qkv.narrow(0, b, 1), l, *caches[static_cast<size_t>(b)],
                                                     calls[static_cast<size_t>(b)]);
    }
    x = x + project(torch::cat(heads, 0), layer.attn.w_o, layer.attn.b_o);
    x = x + feed_forward(layer, x);
  }
  for (KvCache* cache : caches) cache->advance(1);
  x = rms_norm(x, m_final_norm);
  return project(x, m_lm_head).to(torch::kFloat32).view({n, -1});  // [B, V]
}

}  // namespace models
