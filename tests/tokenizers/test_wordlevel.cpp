// WordLevel tokenizer.json (the toy zoo's tokenizer) and the error paths of tokenizer.json loading.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "models/tokenizer/tokenizer.h"
#include "pipeline/core/error.h"
#include "tests/common/test_support.h"

namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int64_t>;

// id:                                 0        1      2       3      4      5      6     7      8
const std::vector<std::string> kVocab = {"<unk>", "<s>", "</s>", "the", "cat", "sat", "on", "mat", ".",
                                        // 9     10   11
                                        "key", "=", "42"};

class WordLevelTest : public ::testing::Test {
 protected:
  // A model folder with the writer's tokenizer.json (and tokenizer_config.json when given).
  fs::path folder(const std::string& name, const std::string& config = "") {
    const fs::path dir = m_dir.path() / name;
    fs::create_directories(dir);
    models::write_wordlevel_tokenizer_json(dir / "tokenizer.json", kVocab, "<unk>", {"<unk>", "<s>", "</s>"});
    if (!config.empty()) test_support::write_text_file(dir / "tokenizer_config.json", config);
    return dir;
  }
  // Writes text as <dir>/<name>/tokenizer.json and returns the InputError message of loading it.
  std::string load_error(const std::string& name, const std::string& text) {
    const fs::path dir = m_dir.path() / name;
    fs::create_directories(dir);
    test_support::write_text_file(dir / "tokenizer.json", text);
    SCOPED_TRACE(name);
    return test_support::error_of<pipeline::InputError>([&] { models::load_tokenizer(dir); });
  }
  test_support::TempDir m_dir{"tok-wordlevel"};
};

TEST_F(WordLevelTest, EncodesWordsAndUnknowns) {
  const auto tok = models::load_tokenizer(folder("plain"));
  EXPECT_EQ(tok->kind(), "wordlevel");
  EXPECT_EQ(tok->vocab_size(), 12);
  EXPECT_EQ(tok->encode("the cat sat on the mat .", false), (Ids{3, 4, 5, 6, 3, 7, 8}));
  EXPECT_EQ(tok->encode("key = 42", false), (Ids{9, 10, 11}));
  // Unknown words (including "cat." without a space: WhitespaceSplit keeps punctuation attached).
  EXPECT_EQ(tok->encode("the dog sat on the cat.", false), (Ids{3, 0, 5, 6, 3, 0}));
  // Whitespace runs, tabs, newlines, NBSP (U+00A0) and the ideographic space (U+3000) all split.
  EXPECT_EQ(tok->encode("  the\tcat\n\n sat\xC2\xA0on\xE3\x80\x80mat  ", false), (Ids{3, 4, 5, 6, 7}));
  EXPECT_EQ(tok->encode("", false), Ids{});
  EXPECT_EQ(tok->piece_to_id("cat"), 4);
  EXPECT_EQ(tok->piece_to_id("dog"), std::nullopt);
  EXPECT_EQ(tok->id_to_piece(7), "mat");
}

TEST_F(WordLevelTest, SpecialTokensInsideText) {
  const auto tok = models::load_tokenizer(folder("special"));
  // Matched before splitting, so no spaces are needed around them.
  EXPECT_EQ(tok->encode("the<s>cat </s>sat", false), (Ids{3, 1, 4, 2, 5}));
  EXPECT_TRUE(tok->is_special(0));
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_TRUE(tok->is_special(2));
  EXPECT_FALSE(tok->is_special(3));
  // No decoder: tokens joined with single spaces; special tokens dropped when asked.
  EXPECT_EQ(tok->decode({3, 4, 1, 5}, /*skip_special_tokens=*/false), "the cat <s> sat");
  EXPECT_EQ(tok->decode({1, 3, 4, 2}, /*skip_special_tokens=*/true), "the cat");
  EXPECT_EQ(tok->decode({3, 0}, /*skip_special_tokens=*/true), "the");
  // Without tokenizer_config.json nothing is added and no BOS/EOS is known.
  EXPECT_EQ(tok->encode("the cat", true), (Ids{3, 4}));
  EXPECT_EQ(tok->bos_id(), std::nullopt);
}

