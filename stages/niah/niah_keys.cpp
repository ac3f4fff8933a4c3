#include "stages/niah/niah_keys.h"

#include "pipeline/core/error.h"

namespace stages {

using pipeline::ConfigError;
using pipeline::KeyType;

void declare_niah_keys(pipeline::ConfigSchema& schema, const std::string& section, const std::string& batch_unit) {
  const std::string p = section + ".";
  schema.optional(p + "lengths", KeyType::IntList, "linspace(1000, 50000, 20)", "context lengths in tokens")
      .optional(p + "depths", KeyType::IntList, "linspace(0, 100, 10)", "needle depths in percent")
      .optional(p + "prompt_mode", KeyType::String, "faithful",
                "faithful (the official code's token arithmetic, quirks included) or fixed (docs/PROMPTS.md)")
      .optional(p + "buffer_tokens", KeyType::Int, "200", "tokens kept free for the question (official buffer)")
      .optional(p + "max_new_tokens", KeyType::Int, "50", "greedy decoding cap")
      .optional(p + "stop_strings", KeyType::StringList, "\\n",
                "stop after a token whose text contains one of these (the official code stops on newline)")
      .optional(p + "prefill_chunk", KeyType::Int, "128",
                "query rows per attention block inside a prefill call (0: the whole call); 128 was fastest on "
                "CPU (docs/BENCHMARKS.md); GPUs: not measured")
      .optional(p + "prefill_call", KeyType::Int, "512",
                "prompt tokens per forward call of a fixed-mode prefill (0: the whole prompt in one call): the "
                "projections run as one product of this height; the call holding the needle runs twice, whole "
                "and from the needle, so that the next prompt reuses every slot before its needle. Faithful "
                "prompts (needle position unknown) run calls of prefill_chunk tokens and reuse whole calls. 512 "
                "was fastest on CPU (docs/BENCHMARKS.md); GPUs: not measured")
      .optional(p + "decode_batch", KeyType::Int, "32",
                batch_unit + " decoded together, one KV cache each, at most 2 GiB of them (every weight read "
                "once per step for all); results are bit-identical for any value where decoding is batch "
                "invariant (fp32 on CPU), elsewhere cells run one at a time; 1: one at a time")
      // How the work is batched, not what is computed: a resumed run may change them.
      .tuning(p + "prefill_chunk")
      .tuning(p + "prefill_call")
      .tuning(p + "decode_batch");
}

NiahKeys read_niah_keys(const pipeline::Config& c, const std::string& section) {
  const std::string p = section + ".";
  NiahKeys k;
  k.lengths = c.get_ints(p + "lengths");
  k.depths = c.get_ints(p + "depths");
  k.prompt_mode = parse_prompt_mode(c.get_string(p + "prompt_mode"), "[" + section + "] prompt_mode");
  k.buffer_tokens = c.get_int(p + "buffer_tokens");
  k.decode.max_new_tokens = c.get_int(p + "max_new_tokens");
  k.decode.stop_strings = c.get_strings(p + "stop_strings");
  k.prefill_chunk = c.get_int(p + "prefill_chunk");
  k.prefill_call = c.get_int(p + "prefill_call");
  k.decode_batch = c.get_int(p + "decode_batch");
  return k;
}

void validate_niah_keys(const NiahKeys& k, const pipeline::Config& c, const std::string& section) {
  const std::string where = "[config] " + c.source() + ": [" + section + "] ";
  RHEAD_CHECK(!k.lengths.empty() && !k.depths.empty(), ConfigError, where, "lengths and depths must not be empty");
  for (int64_t L : k.lengths) {
    RHEAD_CHECK(L > k.buffer_tokens, ConfigError, where, "lengths: got ", L,
                ", expected every length > buffer_tokens (", k.buffer_tokens, ")");
  }
  for (int64_t d : k.depths) {
    RHEAD_CHECK(d >= 0 && d <= 100, ConfigError, where, "depths: got ", d, ", expected percentages in [0, 100]");
  }
  RHEAD_CHECK(k.decode.max_new_tokens >= 1, ConfigError, where, "max_new_tokens must be >= 1");
  RHEAD_CHECK(k.decode_batch >= 1, ConfigError, where, "decode_batch: got ", k.decode_batch,
              ", expected >= 1 (1: one cell at a time)");
  RHEAD_CHECK(k.prefill_chunk >= 0, ConfigError, where, "prefill_chunk: got ", k.prefill_chunk,
              ", expected >= 0 (0: the whole call in one attention block)");
  RHEAD_CHECK(k.prefill_call >= 0, ConfigError, where, "prefill_call: got ", k.prefill_call,
              ", expected >= 0 (0: the whole prompt in one call)");
}

}  // namespace stages
