// Greedy generation as in the official detection code (PAPER.md 2.2, 4.6): prefill
// prompt[0 : T-1], then feed prompt[T-1] as the first decode step; every decode step's attention
// row covers all cached positions including the current token. Batched across sequences of
// different prompt lengths (left padding, results equal to unbatched runs) with per-sequence
// stopping: a finished sequence keeps riding along (its outputs are discarded) until all stop.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "models/capture.h"
#include "models/decoder.h"
#include "models/head_mask.h"

namespace models {

struct GenerationOptions {
  int64_t max_new_tokens = 50;
  std::vector<int64_t> stop_token_ids;  // stop after emitting one of these (it is kept)
  // Called after every generated token with sequence index and its generated ids so far (the new
  // one last); true stops that sequence. The step that produced the token is still captured.
  std::function<bool(int64_t seq, const std::vector<int64_t>& generated)> stop;
  const HeadMask* mask = nullptr;          // decode steps; prefill too when mask->in_prefill()
  std::optional<CaptureOptions> capture;   // record attention at decode steps
  bool keep_logits = false;                // keep every decode step's logits
  int64_t pad_token_id = 0;                // id placed in left-padding slots (never attended)
};

struct GenerationResult {
  std::vector<std::vector<int64_t>> tokens;  // generated ids per sequence (stop token included)
  std::vector<int64_t> n_steps;              // decode steps run per sequence (== tokens[b].size())
  std::vector<bool> stopped;                 // stop id / predicate fired (false: hit the cap)
  std::shared_ptr<AttentionCapture> capture; // [B, max_new_tokens, L, H] tensors, -1 past n_steps
  torch::Tensor logits;                      // keep_logits: [B, steps, vocab] fp32
};

GenerationResult generate_greedy(const Decoder& decoder,
                                 const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerationOptions& options = {});

}  // namespace models