TEST_F(WordLevelTest, RoundTripsNormalizedText) {
  const auto tok = models::load_tokenizer(folder("roundtrip"));
  for (const std::string text : {"the cat sat on the mat .", "key = 42", "the", "<s> the cat </s>"}) {
    EXPECT_EQ(tok->decode(tok->encode(text, false), false), text);
  }
}

TEST_F(WordLevelTest, ConfigAddsBosAndEos) {
  const fs::path dir = folder("config");
  models::write_tokenizer_config_json(dir / "tokenizer_config.json",
                                      {"<s>", "</s>", "<unk>", /*add_bos_token=*/true, /*add_eos_token=*/true,
                                       "PreTrainedTokenizerFast"});
  const auto tok = models::load_tokenizer(dir);
  EXPECT_EQ(tok->encode("the cat", true), (Ids{1, 3, 4, 2}));
  EXPECT_EQ(tok->encode("the cat", false), (Ids{3, 4}));
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->decode({1, 3, 4, 2}, true), "the cat");

  const auto cleanup = models::load_tokenizer(folder("cleanup", R"({"clean_up_tokenization_spaces": true})"));
  EXPECT_EQ(cleanup->decode({3, 4, 5, 8}, false), "the cat sat.");
}

TEST_F(WordLevelTest, WhitespacePreTokenizerSplitsPunctuation) {
  const fs::path dir = m_dir.path() / "whitespace";
  fs::create_directories(dir);
  // Whitespace = \w+|[^\w\s]+ : "cat's" -> "cat" "'" "s"; "=42" -> "=" "42".
  test_support::write_text_file(dir / "tokenizer.json", R"({
    "added_tokens": [], "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
    "model": {"type": "WordLevel", "unk_token": "[UNK]",
              "vocab": {"[UNK]": 0, "cat": 1, "'": 2, "s": 3, "=": 4, "42": 5, "caf\u00e9": 6}}})");
  const auto tok = models::load_tokenizer(dir);
  EXPECT_EQ(tok->encode("cat's =42 café!", false), (Ids{1, 2, 3, 4, 5, 6, 0}));
}

TEST_F(WordLevelTest, SplitBehaviorsAndDigits) {
  // "a-b--c" cut at "-" gives runs a | - | b | - | - | c (HF's Split behaviors, hand-applied below).
  const std::string vocab = R"("vocab": {"[UNK]": 0, "a": 1, "b": 2, "c": 3, "-": 4, "a-": 5, "b-": 6, "-b": 7,
                                          "-c": 8, "--": 9, "12": 10, "1": 11, "2": 12})";
  const auto load_with = [&](const std::string& name, const std::string& pre) {
    const fs::path dir = m_dir.path() / name;
    fs::create_directories(dir);
    test_support::write_text_file(dir / "tokenizer.json", R"({"pre_tokenizer": )" + pre +
                                                              R"(, "model": {"type": "WordLevel", "unk_token": "[UNK]", )" +
                                                              vocab + "}}");
    return models::load_tokenizer(dir);
  };
  const auto split = [&](const std::string& behavior, bool invert) {
    return load_with("split_" + behavior + (invert ? "_inv" : ""),
                     R"({"type": "Split", "pattern": {"String": "-"}, "behavior": ")" + behavior +
                         R"(", "invert": )" + (invert ? "true" : "false") + "}")
        ->encode("a-b--c", false);
  };
  EXPECT_EQ(split("Removed", false), (Ids{1, 2, 3}));                 // a b c
  EXPECT_EQ(split("Isolated", false), (Ids{1, 4, 2, 4, 4, 3}));       // a - b - - c
  EXPECT_EQ(split("MergedWithPrevious", false), (Ids{5, 6, 4, 3}));   // a- b- - c
  EXPECT_EQ(split("MergedWithNext", false), (Ids{1, 7, 4, 8}));       // a -b - -c
  EXPECT_EQ(split("Contiguous", false), (Ids{1, 4, 2, 9, 3}));        // a - b -- c
  EXPECT_EQ(split("Removed", true), (Ids{4, 4, 4}));                  // inverted: the letters go
  // Digits: runs of digits, or one digit per piece.
  EXPECT_EQ(load_with("digits", R"({"type": "Digits", "individual_digits": false})")->encode("a12b", false),
            (Ids{1, 10, 2}));
  EXPECT_EQ(load_with("digits1", R"({"type": "Digits", "individual_digits": true})")->encode("a12b", false),
            (Ids{1, 11, 12, 2}));
}

