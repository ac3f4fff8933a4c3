#include "models/generation.h"

#include <algorithm>

#include "pipeline/core/error.h"

namespace models {

std::vector<PrefillCall> prefill_plan(int64_t first, int64_t last, int64_t call, int64_t split) {
  std::vector<PrefillCall> plan;
  for (int64_t begin = first; begin < last;) {
    const int64_t end = call > 0 ? std::min(begin - begin % call + call, last) : last;
    if (split > begin && split < end) {
      plan.push_back({begin, end, split});
      plan.push_back({split, end, end});
    } else {
      plan.push_back({begin, end, end});
    }
    begin = end;
  }
  return plan;
}

namespace {

// Runs `calls` (absolute slots; calls.front().begin == cache.length()) over ids [B, n], whose column 0
// is slot `first_slot`.
void run_prefill_calls(const Decoder& decoder, const torch::Tensor& ids, int64_t first_slot,
                       const std::vector<PrefillCall>& calls, KvCache& cache, const ForwardOptions& options) {
  for (const PrefillCall& c : calls) {
    RHEAD_CHECK(cache.length() == c.begin, pipeline::InternalError, "[model] prefill call at slot ", c.begin,
                " on a cache of ", cache.length(), " slots");
    decoder.forward(ids.narrow(1, c.begin - first_slot, c.end - c.begin), cache, options);
    if (c.keep < c.end) cache.truncate(c.keep);
  }
}

void check_prompts(const ModelSpec& spec, const std::vector<std::vector<int64_t>>& prompts,
                   const GenerationOptions& options) {
  RHEAD_CHECK(!prompts.empty(), pipeline::InputError, "[generate] no prompts");
  RHEAD_CHECK(options.max_new_tokens >= 0, pipeline::InputError, "[generate] max_new_tokens ",
              options.max_new_tokens, ", expected >= 0");
  for (size_t b = 0; b < prompts.size(); ++b) {
    RHEAD_CHECK(!prompts[b].empty(), pipeline::InputError, "[generate] prompt ", b, " is empty");
    for (int64_t id : prompts[b]) {
      RHEAD_CHECK(id >= 0 && id < spec.vocab_size, pipeline::InputError, "[generate] prompt ", b,
                  ": token id ", id, " out of range [0, ", spec.vocab_size, ")");
    }
  }
}

struct Prefilled {
  KvCache* cache = nullptr;        // `local` or the prefix cache's
  std::vector<int64_t> first_ids;  // [B] prompt[T-1]: the first decode step's input
};

}  // namespace

void prefill_in_chunks(const Decoder& decoder, const torch::Tensor& ids, KvCache& cache,
                       const ForwardOptions& options) {
  const int64_t first = cache.length();
  run_prefill_calls(decoder, ids, first,
                    prefill_plan(first, first + ids.size(1), decoder.options().prefill_call), cache, options);
}

// prompt[0 : T-1] of every sequence into `local` (left-padded), or, for one prompt with a prefix cache
// and no mask in the prefill, into that cache after the part it shares with the previous prompt.
struct PrefillPrompts {
  static Prefilled run(const Decoder& decoder, const std::vector<std::vector<int64_t>>& prompts,
                       const GenerationOptions& options, KvCache& local);
};

Prefilled PrefillPrompts::run(const Decoder& decoder, const std::vector<std::vector<int64_t>>& prompts,
                              const GenerationOptions& options, KvCache& local) {
  const int64_t batch = static_cast<int64_t>(prompts.size());
  int64_t n_prefill = 0;  // padded prefill length: max over sequences of T_b - 1
  for (const auto& p : prompts) n_prefill = std::max<int64_t>(n_prefill, static_cast<int64_t>(p.size()) - 1);
  const HeadMask* mask = (options.mask != nullptr && !options.mask->empty()) ? options.mask : nullptr;
  const bool masked_prefill = mask != nullptr && mask->in_prefill();
  PrefixCache* reuse = (batch == 1 && !masked_prefill) ? options.prefix_cache : nullptr;
  if (reuse != nullptr && reuse->m_decoder != &decoder) {
    reuse->m_cache.reset();
    reuse->m_ids.clear();
    reuse->m_plan.clear();
    reuse->m_decoder = &decoder;
  }
  if (reuse == nullptr || !reuse->m_cache) {
    (reuse ? reuse->m_cache.emplace() : local) = decoder.new_cache(batch, n_prefill + options.max_new_tokens);
  }
  KvCache& cache = reuse ? *reuse->m_cache : local;
  // The prefill's calls (prefill_plan), the same whether reused or not, so a slot's bits never depend on
  // the prompt before; a split call keeps only rows whose bits do not depend on what follows.
  // A prompt without a split reuses whole calls only, so its calls stay at prefill_chunk rows: a
  // shallower prompt then recomputes at most one such call before its needle, as before prefill_call.
  const bool splits = batch == 1 && decoder.prefill_rows_independent() && options.prefill_split >= 0;
  const int64_t call = splits ? decoder.options().prefill_call : decoder.options().prefill_chunk;
  const std::vector<PrefillCall> plan = prefill_plan(0, n_prefill, call, splits ? options.prefill_split : -1);
  size_t first_call = 0;  // plan[0, first_call) is reused from the previous prompt
  int64_t n_kept = 0;     // its slots
  if (reuse != nullptr) {
    const auto& prompt = prompts[0];
    const auto& kept = reuse->m_ids;
    const size_t limit = std::min(kept.size(), static_cast<size_t>(n_prefill));
    int64_t common = 0;
    while (static_cast<size_t>(common) < limit && kept[static_cast<size_t>(common)] == prompt[static_cast<size_t>(common)]) {
      ++common;
    }
    // A call is reused when the previous prompt ran the same slots, kept its rows at least as far, and
    // the tokens up to the last kept row are common; after a call the two kept differently, nothing more.
    const auto& before = reuse->m_plan;
    while (first_call < plan.size() && first_call < before.size()) {
      const PrefillCall& now = plan[first_call];
      const PrefillCall& then = before[first_call];
      if (now.begin != then.begin || now.end != then.end || now.keep > then.keep || now.keep > common) break;
      n_kept = now.keep;
      ++first_call;
      if (now.keep != then.keep) break;
    }
    cache.truncate(n_kept);
    cache.reserve(n_prefill + options.max_new_tokens);
    reuse->m_ids.resize(static_cast<size_t>(n_kept));  // until the prefill below has finished
    reuse->m_plan.assign(plan.begin(), plan.begin() + static_cast<std::ptrdiff_t>(first_call));
    reuse->m_reused += n_kept;
    for (size_t i = first_call; i < plan.size(); ++i) reuse->m_computed += plan[i].end - plan[i].begin;
  }
  Prefilled out;
  out.cache = &cache;
  std::vector<int64_t> pad(static_cast<size_t>(batch));
  std::vector<int64_t> prefill_ids(static_cast<size_t>(batch * n_prefill), options.pad_token_id);
  out.first_ids.resize(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    const auto& p = prompts[static_cast<size_t>(b)];
    const int64_t len = static_cast<int64_t>(p.size()) - 1;
    pad[static_cast<size_t>(b)] = n_prefill - len;
    std::copy(p.begin(), p.end() - 1, prefill_ids.begin() + b * n_prefill + (n_prefill - len));
    out.first_ids[static_cast<size_t>(b)] = p.back();
  }
  if (reuse == nullptr) cache.set_padding(pad);  // a reused cache holds one unpadded sequence
  if (first_call < plan.size()) {
    ForwardOptions prefill;
    if (masked_prefill) prefill.mask = mask;
    auto ids = torch::tensor(prefill_ids, torch::kInt64).view({batch, n_prefill});
    run_prefill_calls(decoder, ids, 0, {plan.begin() + static_cast<std::ptrdiff_t>(first_call), plan.end()}, cache,
                      prefill);
  }
  if (reuse != nullptr) {
    reuse->m_ids.assign(prompts[0].begin(), prompts[0].end() - 1);
    reuse->m_plan = plan;
  }
  return out;
}

namespace {

// Appends generated token `next` of sequence b (of `result`) and applies the stop rules; true: stopped.
bool record_token(GenerationResult& result, int64_t b, int64_t next, int64_t step, const GenerationOptions& options) {
  auto& generated = result.tokens[static_cast<size_t>(b)];
  generated.push_back(next);
  result.n_steps[static_cast<size_t>(b)] = step + 1;
  const bool stop_id =
      std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), next) != options.stop_token_ids.end();
  if (stop_id || (options.stop && options.stop(b, generated))) {
    result.stopped[static_cast<size_t>(b)] = true;
    return true;
  }
  return false;
}

