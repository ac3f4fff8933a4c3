// Retrieval-score rule on hand-built captures, and the per-head aggregates.
#include <gtest/gtest.h>

#include <vector>

#include "pipeline/core/error.h"
#include "stages/score/score_ops.h"

namespace {

using stages::ArgmaxCapture;
using stages::HeadId;
using stages::NeedleSpan;
using stages::ScoreRule;

// prompt: positions 0..6 = [1, 5, 20, 21, 20, 22, 7]; answer span [2, 6) = tokens 20 21 20 22 ("20" twice).
const std::vector<int32_t> kPrompt = {1, 5, 20, 21, 20, 22, 7};
constexpr NeedleSpan kSpan{2, 6};
// generated: 20 21 20 22 then a token that is not in the needle.
const std::vector<int32_t> kGenerated = {20, 21, 20, 22, 99};

// 2 layers x 2 heads, 5 steps. Per head, the argmax position at steps 0..4:
//   (0,0) perfect copier:   2 3 4 5 0  -> 4 hits at 4 distinct positions
//   (0,1) duplicate copier: 2 3 2 5 6  -> 4 hits, position 2 twice (step 2 copies "20" from the first "20")
//   (1,0) never a hit:      3 1 6 4 7  -> token mismatch, outside span, outside span, mismatch, generated key (7 >= T)
//   (1,1) stuck on pos 2:   2 2 2 2 2  -> hits at steps 0 and 2 only (token must match the generated one)
ArgmaxCapture make_capture() {
  const int32_t per_head[4][5] = {{2, 3, 4, 5, 0}, {2, 3, 2, 5, 6}, {3, 1, 6, 4, 7}, {2, 2, 2, 2, 2}};
  ArgmaxCapture c;
  c.n_step = 5;
  c.n_layer = 2;
  c.n_head = 2;
  c.pos.resize(20);
  for (int s = 0; s < 5; ++s) {
    for (int cell = 0; cell < 4; ++cell) c.pos[static_cast<size_t>(s * 4 + cell)] = per_head[cell][s];
  }
  return c;
}

}  // namespace

TEST(RetrievalScore, OfficialRuleCountsStepsWithDuplicates) {
  const auto s = stages::retrieval_scores_for_test(make_capture(), kGenerated, kPrompt, kSpan, ScoreRule::kOfficialSteps);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_DOUBLE_EQ(s[0], 1.0);
  EXPECT_DOUBLE_EQ(s[1], 1.0);  // duplicates counted: same as the perfect copier
  EXPECT_DOUBLE_EQ(s[2], 0.0);
  EXPECT_DOUBLE_EQ(s[3], 0.5);
}

TEST(RetrievalScore, OfficialRuleCanExceedOne) {
  // A head copying the same token at every one of 6 steps scores 6/4 = 1.5 (docs/PAPER_NOTES.md, "Retrieval
  // score": shipped max 1.789).
  ArgmaxCapture c{6, 1, 1, {2, 2, 2, 2, 2, 2}};
  const std::vector<int32_t> gen(6, 20);
  EXPECT_DOUBLE_EQ(stages::retrieval_scores_for_test(c, gen, kPrompt, kSpan)[0], 1.5);
  EXPECT_DOUBLE_EQ(stages::retrieval_scores_for_test(c, gen, kPrompt, kSpan, ScoreRule::kSetPositions)[0], 0.25);
}

TEST(RetrievalScore, SetRules) {
  const auto pos = stages::retrieval_scores_for_test(make_capture(), kGenerated, kPrompt, kSpan, ScoreRule::kSetPositions);
  EXPECT_DOUBLE_EQ(pos[0], 1.0);         // positions {2,3,4,5} / 4
  EXPECT_DOUBLE_EQ(pos[1], 3.0 / 4.0);   // positions {2,3,5} / 4
  EXPECT_DOUBLE_EQ(pos[2], 0.0);
  EXPECT_DOUBLE_EQ(pos[3], 1.0 / 4.0);   // position {2}
  const auto tok = stages::retrieval_scores_for_test(make_capture(), kGenerated, kPrompt, kSpan, ScoreRule::kSetTokens);
  EXPECT_DOUBLE_EQ(tok[0], 1.0);         // tokens {20,21,22} / distinct needle tokens {20,21,22}
  EXPECT_DOUBLE_EQ(tok[1], 1.0);
  EXPECT_DOUBLE_EQ(tok[2], 0.0);
  EXPECT_DOUBLE_EQ(tok[3], 1.0 / 3.0);   // token {20}
}

TEST(RetrievalScore, ZeroStepsScoreZero) {
  ArgmaxCapture c{0, 2, 3, {}};
  const auto s = stages::retrieval_scores_for_test(c, {}, kPrompt, kSpan);
  EXPECT_EQ(s, std::vector<double>(6, 0.0));
}

TEST(RetrievalScore, RejectsBadInput) {
  auto c = make_capture();
  EXPECT_THROW(stages::retrieval_scores_for_test(c, {20, 21}, kPrompt, kSpan), pipeline::ShapeError);
  EXPECT_THROW(stages::retrieval_scores_for_test(c, kGenerated, kPrompt, NeedleSpan{3, 3}), pipeline::InputError);
  EXPECT_THROW(stages::retrieval_scores_for_test(c, kGenerated, kPrompt, NeedleSpan{2, 8}), pipeline::InputError);
  c.pos[7] = -1;
  EXPECT_THROW(stages::retrieval_scores_for_test(c, kGenerated, kPrompt, kSpan), pipeline::InputError);
  c.pos.pop_back();
  EXPECT_THROW(stages::retrieval_scores_for_test(c, kGenerated, kPrompt, kSpan), pipeline::ShapeError);
  try {
    stages::retrieval_scores_for_test(make_capture(), kGenerated, kPrompt, NeedleSpan{5, 2});
    FAIL() << "expected an InputError";
  } catch (const pipeline::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("[score] needle span: got [5, 2)"), std::string::npos) << e.what();
  }
  EXPECT_EQ(stages::parse_score_rule("set_positions"), ScoreRule::kSetPositions);
  EXPECT_THROW(stages::parse_score_rule("sets"), pipeline::ConfigError);
}

