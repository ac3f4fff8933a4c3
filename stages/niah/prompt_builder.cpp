#include "stages/niah/prompt_builder.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <tuple>

#include "models/tokenizer/tokenizer.h"
#include "pipeline/core/error.h"

namespace stages {
namespace {

using pipeline::ConfigError;
using pipeline::InputError;
using pipeline::str_cat;
using Ids = std::vector<int64_t>;

constexpr std::string_view kUserSlot = "{user}";
constexpr std::string_view kSystemSlot = "{system}";

// Python's seq[:stop] for a list of length size: a negative stop counts from the end.
size_t py_slice_stop(int64_t stop, size_t size) {
  const auto n = static_cast<int64_t>(size);
  if (stop < 0) stop = std::max<int64_t>(0, n + stop);
  return static_cast<size_t>(std::min(stop, n));
}

Ids slice(const Ids& ids, size_t begin, size_t end) {
  return Ids(ids.begin() + static_cast<std::ptrdiff_t>(begin), ids.begin() + static_cast<std::ptrdiff_t>(end));
}

void append(Ids& out, const Ids& more) { out.insert(out.end(), more.begin(), more.end()); }

// Replaces every "{system}" of text with system (one pass, so braces in system stay as they are).
std::string fill_system(std::string_view text, std::string_view system) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(kSystemSlot, pos);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(pos, hit - pos));
    out.append(system);
    pos = hit + kSystemSlot.size();
  }
  out.append(text.substr(pos));
  return out;
}

size_t find_ascii_icase(std::string_view hay, std::string_view needle) {
  if (needle.empty() || needle.size() > hay.size()) return std::string_view::npos;
  const auto lower = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    size_t k = 0;
    while (k < needle.size() && lower(hay[i + k]) == lower(needle[k])) ++k;
    if (k == needle.size()) return i;
  }
  return std::string_view::npos;
}

std::string preview(std::string_view s) {
  return s.size() <= 80 ? std::string(s) : str_cat(s.substr(0, 77), "...");
}

void check_request(int64_t context_length, double depth_percent, int64_t buffer) {
  RHEAD_CHECK(context_length >= 0, ConfigError, "[prompt] context_length: got ", context_length,
              ", expected a token count >= 0");
  RHEAD_CHECK(std::isfinite(depth_percent) && depth_percent >= 0.0 && depth_percent <= 100.0, ConfigError,
              "[prompt] depth_percent: got ", depth_percent, ", expected a percentage in [0, 100]");
  RHEAD_CHECK(buffer >= 0, ConfigError, "[prompt] buffer_tokens: got ", buffer, ", expected >= 0");
}

// Fixed mode: the smallest token range of needle_ids that covers the answer's characters. The answer
// is looked up in the decoded needle exactly, else ignoring ASCII case (the official needle 3 has
// "because" where its real_needle has "Because"), else also ignoring whitespace; token boundaries are
// the lengths of the decoded prefixes (a prefix cut inside a character is no boundary).
std::pair<int64_t, int64_t> answer_range_in_needle(const models::Tokenizer& tok, const Ids& needle_ids,
                                                   const Needle& needle) {
  const std::string decoded = tok.decode(needle_ids, false);
  size_t a0 = decoded.find(needle.real_needle);
  size_t a1 = a0 + needle.real_needle.size();
  if (a0 == std::string::npos) {
    a0 = find_ascii_icase(decoded, needle.real_needle);
    a1 = a0 + needle.real_needle.size();
  }
  if (a0 == std::string::npos) {
    // Decoders that do not reproduce spacing (WordLevel joins words with single spaces): compare with
    // ASCII whitespace removed, then map back to positions in the decoded text.
    const auto squeeze = [](std::string_view s, std::vector<size_t>* where) {
      std::string out;
      for (size_t i = 0; i < s.size(); ++i) {
        if (std::isspace(static_cast<unsigned char>(s[i]))) continue;
        out.push_back(s[i]);
        if (where) where->push_back(i);
      }
      return out;
    };
    std::vector<size_t> where;
    const std::string hay = squeeze(decoded, &where);
    const std::string answer = squeeze(needle.real_needle, nullptr);
    const size_t hit = find_ascii_icase(hay, answer);
    if (hit != std::string::npos) {
      a0 = where[hit];
      a1 = where[hit + answer.size() - 1] + 1;
    }
  }
  RHEAD_CHECK(a0 != std::string::npos, InputError, "[prompt] needle \"", preview(needle.needle),
              "\": real_needle \"", preview(needle.real_needle),
              "\" is not part of the needle as tokenized (decoded: \"", preview(decoded),
              "\"); fixed mode needs the answer inside the needle. Hint: fix real_needle, or use "
              "prompt_mode = faithful (span search by token overlap)");
  const auto n = static_cast<int64_t>(needle_ids.size());
  int64_t begin = 0;
  int64_t end = n;
  for (int64_t k = 0; k <= n; ++k) {
    const std::string prefix = tok.decode(slice(needle_ids, 0, static_cast<size_t>(k)), false);
    if (decoded.compare(0, prefix.size(), prefix) != 0) continue;  // cut inside a character
    if (prefix.size() <= a0) begin = k;
    if (prefix.size() >= a1) {
      end = k;
      break;
    }
  }
  return {begin, end};
}

}  // namespace