TEST_F(WordLevelTest, LoadTokenizerJsonReadsOneFile) {
  const fs::path dir = folder("single_file", R"({"add_bos_token": true, "bos_token": "<s>"})");
  // load_tokenizer_json ignores the folder's tokenizer_config.json.
  const auto tok = models::load_tokenizer_json(dir / "tokenizer.json");
  EXPECT_EQ(tok->encode("the cat", true), (Ids{3, 4}));
  EXPECT_EQ(models::load_tokenizer(dir)->encode("the cat", true), (Ids{1, 3, 4}));
}

TEST_F(WordLevelTest, WriterRejectsBadVocabularies) {
  const fs::path path = m_dir.path() / "bad_writer.json";
  const auto message = [](const std::function<void()>& fn) { return test_support::error_of<pipeline::InputError>(fn); };
  EXPECT_NE(message([&] { models::write_wordlevel_tokenizer_json(path, {"a", "b"}, "<unk>", {}); })
                .find("unk token \"<unk>\" is not in the vocabulary"),
            std::string::npos);
  EXPECT_NE(message([&] { models::write_wordlevel_tokenizer_json(path, {"<unk>", "a", "a"}, "<unk>", {}); })
                .find("\"a\" appears twice"),
            std::string::npos);
  EXPECT_NE(message([&] { models::write_wordlevel_tokenizer_json(path, {"<unk>"}, "<unk>", {"<s>"}); })
                .find("special token \"<s>\" is not in the vocabulary"),
            std::string::npos);
  EXPECT_NE(message([&] {
              models::write_byte_level_bpe_tokenizer_json(path, {"a", "b"}, {{"a", "b"}}, {});
            }).find("needs token \"ab\""),
            std::string::npos);
}

// ---- tokenizer.json error paths: each message names the file, the key and what was expected ----

void expect_message(const std::string& what, const std::vector<std::string>& parts) {
  EXPECT_EQ(what.rfind("[tokenizer] ", 0), 0u) << what;
  EXPECT_NE(what.find("tokenizer.json"), std::string::npos) << what;
  for (const auto& part : parts) EXPECT_NE(what.find(part), std::string::npos) << "missing '" << part << "' in: " << what;
}

TEST_F(WordLevelTest, ErrorNotJson) {
  expect_message(load_error("not_json", "{\"model\": "), {"not valid JSON", "Hint:"});
}

TEST_F(WordLevelTest, ErrorMissingModel) {
  expect_message(load_error("no_model", R"({"version": "1.0"})"), {"key 'model' is missing", "expected"});
}

TEST_F(WordLevelTest, ErrorUnknownModelType) {
  expect_message(load_error("unigram", R"({"model": {"type": "Unigram", "vocab": []}})"),
                 {"key 'model.type'", "got \"Unigram\"", "expected BPE or WordLevel", "tokenizer.model"});
}

TEST_F(WordLevelTest, ErrorMergeWithUnknownToken) {
  expect_message(load_error("merge_unknown", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
                                                  "merges": ["a b", "a x"]}})"),
                 {"key 'model.merges[1]'", "got \"x\"", "in merge \"a\" + \"x\"", "model.vocab"});
}

TEST_F(WordLevelTest, ErrorMergeResultNotInVocab) {
  expect_message(load_error("merge_result", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1},
                                                 "merges": [["a", "b"]]}})"),
                 {"key 'model.merges[0]'", "got \"ab\""});
}

TEST_F(WordLevelTest, ErrorMalformedMerge) {
  expect_message(load_error("merge_format", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["ab"]}})"),
                 {"key 'model.merges[0]' is not a merge", "got \"ab\"", "\"a b\""});
}

