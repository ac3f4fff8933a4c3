// Self-attention of one decoder layer: fused q/k/v projection (+ optional bias), RoPE, KV-cache
// append, grouped-query attention without repeating K/V (queries reshaped to
// [B, n_kv, group * T, d] against K/V [B, n_kv, T_k, d]), causal + padding + sliding-window mask,
// fp32 softmax, o_proj (+ optional bias), head masking and the decode-step observer.
//
// Prefill runs in QUERY CHUNKS of `chunk` rows aligned to absolute cache slots, so the largest temporary
// is [B, n_head, chunk, T_k] fp32, O(T * chunk) rather than O(T^2). A decode step (T = 1) computes the
// exact softmax row of every query head, which is what the observer sees.
// Sliding window W: query at position i sees keys j with i - j < W (W keys including itself), as
// HF 4.36/4.37's eager mask and mistral-src; newer HF eager masks and flash-attn's window (W, W)
// admit i - j <= W. Only layers >= spec.sliding_window_first_layer use it (Qwen2 max_window_layers).
// LibTorch 1.13 has no public fused attention op (at::scaled_dot_product_attention arrived in 2.0);
// a future fast path for prefill could use it under `#if TORCH_VERSION_MAJOR >= 2` (not done: the
// GQA case would need repeated K/V before torch 2.5's enable_gqa).
#pragma once

#include <torch/torch.h>

#include <optional>
#include <vector>

#include "models/capture.h"
#include "models/head_mask.h"
#include "models/kv_cache.h"
#include "models/model_spec.h"
#include "models/rope.h"

namespace models {

// Per-forward-call attention geometry shared by all layers.
struct AttentionCall {
  int64_t t0 = 0;      // cache slots already filled before this call
  int64_t n_new = 0;   // T, tokens of this call (slots [t0, t0 + T))
  int64_t chunk = 0;   // query rows per chunk (>= 1); chunks start at slots that are multiples of it
  std::optional<int64_t> sliding_window;  // for layers >= sliding_window_first_layer
  int64_t sliding_window_first_layer = 0;
  torch::Tensor pad;   // [B] int64 leading pad slots
  bool has_padding = false;
  torch::Tensor cos, sin;  // [B, 1, T, d] compute dtype
  const HeadMask* mask = nullptr;          // applied to every row of this call when set
  AttentionObserver* observer = nullptr;   // only for T == 1

  // The sliding window of `layer`, if any.
  std::optional<int64_t> window(int64_t layer) const {
    return layer >= sliding_window_first_layer ? sliding_window : std::nullopt;
  }
  // Additive fp32 mask of query chunk [c0, c0 + C) against key slots [k0, k0 + T_k) (the chunk's
  // keys end at its last query row), applied to key columns [first_key, T_k): without padding and
  // window the [C, C] causal triangle on the last C keys (memoised for all layers and chunks), else a
  // full [B, 1, 1, C, T_k] mask (memoised for single-chunk calls: one entry without and one with the
  // window). `mask` is undefined when nothing is masked.
  struct ChunkMask {
    torch::Tensor mask;
    int64_t first_key = 0;
  };
  ChunkMask chunk_mask(int64_t c0, int64_t n_rows, int64_t k0, int64_t n_keys, std::optional<int64_t> window) const;

 private:
  mutable torch::Tensor m_single_chunk_mask[2];
  mutable bool m_single_chunk_done[2] = {false, false};
  mutable torch::Tensor m_triangle;  // [C, C] strict upper triangle of -inf
};

struct AttentionWeights {
  torch::Tensor w_qkv;  // [(H + 2 n_kv) d, D]
  torch::Tensor b_qkv;  // [(H + 2 n_kv) d] or undefined
  torch::Tensor w_o;    // [D, H d]
  torch::Tensor b_o;    // [D] or undefined
};

// x: [B, T, D] (normed hidden states, compute dtype) -> [B, T, D]; writes K/V slots
// [call.t0, call.t0 + T) of `layer` in the cache. = project(attention_core(project(x, qkv)), o).
torch::Tensor attention_forward(const ModelSpec& spec, const AttentionWeights& w,
                                const torch::Tensor& x, int64_t layer, KvCache& cache,
                                const AttentionCall& call);

// Everything between the two projections: qkv [B, T, (H + 2 n_kv) d] (may be a view, e.g. one row of a
// larger batch) -> the heads' outputs merged, [B, T, H d]. Decoder::decode_step calls it per sequence.
torch::Tensor attention_core(const ModelSpec& spec, const torch::Tensor& qkv, int64_t layer, KvCache& cache,
                             const AttentionCall& call);

}  // namespace models
