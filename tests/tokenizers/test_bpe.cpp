// Byte-level BPE from tokenizer.json against hand-computed ids.
//
// The toy tokenizer: id b (0..255) is GPT-2's byte-level character of byte b, so the id of an
// unmerged character is its byte value ('h' = 104, 'Ġ' = space = 32, 'Ċ' = newline = 10). Merges, in
// rank order, with the id of the merged token:
//   rank 0  h + e      -> he      256        rank 6  Ġw + or    -> Ġwor    262
//   rank 1  l + l      -> ll      257        rank 7  l + d      -> ld      263
//   rank 2  he + ll    -> hell    258        rank 8  Ġwor + ld  -> Ġworld  264
//   rank 3  hell + o   -> hello   259        rank 9  e + l      -> el      265
//   rank 4  Ġ + w      -> Ġw      260        rank 10 Ã + ©      -> Ã©      266  (é = bytes C3 A9)
//   rank 5  o + r      -> or      261        rank 11 1 + 2      -> 12      267
// Added tokens: 268 "<|endoftext|>" (special), 269 "<s>" (special), 270 "<mask>" (lstrip, not special).
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "models/tokenizer/tokenizer.h"
#include "pipeline/core/error.h"
#include "tests/common/test_support.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Ids = std::vector<int64_t>;

const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string ch(unsigned char b) { return models::byte_level_encode(std::string(1, static_cast<char>(b))); }

const std::vector<std::pair<std::string, std::string>>& toy_merges() {
  static const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"},    {"l", "l"},  {"he", "ll"},   {"hell", "o"}, {ch(' '), "w"}, {"o", "r"},
      {ch(' ') + "w", "or"}, {"l", "d"}, {ch(' ') + "wor", "ld"}, {"e", "l"}, {ch(0xC3), ch(0xA9)},
      {"1", "2"}};
  return merges;
}

// 256 byte characters, then the merged tokens in rank order, then the added tokens.
std::vector<std::string> toy_vocab() {
  std::vector<std::string> vocab;
  for (int b = 0; b < 256; ++b) vocab.push_back(ch(static_cast<unsigned char>(b)));
  for (const auto& [a, b] : toy_merges()) vocab.push_back(a + b);
  vocab.insert(vocab.end(), {"<|endoftext|>", "<s>", "<mask>"});
  return vocab;
}

json byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

json gpt2_pre_tokenizer() { return byte_level(true); }

json qwen2_pre_tokenizer() {
  return {{"type", "Sequence"},
          {"pretokenizers",
           json::array({{{"type", "Split"},
                         {"pattern", {{"Regex", kQwen2Pattern}}},
                         {"behavior", "Isolated"},
                         {"invert", false}},
                        byte_level(false)})}};
}

json added(int64_t id, const std::string& content, bool special, bool lstrip = false) {
  return {{"id", id},         {"content", content}, {"single_word", false}, {"lstrip", lstrip},
          {"rstrip", false},  {"normalized", false}, {"special", special}};
}

// The toy tokenizer.json; merges as "a b" strings or as ["a", "b"] arrays.
json toy_json(const json& pre_tokenizer, bool array_merges = false, const json& post_processor = nullptr) {
  json vocab = json::object();
  const auto tokens = toy_vocab();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  json merges = json::array();
  for (const auto& [a, b] : toy_merges()) {
    if (array_merges) {
      merges.push_back(json::array({a, b}));
    } else {
      merges.push_back(a + " " + b);
    }
  }
  return {{"version", "1.0"},
          {"added_tokens", json::array({added(268, "<|endoftext|>", true), added(269, "<s>", true),
                                        added(270, "<mask>", false, /*lstrip=*/true)})},
          {"normalizer", nullptr},
          {"pre_tokenizer", pre_tokenizer},
          {"post_processor", post_processor.is_null() ? byte_level(true) : post_processor},
          {"decoder", byte_level(true)},
          {"model",
           {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"fuse_unk", false},
            {"byte_fallback", false}, {"vocab", vocab}, {"merges", merges}}}};
}

class BpeTest : public ::testing::Test {
 protected:
  // Writes j as <dir>/<name>/tokenizer.json (plus tokenizer_config.json when given) and loads the folder.
  std::unique_ptr<models::Tokenizer> load(const json& j, const std::string& name, const std::string& config = "") {
    const fs::path dir = m_dir.path() / name;
    fs::create_directories(dir);
    test_support::write_text_file(dir / "tokenizer.json", j.dump());
    if (!config.empty()) test_support::write_text_file(dir / "tokenizer_config.json", config);
    return models::load_tokenizer(dir);
  }
  test_support::TempDir m_dir{"tok-bpe"};
};

