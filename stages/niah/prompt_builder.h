// NIAH prompt construction for retrieval-head detection and the masked NIAH (docs/PROMPTS.md;
// docs/PAPER_NOTES.md, "Prompts"). Two modes:
//   faithful  the official retrieval_head_detection.py token arithmetic, quirks included: BOS from
//             every encode, decode/re-encode round trips (a "<s>" lands before the needle), the
//             caller's period ids (Llama's by default, whatever the model), search of the answer span
//             by > 90 % token-set overlap
//   fixed     one tokenization of the haystack, no BOS inside the context, sentence ends from the
//             tokenizer's own pieces, the needle spliced in at known token positions, the answer span
//             known by construction, and the prompt trimmed to exactly L - buffer tokens
// No LibTorch. Parameter errors are pipeline::ConfigError, data errors pipeline::InputError.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stages/niah/needles.h"

namespace models {
class Tokenizer;
}

namespace stages {

enum class PromptMode { kFaithful, kFixed };

// "faithful" | "fixed"; anything else is a ConfigError naming the key.
PromptMode parse_prompt_mode(std::string_view text, std::string_view key = "prompt_mode");
std::string_view prompt_mode_name(PromptMode mode);

// The question part of the official prompt: "Based on the content of the book, Question: <q>\nAnswer:".
std::string question_text(std::string_view question);

// The text around the context.
//   base  context + question_text(q)                               (no separator, as the official code)
//   chat  chat_text with "{user}" replaced by
//         "<book>" + context + "</book>\n" + question_text(q), and "{system}" by system.
//         chat_text is a plain string, e.g. "<s>[INST] {user} [/INST]" (Mistral-Instruct) or
//         "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
//         (Qwen1.5-Chat); it must contain "{user}" exactly once.
// add_special_tokens: whether the prompt text is tokenized with special tokens. The official base
// prompt is (BOS added); HF apply_chat_template tokenizes without them (the template text itself
// carries "<s>" where the model wants one), so chat() defaults to false.
struct PromptTemplate {
  enum class Kind { kBase, kChat };
  Kind kind = Kind::kBase;
  std::string chat_text;
  std::string system;
  bool add_special_tokens = true;

  static PromptTemplate base();
  static PromptTemplate chat(std::string chat_text, std::string system = {});

  // The whole prompt text for a context and question (faithful mode tokenizes exactly this).
  std::string render(std::string_view context, std::string_view question) const;
  // The prompt text before and after the context (fixed mode tokenizes these two parts apart).
  std::pair<std::string, std::string> split(std::string_view question) const;
  // A whole user message in the template (a downstream task item): the text alone (base), or the chat
  // text with "{user}" replaced by it and every "{system}" by the system text.
  std::string wrap(std::string_view user) const;
};

// Llama-2's "." and "▁." ids: the official default (--model_provider LLaMA), used for every model.
extern const std::vector<int64_t> kLlamaPeriodIds;

// The period ids of the official insert_needle for a --model_provider value: "LLaMA" / "LongLLaMA"
// {29889, 869}; "Mistral" {842, 28723}; "GLM" {918, 30930}; otherwise tokenizer.encode(".") WITH
// special tokens (so the BOS id counts as a period too, as in the official code).
std::vector<int64_t> official_period_ids(std::string_view model_provider, const models::Tokenizer& tokenizer);

// Ids of the given vocabulary pieces (e.g. {".", "▁."}); pieces not in the vocabulary are skipped.
std::vector<int64_t> period_ids_from_pieces(const models::Tokenizer& tokenizer,
                                            const std::vector<std::string>& pieces);

// Fixed mode's sentence end: the token's vocabulary piece ends with '.' ("." "▁." "Ġ." "car.").
bool is_sentence_end_token(const models::Tokenizer& tokenizer, int64_t id);

// The official find_needle_idx: first i in [0, prompt.size()) whose window prompt[i, i + n) (cut at the
// end of the prompt) has |set(window) ∩ set(answer)| / |set(answer)| > 0.9, n = answer.size(); returns
// {i, i + n} (the end is not clamped), or {-1, -1} when no window qualifies. Throws on an empty answer.
std::pair<int64_t, int64_t> find_needle_span(const std::vector<int64_t>& prompt_ids,
                                             const std::vector<int64_t>& answer_ids);

struct PromptOptions {
  PromptMode mode = PromptMode::kFaithful;
  PromptTemplate prompt_template = PromptTemplate::base();
  int64_t buffer_tokens = 200;                         // official final_context_length_buffer
  std::vector<int64_t> period_ids = kLlamaPeriodIds;   // faithful mode only; fixed mode ignores it
};

struct BuiltPrompt {
  std::vector<int64_t> ids;  // the prompt token ids fed to the model
  std::string text;          // faithful: the text that was tokenized; fixed: decode(ids) with specials
  std::string context;       // the haystack with the needle (the official contexts/*.txt; fixed: decoded)
  // [answer_begin, answer_end): the real_needle span in ids (what the retrieval score counts); -1 when
  // the faithful search finds nothing. Faithful answer_end may exceed ids.size() (official rule).
  int64_t answer_begin = -1;
  int64_t answer_end = -1;
  // [needle_begin, needle_end): the whole inserted needle in ids (fixed mode; -1 in faithful mode,
  // where re-tokenization loses it).
  int64_t needle_begin = -1;
  int64_t needle_end = -1;
  // Position of the needle in the context token list after snapping to a sentence end (faithful: in
  // the list that still starts with the BOS ids; fixed: in the BOS-free haystack tokens).
  int64_t insertion_point = 0;
  std::vector<int64_t> answer_ids;  // tokenize(real_needle, no special tokens): the official needle_ids

  bool answer_found() const { return answer_begin >= 0; }
};

// Builds prompts from one haystack; the haystack is tokenized once, in the constructor. The tokenizer
// must outlive the builder. build() is const and thread-safe.
class PromptBuilder {
 public:
  PromptBuilder(const models::Tokenizer& tokenizer, std::string haystack, PromptOptions options);

  // context_length: the target L in tokens (official grid value), >= 0; depth_percent in [0, 100].
  // Fixed mode throws ConfigError when L - buffer cannot hold the template and the needle.
  BuiltPrompt build(const Needle& needle, int64_t context_length, double depth_percent) const;

  const PromptOptions& options() const { return m_options; }

 private:
  BuiltPrompt build_faithful(const Needle& needle, int64_t context_length, double depth_percent) const;
  BuiltPrompt build_fixed(const Needle& needle, int64_t context_length, double depth_percent) const;

  const models::Tokenizer& m_tok;
  std::string m_haystack;
  PromptOptions m_options;
  std::vector<int64_t> m_haystack_ids;  // faithful: encode with special tokens; fixed: without
};

// One-off convenience: PromptBuilder(tokenizer, haystack, options).build(needle, L, depth).
BuiltPrompt build_prompt(const models::Tokenizer& tokenizer, std::string haystack, const Needle& needle,
                         int64_t context_length, double depth_percent, const PromptOptions& options);

}  // namespace stages
