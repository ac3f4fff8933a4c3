#include "models/generation.h"

#include <algorithm>

#include "pipeline/core/error.h"

namespace models {

void prefill_in_chunks(const Decoder& decoder, const torch::Tensor& ids, KvCache& cache,
                       const ForwardOptions& options) {
  const int64_t chunk = decoder.options().prefill_chunk;
  const int64_t n = ids.size(1);
  for (int64_t i = 0; i < n;) {
    const int64_t slot = cache.length();
    const int64_t step = chunk > 0 ? std::min(chunk - slot % chunk, n - i) : n - i;
    decoder.forward(ids.narrow(1, i, step), cache, options);
    i += step;
  }
}

GenerationResult generate_greedy(const Decoder& decoder,
                                 const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerationOptions& options) {
  const ModelSpec& spec = decoder.spec();
  const int64_t batch = static_cast<int64_t>(prompts.size());
  RHEAD_CHECK(batch > 0, pipeline::InputError, "[generate] no prompts");
  RHEAD_CHECK(options.max_new_tokens >= 0, pipeline::InputError, "[generate] max_new_tokens ",
              options.max_new_tokens, ", expected >= 0");
  int64_t n_prefill = 0;  // padded prefill length: max over sequences of T_b - 1
  for (size_t b = 0; b < prompts.size(); ++b) {
    RHEAD_CHECK(!prompts[b].empty(), pipeline::InputError, "[generate] prompt ", b, " is empty");
    for (int64_t id : prompts[b]) {
      RHEAD_CHECK(id >= 0 && id < spec.vocab_size, pipeline::InputError, "[generate] prompt ", b,
                  ": token id ", id, " out of range [0, ", spec.vocab_size, ")");
    }
    n_prefill = std::max<int64_t>(n_prefill, static_cast<int64_t>(prompts[b].size()) - 1);
  }

  GenerationResult result;
  result.tokens.resize(static_cast<size_t>(batch));
  result.n_steps.assign(static_cast<size_t>(batch), 0);
  result.stopped.assign(static_cast<size_t>(batch), false);
  if (options.max_new_tokens == 0) return result;

  const torch::Device device = decoder.options().device;
  const HeadMask* mask = (options.mask != nullptr && !options.mask->empty()) ? options.mask : nullptr;
  const bool masked_prefill = mask != nullptr && mask->in_prefill();
  PrefixCache* reuse = (batch == 1 && !masked_prefill) ? options.prefix_cache : nullptr;
  if (reuse != nullptr && reuse->m_decoder != &decoder) {
    reuse->m_cache.reset();
    reuse->m_ids.clear();
    reuse->m_decoder = &decoder;
  }
  KvCache local;
  if (reuse == nullptr || !reuse->m_cache) {
    (reuse ? reuse->m_cache.emplace() : local) = decoder.new_cache(batch, n_prefill + options.max_new_tokens);
  }
  KvCache& cache = reuse ? *reuse->m_cache : local;
  // The prefill runs as one forward call per `chunk` slots (prefill_in_chunks), so the computation of
  // a slot range never depends on how much came before it in the same call.
  const int64_t chunk = decoder.options().prefill_chunk;
  int64_t n_kept = 0;  // prefill slots reused from the previous prompt: whole chunks of the common prefix
  if (reuse != nullptr) {
    const auto& prompt = prompts[0];
    const auto& kept = reuse->m_ids;
    const size_t limit = std::min(kept.size(), static_cast<size_t>(n_prefill));
    int64_t common = 0;
    while (static_cast<size_t>(common) < limit && kept[static_cast<size_t>(common)] == prompt[static_cast<size_t>(common)]) {
      ++common;
    }
    n_kept = chunk > 0 ? common / chunk * chunk : 0;
    cache.truncate(n_kept);
    cache.reserve(n_prefill + options.max_new_tokens);
    reuse->m_ids.resize(static_cast<size_t>(n_kept));  // until the prefill below has finished
    reuse->m_reused += n_kept;
    reuse->m_computed += n_prefill - n_kept;
  }
  std::vector<int64_t> pad(static_cast<size_t>(batch));
  std::vector<int64_t> prefill_ids(static_cast<size_t>(batch * n_prefill), options.pad_token_id);
  std::vector<int64_t> first_ids(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    const auto& p = prompts[static_cast<size_t>(b)];
    const int64_t len = static_cast<int64_t>(p.size()) - 1;
    pad[static_cast<size_t>(b)] = n_prefill - len;
    std::copy(p.begin(), p.end() - 1, prefill_ids.begin() + b * n_prefill + (n_prefill - len));
    first_ids[static_cast<size_t>(b)] = p.back();
  }
  if (reuse == nullptr) cache.set_padding(pad);  // a reused cache holds one unpadded sequence
  if (n_prefill > n_kept) {
    ForwardOptions prefill;
    if (masked_prefill) prefill.mask = mask;
    auto ids = torch::tensor(prefill_ids, torch::kInt64).view({batch, n_prefill});
    prefill_in_chunks(decoder, ids.narrow(1, n_kept, n_prefill - n_kept), cache, prefill);
  }
  if (reuse != nullptr) reuse->m_ids.assign(prompts[0].begin(), prompts[0].end() - 1);
  if (options.capture) {
    result.capture = std::make_shared<AttentionCapture>(batch, options.max_new_tokens, spec.n_layer,
                                                        spec.n_head, *options.capture, device);
  }
  ForwardOptions step;
  step.mask = mask;
  step.observer = result.capture.get();
  std::vector<torch::Tensor> kept_logits;
  std::vector<bool> active(static_cast<size_t>(batch), true);
  int64_t n_active = batch;
  auto input = torch::tensor(first_ids, torch::kInt64).view({batch, 1});
  for (int64_t s = 0; s < options.max_new_tokens && n_active > 0; ++s) {
    if (result.capture) result.capture->set_step(s);
    auto logits = decoder.forward(input, cache, step).select(1, 0);  // [B, V]
    if (options.keep_logits) kept_logits.push_back(logits);
    auto next = logits.argmax(-1).to(torch::kCPU);  // [B]; the one host sync per step
    const int64_t* next_ptr = next.data_ptr<int64_t>();
    for (int64_t b = 0; b < batch; ++b) {
      if (!active[static_cast<size_t>(b)]) continue;
      auto& generated = result.tokens[static_cast<size_t>(b)];
      generated.push_back(next_ptr[b]);
      result.n_steps[static_cast<size_t>(b)] = s + 1;
      const bool stop_id = std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(),
                                     next_ptr[b]) != options.stop_token_ids.end();
      if (stop_id || (options.stop && options.stop(b, generated))) {
        active[static_cast<size_t>(b)] = false;
        result.stopped[static_cast<size_t>(b)] = true;
        --n_active;
      }
    }
    input = next.view({batch, 1});
  }
  if (result.capture) result.capture->finalize(result.n_steps);
  if (options.keep_logits && !kept_logits.empty()) result.logits = torch::stack(kept_logits, 1);
  return result;
}

}  // namespace models