TEST_F(BpeTest, ByteLevelTableIsGpt2s) {
  EXPECT_EQ(models::byte_level_encode("h\xC3\xA9 "), "h\xC3\x83\xC2\xA9\xC4\xA0");  // "hé " -> "hÃ©Ġ"
  EXPECT_EQ(ch('\n'), "\xC4\x8A");   // Ċ U+010A: the 11th non-printable byte
  EXPECT_EQ(ch(0x97), "\xC4\xB9");   // Ĺ U+0139 = 256 + 33 (0x00-0x20) + 24 (0x7F..0x96)
  EXPECT_EQ(ch(0xAD), "\xC5\x83");   // Ń U+0143: the last of the 68 remapped bytes
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(models::byte_level_decode(models::byte_level_encode(all)), all);
  // Tokens with a character outside the table stay as they are (HF's ByteLevel decoder).
  EXPECT_EQ(models::byte_level_decode("<|endoftext|>"), "<|endoftext|>");
  EXPECT_EQ(models::byte_level_decode("\xE6\x97\xA5"), "\xE6\x97\xA5");  // 日
}

TEST_F(BpeTest, MergesApplyLowestRankFirst) {
  const auto tok = load(toy_json(gpt2_pre_tokenizer()), "gpt2");
  EXPECT_EQ(tok->kind(), "bpe");
  EXPECT_EQ(tok->vocab_size(), 271);
  // h e l l o: he (r0), then ll (r1), hell (r2), hello (r3).
  EXPECT_EQ(tok->encode("hello", false), (Ids{259}));
  // y e l l: e+l (r9) is leftmost, but l+l (r1) has the lower rank; e+ll is no merge.
  EXPECT_EQ(tok->encode("yell", false), (Ids{'y', 'e', 257}));
  // h e l d: h+e (r0) wins over e+l (r9), which then no longer exists; l+d (r7) follows.
  EXPECT_EQ(tok->encode("held", false), (Ids{256, 263}));
  // l l l: two equal-rank pairs, the leftmost merges first.
  EXPECT_EQ(tok->encode("lll", false), (Ids{257, 'l'}));
  // " world" is one piece: Ġw (r4), or (r5), Ġwor (r6), ld (r7), Ġworld (r8).
  EXPECT_EQ(tok->encode("hello world", false), (Ids{259, 264}));
  // Without the space: w+or is no merge, so w / or / ld.
  EXPECT_EQ(tok->encode("world", false), (Ids{'w', 261, 263}));
}

TEST_F(BpeTest, Gpt2RegexSplitsPieces) {
  const auto tok = load(toy_json(gpt2_pre_tokenizer()), "gpt2_regex");
  // "hello", " " (\s+(?!\S) leaves the last space to the word), " world".
  EXPECT_EQ(tok->encode("hello  world", false), (Ids{259, 32, 264}));
  // "hello", "\n" (\s+), "world".
  EXPECT_EQ(tok->encode("hello\nworld", false), (Ids{259, '\n', 'w', 261, 263}));
  // Letters and digits are separate pieces: "x" + "12" merges 1+2; "1" "x" "2" cannot.
  EXPECT_EQ(tok->encode("x12", false), (Ids{'x', 267}));
  EXPECT_EQ(tok->encode("1x2", false), (Ids{'1', 'x', '2'}));
  // "Hello" (H+e is no merge; l+l is), then " 123" as one piece: Ġ, 12 (r11), 3.
  EXPECT_EQ(tok->encode("Hello 123", false), (Ids{'H', 'e', 257, 'o', 32, 267, '3'}));
}

TEST_F(BpeTest, Qwen2SplitRegexIsolatesDigits) {
  // Split(Qwen2 pattern, Isolated) then ByteLevel without its own regex: \p{N} is one digit per
  // piece, so 1+2 never meets; the space before digits is its own piece (\s+).
  const auto tok = load(toy_json(qwen2_pre_tokenizer()), "qwen2");
  EXPECT_EQ(tok->encode("Hello 123", false), (Ids{'H', 'e', 257, 'o', 32, '1', '2', '3'}));
  EXPECT_EQ(tok->encode("hello world", false), (Ids{259, 264}));
  // [^\r\n\p{L}\p{N}]?\p{L}+ : the comma is glued to "hello" -> ",hello" has no merge with ','.
  EXPECT_EQ(tok->encode("x,hello", false), (Ids{'x', ',', 259}));
}

