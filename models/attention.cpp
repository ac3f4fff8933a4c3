#include "models/attention.h"

#include <cmath>
#include <limits>

#include "models/projection.h"
#include "models/row_projection.h"
#include "pipeline/core/error.h"

namespace models {

AttentionCall::ChunkMask AttentionCall::chunk_mask(int64_t c0, int64_t n_rows, int64_t k0, int64_t n_keys,
                                                   std::optional<int64_t> window) const {
  const int64_t q_first = t0 + c0;  // slot of the first query row
  // Keys run up to the chunk's last query row (k0 + n_keys == q_first + n_rows), so the causal part
  // is the last n_rows keys; the window part is needed when some key is W or more slots before some
  // query; padding anywhere.
  const bool need_causal = n_rows > 1;
  const bool need_window = window && (q_first + n_rows - 1) - k0 >= *window;
  if (!need_window && !has_padding) {
    if (!need_causal) return {};
    // Only the diagonal block [C, C] is masked: a strict upper triangle of -inf, the same for every
    // layer and every chunk of C rows (memoised). Adding it to the last C key columns leaves the other
    // logits untouched instead of adding zeros to the whole [C, T_k] block.
    if (m_triangle.size(-1) != n_rows) {
      m_triangle = torch::full({n_rows, n_rows}, -std::numeric_limits<float>::infinity(),
                               torch::dtype(torch::kFloat32).device(pad.device()))
                       .triu_(1);
    }
    return {m_triangle, n_keys - n_rows};
  }
  const bool single = (c0 == 0 && n_rows == n_new);
  const int memo = window ? 1 : 0;
  if (single && m_single_chunk_done[memo]) return {m_single_chunk_mask[memo], 0};
  auto idx = torch::dtype(torch::kInt64).device(pad.device());
  auto q = torch::arange(q_first, q_first + n_rows, idx).view({1, -1, 1});  // [1, C, 1]
  auto k = torch::arange(k0, k0 + n_keys, idx).view({1, 1, -1});           // [1, 1, T_k]
  auto p = pad.view({-1, 1, 1});                                            // [B, 1, 1]
  auto allowed = (k <= q) & (k >= p);
  if (window) allowed = allowed & (q - k < *window);
  // Padded query rows (q < pad) would see no key: let them see themselves (their output is
  // never used, and no NaN enters the computation).
  allowed = allowed | ((k == q) & (q < p));  // [B, C, T_k]
  torch::Tensor result = torch::zeros(allowed.sizes(), torch::dtype(torch::kFloat32).device(pad.device()))
                             .masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity())
                             .unsqueeze(1)
                             .unsqueeze(1);  // [B, 1, 1, C, T_k]
  if (single) {
    m_single_chunk_mask[memo] = result;
    m_single_chunk_done[memo] = true;
  }
  return {result, 0};
}

torch::Tensor attention_forward(const ModelSpec& spec, const AttentionWeights& w,
                                const torch::Tensor& x, int64_t layer, KvCache& cache,
                                const AttentionCall& call) {
  return project(attention_core(spec, project(x, w.w_qkv, w.b_qkv), layer, cache, call), w.w_o, w.b_o);
}