GenerationResult empty_result(int64_t batch) {
  GenerationResult result;
  result.tokens.resize(static_cast<size_t>(batch));
  result.n_steps.assign(static_cast<size_t>(batch), 0);
  result.stopped.assign(static_cast<size_t>(batch), false);
  return result;
}

}  // namespace

GenerationResult generate_greedy(const Decoder& decoder,
                                 const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerationOptions& options) {
  const ModelSpec& spec = decoder.spec();
  check_prompts(spec, prompts, options);
  const int64_t batch = static_cast<int64_t>(prompts.size());
  GenerationResult result = empty_result(batch);
  if (options.max_new_tokens == 0) return result;

  KvCache local;
  const Prefilled prefilled = PrefillPrompts::run(decoder, prompts, options, local);
  KvCache& cache = *prefilled.cache;
  if (options.capture) {
    result.capture = std::make_shared<AttentionCapture>(batch, options.max_new_tokens, spec.n_layer,
                                                        spec.n_head, *options.capture, decoder.options().device);
  }
  ForwardOptions step;
  step.mask = options.mask;
  step.observer = result.capture.get();
  std::vector<torch::Tensor> kept_logits;
  std::vector<bool> active(static_cast<size_t>(batch), true);
  int64_t n_active = batch;
  auto input = torch::tensor(prefilled.first_ids, torch::kInt64).view({batch, 1});
  for (int64_t s = 0; s < options.max_new_tokens && n_active > 0; ++s) {
    if (result.capture) result.capture->set_step(s);
    auto logits = decoder.forward(input, cache, step).select(1, 0);  // [B, V]
    if (options.keep_logits) kept_logits.push_back(logits);
    auto next = logits.argmax(-1).to(torch::kCPU);  // [B]; the one host sync per step
    const int64_t* next_ptr = next.data_ptr<int64_t>();
    for (int64_t b = 0; b < batch; ++b) {
      if (!active[static_cast<size_t>(b)]) continue;
      if (record_token(result, b, next_ptr[b], s, options)) {
        active[static_cast<size_t>(b)] = false;
        --n_active;
      }
    }
    input = next.view({batch, 1});
  }
  if (result.capture) result.capture->finalize(result.n_steps);
  if (options.keep_logits && !kept_logits.empty()) result.logits = torch::stack(kept_logits, 1);
  return result;
}