TEST_F(BpeTest, NonAsciiBecomesByteLevelCharacters) {
  const auto tok = load(toy_json(gpt2_pre_tokenizer()), "bytes");
  // é = C3 A9 -> "Ã" "©", merged by rank 10.
  EXPECT_EQ(tok->encode("caf\xC3\xA9", false), (Ids{'c', 'a', 'f', 266}));
  // 日 = E6 97 A5: no merges, so the three byte ids.
  EXPECT_EQ(tok->encode("\xE6\x97\xA5", false), (Ids{0xE6, 0x97, 0xA5}));
  // 😀 = F0 9F 98 80.
  EXPECT_EQ(tok->encode("\xF0\x9F\x98\x80", false), (Ids{0xF0, 0x9F, 0x98, 0x80}));
  EXPECT_EQ(tok->id_to_piece(0x97), "\xC4\xB9");
  EXPECT_EQ(tok->id_to_piece(266), "\xC3\x83\xC2\xA9");
  EXPECT_EQ(tok->piece_to_id("\xC4\xA0w"), 260);  // "Ġw"
  // Half of 日 decodes to one U+FFFD (maximal invalid subpart), as HF's from_utf8_lossy does.
  EXPECT_EQ(tok->decode({0xE6, 0x97}, false), "\xEF\xBF\xBD");
  EXPECT_EQ(tok->decode({0xFF, 'a'}, false), "\xEF\xBF\xBD" "a");
}

TEST_F(BpeTest, AddedTokensAreMatchedFirstAndNeverSplit) {
  const auto tok = load(toy_json(gpt2_pre_tokenizer()), "added");
  EXPECT_EQ(tok->encode("hello<|endoftext|> world", false), (Ids{259, 268, 264}));
  EXPECT_EQ(tok->encode("<|endoftext|>hello<s>", false), (Ids{268, 259, 269}));
  // An incomplete special token is ordinary text: "<|", "endoftext", "|" with no merges.
  EXPECT_EQ(tok->encode("<|endoftext|", false),
            (Ids{'<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|'}));
  // <mask> has lstrip: the space before it is eaten; the space after it stays with "world".
  EXPECT_EQ(tok->encode("hello <mask> world", false), (Ids{259, 270, 264}));
  EXPECT_TRUE(tok->is_special(268));
  EXPECT_TRUE(tok->is_special(269));
  EXPECT_FALSE(tok->is_special(270));
  EXPECT_FALSE(tok->is_special(259));
  EXPECT_EQ(tok->id_to_piece(268), "<|endoftext|>");
  EXPECT_EQ(tok->piece_to_id("<mask>"), 270);
  EXPECT_EQ(tok->piece_to_id("nope"), std::nullopt);
  EXPECT_EQ(tok->decode({259, 268, 264}, /*skip_special_tokens=*/false), "hello<|endoftext|> world");
  EXPECT_EQ(tok->decode({259, 268, 264}, /*skip_special_tokens=*/true), "hello world");
  EXPECT_EQ(tok->decode({259, 270, 264}, /*skip_special_tokens=*/true), "hello<mask> world");
  // No tokenizer_config.json and a ByteLevel post-processor: nothing is added, no BOS/EOS known.
  EXPECT_EQ(tok->encode("hello", true), (Ids{259}));
  EXPECT_EQ(tok->bos_id(), std::nullopt);
  EXPECT_EQ(tok->eos_id(), std::nullopt);
}

TEST_F(BpeTest, RoundTrips) {
  const std::vector<std::string> texts = {
      "hello world", "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80", "Hello 123\n\tx",
      "a  b   c    ", " leading space", "don't stop, it's 3.14!", "\xCE\xA9\xCE\xBC\xCE\xAD\xCE\xB3\xCE\xB1 <|endoftext|>x"};
  for (const auto& [name, pre] : {std::pair{"rt_gpt2", gpt2_pre_tokenizer()}, std::pair{"rt_qwen2", qwen2_pre_tokenizer()}}) {
    const auto tok = load(toy_json(pre), name);
    for (const auto& text : texts) {
      EXPECT_EQ(tok->decode(tok->encode(text, true), false), text) << name << ": " << text;
    }
  }
}

TEST_F(BpeTest, ArrayMergesEqualStringMerges) {
  const auto strings = load(toy_json(gpt2_pre_tokenizer(), false), "merges_strings");
  const auto arrays = load(toy_json(gpt2_pre_tokenizer(), true), "merges_arrays");
  for (const std::string text : {"hello world", "yell held lll", "caf\xC3\xA9 x12 Hello 123"}) {
    EXPECT_EQ(arrays->encode(text, false), strings->encode(text, false)) << text;
  }
}

