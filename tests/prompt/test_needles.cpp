// needles.jsonl reading (official format, alias, errors with file and line) and the two haystack
// readers (detection: Python str.split() word count; masked NIAH: token count), on temp files.
#include <gtest/gtest.h>

#include <string>

#include "pipeline/core/error.h"
#include "stages/niah/needles.h"
#include "tests/common/test_support.h"
#include "tests/prompt/prompt_test_util.h"

namespace {

namespace fs = std::filesystem;
using test_support::write_text_file;

std::string needles_error(const fs::path& file, const std::string& text) {
  write_text_file(file, text);
  SCOPED_TRACE(text);
  return test_support::error_of<pipeline::InputError>([&] { stages::read_needles_jsonl(file); });
}

TEST(Needles, ReadsOfficialFormatAndAlias) {
  test_support::TempDir dir("prompt-needles");
  const fs::path file = dir.path() / "needles.jsonl";
  write_text_file(file,
                  "{\"needle\": \"N1.\", \"question\": \"Q1 ?\", \"real_needle\": \"A1\"}\n"
                  "\n"
                  "{\"question\": \"Q2\", \"needle\": \"N2\", \"answer\": \"A2\"}\n"
                  "{\"question\": \"Q3\", \"needle\": \"N3\", \"answer\": \"A3\", \"real_needle\": \"A3\"}");
  const auto needles = stages::read_needles_jsonl(file);
  ASSERT_EQ(needles.size(), 3u);
  EXPECT_EQ(needles[0].needle, "N1.");
  EXPECT_EQ(needles[0].question, "Q1 ?");
  EXPECT_EQ(needles[0].real_needle, "A1");
  EXPECT_EQ(needles[1].real_needle, "A2");
  EXPECT_EQ(needles[2].real_needle, "A3");
}

TEST(Needles, ErrorsNameFileAndLine) {
  test_support::TempDir dir("prompt-needles-err");
  const fs::path file = dir.path() / "n.jsonl";
  const std::string ok = "{\"needle\": \"N\", \"question\": \"Q\", \"real_needle\": \"A\"}\n";
  std::string msg = needles_error(file, ok + "{\"needle\": \"N\", \"question\": \"Q\"}\n");
  EXPECT_NE(msg.find(file.string() + ":2: key 'real_needle' (or its alias 'answer') is missing"), std::string::npos)
      << msg;
  msg = needles_error(file, ok + ok + "{not json\n");
  EXPECT_NE(msg.find(file.string() + ":3: not valid JSON"), std::string::npos) << msg;
  msg = needles_error(file, "{\"needle\": \"N\", \"question\": 3, \"real_needle\": \"A\"}\n");
  EXPECT_NE(msg.find(":1: key 'question' has the wrong type; got 3, expected a string"), std::string::npos) << msg;
  msg = needles_error(file, "{\"needle\": \"N\", \"question\": \"Q\", \"real_answer\": \"A\"}\n");
  EXPECT_NE(msg.find(":1: unknown key 'real_answer'"), std::string::npos) << msg;
  msg = needles_error(file, "{\"needle\": \"N\", \"question\": \"Q\", \"real_needle\": \"A\", \"answer\": \"B\"}\n");
  EXPECT_NE(msg.find(":1: keys 'real_needle' and 'answer' disagree"), std::string::npos) << msg;
  msg = needles_error(file, "{\"needle\": \"\", \"question\": \"Q\", \"real_needle\": \"A\"}\n");
  EXPECT_NE(msg.find(":1: key 'needle' is empty"), std::string::npos) << msg;
  msg = needles_error(file, "\n\n");
  EXPECT_NE(msg.find("no needle found"), std::string::npos) << msg;
  EXPECT_THROW(stages::read_needles_jsonl(dir.path() / "absent.jsonl"), pipeline::InputError);
}

TEST(Haystack, PythonWordCount) {
  EXPECT_EQ(stages::count_python_words(""), 0);
  EXPECT_EQ(stages::count_python_words("  a  b\tc\n"), 3);
  // NBSP, U+3000 and the \x1c..\x1f separators split in Python; U+200B (zero width space) does not.
  EXPECT_EQ(stages::count_python_words("a\xC2\xA0" "b\xE3\x80\x80" "c\x1d" "d"), 4);
  EXPECT_EQ(stages::count_python_words("a\xE2\x80\x8B" "b"), 1);
}

TEST(Haystack, DetectionRepeatsWholePassesInNameOrder) {
  test_support::TempDir dir("prompt-haystack");
  write_text_file(dir.path() / "b.txt", "four five");
  write_text_file(dir.path() / "a.txt", "one two three");
  write_text_file(dir.path() / "ignored.md", "x y z");
  // Files are joined without a separator ("three" + "four"), as f.read() concatenation does.
  EXPECT_EQ(stages::read_detection_haystack(dir.path(), 4), "one two threefour five");
  EXPECT_EQ(stages::read_detection_haystack(dir.path(), 5), "one two threefour fiveone two threefour five");
  EXPECT_EQ(stages::read_detection_haystack(dir.path(), 0), "");
  // Universal newlines.
  write_text_file(dir.path() / "c.txt", "x\r\ny\rz");
  EXPECT_EQ(stages::read_haystack_file(dir.path() / "c.txt"), "x\ny\nz");
  test_support::TempDir empty("prompt-haystack-empty");
  EXPECT_THROW(stages::read_detection_haystack(empty.path(), 10), pipeline::InputError);
  write_text_file(empty.path() / "blank.txt", "   ");
  EXPECT_THROW(stages::read_detection_haystack(empty.path(), 10), pipeline::InputError);
}

TEST(Haystack, MaskedNiahCountsTokensWithBos) {
  test_support::TempDir dir("prompt-haystack-tok");
  write_text_file(dir.path() / "a.txt", "one two. ");
  write_text_file(dir.path() / "b.txt", "three");
  prompt_test::FakeTokenizer tok;
  // One pass: BOS + one two . three = 5 tokens.
  EXPECT_EQ(stages::read_token_haystack(dir.path(), tok, 5), "one two. three");
  EXPECT_EQ(stages::read_token_haystack(dir.path(), tok, 6), "one two. threeone two. three");
  EXPECT_EQ(stages::read_token_haystack(dir.path(), tok, 1), "");  // BOS alone already counts 1
}

TEST(Needles, MaskedNiahNeedle) {
  const auto n = stages::masked_niah_needle();
  EXPECT_EQ(n.needle.front(), '\n');
  EXPECT_NE(n.needle.find(n.real_needle), std::string::npos);
}

}  // namespace