const std::vector<int64_t> kLlamaPeriodIds{29889, 869};

PromptMode parse_prompt_mode(std::string_view text, std::string_view key) {
  if (text == "faithful") return PromptMode::kFaithful;
  if (text == "fixed") return PromptMode::kFixed;
  throw ConfigError(str_cat("[config] ", key, ": got \"", text, "\", expected \"faithful\" or \"fixed\""));
}

std::string_view prompt_mode_name(PromptMode mode) {
  return mode == PromptMode::kFaithful ? "faithful" : "fixed";
}

std::string question_text(std::string_view question) {
  return str_cat("Based on the content of the book, Question: ", question, "\nAnswer:");
}

PromptTemplate PromptTemplate::base() { return PromptTemplate{}; }

PromptTemplate PromptTemplate::chat(std::string chat_text, std::string system) {
  const size_t first = chat_text.find(kUserSlot);
  RHEAD_CHECK(first != std::string::npos && chat_text.find(kUserSlot, first + 1) == std::string::npos,
              ConfigError, "[prompt] chat template \"", preview(chat_text),
              "\": expected \"{user}\" exactly once. Hint: e.g. \"<s>[INST] {user} [/INST]\"");
  PromptTemplate t;
  t.kind = Kind::kChat;
  t.chat_text = std::move(chat_text);
  t.system = std::move(system);
  t.add_special_tokens = false;
  return t;
}

std::pair<std::string, std::string> PromptTemplate::split(std::string_view question) const {
  if (kind == Kind::kBase) return {std::string(), question_text(question)};
  const size_t slot = chat_text.find(kUserSlot);
  RHEAD_CHECK(slot != std::string::npos, ConfigError, "[prompt] chat template \"", preview(chat_text),
              "\": no \"{user}\"");
  const std::string_view whole(chat_text);
  return {fill_system(whole.substr(0, slot), system) + "<book>",
          str_cat("</book>\n", question_text(question),
                  fill_system(whole.substr(slot + kUserSlot.size()), system))};
}

std::string PromptTemplate::wrap(std::string_view user) const {
  if (kind == Kind::kBase) return std::string(user);
  const size_t slot = chat_text.find(kUserSlot);
  RHEAD_CHECK(slot != std::string::npos, ConfigError, "[prompt] chat template \"", preview(chat_text),
              "\": no \"{user}\"");
  const std::string_view whole(chat_text);
  return str_cat(fill_system(whole.substr(0, slot), system), user,
                 fill_system(whole.substr(slot + kUserSlot.size()), system));
}

std::string PromptTemplate::render(std::string_view context, std::string_view question) const {
  auto [before, after] = split(question);
  return str_cat(before, context, after);
}

std::vector<int64_t> official_period_ids(std::string_view model_provider, const models::Tokenizer& tokenizer) {
  if (model_provider == "LLaMA" || model_provider == "LongLLaMA") return kLlamaPeriodIds;
  if (model_provider == "Mistral") return {842, 28723};
  if (model_provider == "GLM") return {918, 30930};
  return tokenizer.encode(".", true);
}

std::vector<int64_t> period_ids_from_pieces(const models::Tokenizer& tokenizer,
                                            const std::vector<std::string>& pieces) {
  std::vector<int64_t> ids;
  for (const auto& p : pieces) {
    if (auto id = tokenizer.piece_to_id(p)) ids.push_back(*id);
  }
  return ids;
}

bool is_sentence_end_token(const models::Tokenizer& tokenizer, int64_t id) {
  if (tokenizer.is_special(id)) return false;
  const std::string piece = tokenizer.id_to_piece(id);
  return !piece.empty() && piece.back() == '.';
}

