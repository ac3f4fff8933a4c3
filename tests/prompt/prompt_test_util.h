// Test tokenizers for the prompt builder: a hand-countable fake one, and WordLevel / byte-level BPE
// tokenizer.json files written with the models_tokenizer writers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "models/tokenizer/tokenizer.h"
#include "tests/common/test_support.h"

namespace prompt_test {

using Ids = std::vector<int64_t>;

// One token per whitespace-separated word; a word ending in '.' is split into the word and "." (so
// "." is its own token, id 3). "<s>" (id 1) is matched anywhere in the text, as HF matches special
// tokens before splitting; add_special_tokens prepends it. Ids of new words are given in order of first
// appearance (the vocabulary grows on encode). decode joins pieces with single spaces.
class FakeTokenizer : public models::Tokenizer {
 public:
  FakeTokenizer() {
    for (const char* p : {"<unk>", "<s>", "</s>", "."}) add(p);
  }
  Ids encode(std::string_view text, bool add_special_tokens) const override {
    Ids ids;
    if (add_special_tokens) ids.push_back(1);
    std::string spaced;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text.compare(i, 3, "<s>") == 0) {
        spaced += " <s> ";
        i += 2;
      } else {
        spaced += text[i];
      }
    }
    std::istringstream in(spaced);
    std::string word;
    while (in >> word) {
      if (word.size() > 1 && word.back() == '.') {
        ids.push_back(add(word.substr(0, word.size() - 1)));
        ids.push_back(3);
      } else {
        ids.push_back(add(word));
      }
    }
    return ids;
  }
  std::string decode(const Ids& ids, bool skip_special_tokens) const override {
    std::string out;
    for (int64_t id : ids) {
      if (skip_special_tokens && is_special(id)) continue;
      if (!out.empty()) out += ' ';
      out += m_pieces.at(static_cast<size_t>(id));
    }
    return out;
  }
  std::string id_to_piece(int64_t id) const override { return m_pieces.at(static_cast<size_t>(id)); }
  std::optional<int64_t> piece_to_id(std::string_view piece) const override {
    auto it = m_ids.find(std::string(piece));
    if (it == m_ids.end()) return std::nullopt;
    return it->second;
  }
  int64_t vocab_size() const override { return static_cast<int64_t>(m_pieces.size()); }
  std::optional<int64_t> bos_id() const override { return 1; }
  std::optional<int64_t> eos_id() const override { return 2; }
  bool is_special(int64_t id) const override { return id >= 0 && id <= 2; }
  std::string_view kind() const override { return "fake"; }

  int64_t id(const std::string& piece) const { return add(piece); }

 private:
  int64_t add(const std::string& piece) const {
    auto it = m_ids.find(piece);
    if (it != m_ids.end()) return it->second;
    const auto id = static_cast<int64_t>(m_pieces.size());
    m_pieces.push_back(piece);
    m_ids.emplace(piece, id);
    return id;
  }
  mutable std::vector<std::string> m_pieces;
  mutable std::map<std::string, int64_t> m_ids;
};

inline std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  std::string w;
  while (in >> w) words.push_back(w);
  return words;
}

// A WordLevel tokenizer folder over the words of texts, with <unk> <s> </s> and a tokenizer_config.json
// that adds BOS "<s>" (like Llama); loaded with models::load_tokenizer.
inline std::unique_ptr<models::Tokenizer> make_wordlevel(const std::filesystem::path& dir,
                                                         const std::vector<std::string>& texts) {
  std::filesystem::create_directories(dir);
  std::vector<std::string> vocab{"<unk>", "<s>", "</s>"};
  std::set<std::string> seen(vocab.begin(), vocab.end());
  for (const auto& t : texts) {
    for (const auto& w : split_words(t)) {
      if (seen.insert(w).second) vocab.push_back(w);
    }
  }
  models::write_wordlevel_tokenizer_json(dir / "tokenizer.json", vocab, "<unk>", {"<unk>", "<s>", "</s>"});
  models::TokenizerConfigSpec spec;
  spec.bos_token = "<s>";
  spec.eos_token = "</s>";
  spec.unk_token = "<unk>";
  models::write_tokenizer_config_json(dir / "tokenizer_config.json", spec);
  return models::load_tokenizer(dir);
}

// Splits a byte-level string ("Ġthe") into its characters (UTF-8 code points).
inline std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : 4;
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

// A byte-level BPE tokenizer: all 256 byte symbols plus left-to-right chain merges that build each of
// the given words (with and without a leading space, in order), and "<s>" "</s>" as special tokens;
// tokenizer_config.json adds BOS like Llama. Other text falls apart into short pieces.
inline std::unique_ptr<models::Tokenizer> make_bpe(const std::filesystem::path& dir,
                                                   const std::vector<std::string>& words) {
  std::filesystem::create_directories(dir);
  std::vector<std::string> vocab{"<s>", "</s>"};
  std::set<std::string> in_vocab(vocab.begin(), vocab.end());
  for (int b = 0; b < 256; ++b) {
    const std::string sym = models::byte_level_encode(std::string(1, static_cast<char>(b)));
    if (in_vocab.insert(sym).second) vocab.push_back(sym);
  }
  std::vector<std::pair<std::string, std::string>> merges;
  std::set<std::pair<std::string, std::string>> have;
  for (const auto& w : words) {
    for (const std::string& form : {w, " " + w}) {
      const auto chars = utf8_chars(models::byte_level_encode(form));
      std::string left = chars.at(0);
      for (size_t k = 1; k < chars.size(); ++k) {
        const auto pair = std::make_pair(left, chars[k]);
        left += chars[k];
        if (have.insert(pair).second) merges.push_back(pair);
        if (in_vocab.insert(left).second) vocab.push_back(left);
      }
    }
  }
  models::write_byte_level_bpe_tokenizer_json(dir / "tokenizer.json", vocab, merges, {"<s>", "</s>"});
  models::TokenizerConfigSpec spec;
  spec.bos_token = "<s>";
  spec.eos_token = "</s>";
  models::write_tokenizer_config_json(dir / "tokenizer_config.json", spec);
  return models::load_tokenizer(dir);
}

inline int64_t count_id(const Ids& ids, int64_t id) {
  return static_cast<int64_t>(std::count(ids.begin(), ids.end(), id));
}

inline Ids slice(const Ids& ids, int64_t begin, int64_t end) {
  end = std::min<int64_t>(end, static_cast<int64_t>(ids.size()));
  return Ids(ids.begin() + begin, ids.begin() + end);
}

}  // namespace prompt_test
