#include "stages/ablate/ablate_ops.h"

#include <algorithm>
#include <map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "pipeline/core/error.h"
#include "stages/niah/rouge.h"

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

// Task files: the string field `key` of a JSONL object, "" when absent and optional.
std::string task_string(const nlohmann::json& obj, const char* key, bool required, const std::string& where) {
  if (!obj.contains(key)) {
    RHEAD_CHECK(!required, InputError, "[ablate] ", where, ": field '", key,
                "' is missing; expected a string. Hint: see docs/STORE.md, ablate.h5, task files");
    return "";
  }
  const auto& v = obj.at(key);
  RHEAD_CHECK(v.is_string(), InputError, "[ablate] ", where, ": field '", key, "' has the wrong type; got ",
              v.type_name(), " ", v.dump(), ", expected a string");
  std::string s = v.get<std::string>();
  RHEAD_CHECK(!required || !trim(s).empty(), InputError, "[ablate] ", where, ": field '", key,
              "' is empty; expected non-empty text");
  return s;
}

bool is_task_name_char(char c) { return is_ascii_alnum(c) || c == '_' || c == '-'; }

}  // namespace

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

const char* task_kind_name(TaskKind kind) {
  switch (kind) {
    case TaskKind::kQa: return "qa";
    case TaskKind::kCot: return "cot";
    case TaskKind::kDirect: return "direct";
  }
  return "unknown";
}

TaskSpec parse_task_entry(std::string_view entry, std::string_view job_source) {
  const auto fail = [&](const std::string& problem) {
    return pipeline::ConfigError(str_cat("[config] ", job_source, ": [ablate] tasks: entry '", entry, "': ", problem,
                                         "; expected name=kind:path with kind qa, cot or direct (e.g. "
                                         "squad=qa:data/squad.jsonl)"));
  };
  const size_t eq = entry.find('=');
  if (eq == std::string_view::npos) throw fail("no '='");
  const size_t colon = entry.find(':', eq + 1);
  if (colon == std::string_view::npos) throw fail("no ':' after the kind");
  TaskSpec spec;
  spec.name = trim(entry.substr(0, eq));
  const std::string kind = trim(entry.substr(eq + 1, colon - eq - 1));
  spec.path = trim(entry.substr(colon + 1));
  if (spec.name.empty() || !std::all_of(spec.name.begin(), spec.name.end(), is_task_name_char)) {
    throw fail(str_cat("name '", spec.name, "' is not made of letters, digits, '_' and '-' only (it names cells "
                       "and store groups)"));
  }
  if (kind == "qa") {
    spec.kind = TaskKind::kQa;
  } else if (kind == "cot") {
    spec.kind = TaskKind::kCot;
  } else if (kind == "direct") {
    spec.kind = TaskKind::kDirect;
  } else {
    throw fail(str_cat("unknown kind '", kind, "'"));
  }
  if (spec.path.empty()) throw fail("empty path");
  return spec;
}