// The official rule, retrieval_head_detection.py LLMNeedleHaystackTester.find_needle_idx
// (nightdessert/Retrieval_Head, read at commit 10122725; needle_in_haystack_with_mask.py has the same):
//     needle_ids = self.enc(needle, add_special_tokens=False)["input_ids"]
//     span_len = len(needle_ids)
//     for i in range(len(self.prompt_ids)):
//         token_span = self.prompt_ids[i : i + span_len]
//         span_ids = set(token_span.tolist())
//         overlap = float(len(span_ids.intersection(set(needle_ids)))) / len(set(needle_ids))
//         if(overlap > 0.9):
//             return i, i + span_len
//     return -1, -1
// i.e. overlap = |set(window) ∩ set(answer)| / |set(answer)| (distinct ids; order and repeats ignored),
// strictly greater than 0.9, first window wins, the returned end is i + span_len even where the window
// runs past the prompt's end. Python divides an empty answer by zero; we throw instead.
std::pair<int64_t, int64_t> find_needle_span(const std::vector<int64_t>& prompt_ids,
                                             const std::vector<int64_t>& answer_ids) {
  RHEAD_CHECK(!answer_ids.empty(), InputError,
              "[prompt] real_needle: tokenizes to no tokens; expected a non-empty answer span");
  Ids answer_set = answer_ids;
  std::sort(answer_set.begin(), answer_set.end());
  answer_set.erase(std::unique(answer_set.begin(), answer_set.end()), answer_set.end());
  const auto denom = static_cast<double>(answer_set.size());
  const size_t span = answer_ids.size();
  Ids hits;
  for (size_t i = 0; i < prompt_ids.size(); ++i) {
    const size_t end = std::min(prompt_ids.size(), i + span);
    hits.clear();
    for (size_t j = i; j < end; ++j) {
      if (std::binary_search(answer_set.begin(), answer_set.end(), prompt_ids[j])) hits.push_back(prompt_ids[j]);
    }
    std::sort(hits.begin(), hits.end());
    const auto distinct = static_cast<double>(std::unique(hits.begin(), hits.end()) - hits.begin());
    if (distinct / denom > 0.9) {
      return {static_cast<int64_t>(i), static_cast<int64_t>(i + span)};
    }
  }
  return {-1, -1};
}

PromptBuilder::PromptBuilder(const models::Tokenizer& tokenizer, std::string haystack, PromptOptions options)
    : m_tok(tokenizer), m_haystack(std::move(haystack)), m_options(std::move(options)) {
  RHEAD_CHECK(m_options.buffer_tokens >= 0, ConfigError, "[prompt] buffer_tokens: got ",
              m_options.buffer_tokens, ", expected >= 0");
  // Faithful: encode_and_trim's self.enc.encode(context) (special tokens on). Fixed: no BOS, ever.
  m_haystack_ids = m_tok.encode(m_haystack, m_options.mode == PromptMode::kFaithful);
}

BuiltPrompt PromptBuilder::build(const Needle& needle, int64_t context_length, double depth_percent) const {
  check_request(context_length, depth_percent, m_options.buffer_tokens);
  return m_options.mode == PromptMode::kFaithful ? build_faithful(needle, context_length, depth_percent)
                                                 : build_fixed(needle, context_length, depth_percent);
}

// retrieval_head_detection.py generate_context (encode_and_trim, insert_needle) + evaluate_and_log,
// step by step; the Python is quoted where the order of operations matters.
BuiltPrompt PromptBuilder::build_faithful(const Needle& needle, int64_t context_length,
                                          double depth_percent) const {
  const models::Tokenizer& tok = m_tok;
  BuiltPrompt out;

  // encode_and_trim: tokens = enc.encode(context); if len(tokens) > L: context = enc.decode(tokens[:L]).
  // The decoded text starts with the BOS token's text ("<s>"), which the next encode reads back as BOS.
  std::string context = m_haystack;
  if (static_cast<int64_t>(m_haystack_ids.size()) > context_length) {
    context = tok.decode(slice(m_haystack_ids, 0, static_cast<size_t>(context_length)), false);
  }

  // insert_needle: both encoded again with special tokens, so the needle list starts with BOS.
  const Ids tokens_needle = tok.encode(needle.needle, true);
  Ids tokens_context = tok.encode(context, true);
  const int64_t budget = context_length - m_options.buffer_tokens;
  const auto n_needle = static_cast<int64_t>(tokens_needle.size());
  if (static_cast<int64_t>(tokens_context.size()) + n_needle > budget) {
    // tokens_context[:budget - len(tokens_needle)] with Python's negative-stop semantics.
    tokens_context.resize(py_slice_stop(budget - n_needle, tokens_context.size()));
  }

  Ids tokens_new_context;
  if (depth_percent == 100.0) {
    tokens_new_context = tokens_context;
    out.insertion_point = static_cast<int64_t>(tokens_context.size());
    append(tokens_new_context, tokens_needle);
  } else {
    // insertion_point = int(len(tokens_context) * (depth_percent / 100)), then walk back until the token
    // before it is one of the period ids (possibly to 0: the ids are Llama's whatever the model).
    auto insertion_point =
        static_cast<int64_t>(static_cast<double>(tokens_context.size()) * (depth_percent / 100.0));
    const auto& periods = m_options.period_ids;
    const auto is_period = [&](int64_t id) {
      return std::find(periods.begin(), periods.end(), id) != periods.end();
    };
    while (insertion_point > 0 && !is_period(tokens_context[static_cast<size_t>(insertion_point - 1)])) {
      --insertion_point;
    }
    out.insertion_point = insertion_point;
    tokens_new_context = slice(tokens_context, 0, static_cast<size_t>(insertion_point));
    append(tokens_new_context, tokens_needle);
    tokens_new_context.insert(tokens_new_context.end(), tokens_context.begin() + insertion_point,
                              tokens_context.end());
  }
  // decode_tokens: enc.decode(tokens) with special tokens kept ("<s>" before the needle).
  out.context = tok.decode(tokens_new_context, false);

  // evaluate_and_log: base context + question, tokenized with special tokens; chat via the template.
  out.text = m_options.prompt_template.render(out.context, needle.question);
  out.ids = tok.encode(out.text, m_options.prompt_template.add_special_tokens);

  // find_needle_idx(real_needle).
  out.answer_ids = tok.encode(needle.real_needle, false);
  std::tie(out.answer_begin, out.answer_end) = find_needle_span(out.ids, out.answer_ids);
  return out;
}

