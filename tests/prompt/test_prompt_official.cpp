// The official needles with their detection haystacks (haystack_for_detect/part{1,2,3}), both modes,
// L = 1000 and 5000, depths 0/44/100, with a byte-level BPE tokenizer written at test time (merges for
// the needle/question words; the haystack falls apart into short pieces). Skipped without the data.
#include <gtest/gtest.h>

#include <cctype>
#include <memory>
#include <string>

#include "stages/niah/prompt_builder.h"
#include "tests/common/test_support.h"
#include "tests/prompt/prompt_test_util.h"

namespace {

using prompt_test::count_id;
using prompt_test::Ids;
using prompt_test::slice;

// Lower-case alphanumeric words of a text ("can't" -> "can", "t").
std::vector<std::string> plain_words(const std::string& text) {
  std::vector<std::string> words;
  std::string w;
  for (char c : text + " ") {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      w.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    } else if (!w.empty()) {
      words.push_back(w);
      w.clear();
    }
  }
  return words;
}

double word_recall(const std::string& answer, const std::string& span) {
  const auto want = plain_words(answer);
  const auto have = plain_words(span);
  int found = 0;
  for (const auto& w : want) found += std::find(have.begin(), have.end(), w) != have.end() ? 1 : 0;
  return want.empty() ? 0.0 : static_cast<double>(found) / static_cast<double>(want.size());
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

TEST(OfficialData, AllNeedlesBothModes) {
  const auto ref = test_support::shared_reference_dir();
  if (!ref) GTEST_SKIP() << test_support::shared_reference_missing_message();
  const auto root = *ref / "haystack_for_detect";
  const auto needles = stages::read_needles_jsonl(root / "needles.jsonl");
  ASSERT_EQ(needles.size(), 3u);
  EXPECT_EQ(needles[2].real_needle.rfind("Because", 0), 0u);

  std::vector<std::string> words;
  for (const auto& n : needles) {
    for (const auto& t : {n.needle, n.question, n.real_needle, stages::question_text(n.question)}) {
      for (const auto& w : prompt_test::split_words(t)) words.push_back(w);
    }
  }
  test_support::TempDir dir("prompt-official");
  const auto tok = prompt_test::make_bpe(dir.path() / "bpe", words);
  const int64_t bos = *tok->bos_id();
  const auto periods = stages::period_ids_from_pieces(*tok, {"."});
  ASSERT_EQ(periods.size(), 1u);

  for (size_t i = 0; i < needles.size(); ++i) {
    const auto& needle = needles[i];
    // Official: words up to the largest length of the grid (here 5000).
    const std::string haystack = stages::read_detection_haystack(root / ("part" + std::to_string(i + 1)), 5000);
    EXPECT_EQ(haystack.size(), 262144u);  // one pass of the 262,144-byte file already has > 40K words
    stages::PromptOptions faithful;
    faithful.period_ids = periods;
    stages::PromptOptions fixed;
    fixed.mode = stages::PromptMode::kFixed;
    const stages::PromptBuilder faithful_builder(*tok, haystack, faithful);
    const stages::PromptBuilder fixed_builder(*tok, haystack, fixed);
    for (int64_t L : {1000, 5000}) {
      for (double depth : {0.0, 44.0, 100.0}) {
        SCOPED_TRACE("needle " + std::to_string(i + 1) + " L " + std::to_string(L) + " depth " + std::to_string(depth));
        const auto p = faithful_builder.build(needle, L, depth);
        EXPECT_LE(p.ids.size(), static_cast<size_t>(L));
        EXPECT_GE(count_id(p.ids, bos), 3);  // added BOS, "<s>" from the decoded context, the needle's
        ASSERT_TRUE(p.answer_found());
        ASSERT_LE(p.answer_end, static_cast<int64_t>(p.ids.size()));
        const std::string span = tok->decode(slice(p.ids, p.answer_begin, p.answer_end), false);
        // The > 90 % rule may return a window shifted by a token or two; most answer words are inside.
        EXPECT_GE(word_recall(needle.real_needle, span), 0.85) << span;

        const auto f = fixed_builder.build(needle, L, depth);
        EXPECT_EQ(f.ids.size(), static_cast<size_t>(L - 200));
        EXPECT_EQ(count_id(f.ids, bos), 1);
        const std::string fspan = tok->decode(slice(f.ids, f.answer_begin, f.answer_end), false);
        EXPECT_EQ(lower(fspan.substr(fspan.find_first_not_of(' '))), lower(needle.real_needle));
        EXPECT_EQ(word_recall(needle.real_needle, fspan), 1.0);
        if (depth == 0.0) {
          EXPECT_EQ(f.needle_begin, 1);
        }
        if (depth == 100.0) {
          const auto question = tok->encode(stages::question_text(needle.question), false);
          EXPECT_EQ(f.needle_end, static_cast<int64_t>(f.ids.size() - question.size()));
        }
        if (depth == 44.0 && f.insertion_point > 0) {
          EXPECT_TRUE(stages::is_sentence_end_token(*tok, f.ids[static_cast<size_t>(f.needle_begin - 1)]));
        }
      }
    }
  }
}

}  // namespace
