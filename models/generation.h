// Greedy generation as in the official detection code (docs/PAPER_NOTES.md, "Retrieval score"): prefill
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
  // One prompt at a time: start the prefill after the part this prompt shares with the previous prompt
  // run through this cache (ignored for batches > 1 and masked prefills).
  PrefixCache* prefix_cache = nullptr;
  // One prompt at a time: the position where this prompt departs from the prompts it shares a prefix
  // with (a NIAH needle's first token), or -1. See PrefillCall: with it, the next prompt through a
  // prefix cache reuses the previous one's rows up to its own split, not only up to a chunk boundary.
  // Part of the prefill's definition, cache or not, so results never depend on reuse.
  int64_t prefill_split = -1;
};

struct GenerationResult {
  std::vector<std::vector<int64_t>> tokens;  // generated ids per sequence (stop token included)
  std::vector<int64_t> n_steps;              // decode steps run per sequence (== tokens[b].size())
  std::vector<bool> stopped;                 // stop id / predicate fired (false: hit the cap)
  std::shared_ptr<AttentionCapture> capture; // [B, max_new_tokens, L, H] tensors, -1 past n_steps
  torch::Tensor logits;                      // keep_logits: [B, steps, vocab] fp32
};

// One forward call of a prefill: slots [begin, end) are computed, the cache keeps [begin, keep).
// A prefill runs one call per DecoderOptions::prefill_call slots, aligned to slot 0 (the last call may
// be shorter); a prompt without a split (below) runs calls of prefill_chunk slots, since it can only
// reuse whole calls. With a split s (GenerationOptions::prefill_split) strictly inside a call [a, b), that
// call runs twice: {a, b, s}, keeping the rows before s, then {s, b, b}. A row's bits depend only on the
// tokens up to it and the shape of its call (Decoder::prefill_rows_independent), so the rows before s
// are what any prompt with the same tokens up to s computes in that call, whatever follows; the price is
// b - s extra rows when nothing is reused. No split where rows are not independent (sparse MoE) or in a
// padded batch. (prefill_in_chunks below always runs calls of prefill_call slots.)
struct PrefillCall {
  int64_t begin = 0, end = 0, keep = 0;
  bool operator==(const PrefillCall& o) const { return begin == o.begin && end == o.end && keep == o.keep; }
};
// The calls that append slots [first, last) to a cache (call <= 0: one call), split at `split` (-1: none).
std::vector<PrefillCall> prefill_plan(int64_t first, int64_t last, int64_t call, int64_t split = -1);

// The KV cache of the last prompt, kept for the next one. In a NIAH grid every prompt of one haystack
// starts with the same haystack tokens up to its needle, so run in order of decreasing needle position
// each prompt recomputes only its needle and what follows (about half the prefill over a depth sweep).
// Results are bit-identical to a fresh prefill: the new prompt's prefill calls (prefill_plan) are
// compared in order with the previous prompt's, and a call's kept rows are reused while the call has
// the same slots, kept at least as far by the previous prompt, over tokens common to both; each reused
// row was computed by the same operations on the same values as a fresh prefill would compute it. With
// splits at the needles, that is every row before the needle; without, the whole calls before it. A
// row-by-row argument alone would not do: BLAS may round a row differently in a GEMM of another height.
// With prefill_call <= 0 and no splits, a prompt reuses only an identical previous prefill.
class PrefixCache {
 public:
  int64_t reused_tokens() const { return m_reused; }      // prefill tokens taken from the cache
  int64_t computed_tokens() const { return m_computed; }  // prefill rows computed (all rows of every call)

 private:
  friend struct PrefillPrompts;  // generation.cpp: the prefill of generate_greedy(_each)
  std::optional<KvCache> m_cache;  // slots [0, m_ids.size()) hold m_ids' prefill
  const Decoder* m_decoder = nullptr;
  std::vector<int64_t> m_ids;
  std::vector<PrefillCall> m_plan;  // the calls that computed m_ids' prefill (a prefix of them while it runs)
  int64_t m_reused = 0, m_computed = 0;
};

// Appends ids [B, T] to the cache as one forward call per DecoderOptions::prefill_call slots
// (prefill_plan without a split: calls aligned to slot 0): the prefill of generate_greedy. Peak
// activations are [B, call, max(D, 2 d_ff)] and the attention logits [B, H, chunk, T] instead of
// [B, T, ...] and [B, H, T, T].
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
