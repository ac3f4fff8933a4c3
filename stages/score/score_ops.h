// Retrieval-score rule and its aggregates (docs/PAPER_NOTES.md, "Retrieval score"). Pure functions: vectors in,
// vectors out.
//
// Per test (one context length x depth x needle), the generate stage records for every decode step s
// and every query head (l, h) the argmax key position j = argmax_pos[s, l, h] of that head's attention
// row, plus the generated token generated[s]. With the needle answer span [begin, end) of prompt_ids:
//   official rule (ScoreRule::kOfficialSteps, the code, docs/PAPER_NOTES.md, "Retrieval score"):
//       score(l, h) = sum over steps s of [begin <= j < end and prompt_ids[j] == generated[s]] / (end - begin)
//       (duplicates counted: copying the same needle token twice counts twice, so a score can exceed 1);
//   paper "set" rule (docs/PAPER_NOTES.md, "Retrieval score", |g_h ∩ k| / |k|), in two precise readings:
//       ScoreRule::kSetPositions: |{ j in [begin, end) : some step s copies it, i.e. argmax_pos[s,l,h] == j
//           and prompt_ids[j] == generated[s] }| / (end - begin). k is the sequence of needle *positions*;
//           the denominator is the official one, so the score is in [0, 1], equals the official score when
//           no position is copied twice, and a needle token that occurs twice (e.g. "a" in "... a sandwich ...
//           a sunny day") must be copied from both places to count twice. This is the default "set" reading.
//       ScoreRule::kSetTokens: |{ distinct token values v copied as above }| / |{ distinct token values in
//           prompt_ids[begin, end) }| (k as a set of token ids; repeated needle tokens count once).
// Positions j >= prompt_ids.size() (keys of generated tokens, present from step 1 on) are never inside the
// span and are ignored; negative positions are an error.
//
// Aggregation over tests (docs/PAPER_NOTES.md, "Retrieval score"): only tests with ROUGE-1 recall (x100)
// strictly above a threshold (50) contribute; failed tests are dropped, not counted as 0. Per head: mean score
// (retrieval score) and
// activation frequency (fraction of successful tests with per-test score > 0).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace stages {

enum class ScoreRule {
  kOfficialSteps,  // the official code: one count per decoding step, duplicates counted
  kSetPositions,   // paper: distinct copied needle positions / needle length
  kSetTokens,      // paper, token-set reading: distinct copied token ids / distinct needle token ids
};

// A per-head quantity of one model, e.g. the mean retrieval score.
struct ScoreMap {
  int64_t n_layer = 0;
  int64_t n_head = 0;
  std::vector<double> value;  // [n_layer, n_head] row-major

  // (layer, head) -> value.
  double at(int64_t layer, int64_t head) const { return value[static_cast<size_t>(layer * n_head + head)]; }
};

// Parses "official" | "set_positions" | "set_tokens"; throws pipeline::ConfigError naming the value otherwise.
ScoreRule parse_score_rule(const std::string& name);
// ScoreRule -> its config name ("official", "set_positions", "set_tokens").
const char* score_rule_name(ScoreRule rule);

struct HeadId {
  int32_t layer = 0;
  int32_t head = 0;
  bool operator==(const HeadId& other) const { return layer == other.layer && head == other.head; }
  bool operator<(const HeadId& other) const {
    return layer != other.layer ? layer < other.layer : head < other.head;
  }
};
std::string head_key(const HeadId& id);  // "<layer>-<head>", the official JSON key

// Argmax key positions of one test: pos[s * n_layer * n_head + l * n_head + h].
struct ArgmaxCapture {
  int64_t n_step = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  std::vector<int32_t> pos;  // [n_step, n_layer, n_head] row-major
};

struct NeedleSpan {
  int64_t begin = 0;  // first answer token in prompt_ids
  int64_t end = 0;    // one past the last; end - begin = answer length in tokens
};

// capture [S, L, H], generated [S], prompt_ids [T], span in [0, T] -> per-test score [L, H] (row-major).
// Throws pipeline::ShapeError / InputError for inconsistent sizes, an empty or out-of-range span, or negative positions.
std::vector<double> retrieval_scores_for_test(const ArgmaxCapture& capture, const std::vector<int32_t>& generated,
                                              const std::vector<int32_t>& prompt_ids, NeedleSpan span,
                                              ScoreRule rule = ScoreRule::kOfficialSteps);

// Per-test scores of the successful tests of one model: the official head_score JSON in memory.
struct HeadScores {
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_test = 0;
  std::vector<double> scores;  // [n_test, n_layer, n_head] row-major (test-major so that appending is cheap)

  // (test, layer, head) -> score of that head in that test.
  double at(int64_t test, int64_t layer, int64_t head) const {
    return scores[static_cast<size_t>((test * n_layer + layer) * n_head + head)];
  }
};

// HeadScores{L, H, 0}: no tests yet.
HeadScores make_head_scores(int64_t n_layer, int64_t n_head);

// Appends one test's [L, H] scores when rouge_recall (x100) > success_threshold; returns whether it was kept.
bool append_if_successful(HeadScores& scores, const std::vector<double>& test_scores, double rouge_recall,
                          double success_threshold = 50.0);

// Appends every test of `more` after those of `into` (the official merge-on-rerun, docs/PAPER_NOTES.md,
// "Retrieval score"); shapes must agree.
void append_tests(HeadScores& into, const HeadScores& more);

// Counts of per-head mean scores in the Figure-3 bins: == 0, (0, 0.1], (0.1, 0.5], > 0.5.
struct ScoreBins {
  std::array<int64_t, 4> count{};    // bin order as above
  std::array<double, 4> percent{};   // count / (L * H) * 100
};

struct HeadSummaryOptions {
  double retrieval_threshold = 0.1;  // retrieval head: mean > this (docs/PAPER_NOTES.md, "Published head scores")
};

struct HeadSummary {
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_test = 0;
  std::vector<double> mean;             // [L, H] retrieval score = mean per-test score
  std::vector<double> frequency;        // [L, H] fraction of tests with per-test score > 0
  std::vector<HeadId> ranking;          // all heads, mean descending, ties by (layer, head) ascending
  std::vector<HeadId> retrieval_heads;  // mean > retrieval_threshold, in ranking order
  std::vector<HeadId> always_on_heads;  // frequency == 1 (score > 0 in every test), (layer, head) order
  ScoreBins bins;
};

// HeadScores [N, L, H] -> per-head mean/frequency [L, H], ranking, retrieval and always-on heads, bins.
// Means are sums in test order divided by N (like Python's sum(v) / len(v)).
// Throws pipeline::InputError when n_test == 0 (no successful test: nothing to average; see issue #6).
HeadSummary summarize_heads(const HeadScores& scores, const HeadSummaryOptions& options = {});

// HeadSummary -> its [L, H] mean-score map.
ScoreMap score_map_from_summary(const HeadSummary& summary);

// values [L, H] -> all heads sorted by value descending, ties by (layer, head) ascending.
std::vector<HeadId> rank_heads(const std::vector<double>& values, int64_t n_layer, int64_t n_head);

// mean [L, H] -> Figure-3 bin counts and percentages.
ScoreBins bin_scores(const std::vector<double>& mean);

}  // namespace stages