std::vector<TaskItem> parse_task_jsonl(std::string_view text, TaskKind kind, const std::string& source) {
  const bool qa = kind == TaskKind::kQa;
  const std::vector<std::string> allowed =
      qa ? std::vector<std::string>{"context", "question", "answers", "prompt"}
         : std::vector<std::string>{"question", "answer", "context", "prompt", "answer_kind"};
  std::vector<TaskItem> items;
  size_t pos = 0;
  for (int line = 1; pos < text.size(); ++line) {
    const size_t nl = text.find('\n', pos);
    const std::string_view row = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    if (trim(row).empty()) continue;
    const std::string where = str_cat(source, ":", line);
    nlohmann::json obj;
    try {
      obj = nlohmann::json::parse(row);
    } catch (const nlohmann::json::parse_error& e) {
      throw InputError(str_cat("[ablate] ", where, ": not valid JSON (", e.what(),
                               "). Hint: a task file holds one JSON object per line"));
    }
    RHEAD_CHECK(obj.is_object(), InputError, "[ablate] ", where, ": expected a JSON object; got ", obj.type_name());
    std::string expected;
    for (const auto& a : allowed) expected += (expected.empty() ? "" : ", ") + a;
    for (const auto& field : obj.items()) {
      RHEAD_CHECK(std::find(allowed.begin(), allowed.end(), field.key()) != allowed.end(), InputError, "[ablate] ",
                  where, ": unknown field '", field.key(), "' for a ", task_kind_name(kind), " task; expected ",
                  expected);
    }
    TaskItem item;
    item.prompt = task_string(obj, "prompt", false, where);
    item.context = task_string(obj, "context", qa, where);
    item.question = task_string(obj, "question", true, where);
    if (qa) {
      RHEAD_CHECK(obj.contains("answers"), InputError, "[ablate] ", where,
                  ": field 'answers' is missing; expected an array of strings (the gold answers)");
      const auto& golds = obj.at("answers");
      RHEAD_CHECK(golds.is_array() && !golds.empty(), InputError, "[ablate] ", where,
                  ": field 'answers' has the wrong type; got ", golds.type_name(), " ", golds.dump(),
                  ", expected a non-empty array of strings");
      for (const auto& g : golds) {
        RHEAD_CHECK(g.is_string(), InputError, "[ablate] ", where, ": field 'answers' holds ", g.type_name(), " ",
                    g.dump(), "; expected strings only");
        item.answers.push_back(g.get<std::string>());
      }
    } else {
      item.answers.push_back(task_string(obj, "answer", true, where));
      const std::string answer_kind = task_string(obj, "answer_kind", false, where);
      if (answer_kind == "number") {
        item.answer_kind = AnswerKind::kNumber;
      } else if (answer_kind == "choice") {
        item.answer_kind = AnswerKind::kChoice;
      } else {
        RHEAD_CHECK(answer_kind.empty() || answer_kind == "text", InputError, "[ablate] ", where,
                    ": field 'answer_kind': got '", answer_kind, "', expected text, number or choice");
      }
    }
    items.push_back(std::move(item));
  }
  RHEAD_CHECK(!items.empty(), InputError, "[ablate] ", source, ": no task items; expected one JSON object per line (",
              qa ? "context, question, answers" : "question, answer", ")");
  return items;
}

std::string task_user_text(const TaskItem& item) {
  return str_cat(item.prompt.empty() ? "" : item.prompt + "\n", item.context.empty() ? "" : item.context + "\n",
                 "Question: ", item.question, "\nAnswer:");
}

TaskScore score_task_response(const TaskItem& item, TaskKind kind, std::string_view response) {
  TaskScore score;
  score.prediction = kind == TaskKind::kQa ? std::string(response) : extract_final_answer(response, item.answer_kind);
  const QaScore s = squad_score(score.prediction, item.answers);
  score.f1 = 100.0 * s.f1;
  score.exact_match = 100.0 * s.exact_match;
  return score;
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

std::vector<HeadId> heads_not_masked(const std::vector<HeadId>& heads, const std::vector<HeadId>& masked) {
  std::vector<HeadId> out;
  for (const HeadId& id : heads) {
    if (std::find(masked.begin(), masked.end(), id) == masked.end()) out.push_back(id);
  }
  return out;
}

NiahErrorReport analyze_niah_cell(double recall, std::string_view response, std::string_view haystack,
                                  const ArgmaxCapture& capture, const std::vector<HeadId>& top_heads,
                                  const std::vector<HeadId>& masked, int ngram, int64_t n_sink,
                                  double sink_threshold) {
  NiahErrorReport report;
  report.type = classify_niah_error(recall, response, haystack, ngram);
  const std::vector<HeadId> looking = heads_not_masked(top_heads, masked);
  report.sink_fraction = sink_fraction(capture, looking, n_sink);
  report.sink = !looking.empty() && capture.n_step > 0 && report.sink_fraction >= sink_threshold;
  return report;
}

}  // namespace stages