TEST_F(WordLevelTest, ErrorDuplicateIdAndBadId) {
  expect_message(load_error("dup_id", R"({"model": {"type": "WordLevel", "unk_token": "a", "vocab": {"a": 0, "b": 0}}})"),
                 {"key 'model.vocab' gives id 0 to two tokens"});
  expect_message(load_error("bad_id", R"({"model": {"type": "WordLevel", "unk_token": "a", "vocab": {"a": "zero"}}})"),
                 {"key 'model.vocab' has a bad id for token \"a\"", "got \"zero\""});
}

TEST_F(WordLevelTest, ErrorWordLevelUnkMissing) {
  expect_message(load_error("unk_missing", R"({"model": {"type": "WordLevel", "unk_token": "<unk>", "vocab": {"a": 0}}})"),
                 {"key 'model.unk_token'", "got \"<unk>\""});
}

TEST_F(WordLevelTest, ErrorUnsupportedPreTokenizerAndRegex) {
  expect_message(load_error("metaspace", R"({"pre_tokenizer": {"type": "Metaspace"},
                  "model": {"type": "WordLevel", "unk_token": "a", "vocab": {"a": 0}}})"),
                 {"key 'pre_tokenizer.type' is not supported", "got \"Metaspace\""});
  expect_message(load_error("bad_regex", R"({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": "(a"}, "behavior": "Isolated", "invert": false}]},
                  "model": {"type": "WordLevel", "unk_token": "a", "vocab": {"a": 0}}})"),
                 {"key 'pre_tokenizer.pretokenizers[0].pattern.Regex'", "got \"(a\""});
  expect_message(load_error("bad_behavior", R"({"pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                    "behavior": "Sideways"}, "model": {"type": "WordLevel", "unk_token": "a", "vocab": {"a": 0}}})"),
                 {"key 'pre_tokenizer.behavior'", "got \"Sideways\""});
}

TEST_F(WordLevelTest, ErrorUnsupportedNormalizerAndDecoder) {
  expect_message(load_error("normalizer", R"({"normalizer": {"type": "Lowercase"},
                  "model": {"type": "WordLevel", "unk_token": "a", "vocab": {"a": 0}}})"),
                 {"key 'normalizer.type' is not supported", "got \"Lowercase\""});
  expect_message(load_error("decoder", R"({"decoder": {"type": "Metaspace"},
                  "model": {"type": "WordLevel", "unk_token": "a", "vocab": {"a": 0}}})"),
                 {"key 'decoder.type' is not supported", "got \"Metaspace\""});
}

TEST_F(WordLevelTest, ErrorBadAddedToken) {
  expect_message(load_error("added", R"({"added_tokens": [{"id": 1}],
                  "model": {"type": "WordLevel", "unk_token": "a", "vocab": {"a": 0}}})"),
                 {"key 'added_tokens[0]' is not an added token"});
}

TEST_F(WordLevelTest, ErrorConfigTokenNotInVocab) {
  const fs::path dir = folder("config_bad", R"({"bos_token": "<bos>", "add_bos_token": true})");
  try {
    models::load_tokenizer(dir);
    FAIL() << "expected pipeline::InputError";
  } catch (const pipeline::InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("tokenizer_config.json: key 'bos_token' names token \"<bos>\""), std::string::npos) << what;
  }
}

TEST_F(WordLevelTest, ErrorFolderAndRuntime) {
  try {
    models::load_tokenizer(m_dir.path());  // a folder without tokenizer files
    FAIL() << "expected pipeline::InputError";
  } catch (const pipeline::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("got neither tokenizer.model nor tokenizer.json"), std::string::npos)
        << e.what();
  }
  const auto tok = models::load_tokenizer(folder("runtime"));
  try {
    tok->encode("the \xC3\x28 cat", false);  // C3 followed by a non-continuation byte
    FAIL() << "expected pipeline::InputError";
  } catch (const pipeline::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8; got an invalid byte sequence at byte offset 4"),
              std::string::npos)
        << e.what();
  }
  try {
    tok->decode({3, 12}, false);
    FAIL() << "expected pipeline::InputError";
  } catch (const pipeline::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("got 12, expected an id in [0, 12)"), std::string::npos) << e.what();
  }
}

}  // namespace
