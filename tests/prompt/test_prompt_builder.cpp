// Prompt builder on constructed cases, hand-counted with the fake tokenizer (one token per word, "."
// its own token, BOS = 1), then the same properties with WordLevel and byte-level BPE tokenizers
// written at test time.
#include <gtest/gtest.h>

#include <string>

#include "pipeline/core/error.h"
#include "stages/niah/prompt_builder.h"
#include "tests/common/test_support.h"
#include "tests/prompt/prompt_test_util.h"

namespace {

using prompt_test::count_id;
using prompt_test::FakeTokenizer;
using prompt_test::Ids;
using prompt_test::slice;
using Span = std::pair<int64_t, int64_t>;
using stages::BuiltPrompt;
using stages::PromptMode;
using stages::PromptOptions;
using stages::PromptTemplate;

// 20 sentences "s<i>w0 s<i>w1 s<i>w2 s<i>w3." = 100 fake tokens; token 5i+4 is ".".
std::string haystack(const std::string& period = ".") {
  std::string text;
  for (int i = 0; i < 20; ++i) {
    for (int j = 0; j < 4; ++j) {
      text += "s" + std::to_string(i) + "w" + std::to_string(j) + (j == 3 ? period + " " : " ");
    }
  }
  return text;
}

const stages::Needle kNeedle{"The secret code is alpha beta gamma.", "What is the secret code ?", "alpha beta gamma"};

PromptOptions options(PromptMode mode, int64_t buffer, std::vector<int64_t> periods = stages::kLlamaPeriodIds) {
  PromptOptions o;
  o.mode = mode;
  o.buffer_tokens = buffer;
  o.period_ids = std::move(periods);
  return o;
}

TEST(PromptMode, ParsesNames) {
  EXPECT_EQ(stages::parse_prompt_mode("faithful"), PromptMode::kFaithful);
  EXPECT_EQ(stages::parse_prompt_mode("fixed"), PromptMode::kFixed);
  EXPECT_EQ(stages::prompt_mode_name(PromptMode::kFixed), "fixed");
  try {
    stages::parse_prompt_mode("Fixed", "stages.generate.prompt_mode");
    ADD_FAILURE() << "expected ConfigError";
  } catch (const pipeline::ConfigError& e) {
    EXPECT_STREQ(e.what(), "[config] stages.generate.prompt_mode: got \"Fixed\", expected \"faithful\" or \"fixed\"");
  }
}

TEST(PromptTemplate, BaseAndChatText) {
  EXPECT_EQ(PromptTemplate::base().render("CTX", "Q?"), "CTXBased on the content of the book, Question: Q?\nAnswer:");
  EXPECT_TRUE(PromptTemplate::base().add_special_tokens);
  const auto qwen = PromptTemplate::chat(
      "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n",
      "You are a helpful assistant");
  EXPECT_FALSE(qwen.add_special_tokens);  // as HF apply_chat_template
  EXPECT_EQ(qwen.render("CTX {system}", "Q?"),
            "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n<book>CTX {system}</book>\n"
            "Based on the content of the book, Question: Q?\nAnswer:<|im_end|>\n<|im_start|>assistant\n");
  const auto [before, after] = PromptTemplate::chat("<s>[INST] {user} [/INST]").split("Q?");
  EXPECT_EQ(before, "<s>[INST] <book>");
  EXPECT_EQ(after, "</book>\nBased on the content of the book, Question: Q?\nAnswer: [/INST]");
  EXPECT_THROW(PromptTemplate::chat("[INST] {system} [/INST]"), pipeline::ConfigError);
  EXPECT_THROW(PromptTemplate::chat("{user}{user}"), pipeline::ConfigError);
}

TEST(PromptTemplate, WrapsAWholeUserMessage) {
  // A task item's prompt (ablate): the text alone for a base model; in a chat template, "{user}" becomes
  // the text and every "{system}" the system text, while braces inside the user text stay as they are.
  EXPECT_EQ(PromptTemplate::base().wrap("Q {system}?"), "Q {system}?");
  const auto sys = PromptTemplate::chat("[{system}] <s>[INST] {user} [/INST] ({system})", "S");
  EXPECT_EQ(sys.wrap("Q {system}?"), "[S] <s>[INST] Q {system}? [/INST] (S)");
  EXPECT_EQ(PromptTemplate::chat("<s>[INST] {user} [/INST]").wrap(""), "<s>[INST]  [/INST]");
}

TEST(FindNeedleSpan, OfficialSetOverlapRule) {
  EXPECT_EQ(stages::find_needle_span({5, 6, 7, 8, 9}, {7, 8}), Span(2, 4));
  EXPECT_EQ(stages::find_needle_span({5, 6, 7}, {8}), Span(-1, -1));
  // Order and repeats inside the window do not matter: a set comparison.
  EXPECT_EQ(stages::find_needle_span({1, 9, 8, 7, 7, 2}, {7, 8, 9}), Span(1, 4));
  // 9 of 10 distinct ids = 0.9 is not > 0.9; 10 of 11 is.
  const Ids ten{10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  Ids prompt{10, 11, 12, 13, 14, 15, 16, 17, 18, 99};
  EXPECT_EQ(stages::find_needle_span(prompt, ten).first, -1);
  Ids eleven = ten;
  eleven.push_back(20);
  prompt.push_back(20);
  EXPECT_EQ(stages::find_needle_span(prompt, eleven), Span(0, 11));
  // The window is cut at the prompt's end, the returned end is not.
  EXPECT_EQ(stages::find_needle_span({9, 1, 2}, {1, 1, 1, 2}), Span(0, 4));
  EXPECT_THROW(stages::find_needle_span({1, 2}, {}), pipeline::InputError);
}

TEST(PeriodIds, OfficialProvidersAndPieces) {
  FakeTokenizer tok;
  EXPECT_EQ(stages::official_period_ids("LLaMA", tok), (Ids{29889, 869}));
  EXPECT_EQ(stages::official_period_ids("Mistral", tok), (Ids{842, 28723}));
  EXPECT_EQ(stages::official_period_ids("GLM", tok), (Ids{918, 30930}));
  EXPECT_EQ(stages::official_period_ids("OpenAI", tok), (Ids{1, 3}));  // encode('.') keeps the BOS
  EXPECT_EQ(stages::period_ids_from_pieces(tok, {".", "\xE2\x96\x81."}), (Ids{3}));
  EXPECT_TRUE(stages::is_sentence_end_token(tok, 3));
  EXPECT_FALSE(stages::is_sentence_end_token(tok, 1));
}

// Faithful mode, counted by hand. L = 300, buffer 200: budget 100 for context + needle.
// Haystack with BOS = 101 tokens <= L, so the text is kept; re-encoded context [BOS h0..h99] and needle
// [BOS The secret code is alpha beta gamma .] (9) exceed 100: context cut to 91 = [BOS h0..h89].
// depth 50: int(91 * 0.5) = 45, walked back to 41 (ctx[40] = h39 = "."). Decoded and re-encoded with
// BOS: [BOS, BOS, h0..h39, BOS, The, secret, code, is, alpha, beta, gamma, ., h40..h88, ".Based", ...14].
TEST(FaithfulPrompt, HandCountedQuirks) {
  FakeTokenizer tok;
  const auto periods = stages::period_ids_from_pieces(tok, {".", "\xE2\x96\x81."});
  const stages::PromptBuilder builder(tok, haystack(), options(PromptMode::kFaithful, 200, periods));
  const BuiltPrompt p = builder.build(kNeedle, 300, 50);
  EXPECT_EQ(p.insertion_point, 41);
  ASSERT_EQ(p.ids.size(), 115u);
  EXPECT_EQ(p.ids[0], 1);
  EXPECT_EQ(p.ids[1], 1);   // "<s>" decoded into the context text comes back as BOS
  EXPECT_EQ(p.ids[42], 1);  // the needle's own BOS, mid-context
  EXPECT_EQ(count_id(p.ids, 1), 3);
  EXPECT_EQ(p.ids[43], tok.id("The"));
  EXPECT_EQ(p.ids[100], tok.id(".Based"));  // no separator between context and question
  EXPECT_EQ(p.answer_begin, 47);
  EXPECT_EQ(p.answer_end, 50);
  EXPECT_EQ(slice(p.ids, p.answer_begin, p.answer_end), p.answer_ids);
  EXPECT_EQ(p.needle_begin, -1);
  EXPECT_NE(p.context.find("s7w3 . <s> The secret code is alpha beta gamma . s8w0"), std::string::npos) << p.context;
  EXPECT_EQ(p.text.rfind("<s> s0w0", 0), 0u);
  EXPECT_LE(p.ids.size(), 300u);

  // depth 0: needle (with its BOS) before the context's BOS; depth 100: appended at the end.
  const BuiltPrompt d0 = builder.build(kNeedle, 300, 0);
  EXPECT_EQ(d0.insertion_point, 0);
  EXPECT_EQ(d0.ids[2], tok.id("The"));
  EXPECT_EQ(d0.answer_begin, 6);
  const BuiltPrompt d100 = builder.build(kNeedle, 300, 100);
  EXPECT_EQ(d100.insertion_point, 91);
  EXPECT_EQ(d100.answer_begin, 1 + 91 + 5);
  EXPECT_NE(d100.context.find("s17w3 . <s> The secret code is alpha beta gamma ."), std::string::npos);
}

TEST(FaithfulPrompt, LlamaPeriodIdsWalkBackToStart) {
  // Quirk: the default period ids are Llama's; in another vocabulary none matches, so every depth
  // below 100 walks back to position 0.
  FakeTokenizer tok;
  const stages::PromptBuilder builder(tok, haystack(), options(PromptMode::kFaithful, 200));
  for (double depth : {11.0, 50.0, 89.0}) {
    const BuiltPrompt p = builder.build(kNeedle, 300, depth);
    EXPECT_EQ(p.insertion_point, 0) << depth;
    EXPECT_EQ(p.answer_begin, 6) << depth;
  }
}

TEST(FaithfulPrompt, ShortHaystackAndTinyLength) {
  FakeTokenizer tok;
  const auto periods = stages::period_ids_from_pieces(tok, {"."});
  // L = 1000: nothing is cut (101 + 9 <= 800).
  const BuiltPrompt p = stages::build_prompt(tok, haystack(), kNeedle, 1000, 50, options(PromptMode::kFaithful, 200, periods));
  EXPECT_EQ(p.ids.size(), 1u + 110u + 14u);  // last "." + "Based" = one token
  EXPECT_TRUE(p.answer_found());
  // L = 0: budget -200 gives Python's ctx[:-209] = [] of the decoded (empty) context [BOS]: the prompt is
  // essentially the needle (docs/PAPER_NOTES.md, "The NIAH grid": "length 0 degenerates").
  const BuiltPrompt z = stages::build_prompt(tok, haystack(), kNeedle, 0, 50, options(PromptMode::kFaithful, 200, periods));
  EXPECT_EQ(z.context, "<s> The secret code is alpha beta gamma .");
  EXPECT_TRUE(z.answer_found());
}

TEST(FaithfulPrompt, BecauseNeedleFoundByOverlap) {
  // Official needle 3: "because" in the needle, "Because" in real_needle; 14 of 15 distinct ids > 0.9.
  FakeTokenizer tok;
  const stages::Needle n3{
      "Mr Green is disliked by everyone because he is a mean person and also he can't ride a horse or dive a car.",
      "Why does everyone dislikes Mr Green ?",
      "Because he is a mean person and also he can't ride a horse or dive a car."};
  const auto periods = stages::period_ids_from_pieces(tok, {"."});
  const stages::PromptBuilder builder(tok, haystack(), options(PromptMode::kFaithful, 200, periods));
  const BuiltPrompt p = builder.build(n3, 300, 50);
  ASSERT_TRUE(p.answer_found());
  EXPECT_EQ(p.ids[static_cast<size_t>(p.answer_begin)], tok.id("because"));
  EXPECT_EQ(p.answer_end - p.answer_begin, 18);
  EXPECT_EQ(tok.decode(slice(p.ids, p.answer_begin, p.answer_end), true),
            "because he is a mean person and also he can't ride a horse or dive a car .");
  // Fixed mode: the same tokens, located by construction.
  const BuiltPrompt f = stages::build_prompt(tok, haystack(), n3, 300, 50, options(PromptMode::kFixed, 200));
  EXPECT_EQ(tok.decode(slice(f.ids, f.answer_begin, f.answer_end), true),
            "because he is a mean person and also he can't ride a horse or dive a car .");
}

TEST(FaithfulPrompt, OverlapRuleCanReturnAnEarlyWindow) {
  // 12 distinct answer ids; the window starting one token early ("is alpha ... lambda") misses only
  // "." (11/12 = 0.917 > 0.9), so the official rule returns it: shifted left by one token.
  FakeTokenizer tok;
  const stages::Needle n{"The secret code is alpha beta gamma delta epsilon zeta eta theta iota kappa lambda.",
                         "What is the secret code ?", "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda."};
  const BuiltPrompt p = stages::build_prompt(tok, haystack(), n, 300, 0, options(PromptMode::kFaithful, 200));
  ASSERT_TRUE(p.answer_found());
  EXPECT_EQ(p.ids[static_cast<size_t>(p.answer_begin)], tok.id("is"));
  const BuiltPrompt f = stages::build_prompt(tok, haystack(), n, 300, 0, options(PromptMode::kFixed, 200));
  EXPECT_EQ(slice(f.ids, f.answer_begin, f.answer_end), f.answer_ids);
}

// Fixed mode, counted by hand. buffer 10, L = 84: prefix [BOS] (1), question suffix 15 tokens, needle 8
// tokens, so the context gets exactly 84 - 10 - 24 = 50 haystack tokens and the prompt is 74 tokens.
TEST(FixedPrompt, HandCountedPositions) {
  FakeTokenizer tok;
  const stages::PromptBuilder builder(tok, haystack(), options(PromptMode::kFixed, 10));
  struct Case {
    double depth;
    int64_t insertion;
  };
  // depth 44: int(50 * 0.44) = 22, walked back to 20 (h19 = "."); depth 50: 25 is already after ".".
  for (const Case c : {Case{0, 0}, Case{44, 20}, Case{50, 25}, Case{100, 50}}) {
    const BuiltPrompt p = builder.build(kNeedle, 84, c.depth);
    EXPECT_EQ(p.insertion_point, c.insertion) << c.depth;
    ASSERT_EQ(p.ids.size(), 74u) << c.depth;
    EXPECT_EQ(p.ids[0], 1);
    EXPECT_EQ(count_id(p.ids, 1), 1) << "fixed mode never puts a BOS inside the context";
    EXPECT_EQ(p.needle_begin, 1 + c.insertion);
    EXPECT_EQ(p.needle_end, p.needle_begin + 8);
    EXPECT_EQ(p.answer_begin, p.needle_begin + 4);
    EXPECT_EQ(p.answer_end, p.needle_begin + 7);
    EXPECT_EQ(slice(p.ids, p.answer_begin, p.answer_end), p.answer_ids);
    EXPECT_EQ(p.ids[static_cast<size_t>(p.needle_end)], c.depth == 100 ? tok.id("Based") : tok.id("s" + std::to_string(c.insertion / 5) + "w0"));
    if (c.insertion > 0) {
      EXPECT_EQ(p.ids[static_cast<size_t>(p.needle_begin - 1)], 3);
    }
    EXPECT_EQ(p.text, tok.decode(p.ids, false));
  }
}

TEST(FixedPrompt, ShortHaystackAndErrors) {
  FakeTokenizer tok;
  const stages::PromptBuilder builder(tok, haystack(), options(PromptMode::kFixed, 200));
  const BuiltPrompt p = builder.build(kNeedle, 5000, 50);
  EXPECT_EQ(p.ids.size(), 1u + 100u + 8u + 15u);  // the whole haystack fits
  EXPECT_EQ(p.insertion_point, 50);
  try {
    builder.build(kNeedle, 223, 50);  // 200 + 1 + 15 + 8 = 224 needed
    ADD_FAILURE() << "expected ConfigError";
  } catch (const pipeline::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("expected at least buffer_tokens + template + needle = 200 + 16 + 8 = 224"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(builder.build(kNeedle, 224, 50).ids.size(), 24u);
  EXPECT_THROW(builder.build(kNeedle, 1000, 101), pipeline::ConfigError);
  EXPECT_THROW(builder.build(kNeedle, -1, 50), pipeline::ConfigError);
  const stages::Needle wrong{"The code is alpha.", "Q", "omega"};
  EXPECT_THROW(builder.build(wrong, 1000, 50), pipeline::InputError);
}

TEST(ChatPrompt, WrapsContextInBothModes) {
  FakeTokenizer tok;
  PromptOptions fixed = options(PromptMode::kFixed, 10);
  fixed.prompt_template = PromptTemplate::chat("<s>[INST] {user} [/INST]");
  const BuiltPrompt f = stages::build_prompt(tok, haystack(), kNeedle, 86, 50, fixed);
  ASSERT_EQ(f.ids.size(), 76u);
  EXPECT_EQ(count_id(f.ids, 1), 1);
  EXPECT_EQ(f.ids[1], tok.id("[INST]"));
  EXPECT_EQ(f.ids[2], tok.id("<book>"));
  EXPECT_EQ(f.ids.back(), tok.id("[/INST]"));
  EXPECT_EQ(slice(f.ids, f.answer_begin, f.answer_end), f.answer_ids);
  EXPECT_NE(f.text.find("</book> Based on the content"), std::string::npos) << f.text;

  PromptOptions faithful = options(PromptMode::kFaithful, 200, stages::period_ids_from_pieces(tok, {"."}));
  faithful.prompt_template = fixed.prompt_template;
  const BuiltPrompt p = stages::build_prompt(tok, haystack(), kNeedle, 300, 50, faithful);
  // Template "<s>" (no BOS added by apply_chat_template), the context's decoded "<s>", the needle's.
  EXPECT_EQ(count_id(p.ids, 1), 3);
  EXPECT_EQ(p.text.rfind("<s>[INST] <book><s> s0w0", 0), 0u) << p.text.substr(0, 40);
  EXPECT_EQ(p.ids.back(), tok.id("[/INST]"));
  ASSERT_TRUE(p.answer_found());
  EXPECT_EQ(slice(p.ids, p.answer_begin, p.answer_end), p.answer_ids);
}

// The same properties with real tokenizer implementations (WordLevel and byte-level BPE).
class RealTokenizerPrompt : public ::testing::Test {
 protected:
  test_support::TempDir m_dir{"prompt-real-tok"};
};

TEST_F(RealTokenizerPrompt, WordLevelBosDuplicationOnlyInFaithfulMode) {
  const std::string hay = haystack(" .");  // WordLevel keeps "w3." whole, so "." is its own word here
  const stages::Needle needle{"The secret code is alpha beta gamma .", kNeedle.question, kNeedle.real_needle};
  const auto tok = prompt_test::make_wordlevel(m_dir.path() / "wl",
                                               {hay, needle.needle, stages::question_text(needle.question)});
  const int64_t bos = *tok->bos_id();
  PromptOptions faithful = options(PromptMode::kFaithful, 200, stages::period_ids_from_pieces(*tok, {"."}));
  const BuiltPrompt p = stages::build_prompt(*tok, hay, needle, 300, 50, faithful);
  EXPECT_EQ(p.ids[0], bos);
  EXPECT_EQ(p.ids[1], bos);
  EXPECT_EQ(count_id(p.ids, bos), 3);
  ASSERT_TRUE(p.answer_found());
  EXPECT_EQ(tok->decode(slice(p.ids, p.answer_begin, p.answer_end), false), "alpha beta gamma");
  EXPECT_LE(p.ids.size(), 300u);

  const BuiltPrompt f = stages::build_prompt(*tok, hay, needle, 300, 50, options(PromptMode::kFixed, 200));
  EXPECT_EQ(count_id(f.ids, bos), 1);
  EXPECT_EQ(f.ids.size(), 100u);
  EXPECT_EQ(f.ids[0], bos);
  EXPECT_EQ(tok->decode(slice(f.ids, f.answer_begin, f.answer_end), false), "alpha beta gamma");
}

TEST_F(RealTokenizerPrompt, ByteLevelBpeSpans) {
  const stages::Needle n1{
      "A new report from the WMO shows that records were once again broken, and in some cases smashed, for "
      "greenhouse gas levels, surface temperatures, ocean heat and acidification.",
      "What does a new report from WMO shows ?",
      "records were once again broken, and in some cases smashed, for greenhouse gas levels, surface "
      "temperatures, ocean heat and acidification."};
  const auto tok = prompt_test::make_bpe(m_dir.path() / "bpe", prompt_test::split_words(n1.needle));
  const int64_t bos = *tok->bos_id();
  const std::string hay = haystack();
  const auto periods = stages::period_ids_from_pieces(*tok, {"."});
  ASSERT_EQ(periods.size(), 1u);
  for (double depth : {0.0, 50.0, 100.0}) {
    const BuiltPrompt p = stages::build_prompt(*tok, hay, n1, 600, depth, options(PromptMode::kFaithful, 200, periods));
    EXPECT_LE(p.ids.size(), 600u);
    EXPECT_GE(count_id(p.ids, bos), 2);
    ASSERT_TRUE(p.answer_found()) << depth;
    const std::string span = tok->decode(slice(p.ids, p.answer_begin, p.answer_end), false);
    EXPECT_NE(span.find("greenhouse gas levels"), std::string::npos) << span;

    const BuiltPrompt f = stages::build_prompt(*tok, hay, n1, 600, depth, options(PromptMode::kFixed, 200));
    EXPECT_EQ(f.ids.size(), 400u);
    EXPECT_EQ(count_id(f.ids, bos), 1);
    // Fixed mode keeps the needle's natural tokens (the first word may carry its leading space, where
    // the standalone answer has none); the tokens after the first word are identical.
    const Ids fspan = slice(f.ids, f.answer_begin, f.answer_end);
    const std::string text = tok->decode(fspan, false);
    EXPECT_EQ(text.substr(text.find_first_not_of(' ')), n1.real_needle);
    const Ids tail = tok->encode(n1.real_needle.substr(n1.real_needle.find(' ')), false);
    ASSERT_LT(tail.size(), fspan.size());
    EXPECT_EQ(Ids(fspan.end() - static_cast<std::ptrdiff_t>(tail.size()), fspan.end()), tail);
    EXPECT_EQ(Ids(f.answer_ids.end() - static_cast<std::ptrdiff_t>(tail.size()), f.answer_ids.end()), tail);
    if (depth > 0 && depth < 100) {
      EXPECT_TRUE(stages::is_sentence_end_token(*tok, f.ids[static_cast<size_t>(f.needle_begin - 1)]));
    }
  }
}

}  // namespace
