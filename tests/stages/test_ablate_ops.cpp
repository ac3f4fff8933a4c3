// Ablation numerics: head selection, SQuAD F1/EM, CoT answer extraction, NIAH error types.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/core/error.h"
#include "stages/ablate/ablate_ops.h"

namespace {

using stages::HeadId;
using stages::ScoreMap;

// L x H map where head (l, h) scores 0.9 when (l * H + h) % 7 == 0 (a retrieval head), else 0.01 * (h % 5).
ScoreMap make_map(int64_t n_layer, int64_t n_head) {
  ScoreMap m{n_layer, n_head, std::vector<double>(static_cast<size_t>(n_layer * n_head))};
  for (int64_t i = 0; i < n_layer * n_head; ++i) {
    m.value[static_cast<size_t>(i)] = (i % 7 == 0) ? 0.9 : 0.01 * static_cast<double>((i % n_head) % 5);
  }
  return m;
}

}  // namespace

TEST(SplitMix64, KnownSequenceAndUnbiasedRange) {
  // Reference outputs of SplitMix64 for seed 0 (Vigna's splitmix64.c).
  stages::SplitMix64 rng(0);
  EXPECT_EQ(rng.next(), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(rng.next(), 0x6E789E6AA1B965F4ULL);
  EXPECT_EQ(rng.next(), 0x06C45D188009454FULL);
  stages::SplitMix64 r2(42);
  for (int i = 0; i < 1000; ++i) EXPECT_LT(r2.uniform_below(7), 7u);
  EXPECT_EQ(r2.uniform_below(1), 0u);
}

TEST(HeadSelection, TopK) {
  const ScoreMap m{2, 2, {0.3, 0.9, 0.3, 0.0}};
  EXPECT_EQ(stages::top_k_heads(m, 3), (std::vector<HeadId>{{0, 1}, {0, 0}, {1, 0}}));
  EXPECT_TRUE(stages::top_k_heads(m, 0).empty());
  EXPECT_THROW(stages::top_k_heads(m, 5), pipeline::InputError);
}

TEST(HeadSelection, RandomHeadsReproducibleAndNeverRetrieval) {
  for (const auto& [n_layer, n_head] : {std::pair<int64_t, int64_t>{32, 32}, {40, 40}, {60, 56}}) {
    const ScoreMap m = make_map(n_layer, n_head);
    stages::RandomHeadOptions opt;
    opt.k = 100;
    opt.seed = 1234;
    const auto a = stages::random_non_retrieval_heads(m, opt);
    const auto b = stages::random_non_retrieval_heads(m, opt);
    EXPECT_EQ(a, b) << n_layer << "x" << n_head << ": same seed, same heads";
    opt.seed = 1235;
    EXPECT_NE(stages::random_non_retrieval_heads(m, opt), a) << "another seed, other heads";
    ASSERT_EQ(a.size(), 100u);
    EXPECT_EQ(std::set<HeadId>(a.begin(), a.end()).size(), 100u) << "distinct heads";
    EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
    bool uses_high_layer = false;
    bool uses_high_head = false;
    for (const HeadId& id : a) {
      ASSERT_TRUE(id.layer >= 0 && id.layer < n_layer && id.head >= 0 && id.head < n_head) << stages::head_key(id);
      EXPECT_LE(m.at(id.layer, id.head), 0.1) << "retrieval head drawn: " << stages::head_key(id);
      uses_high_layer |= id.layer >= 32;
      uses_high_head |= id.head >= 32;
    }
    if (n_layer > 32) {
      EXPECT_TRUE(uses_high_layer) << "draws cover the whole " << n_layer << "x" << n_head << " grid, not 32x32";
      EXPECT_TRUE(uses_high_head);
    }
  }
}

TEST(HeadSelection, RandomHeadsPoolLimits) {
  const ScoreMap m = make_map(4, 4);  // 16 heads, 3 retrieval (i = 0, 7, 14) -> pool 13
  stages::RandomHeadOptions opt;
  opt.k = 13;
  EXPECT_EQ(stages::random_non_retrieval_heads(m, opt).size(), 13u);  // the whole pool
  opt.k = 14;
  try {
    stages::random_non_retrieval_heads(m, opt);
    FAIL() << "expected an InputError";
  } catch (const pipeline::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("got 14, expected 0 <= k <= 13"), std::string::npos) << e.what();
  }
  // Also excluding the top 5 of the ranking (3 retrieval heads + the 0.03 heads 0-3 and 2-3).
  opt.k = 11;
  opt.exclude_top = 5;
  const auto heads = stages::random_non_retrieval_heads(m, opt);
  const auto top5 = stages::top_k_heads(m, 5);
  for (const HeadId& id : heads) EXPECT_EQ(std::count(top5.begin(), top5.end(), id), 0) << stages::head_key(id);
  opt.k = 12;
  EXPECT_THROW(stages::random_non_retrieval_heads(m, opt), pipeline::InputError);
}

