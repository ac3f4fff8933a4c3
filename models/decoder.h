// The generic decoder for the paper's families (Llama-2, Yi, Mistral, Qwen1.5/2, Mixtral):
// embedding -> n_layer x [RMSNorm -> GQA self-attention (RoPE, optional q/k/v/o bias, optional
// sliding window) -> residual -> RMSNorm -> SwiGLU MLP or sparse MoE -> residual] -> RMSNorm ->
// lm_head (or the tied embedding).
//
// Built from a ModelSpec plus a tensor lookup by CHECKPOINT name; logical names (embed, q_proj,
// expert_up_proj, ...) are resolved through spec.tensor_names ({layer}/{expert} substituted), every
// shape is checked against the spec (pipeline::ShapeError naming tensor, expected and found shape)
// and weights are converted to the compute dtype once, here. Reads no files: of the loading code
// it uses only checkpoint_tensor_name (model_config.h) and to_scalar_type (safetensors.h).
// Numerics follow HF transformers: RMSNorm and softmax in fp32, the rest in the compute dtype.
// Threads: the caller sets at::set_num_threads (LibTorch defaults to 1 on the project machines).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "models/attention.h"
#include "models/capture.h"
#include "models/head_mask.h"
#include "models/kv_cache.h"
#include "models/model_config.h"
#include "models/model_spec.h"
#include "models/safetensors.h"
#include "models/rope.h"

namespace models {

// Returns the checkpoint tensor with that exact name; throws (or returns an undefined tensor,
// which the decoder reports) when it does not exist.
using TensorLookup = std::function<torch::Tensor(const std::string& checkpoint_name)>;

struct DecoderOptions {
  DType compute_dtype = DType::Float32;  // Float32 or BFloat16 (Float16 only where supported)
  int64_t prefill_chunk = 256;           // query rows per attention block of a call; <= 0: whole call
  // Prompt rows per forward call of a prefill (models/generation.h, prefill_plan): the projections of a
  // call run as one product of this height, attention in prefill_chunk blocks; <= 0: one call.
  int64_t prefill_call = 512;
  torch::Device device = torch::kCPU;
};

struct ForwardOptions {
  bool all_logits = false;               // logits of every position, else only the last one
  const HeadMask* mask = nullptr;        // applied to every token of this call (caller decides)
  AttentionObserver* observer = nullptr; // single-token calls only (decode steps)
};

// Logical -> checkpoint tensor names: checkpoint_tensor_name() in models/model_config.h.

class Decoder {
 public:
  Decoder(const ModelSpec& spec, const TensorLookup& lookup, DecoderOptions options = {});

  const ModelSpec& spec() const { return m_spec; }
  const DecoderOptions& options() const { return m_options; }
  torch::ScalarType compute_dtype() const { return m_dtype; }
  void set_prefill_chunk(int64_t chunk) { m_options.prefill_chunk = chunk; }

  // An empty cache for `batch` sequences with room for `capacity` slots (grows when exceeded).
  KvCache new_cache(int64_t batch, int64_t capacity) const;

  // ids: [B, T] int64 appended to the cache (left-padded rows: see KvCache::set_padding; pad
  // slots may hold any valid id) -> logits [B, T or 1, vocab] fp32.
  torch::Tensor forward(const torch::Tensor& ids, KvCache& cache,
                        const ForwardOptions& options = {}) const;

  // One decode step of several independent sequences, each with its own one-sequence cache: ids[b] is
  // appended to caches[b], options[b] (mask, observer) applies to sequence b -> logits [B, vocab] fp32.
  // The projections run once for all rows (every weight read once per step instead of once per
  // sequence), attention per sequence. Where batch_invariant_decode() (fp32 on the CPU: the projections
  // use models/row_projection.h), row b is bit for bit what forward() gives for sequence b alone, so the
  // batch a caller forms never changes a result; elsewhere rows may differ from forward() by rounding.
  torch::Tensor decode_step(const std::vector<int64_t>& ids, const std::vector<KvCache*>& caches,
                            const std::vector<ForwardOptions>& options) const;
  bool batch_invariant_decode() const;
  // True when every row of a forward call depends only on its own token, the cache before the call and
  // the call's height and position, not on the other rows of the call (causal attention masks later
  // keys with exact zeros; each projection row is its own dot products). False for sparse MoE: tokens
  // are grouped per expert, so the height of an expert's product depends on where the other rows went.
  // models/generation.h relies on it to split a prefill call at a prompt's divergence point.
  bool prefill_rows_independent() const { return m_spec.mlp != MlpKind::SparseMoe; }

 private:
  struct Expert {
    torch::Tensor w_gate_up;  // [2F, D] (w1 ; w3)
    torch::Tensor w_down;     // [D, F]  (w2)
  };
  struct Layer {
    torch::Tensor attn_norm, mlp_norm;  // [D]
    AttentionWeights attn;
    torch::Tensor w_gate_up;  // [2F, D] dense SwiGLU (gate ; up)
    torch::Tensor w_down;     // [D, F]
    torch::Tensor router;     // [E, D] (MoE)
    std::vector<Expert> experts;
  };

  torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight) const;
  torch::Tensor mlp(const Layer& layer, const torch::Tensor& x) const;  // [B, T, D] -> [B, T, D]
  torch::Tensor moe(const Layer& layer, const torch::Tensor& x) const;  // [B, T, D] -> [B, T, D]
  // RMSNorm, then the MLP or MoE: the residual branch after attention. [B, T, D] -> [B, T, D]
  torch::Tensor feed_forward(const Layer& layer, const torch::Tensor& x) const;
  // The call description attention needs for `n_new` tokens appended to `cache` (positions, RoPE
  // tables, chunking, window, padding, mask, observer).
  AttentionCall attention_call(const KvCache& cache, int64_t n_new, const ForwardOptions& options) const;

  ModelSpec m_spec;
  DecoderOptions m_options;
  torch::ScalarType m_dtype;
  Rope m_rope;
  torch::Tensor m_embed;       // [V, D]
  torch::Tensor m_final_norm;  // [D]
  torch::Tensor m_lm_head;     // [V, D] (== m_embed when tied)
  std::vector<Layer> m_layers;
};

// to_scalar_type(DType): models/safetensors.h

}  // namespace models
