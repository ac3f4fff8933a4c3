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

class PrefixCache;

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
  // One prompt at a time: start the prefill after the whole prefill chunks this prompt shares with the
  // previous prompt run through this cache (ignored for batches > 1 and masked prefills).
  PrefixCache* prefix_cache = nullptr;
};

struct GenerationResult {
  std::vector<std::vector<int64_t>> tokens;  // generated ids per sequence (stop token included)
  std::vector<int64_t> n_steps;              // decode steps run per sequence (== tokens[b].size())
  std::vector<bool> stopped;                 // stop id / predicate fired (false: hit the cap)
  std::shared_ptr<AttentionCapture> capture; // [B, max_new_tokens, L, H] tensors, -1 past n_steps
  torch::Tensor logits;                      // keep_logits: [B, steps, vocab] fp32
};

// The KV cache of the last prompt, kept for the next one. In a NIAH grid every prompt of one haystack
// starts with the same haystack tokens up to its needle, so run in order of decreasing needle position
// each prompt recomputes only its needle and what follows (about half the prefill over a depth sweep).
// The prefill runs one forward call per `prefill_chunk` slots, and whole chunks of the common prefix
// are reused, so results are bit-identical to a fresh prefill: every chunk is computed by the same
// operations on the same shapes and values either way (causal: slot s depends on tokens <= s only). A
// row-by-row argument would not do: BLAS may round a row differently in a GEMM of another height.
// Needs prefill_chunk > 0 (with 0, nothing is reused).
class PrefixCache {
 public:
  int64_t reused_tokens() const { return m_reused; }      // prefill tokens taken from the cache
  int64_t computed_tokens() const { return m_computed; }  // prefill tokens computed

 private:
  friend struct PrefillPrompts;  // generation.cpp: the prefill of generate_greedy(_each)
  std::optional<KvCache> m_cache;  // slots [0, m_ids.size()) hold m_ids' prefill
  const Decoder* m_decoder = nullptr;
  std::vector<int64_t> m_ids;
  int64_t m_reused = 0, m_computed = 0;
};

// Appends ids [B, T] to the cache as one forward call per `prefill_chunk` slots (chunks aligned to slot
// 0; one call when prefill_chunk is 0): the prefill of generate_greedy. Peak activations are
// [B, chunk, max(D, 2 d_ff)] instead of [B, T, ...].
void prefill_in_chunks(const Decoder& decoder, const torch::Tensor& ids, KvCache& cache,
                       const ForwardOptions& options = {});

GenerationResult generate_greedy(const Decoder& decoder,
                                 const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerationOptions& options = {});

// Several prompts, each with its own options, generated as generate_greedy would generate each alone
// (result b is generate_greedy(decoder, {prompts[b]}, options[b])), but decoded together: the prompts are
// prefilled one after the other (through their prefix caches, in order, so reuse works as for single
// calls), each into a cache of its own, then every decode step feeds all unfinished sequences to
// Decoder::decode_step at once, so each weight is read once per step for all of them. Where
// decoder.batch_invariant_decode(), results are bit-identical to single calls whatever the batch; a
// caller must not batch otherwise if it needs that (the generate stage does not). Memory: one KV cache
// per prompt.
std::vector<GenerationResult> generate_greedy_each(const Decoder& decoder,
                                                   const std::vector<std::vector<int64_t>>& prompts,
                                                   const std::vector<GenerationOptions>& options);

}  // namespace models