torch::Tensor attention_core(const ModelSpec& spec, const torch::Tensor& qkv, int64_t layer, KvCache& cache,
                             const AttentionCall& call) {
  const int64_t batch = qkv.size(0);
  const int64_t n_new = qkv.size(1);
  const int64_t n_head = spec.n_head;
  const int64_t n_kv = spec.n_kv_head;
  const int64_t group = spec.n_group();
  const int64_t d = spec.head_dim;
  const auto dtype = qkv.scalar_type();

  auto q = qkv.narrow(-1, 0, n_head * d).view({batch, n_new, n_head, d}).transpose(1, 2);
  auto k = qkv.narrow(-1, n_head * d, n_kv * d).view({batch, n_new, n_kv, d}).transpose(1, 2);
  auto v = qkv.narrow(-1, (n_head + n_kv) * d, n_kv * d)
               .view({batch, n_new, n_kv, d})
               .transpose(1, 2);  // [B, n_kv, T, d]
  q = Rope::apply(q, call.cos, call.sin);  // [B, H, T, d] contiguous
  k = Rope::apply(k, call.cos, call.sin);

  cache.keys(layer).narrow(2, call.t0, n_new).copy_(k);
  cache.values(layer).narrow(2, call.t0, n_new).copy_(v);

  const HeadMask* mask = call.mask;
  const bool masked = mask != nullptr && mask->active(layer);
  if (masked && mask->mode() == HeadMaskMode::Uniform) {
    // Official code: query_states[:, head] = 0 after RoPE and the cache update.
    auto keep = mask->keep(layer).to(q.device(), dtype).view({1, n_head, 1, 1});
    q = q * keep;
  }

  const std::optional<int64_t> window = call.window(layer);
  const double sqrt_d = std::sqrt(static_cast<double>(d));
  // Chunks are aligned to absolute slots (multiples of `chunk`), so a row's keys, and with them its
  // floating-point result, are the same whether the prefill started at slot 0 or after a reused prefix
  // (models/generation.h PrefixCache).
  const int64_t chunk = std::max<int64_t>(1, call.chunk);
  torch::Tensor out;  // [B, H, T, d]
  const bool one_chunk = n_new <= chunk - call.t0 % chunk;
  if (!one_chunk) out = torch::empty({batch, n_head, n_new, d}, q.options());
  for (int64_t c0 = 0, rows = 0; c0 < n_new; c0 += rows) {
    rows = std::min(chunk - (call.t0 + c0) % chunk, n_new - c0);
    const int64_t k_end = call.t0 + c0 + rows;  // keys up to the last query row (causal)
    int64_t k0 = 0;
    if (window) k0 = std::max<int64_t>(0, call.t0 + c0 - *window + 1);
    const int64_t n_keys = k_end - k0;
    auto keys = cache.keys(layer).narrow(2, k0, n_keys);      // [B, n_kv, T_k, d]
    auto values = cache.values(layer).narrow(2, k0, n_keys);  // [B, n_kv, T_k, d]
    // q chunk: [B, H, C, d] -> [B, n_kv, group * C, d] (query head h = kv * group + g)
    auto qc = (rows == n_new ? q : q.narrow(2, c0, rows)).reshape({batch, n_kv, group * rows, d});
    // A decode step in fp32 on the CPU: q K^T and P V with the row kernels (models/row_projection.h),
    // which stream each head's keys and values once; a GEMM of `group` rows packs them first, and
    // was 70 % of a batched decode step's attention at 1K tokens.
    const bool row_kernels = rows == 1 && dtype == torch::kFloat32 && qc.device().is_cpu() &&
                             cache.keys(layer).is_contiguous() && cache.values(layer).is_contiguous();
    const int64_t capacity = cache.keys(layer).size(2);
    torch::Tensor scores;  // [B, n_kv, group * C, T_k]
    if (row_kernels) {
      const torch::Tensor qh = qc.contiguous();
      scores = torch::empty({batch, n_kv, group, n_keys}, qc.options());
      for (int64_t bh = 0; bh < batch * n_kv; ++bh) {
        row_projection(qh.data_ptr<float>() + bh * group * d, group,
                       cache.keys(layer).data_ptr<float>() + (bh * capacity + k0) * d, n_keys, d, nullptr,
                       scores.data_ptr<float>() + bh * group * n_keys);
      }
    } else {
      scores = torch::matmul(qc, keys.transpose(-1, -2));
    }
    scores.div_(sqrt_d);  // HF: matmul(q, k^T) / sqrt(d) in the compute dtype
    // fp32 logits (a no-op view of `scores` in fp32 compute; the mask is added in place)
    auto logits = scores.to(torch::kFloat32).view({batch, n_kv, group, rows, n_keys});
    const AttentionCall::ChunkMask add = call.chunk_mask(c0, rows, k0, n_keys, window);
    if (add.mask.defined()) logits.narrow(-1, add.first_key, n_keys - add.first_key).add_(add.mask);
    auto probs = torch::softmax(logits, -1);  // fp32 [B, n_kv, group, C, T_k]
    if (call.observer != nullptr) {
      RHEAD_CHECK(n_new == 1, pipeline::InternalError,
                  "[model] attention observer given for a forward call of ", n_new,
                  " tokens; observers only see decode steps (1 token)");
      call.observer->on_decode_attention(layer, probs.view({batch, n_head, n_keys}), k0, call.pad);
    }
    torch::Tensor oc;  // [B, H, C, d]
    if (row_kernels) {
      const torch::Tensor ph = probs.contiguous();
      oc = torch::empty({batch, n_head, rows, d}, qc.options());
      for (int64_t bh = 0; bh < batch * n_kv; ++bh) {
        row_combination(ph.data_ptr<float>() + bh * group * n_keys, group,
                        cache.values(layer).data_ptr<float>() + (bh * capacity + k0) * d, n_keys, d,
                        oc.data_ptr<float>() + bh * group * d);
      }
    } else {
      oc = torch::matmul(probs.to(dtype).view({batch, n_kv, group * rows, n_keys}), values)
               .view({batch, n_head, rows, d});
    }
    if (rows == n_new) {
      out = oc;
    } else {
      out.narrow(2, c0, rows).copy_(oc);
    }
  }

  if (masked && mask->mode() != HeadMaskMode::Uniform) {
    auto keep = mask->keep(layer).to(out.device(), dtype).view({1, n_head, 1, 1});
    out = out * keep;
    if (mask->mode() == HeadMaskMode::Mean) {
      auto fill = (1.0 - mask->keep(layer)).view({n_head, 1}) * mask->mean(layer);  // [H, d]
      out = out + fill.to(out.device(), dtype).view({1, n_head, 1, d});
    }
  }

  return out.transpose(1, 2).reshape({batch, n_new, n_head * d});  // [B, T, H d]
}

}  // namespace models
