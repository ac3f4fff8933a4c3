#include "stages/niah/rouge.h"

#include <algorithm>
#include <unordered_map>

#include "pipeline/core/error.h"
#include "stages/niah/porter_stemmer.h"

namespace stages {
namespace {

bool is_alnum_lower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// Number of bytes of the UTF-8 sequence starting at s[i] (1 for an invalid lead or truncated sequence).
size_t utf8_length(std::string_view s, size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  size_t len = 1;
  if (lead >= 0xC2 && lead <= 0xDF) len = 2;
  else if (lead >= 0xE0 && lead <= 0xEF) len = 3;
  else if (lead >= 0xF0 && lead <= 0xF4) len = 4;
  if (i + len > s.size()) return 1;
  for (size_t k = 1; k < len; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
  }
  return len;
}

// text -> lower-cased [a-z0-9] runs separated by single spaces (the re.sub step of rouge_score).
std::string normalize_for_rouge(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80) {
      const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      out.push_back(is_alnum_lower(lower) ? lower : ' ');
      ++i;
      continue;
    }
    const size_t len = utf8_length(text, i);
    const std::string_view seq = text.substr(i, len);
    if (seq == "\xC4\xB0") {
      out += "i ";  // U+0130 -> 'i' + U+0307 (combining dot, a separator)
    } else if (seq == "\xE2\x84\xAA") {
      out.push_back('k');  // U+212A KELVIN SIGN -> 'k'
    } else {
      out.push_back(' ');
    }
    i += len;
  }
  return out;
}

}  // namespace

std::vector<std::string> rouge_tokenize(std::string_view text, bool use_stemmer) {
  const std::string normalized = normalize_for_rouge(text);
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < normalized.size()) {
    while (i < normalized.size() && normalized[i] == ' ') ++i;
    size_t j = i;
    while (j < normalized.size() && normalized[j] != ' ') ++j;
    if (j > i) {
      std::string token = normalized.substr(i, j - i);
      if (use_stemmer && token.size() > 3) token = porter_stem(token);
      // rouge_score's final ^[a-z0-9]+$ filter (a stem is never empty for tokens longer than 3).
      if (!token.empty() && std::all_of(token.begin(), token.end(), is_alnum_lower)) {
        tokens.push_back(std::move(token));
      }
    }
    i = j;
  }
  return tokens;
}

RougeScore rouge_n_tokens(const std::vector<std::string>& reference, const std::vector<std::string>& hypothesis,
                          int n) {
  RHEAD_CHECK(n >= 1, pipeline::InputError, "[rouge] n: got ", n, ", expected n >= 1 (ROUGE-1 is n = 1)");
  const auto count_ngrams = [n](const std::vector<std::string>& tokens, long long& total) {
    std::unordered_map<std::string, long long> counts;
    total = 0;
    const auto un = static_cast<size_t>(n);
    for (size_t i = 0; i + un <= tokens.size(); ++i) {
      std::string key = tokens[i];
      for (size_t k = 1; k < un; ++k) key.append(" ").append(tokens[i + k]);  // tokens never contain ' '
      ++counts[key];
      ++total;
    }
    return counts;
  };
  long long ref_total = 0;
  long long hyp_total = 0;
  const auto ref_counts = count_ngrams(reference, ref_total);
  const auto hyp_counts = count_ngrams(hypothesis, hyp_total);
  long long overlap = 0;
  for (const auto& [ngram, count] : ref_counts) {
    const auto it = hyp_counts.find(ngram);
    if (it != hyp_counts.end()) overlap += std::min(count, it->second);
  }
  RougeScore score;
  score.precision = static_cast<double>(overlap) / static_cast<double>(std::max(hyp_total, 1LL));
  score.recall = static_cast<double>(overlap) / static_cast<double>(std::max(ref_total, 1LL));
  const double sum = score.precision + score.recall;
  score.fmeasure = sum > 0.0 ? 2.0 * score.precision * score.recall / sum : 0.0;
  return score;
}

RougeScore rouge_n(std::string_view reference, std::string_view hypothesis, int n, bool use_stemmer) {
  return rouge_n_tokens(rouge_tokenize(reference, use_stemmer), rouge_tokenize(hypothesis, use_stemmer), n);
}

double niah_rouge1_recall(std::string_view reference, std::string_view response) {
  return rouge_n(reference, response, 1, true).recall * 100.0;
}

}  // namespace stages