std::vector<GenerationResult> generate_greedy_each(const Decoder& decoder,
                                                   const std::vector<std::vector<int64_t>>& prompts,
                                                   const std::vector<GenerationOptions>& options) {
  const ModelSpec& spec = decoder.spec();
  RHEAD_CHECK(options.size() == prompts.size(), pipeline::InputError, "[generate] ", prompts.size(), " prompts but ",
              options.size(), " option sets");
  const size_t n = prompts.size();
  std::vector<GenerationResult> results;
  std::vector<KvCache> caches(n);  // each sequence's own, [0, T_b - 1) prefilled
  std::vector<int64_t> input(n);   // next decode input per sequence
  for (size_t b = 0; b < n; ++b) {
    check_prompts(spec, {prompts[b]}, options[b]);
    results.push_back(empty_result(1));
    if (options[b].max_new_tokens == 0) continue;
    KvCache local;
    const Prefilled prefilled = PrefillPrompts::run(decoder, {prompts[b]}, options[b], local);
    const int64_t n_prefill = static_cast<int64_t>(prompts[b].size()) - 1;
    // The prefix cache is needed by the next prompt: the sequence decodes in a copy.
    caches[b] = prefilled.cache == &local ? std::move(local)
                                          : prefilled.cache->copy_of_first(n_prefill, n_prefill + options[b].max_new_tokens);
    input[b] = prefilled.first_ids[0];
    if (options[b].capture) {
      results[b].capture = std::make_shared<AttentionCapture>(1, options[b].max_new_tokens, spec.n_layer, spec.n_head,
                                                              *options[b].capture, decoder.options().device);
    }
  }
  std::vector<std::vector<torch::Tensor>> kept_logits(n);
  std::vector<size_t> active;  // sequences still decoding, in prompt order
  for (size_t b = 0; b < n; ++b) {
    if (options[b].max_new_tokens > 0) active.push_back(b);
  }
  for (int64_t s = 0; !active.empty(); ++s) {
    std::vector<int64_t> ids;
    std::vector<KvCache*> step_caches;
    std::vector<ForwardOptions> step_options;
    for (size_t b : active) {
      if (results[b].capture) results[b].capture->set_step(s);
      ids.push_back(input[b]);
      step_caches.push_back(&caches[b]);
      ForwardOptions fo;
      fo.mask = options[b].mask;
      fo.observer = results[b].capture.get();
      step_options.push_back(fo);
    }
    auto logits = decoder.decode_step(ids, step_caches, step_options);  // [A, V]
    auto next = logits.argmax(-1).to(torch::kCPU);                      // [A]; the one host sync per step
    const int64_t* next_ptr = next.data_ptr<int64_t>();
    std::vector<size_t> still;
    for (size_t i = 0; i < active.size(); ++i) {
      const size_t b = active[i];
      if (options[b].keep_logits) kept_logits[b].push_back(logits.narrow(0, static_cast<int64_t>(i), 1));
      input[b] = next_ptr[i];
      const bool stopped = record_token(results[b], 0, next_ptr[i], s, options[b]);
      if (!stopped && s + 1 < options[b].max_new_tokens) still.push_back(b);
    }
    active = std::move(still);
  }
  for (size_t b = 0; b < n; ++b) {
    if (results[b].capture) results[b].capture->finalize(results[b].n_steps);
    if (!kept_logits[b].empty()) results[b].logits = torch::stack(kept_logits[b], 1);
  }
  return results;
}

}  // namespace models
