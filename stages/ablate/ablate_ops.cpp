#include "stages/ablate/ablate_ops.h"

#include <algorithm>
#include <map>
#include <unordered_set>

#include "pipeline/core/error.h"
#include "stages/generate/rouge.h"

namespace stages {
namespace {

using pipeline::InputError;
using pipeline::str_cat;

void check_map(const ScoreMap& m) {
  RHEAD_CHECK(m.n_layer > 0 && m.n_head > 0 && static_cast<int64_t>(m.value.size()) == m.n_layer * m.n_head,
              pipeline::ShapeError, "[ablate] score map: ", m.value.size(), " values for shape [", m.n_layer, ", ",
              m.n_head, "], expected layers x heads > 0");
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_ascii_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
// Python str.split() whitespace within ASCII: \t \n \v \f \r, \x1c-\x1f and space.
bool is_py_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f'); }
// Python string.punctuation: !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
bool is_py_punct(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= 33 && u <= 47) || (u >= 58 && u <= 64) || (u >= 91 && u <= 96) || (u >= 123 && u <= 126);
}
bool is_word_char(char c) { return is_ascii_alnum(c) || c == '_' || static_cast<unsigned char>(c) >= 0x80; }

std::vector<std::string> split_ws(std::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_py_space(text[i])) ++i;
    size_t j = i;
    while (j < text.size() && !is_py_space(text[j])) ++j;
    if (j > i) out.emplace_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && is_py_space(s[b])) ++b;
  while (e > b && is_py_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

// Position just after the last case-insensitive "the answer is" (and a following ':' / whitespace), or npos.
size_t after_answer_phrase(std::string_view text) {
  static constexpr std::string_view kPhrase = "the answer is";
  size_t found = std::string_view::npos;
  for (size_t i = 0; i + kPhrase.size() <= text.size(); ++i) {
    bool match = true;
    for (size_t k = 0; k < kPhrase.size() && match; ++k) match = ascii_lower(text[i + k]) == kPhrase[k];
    if (match) found = i;
  }
  if (found == std::string_view::npos) return found;
  size_t p = found + kPhrase.size();
  while (p < text.size() && (is_py_space(text[p]) || text[p] == ':')) ++p;
  return p;
}

// All numbers of text in order (commas removed, all-zero fractions dropped).
std::vector<std::string> find_numbers(std::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    if (!is_digit(text[i])) {
      ++i;
      continue;
    }
    std::string number;
    if (i > 0 && text[i - 1] == '-') number.push_back('-');
    size_t j = i;
    while (j < text.size() && (is_digit(text[j]) || (text[j] == ',' && j + 1 < text.size() && is_digit(text[j + 1])))) {
      if (text[j] != ',') number.push_back(text[j]);
      ++j;
    }
    if (j + 1 < text.size() && text[j] == '.' && is_digit(text[j + 1])) {
      std::string fraction;
      ++j;
      while (j < text.size() && is_digit(text[j])) fraction.push_back(text[j++]);
      if (fraction.find_first_not_of('0') != std::string::npos) number += "." + fraction;
    }
    out.push_back(number);
    i = j;
  }
  return out;
}

// Standalone letters A-D (not adjacent to another letter or digit), in order.
std::vector<std::string> find_choices(std::string_view text) {
  std::vector<std::string> out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] < 'A' || text[i] > 'D') continue;
    const bool left_ok = i == 0 || !is_ascii_alnum(text[i - 1]);
    const bool right_ok = i + 1 == text.size() || !is_ascii_alnum(text[i + 1]);
    if (left_ok && right_ok) out.emplace_back(1, text[i]);
  }
  return out;
}

}  // namespace