TEST(Squad, Normalize) {
  EXPECT_EQ(stages::squad_normalize("The Cat, sat on a mat!"), "cat sat on mat");
  EXPECT_EQ(stages::squad_normalize("  An\tapple\n"), "apple");
  EXPECT_EQ(stages::squad_normalize("theater another anthem"), "theater another anthem");  // whole words only
  EXPECT_EQ(stages::squad_normalize("Don't say U.S.A. a.m."), "dont say usa am");
  EXPECT_EQ(stages::squad_normalize("the-end"), "theend");  // punctuation removed before articles
}

TEST(Squad, F1AndExactMatch) {
  EXPECT_DOUBLE_EQ(stages::squad_exact_match("An apple.", "apple"), 1.0);
  EXPECT_DOUBLE_EQ(stages::squad_exact_match("apples", "apple"), 0.0);
  EXPECT_DOUBLE_EQ(stages::squad_f1("the cat sat", "a cat sat down"), 0.8);   // p = 1, r = 2/3
  EXPECT_DOUBLE_EQ(stages::squad_f1("cat cat cat", "cat"), 0.5);              // clipped: p = 1/3, r = 1
  EXPECT_DOUBLE_EQ(stages::squad_f1("dog", "cat"), 0.0);
  EXPECT_DOUBLE_EQ(stages::squad_f1("the", "a"), 1.0);                         // both normalise to empty
  EXPECT_DOUBLE_EQ(stages::squad_f1("", "cat"), 0.0);
  const auto multi = stages::squad_score("in Paris France", {"Lyon", "Paris", "the city of Paris, France"});
  EXPECT_DOUBLE_EQ(multi.exact_match, 0.0);
  // vs "city of paris france": same 2 (paris, france), p = 2/3, r = 2/4 -> F1 = 4/7; vs "paris": p = 1/3, r = 1 -> 0.5.
  EXPECT_DOUBLE_EQ(multi.f1, 4.0 / 7.0);
  const auto exact = stages::squad_score("Paris.", {"Lyon", "paris"});
  EXPECT_DOUBLE_EQ(exact.exact_match, 1.0);
  EXPECT_DOUBLE_EQ(exact.f1, 1.0);
  EXPECT_THROW(stages::squad_score("x", {}), pipeline::InputError);
}

TEST(FinalAnswer, Numbers) {
  using stages::AnswerKind;
  EXPECT_EQ(stages::extract_final_answer("3 + 4 = 7 apples, doubled is 14. The answer is 14.", AnswerKind::kNumber),
            "14");
  EXPECT_EQ(stages::extract_final_answer("The answer is: $1,234.00. (Not 12.)", AnswerKind::kNumber), "1234");
  EXPECT_EQ(stages::extract_final_answer("so the answer is -5 degrees", AnswerKind::kNumber), "-5");
  EXPECT_EQ(stages::extract_final_answer("She pays $22.50, then 3 more: total 25.5", AnswerKind::kNumber), "25.5");
  EXPECT_EQ(stages::extract_final_answer("The answer is 3. No wait, the answer is 4", AnswerKind::kNumber), "4");
  EXPECT_EQ(stages::extract_final_answer("no digits here", AnswerKind::kNumber), "");
}

TEST(FinalAnswer, ChoicesAndText) {
  using stages::AnswerKind;
  EXPECT_EQ(stages::extract_final_answer("Let's think. The answer is (B).", AnswerKind::kChoice), "B");
  EXPECT_EQ(stages::extract_final_answer("A is wrong, B too, so it must be C", AnswerKind::kChoice), "C");
  EXPECT_EQ(stages::extract_final_answer("THE ANSWER IS: D) because", AnswerKind::kChoice), "D");
  EXPECT_EQ(stages::extract_final_answer("Between BOB and CAT", AnswerKind::kChoice), "");
  EXPECT_EQ(stages::extract_final_answer("step 1...\nThe answer is Paris.\nThanks", AnswerKind::kText), "Paris");
  EXPECT_EQ(stages::extract_final_answer("reasoning\nParis.\n\n", AnswerKind::kText), "Paris");
  EXPECT_EQ(stages::extract_final_answer("", AnswerKind::kText), "");
}

