#include "models/head_outputs.h"

#include "models/capture.h"
#include "models/kv_cache.h"
#include "pipeline/core/error.h"

namespace models {

namespace {

// Sums every query head's attention output (probs @ V of its KV head) over the decode steps it observes.
// sum: [n_layer, n_head, head_dim] fp32.
class HeadOutputSum final : public AttentionObserver {
 public:
  HeadOutputSum(const ModelSpec& spec, KvCache& cache)
      : m_spec(spec),
        m_cache(cache),
        m_sum(torch::zeros({spec.n_layer, spec.n_head, spec.head_dim},
                           torch::dtype(torch::kFloat32).device(cache.device()))) {}

  // probs: [1, n_head, n_key] over cache slots [key_begin, key_begin + n_key).
  void on_decode_attention(int64_t layer, const torch::Tensor& probs, int64_t key_begin,
                           const torch::Tensor& /*pad*/) override {
    const int64_t n_key = probs.size(2);
    // values [n_kv, n_key, d]; query head h = kv * group + g, as in models/attention.cpp.
    torch::Tensor v = m_cache.values(layer).select(0, 0).narrow(1, key_begin, n_key).to(torch::kFloat32);
    torch::Tensor p = probs.select(0, 0).reshape({m_spec.n_kv_head, m_spec.n_group(), n_key});
    m_sum[layer] += torch::matmul(p, v).reshape({m_spec.n_head, m_spec.head_dim});
  }
  const torch::Tensor& sum() const { return m_sum; }

 private:
  const ModelSpec& m_spec;
  KvCache& m_cache;
  torch::Tensor m_sum;
};

}  // namespace

torch::Tensor mean_head_outputs(const Decoder& decoder, const std::vector<int64_t>& ids) {
  const int64_t n = static_cast<int64_t>(ids.size());
  RHEAD_CHECK(n >= 1, pipeline::InputError, "[ablate] mode mean: no haystack tokens to average head outputs over");
  KvCache cache = decoder.new_cache(1, n);
  HeadOutputSum sum(decoder.spec(), cache);
  ForwardOptions step;
  step.observer = &sum;
  torch::NoGradGuard no_grad;
  for (int64_t id : ids) {
    decoder.forward(torch::tensor(std::vector<int64_t>{id}, torch::kInt64).view({1, 1}), cache, step);
  }
  return (sum.sum() / static_cast<double>(n)).to(torch::kCPU).contiguous();
}

}  // namespace models
