#include "tests/models/naive_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace naive {
namespace {

const torch::Tensor& get(const models::ModelSpec& spec, const WeightMap& w, const std::string& logical,
                         int64_t layer = -1, int64_t expert = -1) {
  std::string name = spec.tensor_names.at(logical);
  auto sub = [&](const std::string& key, int64_t value) {
    auto pos = name.find(key);
    if (pos != std::string::npos) name.replace(pos, key.size(), std::to_string(value));
  };
  sub("{layer}", layer);
  sub("{expert}", expert);
  auto it = w.find(name);
  if (it == w.end()) throw std::runtime_error("naive: missing weight " + name);
  return it->second;
}

torch::Tensor rmsnorm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  auto ms = (x * x).mean(-1, true);
  return weight * (x / torch::sqrt(ms + eps));
}

// x: [T, n, d], rotated by position p in place of a copy (HF rotate_half pairing i <-> i + d/2).
torch::Tensor rope(const models::ModelSpec& spec, const torch::Tensor& x) {
  const int64_t T = x.size(0), n = x.size(1), d = x.size(2), half = d / 2;
  auto out = x.clone();
  auto xa = x.accessor<float, 3>();
  auto oa = out.accessor<float, 3>();
  for (int64_t p = 0; p < T; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const float inv_freq =
          1.0f / std::pow(static_cast<float>(spec.rope_theta), static_cast<float>(2 * i) / d);
      float t = static_cast<float>(p);
      if (spec.rope_scaling == models::RopeScaling::Linear)
        t = t / static_cast<float>(spec.rope_scaling_factor);
      const float angle = t * inv_freq;
      const float c = std::cos(angle), s = std::sin(angle);
      for (int64_t h = 0; h < n; ++h) {
        const float a = xa[p][h][i], b = xa[p][h][i + half];
        oa[p][h][i] = a * c - b * s;
        oa[p][h][i + half] = b * c + a * s;
      }
    }
  }
  return out;
}

torch::Tensor mul_wt(const torch::Tensor& x, const torch::Tensor& w) { return torch::matmul(x, w.t()); }

torch::Tensor swiglu(const torch::Tensor& x, const torch::Tensor& gate, const torch::Tensor& up,
                     const torch::Tensor& down) {
  auto g = mul_wt(x, gate);
  return mul_wt(g * torch::sigmoid(g) * mul_wt(x, up), down);
}

}  // namespace

