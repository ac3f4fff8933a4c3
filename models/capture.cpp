#include "models/capture.h"

#include <algorithm>

#include "models/row_projection.h"
#include "pipeline/core/error.h"

namespace models {

AttentionCapture::AttentionCapture(int64_t batch, int64_t max_steps, int64_t n_layer,
                                   int64_t n_head, CaptureOptions options, torch::Device device)
    : m_options(std::move(options)), m_batch(batch), m_max_steps(max_steps) {
  RHEAD_CHECK(batch > 0 && max_steps >= 0, pipeline::InputError, "[capture] batch ", batch,
              ", max_steps ", max_steps, ": expected batch > 0 and max_steps >= 0");
  auto i32 = torch::dtype(torch::kInt32).device(device);
  auto f32 = torch::dtype(torch::kFloat32).device(device);
  // Written as int64 (argmax's own dtype: one kernel per layer writes the slot), handed out as int32.
  if (m_options.argmax) m_argmax_steps = torch::full({batch, max_steps, n_layer, n_head}, -1, i32.dtype(torch::kInt64));
  if (m_options.top_k > 0) {
    m_top_pos = torch::full({batch, max_steps, n_layer, n_head, m_options.top_k}, -1, i32);
    m_top_prob = torch::zeros({batch, max_steps, n_layer, n_head, m_options.top_k}, f32);
  }
  if (!m_options.spans.empty()) {
    RHEAD_CHECK(static_cast<int64_t>(m_options.spans.size()) == batch, pipeline::InputError,
                "[capture] spans: got ", m_options.spans.size(), ", expected one per sequence (",
                batch, ")");
    std::vector<int64_t> begin, end;
    for (const auto& [b, e] : m_options.spans) {
      RHEAD_CHECK(0 <= b && b <= e, pipeline::InputError, "[capture] span [", b, ", ", e,
                  "): expected 0 <= begin <= end");
      begin.push_back(b);
      end.push_back(e);
    }
    m_span_begin = torch::tensor(begin, torch::kInt64).to(device);
    m_span_end = torch::tensor(end, torch::kInt64).to(device);
    m_span_mass = torch::zeros({batch, max_steps, n_layer, n_head}, f32);
  }
}

void AttentionCapture::set_step(int64_t step) {
  RHEAD_CHECK(step >= 0 && step < m_max_steps, pipeline::InputError, "[capture] step ", step,
              " out of range [0, ", m_max_steps, ")");
  m_step = step;
}

void AttentionCapture::on_decode_attention(int64_t layer, const torch::Tensor& probs,
                                           int64_t key_begin, const torch::Tensor& pad) {
  // probs: [B, H, K] fp32; positions of key k for sequence b: key_begin + k - pad[b].
  const int64_t n_key = probs.size(2);
  if (!m_pad_known) {  // the padding is fixed for a whole generation: one host sync per capture
    m_any_pad = pad.ne(0).any().item<bool>();
    m_pad_known = true;
  }
  torch::Tensor offset_memo;  // [B, 1] key_begin - pad[b]: slot index -> position, made when needed
  auto offset = [&]() -> const torch::Tensor& {
    if (!offset_memo.defined()) offset_memo = (key_begin - pad).view({-1, 1});
    return offset_memo;
  };
  // m_argmax_steps / m_span_mass live on the decoder's device: the CPU when probs do.
  const bool host = probs.device().is_cpu() && probs.scalar_type() == torch::kFloat32 && pad.device().is_cpu() &&
                    !m_options.argmax_on_bf16_row;
  if (host) {
    // The CPU fp32 path (every decode step of a CPU run): one pass over each row on the host, where the
    // torch ops below cost ~40 us of dispatch per layer, as much as a batched decode step's projections.
    record_on_host(layer, probs.contiguous(), key_begin, pad);
    if (m_options.top_k == 0) return;
  } else if (m_options.argmax) {
    // torch::argmax returns the first maximal index (lowest position wins). Slot index -> position
    // only where they differ (padding or a sliding window): a decode step costs one kernel per layer.
    auto row = m_options.argmax_on_bf16_row ? probs.to(torch::kBFloat16) : probs;
    auto dst = m_argmax_steps.select(1, m_step).select(1, layer);  // [B, H]
    torch::argmax_out(dst, row, -1);
    if (key_begin != 0 || m_any_pad) dst.add_(offset());
  }
  if (m_options.top_k > 0) {
    const int64_t k = std::min(m_options.top_k, n_key);
    auto [values, idx] = probs.topk(k, -1, /*largest=*/true, /*sorted=*/true);  // [B, H, k]
    auto pos_dst = m_top_pos.select(1, m_step).select(1, layer);
    auto prob_dst = m_top_prob.select(1, m_step).select(1, layer);
    pos_dst.narrow(-1, 0, k).copy_(idx + offset().unsqueeze(-1));
    prob_dst.narrow(-1, 0, k).copy_(values);
  }
  if (m_span_mass.defined() && !host) {
    // Span in slots: [begin + pad - key_begin, end + pad - key_begin) of this row.
    auto key = torch::arange(n_key, torch::dtype(torch::kInt64).device(probs.device()));
    auto pos = key.view({1, -1}) + offset();  // [B, K] positions
    auto inside = (pos >= m_span_begin.view({-1, 1})) & (pos < m_span_end.view({-1, 1}));
    auto mass = torch::bmm(probs, inside.to(torch::kFloat32).unsqueeze(-1)).squeeze(-1);  // [B, H]
    m_span_mass.select(1, m_step).select(1, layer).copy_(mass);
  }
}

void AttentionCapture::record_on_host(int64_t layer, const torch::Tensor& probs, int64_t key_begin,
                                      const torch::Tensor& pad) {
  if (!m_options.argmax && !m_span_mass.defined()) return;
  const int64_t n_head = probs.size(1), n_key = probs.size(2);
  const int64_t n_layer = m_options.argmax ? m_argmax_steps.size(2) : m_span_mass.size(2);
  const float* p = probs.data_ptr<float>();
  const int64_t* pad_of = pad.data_ptr<int64_t>();
  // [B, max_steps, n_layer, n_head] contiguous host tensors: this step and layer's [B, H] entries.
  const auto at = [&](int64_t b, int64_t h) { return ((b * m_max_steps + m_step) * n_layer + layer) * n_head + h; };
  int64_t* argmax = m_options.argmax ? m_argmax_steps.data_ptr<int64_t>() : nullptr;
  float* span_mass = m_span_mass.defined() ? m_span_mass.data_ptr<float>() : nullptr;
  for (int64_t b = 0; b < probs.size(0); ++b) {
    const int64_t offset = key_begin - pad_of[b];  // slot index -> position
    for (int64_t h = 0; h < n_head; ++h) {
      const float* row = p + (b * n_head + h) * n_key;
      if (m_options.argmax) argmax[at(b, h)] = row_argmax(row, n_key) + offset;  // torch::argmax's rule
      if (span_mass != nullptr) {
        const auto [begin, end] = m_options.spans[static_cast<size_t>(b)];
        double mass = 0;  // keys at positions [begin, end): slots [begin - offset, end - offset)
        for (int64_t k = std::max<int64_t>(0, begin - offset); k < std::min(n_key, end - offset); ++k) mass += row[k];
        span_mass[at(b, h)] = static_cast<float>(mass);
      }
    }
  }
}

void AttentionCapture::finalize(const std::vector<int64_t>& n_steps) {
  RHEAD_CHECK(static_cast<int64_t>(n_steps.size()) == m_batch, pipeline::InternalError,
              "[capture] finalize: ", n_steps.size(), " step counts for ", m_batch, " sequences");
  for (int64_t b = 0; b < m_batch; ++b) {
    const int64_t n = n_steps[static_cast<size_t>(b)];
    if (n >= m_max_steps) continue;
    const int64_t rest = m_max_steps - n;
    if (m_argmax_steps.defined()) m_argmax_steps[b].narrow(0, n, rest).fill_(-1);
    if (m_top_pos.defined()) {
      m_top_pos[b].narrow(0, n, rest).fill_(-1);
      m_top_prob[b].narrow(0, n, rest).fill_(0);
    }
    if (m_span_mass.defined()) m_span_mass[b].narrow(0, n, rest).fill_(0);
  }
  if (m_argmax_steps.defined()) m_argmax = m_argmax_steps.to(torch::kInt32);
}

}  // namespace models