uint64_t SplitMix64::next() {
  uint64_t z = (m_state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::uniform_below(uint64_t n) {
  RHEAD_CHECK(n >= 1, pipeline::InternalError, "[ablate] uniform_below: got n = 0, expected n >= 1");
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n: outputs below it would bias the modulo
  while (true) {
    const uint64_t r = next();
    if (r >= threshold) return r % n;
  }
}

std::vector<HeadId> top_k_heads(const ScoreMap& mean, int64_t k) {
  check_map(mean);
  const int64_t n = mean.n_layer * mean.n_head;
  RHEAD_CHECK(k >= 0 && k <= n, InputError, "[ablate] top_k: got ", k, ", expected 0 <= k <= ", n, " (", mean.n_layer,
              " layers x ", mean.n_head, " heads)");
  auto ranking = rank_heads(mean.value, mean.n_layer, mean.n_head);
  ranking.resize(static_cast<size_t>(k));
  return ranking;
}

std::vector<HeadId> random_non_retrieval_heads(const ScoreMap& mean, const RandomHeadOptions& options) {
  check_map(mean);
  const int64_t n = mean.n_layer * mean.n_head;
  RHEAD_CHECK(options.exclude_top >= 0 && options.exclude_top <= n, InputError, "[ablate] exclude_top: got ",
              options.exclude_top, ", expected 0 <= exclude_top <= ", n);
  const auto top = top_k_heads(mean, options.exclude_top);
  std::vector<bool> excluded(static_cast<size_t>(n), false);
  for (const HeadId& id : top) excluded[static_cast<size_t>(id.layer * mean.n_head + id.head)] = true;
  std::vector<HeadId> pool;
  for (int64_t l = 0; l < mean.n_layer; ++l) {
    for (int64_t h = 0; h < mean.n_head; ++h) {
      const auto cell = static_cast<size_t>(l * mean.n_head + h);
      if (!excluded[cell] && !(mean.value[cell] > options.exclude_above)) {
        pool.push_back({static_cast<int32_t>(l), static_cast<int32_t>(h)});
      }
    }
  }
  RHEAD_CHECK(options.k >= 0 && options.k <= static_cast<int64_t>(pool.size()), InputError,
              "[ablate] random heads k: got ", options.k, ", expected 0 <= k <= ", pool.size(),
              " (non-retrieval heads: mean <= ", options.exclude_above, " and outside the top ", options.exclude_top,
              " of ", mean.n_layer, " x ", mean.n_head, "). Hint: lower k or raise exclude_above");
  SplitMix64 rng(options.seed);
  for (size_t i = 0; i < static_cast<size_t>(options.k); ++i) {
    const size_t j = i + static_cast<size_t>(rng.uniform_below(pool.size() - i));
    std::swap(pool[i], pool[j]);
  }
  pool.resize(static_cast<size_t>(options.k));
  std::sort(pool.begin(), pool.end());
  return pool;
}

std::string squad_normalize(std::string_view text) {
  std::string s;
  s.reserve(text.size());
  for (char c : text) {
    if (!is_py_punct(c)) s.push_back(ascii_lower(c));
  }
  // \b(a|an|the)\b -> ' ': exactly the maximal word-character runs equal to an article.
  std::string no_articles;
  no_articles.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (!is_word_char(s[i])) {
      no_articles.push_back(s[i++]);
      continue;
    }
    size_t j = i;
    while (j < s.size() && is_word_char(s[j])) ++j;
    const std::string_view word(s.data() + i, j - i);
    if (word == "a" || word == "an" || word == "the") no_articles.push_back(' ');
    else no_articles.append(word);
    i = j;
  }
  std::string out;
  for (const std::string& token : split_ws(no_articles)) {
    if (!out.empty()) out.push_back(' ');
    out += token;
  }
  return out;
}

double squad_f1(std::string_view prediction, std::string_view gold) {
  const auto pred_tokens = split_ws(squad_normalize(prediction));
  const auto gold_tokens = split_ws(squad_normalize(gold));
  if (pred_tokens.empty() || gold_tokens.empty()) return pred_tokens == gold_tokens ? 1.0 : 0.0;
  std::map<std::string, int64_t> gold_counts;
  for (const auto& t : gold_tokens) ++gold_counts[t];
  int64_t same = 0;
  for (const auto& t : pred_tokens) {
    auto it = gold_counts.find(t);
    if (it != gold_counts.end() && it->second > 0) {
      --it->second;
      ++same;
    }
  }
  if (same == 0) return 0.0;
  const double precision = static_cast<double>(same) / static_cast<double>(pred_tokens.size());
  const double recall = static_cast<double>(same) / static_cast<double>(gold_tokens.size());
  return 2.0 * precision * recall / (precision + recall);
}

double squad_exact_match(std::string_view prediction, std::string_view gold) {
  return squad_normalize(prediction) == squad_normalize(gold) ? 1.0 : 0.0;
}

QaScore squad_score(std::string_view prediction, const std::vector<std::string>& golds) {
  RHEAD_CHECK(!golds.empty(), InputError, "[ablate] QA item: got 0 gold answers, expected at least 1");
  QaScore score;
  for (const std::string& gold : golds) {
    score.f1 = std::max(score.f1, squad_f1(prediction, gold));
    score.exact_match = std::max(score.exact_match, squad_exact_match(prediction, gold));
  }
  return score;
}

std::string extract_final_answer(std::string_view response, AnswerKind kind) {
  const size_t start = after_answer_phrase(response);
  const bool has_phrase = start != std::string_view::npos;
  const std::string_view segment = has_phrase ? response.substr(start) : response;
  switch (kind) {
    case AnswerKind::kNumber: {
      const auto numbers = find_numbers(segment);
      if (numbers.empty()) return "";
      return has_phrase ? numbers.front() : numbers.back();
    }
    case AnswerKind::kChoice: {
      const auto choices = find_choices(segment);
      if (choices.empty()) return "";
      return has_phrase ? choices.front() : choices.back();
    }
    case AnswerKind::kText: {
      std::string answer;
      if (has_phrase) {
        answer = trim(segment.substr(0, segment.find('\n')));
      } else {
        size_t end = response.size();
        while (end > 0) {
          const size_t nl = response.rfind('\n', end - 1);
          const size_t begin = nl == std::string_view::npos ? 0 : nl + 1;
          answer = trim(response.substr(begin, end - begin));
          if (!answer.empty() || begin == 0) break;
          end = nl;
        }
      }
      if (!answer.empty() && answer.back() == '.') answer.pop_back();
      return trim(answer);
    }
  }
  return "";
}

const char* niah_error_type_name(NiahErrorType type) {
  switch (type) {
    case NiahErrorType::kCorrect: return "correct";
    case NiahErrorType::kIncomplete: return "incomplete";
    case NiahErrorType::kWrongExtraction: return "wrong_extraction";
    case NiahErrorType::kHallucination: return "hallucination";
  }
  return "unknown";
}

NiahErrorType classify_niah_error(double recall, std::string_view response, std::string_view haystack, int ngram) {
  RHEAD_CHECK(recall >= 0.0 && recall <= 100.0, InputError, "[ablate] NIAH recall: got ", recall,
              ", expected a ROUGE-1 recall x 100 in [0, 100]");
  RHEAD_CHECK(ngram >= 1, InputError, "[ablate] error-type n-gram: got ", ngram, ", expected >= 1");
  if (recall >= 100.0) return NiahErrorType::kCorrect;
  if (recall > 0.0) return NiahErrorType::kIncomplete;
  const auto n = static_cast<size_t>(ngram);
  const auto join = [n](const std::vector<std::string>& tokens, size_t i) {
    std::string key = tokens[i];
    for (size_t k = 1; k < n; ++k) key.append(" ").append(tokens[i + k]);
    return key;
  };
  const auto response_tokens = rouge_tokenize(response, false);
  if (response_tokens.size() < n) return NiahErrorType::kHallucination;
  std::unordered_set<std::string> wanted;
  for (size_t i = 0; i + n <= response_tokens.size(); ++i) wanted.insert(join(response_tokens, i));
  const auto haystack_tokens = rouge_tokenize(haystack, false);
  for (size_t i = 0; i + n <= haystack_tokens.size(); ++i) {
    if (wanted.count(join(haystack_tokens, i))) return NiahErrorType::kWrongExtraction;
  }
  return NiahErrorType::kHallucination;
}

double sink_fraction(const ArgmaxCapture& capture, const std::vector<HeadId>& heads, int64_t n_sink) {
  RHEAD_CHECK(static_cast<int64_t>(capture.pos.size()) == capture.n_step * capture.n_layer * capture.n_head,
              pipeline::ShapeError, "[ablate] capture.pos: got ", capture.pos.size(), " entries, expected ",
              capture.n_step, " x ", capture.n_layer, " x ", capture.n_head);
  for (const HeadId& id : heads) {
    RHEAD_CHECK(id.layer >= 0 && id.layer < capture.n_layer && id.head >= 0 && id.head < capture.n_head, InputError,
                "[ablate] sink heads: head ", head_key(id), " outside the capture's ", capture.n_layer, " x ",
                capture.n_head, " heads");
  }
  if (capture.n_step == 0 || heads.empty()) return 0.0;
  int64_t sinks = 0;
  for (int64_t s = 0; s < capture.n_step; ++s) {
    for (const HeadId& id : heads) {
      const int32_t j = capture.pos[static_cast<size_t>((s * capture.n_layer + id.layer) * capture.n_head + id.head)];
      if (j >= 0 && j < n_sink) ++sinks;
    }
  }
  return static_cast<double>(sinks) / static_cast<double>(capture.n_step * static_cast<int64_t>(heads.size()));
}

NiahErrorReport analyze_niah_cell(double recall, std::string_view response, std::string_view haystack,
                                  const ArgmaxCapture& capture, const std::vector<HeadId>& top_heads, int ngram,
                                  int64_t n_sink, double sink_threshold) {
  NiahErrorReport report;
  report.type = classify_niah_error(recall, response, haystack, ngram);
  report.sink_fraction = sink_fraction(capture, top_heads, n_sink);
  report.sink = !top_heads.empty() && capture.n_step > 0 && report.sink_fraction >= sink_threshold;
  return report;
}

}  // namespace stages