Output forward(const models::ModelSpec& spec, const WeightMap& w, const std::vector<int64_t>& ids,
               const HeadIntervention* iv) {
  torch::NoGradGuard no_grad;
  const int64_t T = static_cast<int64_t>(ids.size());
  const int64_t H = spec.n_head, KV = spec.n_kv_head, d = spec.head_dim;
  Output out;
  auto idt = torch::tensor(ids, torch::kInt64);
  auto x = get(spec, w, "embed").index_select(0, idt).clone();  // [T, D]
  for (int64_t l = 0; l < spec.n_layer; ++l) {
    auto h = rmsnorm(x, get(spec, w, "attn_norm", l), spec.rms_norm_eps);
    auto q = mul_wt(h, get(spec, w, "q_proj", l));
    auto k = mul_wt(h, get(spec, w, "k_proj", l));
    auto v = mul_wt(h, get(spec, w, "v_proj", l));
    if (spec.qkv_bias) {
      q = q + get(spec, w, "q_bias", l);
      k = k + get(spec, w, "k_bias", l);
      v = v + get(spec, w, "v_bias", l);
    }
    q = rope(spec, q.view({T, H, d}).contiguous());
    k = rope(spec, k.view({T, KV, d}).contiguous());
    v = v.view({T, KV, d});
    auto k_rep = k.repeat_interleave(H / KV, 1);  // [T, H, d]
    auto v_rep = v.repeat_interleave(H / KV, 1);
    auto probs = torch::zeros({H, T, T});
    auto head_out = torch::zeros({T, H, d});
    for (int64_t hd = 0; hd < H; ++hd) {
      auto qh = q.select(1, hd);  // [T, d]
      auto kh = k_rep.select(1, hd);
      auto vh = v_rep.select(1, hd);
      auto scores = torch::matmul(qh, kh.t()) / std::sqrt(static_cast<double>(d));
      std::vector<uint8_t> allowed_flat(static_cast<size_t>(T * T), 0);
      for (int64_t i = 0; i < T; ++i) {
        for (int64_t j = 0; j <= i; ++j) {
          if (spec.sliding_window && l >= spec.sliding_window_first_layer &&
              i - j >= *spec.sliding_window)
            continue;
          allowed_flat[static_cast<size_t>(i * T + j)] = 1;
        }
      }
      auto allowed = torch::from_blob(allowed_flat.data(), {T, T}, torch::kUInt8).to(torch::kBool);
      scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
      auto p = torch::softmax(scores, -1);
      const bool hit = iv != nullptr && iv->heads.count({l, hd}) > 0;
      if (hit && iv->kind == Intervention::Uniform) {
        for (int64_t i = iv->from_row; i < T; ++i) {
          auto row = allowed[i].to(torch::kFloat32);
          p[i] = row / row.sum();
        }
      }
      auto o = torch::matmul(p, vh);  // [T, d]
      if (hit && iv->kind != Intervention::Uniform) {
        for (int64_t i = iv->from_row; i < T; ++i) {
          if (iv->kind == Intervention::Zero) o[i] = torch::zeros({d});
          else o[i] = iv->mean[l][hd];
        }
      }
      probs[hd] = p;
      head_out.select(1, hd).copy_(o);
    }
    out.probs.push_back(probs);
    auto attn = mul_wt(head_out.reshape({T, H * d}), get(spec, w, "o_proj", l));
    if (spec.o_bias) attn = attn + get(spec, w, "o_bias", l);
    x = x + attn;
    h = rmsnorm(x, get(spec, w, "mlp_norm", l), spec.rms_norm_eps);
    if (spec.mlp == models::MlpKind::GatedSilu) {
      x = x + swiglu(h, get(spec, w, "gate_proj", l), get(spec, w, "up_proj", l),
                     get(spec, w, "down_proj", l));
    } else {
      auto moe = torch::zeros_like(h);
      const auto& router = get(spec, w, "router", l);
      for (int64_t t = 0; t < T; ++t) {
        auto ht = h[t];
        auto gate = torch::softmax(torch::matmul(router, ht), 0);  // [E]
        std::vector<std::pair<float, int64_t>> ranked;
        for (int64_t e = 0; e < spec.n_expert; ++e) ranked.push_back({gate[e].item<float>(), e});
        std::stable_sort(ranked.begin(), ranked.end(),
                         [](const auto& a, const auto& b) { return a.first > b.first; });
        float total = 0.0f;
        for (int64_t r = 0; r < spec.n_expert_used; ++r) total += ranked[static_cast<size_t>(r)].first;
        for (int64_t r = 0; r < spec.n_expert_used; ++r) {
          const auto [g, e] = ranked[static_cast<size_t>(r)];
          moe[t] += (g / total) * swiglu(ht.unsqueeze(0), get(spec, w, "expert_gate_proj", l, e),
                                         get(spec, w, "expert_up_proj", l, e),
                                         get(spec, w, "expert_down_proj", l, e))[0];
        }
      }
      x = x + moe;
    }
  }
  x = rmsnorm(x, get(spec, w, "final_norm"), spec.rms_norm_eps);
  const auto& head = spec.tie_word_embeddings ? get(spec, w, "embed") : get(spec, w, "lm_head");
  out.logits = mul_wt(x, head);
  return out;
}

Generation generate(const models::ModelSpec& spec, const WeightMap& weights,
                    const std::vector<int64_t>& prompt, int64_t n_steps,
                    const HeadIntervention* intervention, bool in_prefill) {
  Generation gen;
  std::vector<int64_t> seq = prompt;
  HeadIntervention iv;
  if (intervention != nullptr) {
    iv = *intervention;
    iv.from_row = in_prefill ? 0 : static_cast<int64_t>(prompt.size()) - 1;
  }
  for (int64_t s = 0; s < n_steps; ++s) {
    auto out = forward(spec, weights, seq, intervention != nullptr ? &iv : nullptr);
    const int64_t last = static_cast<int64_t>(seq.size()) - 1;
    std::vector<torch::Tensor> rows;
    for (const auto& p : out.probs) rows.push_back(p.select(1, last));  // [H, T]
    gen.last_rows.push_back(torch::stack(rows));
    gen.logits.push_back(out.logits[last]);
    const int64_t tok = out.logits[last].argmax().item<int64_t>();
    gen.tokens.push_back(tok);
    seq.push_back(tok);
  }
  return gen;
}

}  // namespace naive
