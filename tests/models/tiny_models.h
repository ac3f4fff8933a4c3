// Tiny random models of every family the decoder supports, with HF-style checkpoint names, for
// parity tests and the bench. Attention and lm_head weights are scaled up so that softmax rows and
// logits are peaky (argmax ties unlikely).
#pragma once

#include <string>
#include <vector>

#include "models/decoder.h"
#include "models/model_spec.h"
#include "tests/models/naive_reference.h"

namespace tiny {

struct Model {
  models::ModelSpec spec;
  naive::WeightMap weights;
  models::TensorLookup lookup() const;  // reads from `weights` (captures this object by reference)
};

// Family names: llama (MHA), mistral (GQA + sliding window 6), qwen2 (q/k/v bias), mixtral (MoE
// top-2 of 4, GQA), yi (GQA 8 query / 2 KV heads), llama_linear (linear rope x4, tied embedding,
// o_proj bias). qwen2 also has a window of 5 on layers >= 1 (max_window_layers style).
std::vector<std::string> family_names();
models::ModelSpec make_spec(const std::string& family);
Model make_model(const std::string& family, uint64_t seed = 1234);
// Random weights for any spec (used by the bench with a bigger spec).
naive::WeightMap random_weights(const models::ModelSpec& spec, uint64_t seed);

}  // namespace tiny
