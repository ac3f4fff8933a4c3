// ROUGE-N (rouge_score semantics) on hand-computed cases.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pipeline/core/error.h"
#include "stages/niah/rouge.h"

namespace {

using stages::rouge_n;
using stages::rouge_tokenize;
using Tokens = std::vector<std::string>;

// The masked-NIAH answer (docs/PAPER_NOTES.md, "Masking"): 12 tokens, "a" twice.
constexpr const char* kSandwich = "eat a sandwich and sit in Dolores Park on a sunny day";

}  // namespace

TEST(RougeTokenize, LowercasesSplitsAndStems) {
  EXPECT_EQ(rouge_tokenize(kSandwich),
            (Tokens{"eat", "a", "sandwich", "and", "sit", "in", "dolor", "park", "on", "a", "sunni", "day"}));
  EXPECT_EQ(rouge_tokenize(kSandwich, false),
            (Tokens{"eat", "a", "sandwich", "and", "sit", "in", "dolores", "park", "on", "a", "sunny", "day"}));
  // Punctuation splits words; tokens of <= 3 characters are not stemmed ("was" would stem to "wa").
  EXPECT_EQ(rouge_tokenize("Don't  stop: U.S.A. was\tTIES!"), (Tokens{"don", "t", "stop", "u", "s", "a", "was", "tie"}));
  EXPECT_EQ(rouge_tokenize(""), Tokens{});
  EXPECT_EQ(rouge_tokenize("  ...  \n"), Tokens{});
}

TEST(RougeTokenize, NonAsciiLikePythonLower) {
  // U+0130 lower-cases to "i" + combining dot, U+212A (Kelvin) to "k"; other non-ASCII letters are separators.
  EXPECT_EQ(rouge_tokenize("\xC4\xB0stanbul caf\xC3\xA9 5\xE2\x84\xAA"), (Tokens{"i", "stanbul", "caf", "5k"}));
  // Invalid UTF-8 bytes are separators too.
  EXPECT_EQ(rouge_tokenize("ab\xFF" "cd"), (Tokens{"ab", "cd"}));
}

TEST(Rouge1, PerfectAndPartialRecall) {
  const auto perfect = rouge_n(kSandwich, "Eat a sandwich and sit in Dolores Park on a sunny day.");
  EXPECT_DOUBLE_EQ(perfect.recall, 1.0);
  EXPECT_DOUBLE_EQ(perfect.precision, 1.0);
  EXPECT_DOUBLE_EQ(perfect.fmeasure, 1.0);

  // sit in dolor park on a sunni day: 8 of the 12 reference tokens (one of the two "a").
  const auto partial = rouge_n(kSandwich, "sit in Dolores Park on a sunny day");
  EXPECT_DOUBLE_EQ(partial.recall, 8.0 / 12.0);
  EXPECT_DOUBLE_EQ(partial.precision, 1.0);
  EXPECT_DOUBLE_EQ(partial.fmeasure, 2.0 * (8.0 / 12.0) / (1.0 + 8.0 / 12.0));
  EXPECT_DOUBLE_EQ(stages::niah_rouge1_recall(kSandwich, "sit in Dolores Park on a sunny day"), 800.0 / 12.0);
}

TEST(Rouge1, CountsAreClipped) {
  // Hypothesis has "a" four times, the reference twice: overlap = min(2, 4) + sandwich = 3.
  const auto s = rouge_n(kSandwich, "a a a a sandwich");
  EXPECT_DOUBLE_EQ(s.recall, 3.0 / 12.0);
  EXPECT_DOUBLE_EQ(s.precision, 3.0 / 5.0);
  // Repeating the whole answer doubles the hypothesis but not the overlap.
  const auto twice = rouge_n(kSandwich, std::string(kSandwich) + " " + kSandwich);
  EXPECT_DOUBLE_EQ(twice.recall, 1.0);
  EXPECT_DOUBLE_EQ(twice.precision, 0.5);
}

TEST(Rouge1, StemmingMatchesInflections) {
  // Reference [the best thing is eat sandwich]; hypothesis [eat sandwich] only matches through the stemmer.
  EXPECT_DOUBLE_EQ(rouge_n("The best thing is eating sandwiches", "eat sandwich").recall, 2.0 / 6.0);
  EXPECT_DOUBLE_EQ(rouge_n("The best thing is eating sandwiches", "eat sandwich", 1, false).recall, 0.0);
}

TEST(Rouge1, EmptyTextsScoreZero) {
  const auto empty_hyp = rouge_n(kSandwich, "");
  EXPECT_EQ(empty_hyp.recall, 0.0);
  EXPECT_EQ(empty_hyp.precision, 0.0);
  EXPECT_EQ(empty_hyp.fmeasure, 0.0);
  const auto empty_ref = rouge_n("", "anything");
  EXPECT_EQ(empty_ref.recall, 0.0);
  EXPECT_EQ(empty_ref.fmeasure, 0.0);
}

TEST(Rouge1, NeedleAnswerWithCapitalBecause) {
  // Needle 3's answer span starts with "Because"; case does not matter for ROUGE.
  const char* answer = "Because he is a mean person and also he can't ride a horse or dive a car.";
  EXPECT_DOUBLE_EQ(stages::niah_rouge1_recall(answer, "because he is a mean person and also he can't ride a horse or "
                                                      "dive a car"),
                   100.0);
  // 18 reference tokens (he x2, a x3, can t split); "He is a mean person." hits he, is, a, mean, person = 5.
  EXPECT_EQ(rouge_tokenize(answer).size(), 18u);
  EXPECT_DOUBLE_EQ(stages::niah_rouge1_recall(answer, "He is a mean person."), 500.0 / 18.0);
}

TEST(Rouge2, BigramsAndBadN) {
  // Bigrams of [a b c d] vs [a b x c d]: ref {ab, bc, cd}, hyp {ab, bx, xc, cd}: overlap 2.
  const auto s = rouge_n("a b c d", "a b x c d", 2, false);
  EXPECT_DOUBLE_EQ(s.recall, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(s.precision, 2.0 / 4.0);
  EXPECT_THROW(rouge_n("a", "a", 0), pipeline::InputError);
}