TEST(HeadSummary, OnlySuccessfulTestsAreAveraged) {
  // 1 layer x 3 heads; four tests, recall 100, 40 (dropped), 50 (dropped: the rule is > 50), 75.
  auto scores = stages::make_head_scores(1, 3);
  EXPECT_TRUE(stages::append_if_successful(scores, {0.6, 0.0, 0.1}, 100.0));
  EXPECT_FALSE(stages::append_if_successful(scores, {9.0, 9.0, 9.0}, 40.0));
  EXPECT_FALSE(stages::append_if_successful(scores, {9.0, 9.0, 9.0}, 50.0));
  EXPECT_TRUE(stages::append_if_successful(scores, {0.2, 0.0, 0.1}, 75.0));
  EXPECT_THROW(stages::append_if_successful(scores, {0.2}, 75.0), pipeline::ShapeError);
  ASSERT_EQ(scores.n_test, 2);

  const auto summary = stages::summarize_heads(scores);
  EXPECT_DOUBLE_EQ(summary.mean[0], 0.4);
  EXPECT_DOUBLE_EQ(summary.mean[1], 0.0);
  EXPECT_DOUBLE_EQ(summary.mean[2], 0.1);    // exactly 0.1 is not a retrieval head (mean > 0.1)
  EXPECT_DOUBLE_EQ(summary.frequency[0], 1.0);
  EXPECT_DOUBLE_EQ(summary.frequency[1], 0.0);
  EXPECT_DOUBLE_EQ(summary.frequency[2], 1.0);
  EXPECT_EQ(summary.retrieval_heads, (std::vector<HeadId>{{0, 0}}));
  EXPECT_EQ(summary.always_on_heads, (std::vector<HeadId>{{0, 0}, {0, 2}}));
  EXPECT_EQ(summary.ranking, (std::vector<HeadId>{{0, 0}, {0, 2}, {0, 1}}));
  EXPECT_EQ(summary.bins.count, (std::array<int64_t, 4>{1, 1, 1, 0}));
  EXPECT_NEAR(summary.bins.percent[0], 100.0 / 3.0, 1e-12);
}

TEST(HeadSummary, FrequencyBelowOneAndBins) {
  // 2 x 2 heads, 4 tests: head (0,1) fires in 3 of 4 tests, (1,0) scores 0.6 on average, (1,1) never fires.
  auto scores = stages::make_head_scores(2, 2);
  const double t[4][4] = {{0.05, 0.3, 0.6, 0}, {0.05, 0.3, 0.6, 0}, {0.05, 0.3, 0.6, 0}, {0.05, 0.0, 0.6, 0}};
  for (const auto& row : t) stages::append_if_successful(scores, std::vector<double>(row, row + 4), 100.0);
  const auto s = stages::summarize_heads(scores);
  EXPECT_DOUBLE_EQ(s.frequency[1], 0.75);
  EXPECT_EQ(s.always_on_heads, (std::vector<HeadId>{{0, 0}, {1, 0}}));
  EXPECT_EQ(s.bins.count, (std::array<int64_t, 4>{1, 1, 1, 1}));
  EXPECT_EQ(s.retrieval_heads, (std::vector<HeadId>{{1, 0}, {0, 1}}));
  stages::HeadSummaryOptions strict;
  strict.retrieval_threshold = 0.5;
  EXPECT_EQ(stages::summarize_heads(scores, strict).retrieval_heads, (std::vector<HeadId>{{1, 0}}));
}

TEST(HeadSummary, RankingTiesByLayerThenHead) {
  const std::vector<double> v = {0.2, 0.5, 0.2, 0.5, 0.0, 0.2};  // 2 layers x 3 heads
  EXPECT_EQ(stages::rank_heads(v, 2, 3), (std::vector<HeadId>{{0, 1}, {1, 0}, {0, 0}, {0, 2}, {1, 2}, {1, 1}}));
}

TEST(HeadSummary, NoSuccessfulTestIsAnError) {
  const auto scores = stages::make_head_scores(2, 2);
  try {
    stages::summarize_heads(scores);
    FAIL() << "expected an InputError";
  } catch (const pipeline::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("0 successful tests"), std::string::npos) << e.what();
  }
}

TEST(HeadSummary, MergeAppendsTests) {
  auto a = stages::make_head_scores(1, 2);
  stages::append_if_successful(a, {1.0, 0.0}, 100.0);
  auto b = stages::make_head_scores(1, 2);
  stages::append_if_successful(b, {0.0, 0.5}, 100.0);
  stages::append_tests(a, b);
  EXPECT_EQ(a.n_test, 2);
  EXPECT_EQ(a.scores, (std::vector<double>{1.0, 0.0, 0.0, 0.5}));
  EXPECT_THROW(stages::append_tests(a, stages::make_head_scores(2, 1)), pipeline::ShapeError);
}