BuiltPrompt PromptBuilder::build_fixed(const Needle& needle, int64_t context_length, double depth_percent) const {
  const models::Tokenizer& tok = m_tok;
  BuiltPrompt out;

  // Template parts, each tokenized on its own; one BOS at the very start when the tokenizer adds one.
  const auto [before_text, after_text] = m_options.prompt_template.split(needle.question);
  Ids prefix;
  if (m_options.prompt_template.add_special_tokens && tok.bos_id()) {
    const Ids added = tok.encode("", true);
    if (!added.empty() && added.front() == *tok.bos_id()) prefix.push_back(*tok.bos_id());
  }
  append(prefix, tok.encode(before_text, false));
  const Ids suffix = tok.encode(after_text, false);

  // The needle as one sentence after the previous one: SentencePiece adds its own "▁" word start;
  // other tokenizers get an explicit space unless the needle starts with whitespace.
  std::string needle_text = needle.needle;
  const bool starts_with_space = !needle_text.empty() && std::isspace(static_cast<unsigned char>(needle_text[0]));
  if (tok.kind() != "sentencepiece" && !starts_with_space) needle_text.insert(0, " ");
  const Ids needle_ids = tok.encode(needle_text, false);
  const auto [answer_in_needle_begin, answer_in_needle_end] = answer_range_in_needle(tok, needle_ids, needle);

  const int64_t fixed_tokens = static_cast<int64_t>(prefix.size() + suffix.size() + needle_ids.size());
  const int64_t budget = context_length - m_options.buffer_tokens - fixed_tokens;
  RHEAD_CHECK(budget >= 0, ConfigError, "[prompt] context_length: got ", context_length,
              ", expected at least buffer_tokens + template + needle = ", m_options.buffer_tokens, " + ",
              prefix.size() + suffix.size(), " + ", needle_ids.size(), " = ", m_options.buffer_tokens + fixed_tokens,
              " tokens. Hint: raise the context length or lower buffer_tokens");
  const size_t n_ctx = std::min(static_cast<size_t>(budget), m_haystack_ids.size());

  size_t p = n_ctx;
  if (depth_percent != 100.0) {
    p = static_cast<size_t>(static_cast<double>(n_ctx) * (depth_percent / 100.0));
    while (p > 0 && !is_sentence_end_token(tok, m_haystack_ids[p - 1])) --p;
  }
  out.insertion_point = static_cast<int64_t>(p);

  Ids context_ids = slice(m_haystack_ids, 0, p);
  append(context_ids, needle_ids);
  context_ids.insert(context_ids.end(), m_haystack_ids.begin() + static_cast<std::ptrdiff_t>(p),
                     m_haystack_ids.begin() + static_cast<std::ptrdiff_t>(n_ctx));

  out.ids = prefix;
  append(out.ids, context_ids);
  append(out.ids, suffix);
  out.needle_begin = static_cast<int64_t>(prefix.size() + p);
  out.needle_end = out.needle_begin + static_cast<int64_t>(needle_ids.size());
  out.answer_begin = out.needle_begin + answer_in_needle_begin;
  out.answer_end = out.needle_begin + answer_in_needle_end;
  out.answer_ids = tok.encode(needle.real_needle, false);
  out.context = tok.decode(context_ids, false);
  out.text = tok.decode(out.ids, false);
  return out;
}

BuiltPrompt build_prompt(const models::Tokenizer& tokenizer, std::string haystack, const Needle& needle,
                         int64_t context_length, double depth_percent, const PromptOptions& options) {
  return PromptBuilder(tokenizer, std::move(haystack), options).build(needle, context_length, depth_percent);
}

}  // namespace stages
