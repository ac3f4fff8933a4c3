// A trainable twin of the generic decoder for the toy model zoo (stages/train): the same Llama / Qwen2 /
// Mixtral architecture (RMSNorm, RoPE, GQA, optional q/k/v bias, SwiGLU or top-k routed experts), written
// for autograd instead of speed: full causal attention over the whole sequence, no KV cache, no chunking.
// Its parameters ARE the checkpoint tensors (one leaf tensor per checkpoint name of
// expected_tensors(spec)), so saving is save_model_folder(dir, spec, model.tensors()) and the inference
// Decoder loads the result like any Hugging Face folder. Parity with the Decoder is tested in
// tests/models/test_trainable.cpp.
// fp32 only; threads: the caller sets at::set_num_threads.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/model_spec.h"
#include "models/rope.h"
#include "models/safetensors.h"

namespace models {

class TrainableModel {
 public:
  // Fresh weights: N(0, init_std) matrices (output projections scaled by 1/sqrt(2 n_layer), GPT-2
  // style), norms 1, biases 0; drawn from a generator seeded with `seed` (same seed -> same weights).
  TrainableModel(const ModelSpec& spec, uint64_t seed, double init_std = 0.02);
  // Weights from checkpoint tensors (fp32 copies): every tensor of expected_tensors(spec) that is
  // required must be present with its expected shape (pipeline::ShapeError / InputError otherwise).
  TrainableModel(const ModelSpec& spec, const TensorMap& tensors);

  const ModelSpec& spec() const { return m_spec; }

  // ids [B, T] int64 -> logits [B, T, vocab] fp32. Positions 0..T-1 (no padding); causal attention
  // (with the spec's sliding window, if any).
  torch::Tensor forward(const torch::Tensor& ids) const;

  // Leaf tensors with requires_grad, for the optimizer (checkpoint order).
  std::vector<torch::Tensor> parameters() const;
  // Detached copies keyed by checkpoint name (what save_model_folder writes).
  TensorMap tensors() const;
  int64_t parameter_count() const;

  // Frobenius norm of each query head's block of the output projection, [n_layer, n_head] fp32, with
  // autograd: o[:, h*d:(h+1)*d] is all head h writes into the residual stream. Their sum is a group-lasso
  // penalty that makes a head either matter or fall silent (stages/train's head_sparsity).
  torch::Tensor head_output_norms() const;

  // Staged training (stages/train's start_heads): gate [n_layer, n_head] of 0 and 1, 1 = the query head
  // takes part, 0 = silenced: not computed at all (the same function as zeroing its output before o_proj),
  // so its q rows and o_proj columns get no gradient. An undefined tensor (the default) = every head.
  void set_head_gate(torch::Tensor gate);

 private:
  struct Layer {
    torch::Tensor attn_norm, mlp_norm;        // [D]
    torch::Tensor q, k, v, o;                 // [Hd, D], [KVd, D], [KVd, D], [D, Hd]
    torch::Tensor q_bias, k_bias, v_bias;     // [Hd], [KVd], [KVd] (qkv_bias only)
    torch::Tensor o_bias;                     // [D] (o_bias only)
    torch::Tensor gate, up, down;             // [F, D], [F, D], [D, F] (dense MLP)
    torch::Tensor router;                     // [E, D] (MoE)
    std::vector<torch::Tensor> e_gate, e_up, e_down;  // per expert (MoE)
  };

  void bind();  // m_named -> m_embed, m_layers, ... (after m_named is filled)
  torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w) const;
  torch::Tensor attention(const Layer& y, int64_t layer, const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin) const;                       // [B, T, D]
  torch::Tensor mlp(const Layer& layer, const torch::Tensor& x) const;           // [B, T, D]
  torch::Tensor moe(const Layer& layer, const torch::Tensor& x) const;           // [B, T, D]

  ModelSpec m_spec;
  Rope m_rope;
  std::vector<std::pair<std::string, torch::Tensor>> m_named;  // checkpoint name -> leaf, checkpoint order
  torch::Tensor m_embed, m_final_norm, m_lm_head;
  std::vector<Layer> m_layers;
  // set_head_gate: per layer, the kept query heads [H'] and their q rows / o columns [H' * head_dim];
  // empty = every head.
  std::vector<torch::Tensor> m_kept_heads, m_kept_rows;
};

// Sparse upcycling (Komatsuzaki et al. 2023, as Mixtral-style MoE): a dense checkpoint -> the tensors of
// `moe_spec` (same dimensions, mlp = SparseMoe): every expert starts as a copy of the dense layer's
// gate/up/down; routers are N(0, router_std) from `seed` (identical experts make the upcycled model
// compute exactly what the dense one did, whatever the router says). Attention, norms and embeddings
// are copied. Names are mapped through both specs' tensor tables.
TensorMap upcycle_to_moe(const ModelSpec& dense_spec, const TensorMap& dense, const ModelSpec& moe_spec,
                         uint64_t seed, double router_std = 0.02);

}  // namespace models