TEST_F(BpeTest, WriterProducesTheSameTokenizer) {
  const fs::path dir = m_dir.path() / "written";
  fs::create_directories(dir);
  models::write_byte_level_bpe_tokenizer_json(dir / "tokenizer.json", toy_vocab(), toy_merges(),
                                              {"<|endoftext|>", "<s>"});
  models::write_tokenizer_config_json(dir / "tokenizer_config.json",
                                      {"<s>", "<|endoftext|>", "", true, false, "PreTrainedTokenizerFast"});
  const auto tok = models::load_tokenizer(dir);
  EXPECT_EQ(tok->encode("hello world<|endoftext|>", true), (Ids{269, 259, 264, 268}));
  EXPECT_EQ(tok->encode("Hello 123 caf\xC3\xA9", false), (Ids{'H', 'e', 257, 'o', 32, 267, '3', 32, 'c', 'a', 'f', 266}));
  EXPECT_EQ(tok->bos_id(), 269);
  EXPECT_EQ(tok->eos_id(), 268);
  EXPECT_TRUE(tok->is_special(268));
  EXPECT_FALSE(tok->is_special(270));  // "<mask>" is an ordinary vocabulary entry here
}

TEST_F(BpeTest, TemplatePostProcessorAndConfigFlags) {
  const json tmpl = {{"type", "TemplateProcessing"},
                     {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                             {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                     {"pair", json::array()},
                     {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {269}}, {"tokens", {"<s>"}}}}}}};
  const auto plain = load(toy_json(gpt2_pre_tokenizer(), false, tmpl), "template");
  EXPECT_EQ(plain->encode("hello", true), (Ids{269, 259}));
  EXPECT_EQ(plain->encode("hello", false), (Ids{259}));
  EXPECT_EQ(plain->bos_id(), 269);
  // add_bos_token = false in tokenizer_config.json wins over the template.
  const auto no_bos = load(toy_json(gpt2_pre_tokenizer(), false, tmpl), "template_no_bos", R"({"add_bos_token": false})");
  EXPECT_EQ(no_bos->encode("hello", true), (Ids{259}));
  // add_eos_token = true adds EOS; add_bos_token unset keeps the template's BOS.
  const auto eos = load(toy_json(gpt2_pre_tokenizer(), false, tmpl), "template_eos",
                        R"({"bos_token": {"content": "<s>", "__type": "AddedToken"}, "eos_token": "<|endoftext|>", "add_eos_token": true})");
  EXPECT_EQ(eos->encode("hello", true), (Ids{269, 259, 268}));
  EXPECT_EQ(eos->eos_id(), 268);
  // clean_up_tokenization_spaces as transformers: " ," -> "," etc. (off by default).
  const auto clean = load(toy_json(gpt2_pre_tokenizer()), "cleanup", R"({"clean_up_tokenization_spaces": true})");
  EXPECT_EQ(clean->decode(clean->encode("hello , world", false), false), "hello, world");
}

TEST_F(BpeTest, IgnoreMergesAndByteFallback) {
  // ignore_merges (Llama-3): a piece found whole in the vocabulary skips the merges. "lll" (id 271)
  // has no merge path; merges alone give ll + l.
  json j = toy_json(gpt2_pre_tokenizer());
  j["model"]["vocab"]["lll"] = 271;
  EXPECT_EQ(load(j, "merges_on")->encode("lll", false), (Ids{257, 'l'}));
  j["model"]["ignore_merges"] = true;
  EXPECT_EQ(load(j, "merges_off")->encode("lll", false), (Ids{271}));
  // byte_fallback: a character outside the vocabulary becomes its <0xXX> byte tokens when all exist,
  // else the unk token. No pre-tokenizer: the whole text is one piece.
  const json fallback = {{"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true},
                                    {"vocab", {{"<unk>", 0}, {"a", 1}, {"<0xC3>", 2}, {"<0xA9>", 3}}},
                                    {"merges", json::array()}}}};
  const auto tok = load(fallback, "byte_fallback");
  EXPECT_EQ(tok->encode("a\xC3\xA9" "a", false), (Ids{1, 2, 3, 1}));      // aéa
  EXPECT_EQ(tok->encode("a\xE6\x97\xA5", false), (Ids{1, 0}));           // a日: no <0xE6> -> <unk>
}

TEST_F(BpeTest, NfcNormalizerIsAccepted) {
  json j = toy_json(qwen2_pre_tokenizer());
  j["normalizer"] = {{"type", "NFC"}};
  const auto tok = load(j, "nfc");
  EXPECT_EQ(tok->encode("hello world", false), (Ids{259, 264}));
}

}  // namespace