TEST(NiahErrors, Classification) {
  using stages::NiahErrorType;
  const char* haystack = "What I Worked On. Before college I would go to the beach every summer, and write.";
  EXPECT_EQ(stages::classify_niah_error(100.0, "eat a sandwich", haystack), NiahErrorType::kCorrect);
  EXPECT_EQ(stages::classify_niah_error(50.0, "sit in Dolores Park", haystack), NiahErrorType::kIncomplete);
  // Copied from the wrong place in the haystack: the 3-gram "go to the" occurs there (case and punctuation ignored).
  EXPECT_EQ(stages::classify_niah_error(0.0, "Go, to THE beach!", haystack), NiahErrorType::kWrongExtraction);
  // Fluent but absent from the context.
  EXPECT_EQ(stages::classify_niah_error(0.0, "Visit the Golden Gate Bridge at night.", haystack),
            NiahErrorType::kHallucination);
  // Fewer tokens than n: no evidence of copying.
  EXPECT_EQ(stages::classify_niah_error(0.0, "the beach", haystack), NiahErrorType::kHallucination);
  EXPECT_EQ(stages::classify_niah_error(0.0, "the beach", haystack, 2), NiahErrorType::kWrongExtraction);
  EXPECT_THROW(stages::classify_niah_error(101.0, "x", haystack), pipeline::InputError);
  EXPECT_STREQ(stages::niah_error_type_name(NiahErrorType::kWrongExtraction), "wrong_extraction");
}

TEST(NiahErrors, SinkFraction) {
  // 2 steps, 2 layers x 2 heads; top heads (0,1) and (1,0). Argmax: step 0: (0,1)=0, (1,0)=10; step 1: 3, 2.
  stages::ArgmaxCapture c{2, 2, 2, {50, 0, 10, 50, 50, 3, 2, 50}};
  const std::vector<HeadId> top = {{0, 1}, {1, 0}};
  EXPECT_DOUBLE_EQ(stages::sink_fraction(c, top), 0.75);
  EXPECT_DOUBLE_EQ(stages::sink_fraction(c, top, 1), 0.25);  // only position 0
  EXPECT_DOUBLE_EQ(stages::sink_fraction(c, {}), 0.0);
  EXPECT_THROW(stages::sink_fraction(c, {{2, 0}}), pipeline::InputError);
  const auto report = stages::analyze_niah_cell(0.0, "Golden Gate Bridge", "some haystack text", c, top);
  EXPECT_EQ(report.type, stages::NiahErrorType::kHallucination);
  EXPECT_TRUE(report.sink);
  EXPECT_DOUBLE_EQ(report.sink_fraction, 0.75);
  // A masked head's argmax says nothing about where it looked: with (0,1) masked only (1,0) counts (10, 2:
  // one sink in two steps); with both masked no head is left (fraction 0, no flag).
  EXPECT_EQ(stages::heads_not_masked(top, {{1, 1}, {0, 1}}), (std::vector<HeadId>{{1, 0}}));
  const auto one_left = stages::analyze_niah_cell(0.0, "Golden Gate Bridge", "some haystack text", c, top, {{0, 1}});
  EXPECT_DOUBLE_EQ(one_left.sink_fraction, 0.5);
  EXPECT_TRUE(one_left.sink);  // 0.5 >= the default threshold 0.5
  const auto one_left_of_one = stages::analyze_niah_cell(0.0, "x y", "haystack", c, top, {{0, 1}}, 3, 1);
  EXPECT_DOUBLE_EQ(one_left_of_one.sink_fraction, 0.0);  // position 2 is no sink when only position 0 is
  EXPECT_FALSE(one_left_of_one.sink);
  const auto none_left = stages::analyze_niah_cell(0.0, "x y", "haystack", c, top, top);
  EXPECT_DOUBLE_EQ(none_left.sink_fraction, 0.0);
  EXPECT_FALSE(none_left.sink);
}
