#include "stages/score/score_ops.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "pipeline/core/error.h"

namespace stages {

ScoreRule parse_score_rule(const std::string& name) {
  if (name == "official") return ScoreRule::kOfficialSteps;
  if (name == "set_positions") return ScoreRule::kSetPositions;
  if (name == "set_tokens") return ScoreRule::kSetTokens;
  throw pipeline::ConfigError(pipeline::str_cat(
      "[score] score_rule: got '", name, "', expected one of official, set_positions, set_tokens. ",
      "Hint: 'official' reproduces the shipped head_score files"));
}

const char* score_rule_name(ScoreRule rule) {
  switch (rule) {
    case ScoreRule::kOfficialSteps: return "official";
    case ScoreRule::kSetPositions: return "set_positions";
    case ScoreRule::kSetTokens: return "set_tokens";
  }
  return "unknown";
}

std::string head_key(const HeadId& id) { return pipeline::str_cat(id.layer, "-", id.head); }

std::vector<double> retrieval_scores_for_test(const ArgmaxCapture& capture, const std::vector<int32_t>& generated,
                                              const std::vector<int32_t>& prompt_ids, NeedleSpan span,
                                              ScoreRule rule) {
  using pipeline::InputError;
  using pipeline::ShapeError;
  const int64_t n_step = capture.n_step;
  const int64_t n_layer = capture.n_layer;
  const int64_t n_head = capture.n_head;
  RHEAD_CHECK(n_step >= 0 && n_layer > 0 && n_head > 0, ShapeError, "[score] capture: dims [", n_step, ", ",
              n_layer, ", ", n_head, "], expected steps >= 0 and layers, heads > 0");
  RHEAD_CHECK(static_cast<int64_t>(capture.pos.size()) == n_step * n_layer * n_head, ShapeError,
              "[score] capture.pos: got ", capture.pos.size(), " entries, expected steps*layers*heads = ",
              n_step * n_layer * n_head, " for dims [", n_step, ", ", n_layer, ", ", n_head, "]");
  RHEAD_CHECK(static_cast<int64_t>(generated.size()) == n_step, ShapeError, "[score] generated tokens: got ",
              generated.size(), ", expected one per captured step (", n_step, ")");
  const auto n_prompt = static_cast<int64_t>(prompt_ids.size());
  RHEAD_CHECK(span.begin >= 0 && span.begin < span.end && span.end <= n_prompt, InputError,
              "[score] needle span: got [", span.begin, ", ", span.end, "), expected 0 <= begin < end <= ",
              n_prompt, " (prompt length). Hint: the answer span was not found in the prompt");

  const int64_t n_cell = n_layer * n_head;
  std::vector<double> out(static_cast<size_t>(n_cell), 0.0);
  const double unit = 1.0 / static_cast<double>(span.end - span.begin);
  // copied[cell] holds what the set rules count: needle positions or token ids.
  std::vector<std::set<int64_t>> copied(rule == ScoreRule::kOfficialSteps ? 0 : static_cast<size_t>(n_cell));
  for (int64_t s = 0; s < n_step; ++s) {
    const int32_t token = generated[static_cast<size_t>(s)];
    for (int64_t cell = 0; cell < n_cell; ++cell) {
      const int32_t j = capture.pos[static_cast<size_t>(s * n_cell + cell)];
      RHEAD_CHECK(j >= 0, InputError, "[score] capture.pos[", s, ", ", cell / n_head, ", ", cell % n_head,
                  "]: got ", j, ", expected a key position >= 0");
      if (j < span.begin || j >= span.end || prompt_ids[static_cast<size_t>(j)] != token) continue;
      switch (rule) {
        case ScoreRule::kOfficialSteps: out[static_cast<size_t>(cell)] += unit; break;
        case ScoreRule::kSetPositions: copied[static_cast<size_t>(cell)].insert(j); break;
        case ScoreRule::kSetTokens: copied[static_cast<size_t>(cell)].insert(token); break;
      }
    }
  }
  if (rule == ScoreRule::kOfficialSteps) return out;
  double denominator = static_cast<double>(span.end - span.begin);
  if (rule == ScoreRule::kSetTokens) {
    const std::set<int32_t> distinct(prompt_ids.begin() + span.begin, prompt_ids.begin() + span.end);
    denominator = static_cast<double>(distinct.size());
  }
  for (int64_t cell = 0; cell < n_cell; ++cell) {
    out[static_cast<size_t>(cell)] = static_cast<double>(copied[static_cast<size_t>(cell)].size()) / denominator;
  }
  return out;
}

HeadScores make_head_scores(int64_t n_layer, int64_t n_head) {
  RHEAD_CHECK(n_layer > 0 && n_head > 0, pipeline::ShapeError, "[score] head scores: got [", n_layer, ", ",
              n_head, "] layers x heads, expected both > 0");
  HeadScores scores;
  scores.n_layer = n_layer;
  scores.n_head = n_head;
  return scores;
}

bool append_if_successful(HeadScores& scores, const std::vector<double>& test_scores, double rouge_recall,
                          double success_threshold) {
  RHEAD_CHECK(static_cast<int64_t>(test_scores.size()) == scores.n_layer * scores.n_head, pipeline::ShapeError,
              "[score] test scores: got ", test_scores.size(), " heads, expected ", scores.n_layer, " x ",
              scores.n_head, " = ", scores.n_layer * scores.n_head);
  if (!(rouge_recall > success_threshold)) return false;
  scores.scores.insert(scores.scores.end(), test_scores.begin(), test_scores.end());
  ++scores.n_test;
  return true;
}

void append_tests(HeadScores& into, const HeadScores& more) {
  RHEAD_CHECK(into.n_layer == more.n_layer && into.n_head == more.n_head, pipeline::ShapeError,
              "[score] merge head scores: got [", more.n_layer, ", ", more.n_head, "], expected [", into.n_layer,
              ", ", into.n_head, "] (same model)");
  into.scores.insert(into.scores.end(), more.scores.begin(), more.scores.end());
  into.n_test += more.n_test;
}

std::vector<HeadId> rank_heads(const std::vector<double>& values, int64_t n_layer, int64_t n_head) {
  RHEAD_CHECK(static_cast<int64_t>(values.size()) == n_layer * n_head, pipeline::ShapeError,
              "[score] rank heads: got ", values.size(), " values, expected ", n_layer, " x ", n_head);
  std::vector<HeadId> ids;
  ids.reserve(values.size());
  for (int64_t l = 0; l < n_layer; ++l) {
    for (int64_t h = 0; h < n_head; ++h) {
      RHEAD_CHECK(std::isfinite(values[static_cast<size_t>(l * n_head + h)]), pipeline::InputError,
                  "[score] rank heads: value of head ", l, "-", h, " is not finite");
      ids.push_back({static_cast<int32_t>(l), static_cast<int32_t>(h)});
    }
  }
  const auto value = [&](const HeadId& id) { return values[static_cast<size_t>(id.layer * n_head + id.head)]; };
  std::stable_sort(ids.begin(), ids.end(), [&](const HeadId& a, const HeadId& b) { return value(a) > value(b); });
  return ids;  // stable sort of a (layer, head)-ordered list: ties stay in (layer, head) order
}

ScoreMap score_map_from_summary(const HeadSummary& summary) {
  return ScoreMap{summary.n_layer, summary.n_head, summary.mean};
}

ScoreBins bin_scores(const std::vector<double>& mean) {
  ScoreBins bins;
  for (double m : mean) {
    if (m == 0.0) ++bins.count[0];
    else if (m <= 0.1) ++bins.count[1];
    else if (m <= 0.5) ++bins.count[2];
    else ++bins.count[3];
  }
  for (size_t b = 0; b < 4; ++b) {
    bins.percent[b] = mean.empty() ? 0.0 : 100.0 * static_cast<double>(bins.count[b]) / static_cast<double>(mean.size());
  }
  return bins;
}

HeadSummary summarize_heads(const HeadScores& scores, const HeadSummaryOptions& options) {
  const int64_t n_cell = scores.n_layer * scores.n_head;
  RHEAD_CHECK(scores.n_layer > 0 && scores.n_head > 0 &&
                  static_cast<int64_t>(scores.scores.size()) == scores.n_test * n_cell,
              pipeline::ShapeError, "[score] head scores: ", scores.scores.size(), " values, expected tests x layers x heads = ",
              scores.n_test, " x ", scores.n_layer, " x ", scores.n_head);
  RHEAD_CHECK(scores.n_test > 0, pipeline::InputError,
              "[score] head scores: got 0 successful tests, expected at least 1. Hint: no test reached ROUGE-1 "
              "recall > 50 (check the chat template, the stop rule and the needle; official issue #6)");
  HeadSummary summary;
  summary.n_layer = scores.n_layer;
  summary.n_head = scores.n_head;
  summary.n_test = scores.n_test;
  summary.mean.assign(static_cast<size_t>(n_cell), 0.0);
  summary.frequency.assign(static_cast<size_t>(n_cell), 0.0);
  std::vector<int64_t> active(static_cast<size_t>(n_cell), 0);
  for (int64_t t = 0; t < scores.n_test; ++t) {
    for (int64_t cell = 0; cell < n_cell; ++cell) {
      const double v = scores.scores[static_cast<size_t>(t * n_cell + cell)];
      summary.mean[static_cast<size_t>(cell)] += v;
      if (v > 0.0) ++active[static_cast<size_t>(cell)];
    }
  }
  const auto n = static_cast<double>(scores.n_test);
  for (int64_t cell = 0; cell < n_cell; ++cell) {
    summary.mean[static_cast<size_t>(cell)] /= n;
    summary.frequency[static_cast<size_t>(cell)] = static_cast<double>(active[static_cast<size_t>(cell)]) / n;
    if (active[static_cast<size_t>(cell)] == scores.n_test) {
      summary.always_on_heads.push_back(
          {static_cast<int32_t>(cell / scores.n_head), static_cast<int32_t>(cell % scores.n_head)});
    }
  }
  summary.ranking = rank_heads(summary.mean, scores.n_layer, scores.n_head);
  for (const HeadId& id : summary.ranking) {
    if (summary.mean[static_cast<size_t>(id.layer * scores.n_head + id.head)] > options.retrieval_threshold) {
      summary.retrieval_heads.push_back(id);
    }
  }
  summary.bins = bin_scores(summary.mean);
  return summary;
}

}  // namespace stages
