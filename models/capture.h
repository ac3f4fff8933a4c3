// Attention observer for decode steps, and the standard observer that records per (layer, query
// head) the argmax position of the attention row (the paper's copy-paste test), optionally the
// top-k positions and the attention mass inside a [begin, end) span per sequence.
//
// The decoder calls AttentionObserver::on_decode_attention once per layer for every forward call
// of ONE token (a decode step); it never materialises a prefill attention matrix for anyone.
//
// Tie rule of the argmax: LOWEST POSITION wins, computed on the fp32 softmax row. The official
// code argmaxes the row after casting it to bf16 (torch.topk, ties implementation-defined); set
// CaptureOptions::argmax_on_bf16_row to cast first (ties in bf16 then also go to the lowest index).
// top-k uses torch::topk (sorted, descending); its order among exactly tied values is
// implementation-defined. Masked heads: see head_mask.h (uniform rows report the first key).
#pragma once

#include <torch/torch.h>

#include <utility>
#include <vector>

namespace models {

class AttentionObserver {
 public:
  virtual ~AttentionObserver() = default;
  // probs: [B, n_head, n_key] fp32 softmax rows of this layer for the current token, over cache
  //   slots [key_begin, key_begin + n_key) (key_begin > 0 only with a sliding window).
  // pad: [B] int64, leading pad slots per sequence: slot s is position s - pad[b].
  virtual void on_decode_attention(int64_t layer, const torch::Tensor& probs, int64_t key_begin,
                                   const torch::Tensor& pad) = 0;
};

struct CaptureOptions {
  bool argmax = true;               // record argmax positions
  bool argmax_on_bf16_row = false;  // mimic the official code: argmax of the bf16-cast row
  int64_t top_k = 0;                // > 0: also record the top-k positions and probabilities
  // Per sequence [begin, end) in token positions; empty: no span mass. One pair per sequence.
  std::vector<std::pair<int64_t, int64_t>> spans;
};

// Records into preallocated tensors (no host sync per layer):
//   argmax:    [B, max_steps, n_layer, n_head] int32 position (-1 where no step ran)
//   top_pos:   [B, max_steps, n_layer, n_head, k] int32, top_prob: [..., k] fp32
//   span_mass: [B, max_steps, n_layer, n_head] fp32
class AttentionCapture : public AttentionObserver {
 public:
  AttentionCapture(int64_t batch, int64_t max_steps, int64_t n_layer, int64_t n_head,
                   CaptureOptions options, torch::Device device = torch::kCPU);

  // Selects the step index the next on_decode_attention calls write to.
  void set_step(int64_t step);
  void on_decode_attention(int64_t layer, const torch::Tensor& probs, int64_t key_begin,
                           const torch::Tensor& pad) override;
  // Marks steps >= n_steps[b] of sequence b as not run (argmax/top_pos -1, probabilities 0) and
  // makes argmax() available.
  void finalize(const std::vector<int64_t>& n_steps);

  const CaptureOptions& options() const { return m_options; }
  const torch::Tensor& argmax() const { return m_argmax; }
  const torch::Tensor& top_pos() const { return m_top_pos; }
  const torch::Tensor& top_prob() const { return m_top_prob; }
  const torch::Tensor& span_mass() const { return m_span_mass; }

 private:
  // argmax and span mass of CPU fp32 rows, computed on the host (top-k stays with torch).
  void record_on_host(int64_t layer, const torch::Tensor& probs, int64_t key_begin, const torch::Tensor& pad);

  CaptureOptions m_options;
  int64_t m_batch;
  int64_t m_max_steps;
  int64_t m_step = 0;
  torch::Tensor m_argmax_steps;  // [B, max_steps, L, H] int64, written per decode step
  torch::Tensor m_argmax, m_top_pos, m_top_prob, m_span_mass;  // m_argmax: int32, set by finalize()
  bool m_pad_known = false, m_any_pad = false;
  torch::Tensor m_span_begin, m_span_end;  // [B] int64 positions
};

}  // namespace models
