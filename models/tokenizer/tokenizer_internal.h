// Shared machinery of the tokenizers (not a public header): UTF-8 helpers, tokenizer_config.json
// settings, and TokenizerBase, which owns added-token matching, BOS/EOS handling and decode filtering
// so that each model kind only encodes plain text and decodes plain ids.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "models/tokenizer/tokenizer.h"

namespace models::tokenizer_detail {

// ---- UTF-8 -------------------------------------------------------------------------------------
// Decodes the code point at s[pos] and advances pos; false (pos unchanged) on an invalid sequence.
bool utf8_next(std::string_view s, size_t& pos, uint32_t& cp);
// Byte offset of the first invalid sequence, or nullopt when s is valid UTF-8.
std::optional<size_t> utf8_first_invalid(std::string_view s);
// Valid UTF-8 with each maximal invalid subpart replaced by U+FFFD (Rust's from_utf8_lossy).
std::string utf8_lossy(std::string_view s);
void utf8_append(std::string& out, uint32_t cp);
// Rust char::is_whitespace (Unicode White_Space), which HF's WhitespaceSplit uses.
bool is_unicode_whitespace(uint32_t cp);

// ---- settings from tokenizer_config.json / special_tokens_map.json ------------------------------
struct AddedToken {
  std::string content;
  int64_t id = -1;
  bool special = false;
  bool lstrip = false;  // matching also eats the whitespace on its left
  bool rstrip = false;  // ... and on its right
};

struct TokenizerSettings {
  std::filesystem::path config_file;  // tokenizer_config.json when read, for messages
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> unk_token;
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  std::optional<bool> legacy;            // LlamaTokenizer's legacy flag (SentencePiece only)
  std::optional<bool> add_prefix_space;  // LlamaTokenizer (SentencePiece only)
  bool clean_up_tokenization_spaces = false;
  std::vector<AddedToken> added_tokens;  // added_tokens_decoder
};

// Reads tokenizer_config.json and special_tokens_map.json of model_dir (each optional).
TokenizerSettings read_tokenizer_settings(const std::filesystem::path& model_dir);

// ---- base class --------------------------------------------------------------------------------
class TokenizerBase : public Tokenizer {
 public:
  std::vector<int64_t> encode(std::string_view text, bool add_special_tokens) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override;
  std::optional<int64_t> bos_id() const override { return m_bos_id; }
  std::optional<int64_t> eos_id() const override { return m_eos_id; }
  bool is_special(int64_t id) const override;

 protected:
  // A run of plain text between added tokens (added_id < 0), or one added token.
  struct Segment {
    std::string_view text;
    int64_t added_id = -1;
  };

  explicit TokenizerBase(std::filesystem::path source) : m_source(std::move(source)) {}

  // Encodes plain text (no added tokens inside) and appends the ids.
  virtual void encode_text(std::string_view text, std::vector<int64_t>& out) const = 0;
  // Decodes ids already range-checked and filtered; added-token ids may be among them.
  virtual std::string decode_ids(const std::vector<int64_t>& ids) const = 0;
  // Hooks for SentencePiece's non-legacy mode: text rewrite before splitting, per-segment encoding.
  virtual std::string prepare_text(std::string_view text) const { return std::string(text); }
  virtual void encode_segments(const std::vector<Segment>& segments, std::vector<int64_t>& out) const;
  // Model-specific special ids (SentencePiece control / unknown pieces).
  virtual bool is_model_special(int64_t /*id*/) const { return false; }

  // Registers a token matched in text before anything else (later registrations of the same id win).
  void add_added_token(const AddedToken& token);
  const AddedToken* find_added(int64_t id) const;
  std::optional<int64_t> find_added(std::string_view content) const;
  const std::vector<AddedToken>& added_tokens() const { return m_added; }
  std::vector<Segment> split_added(std::string_view text) const;

  // Resolves a token string from the config to an id; throws naming the config key when unknown.
  int64_t resolve_token(const std::string& token, const std::string& key,
                        const std::filesystem::path& file) const;

  std::filesystem::path m_source;        // tokenizer.json / tokenizer.model, for messages
  std::vector<int64_t> m_prefix_ids;     // added by add_special_tokens before the text (BOS)
  std::vector<int64_t> m_suffix_ids;     // ... and after it (EOS)
  std::optional<int64_t> m_bos_id;
  std::optional<int64_t> m_eos_id;
  bool m_clean_up_tokenization_spaces = false;

 private:
  std::vector<AddedToken> m_added;
  std::unordered_map<int64_t, size_t> m_added_by_id;
  std::unordered_map<std::string, size_t> m_added_by_content;
};

// Factories of the concrete kinds (sentencepiece_tokenizer.cpp, json_tokenizer.cpp).
std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const std::filesystem::path& model_file,
                                                        const TokenizerSettings& settings);
std::unique_ptr<Tokenizer> make_json_tokenizer(const std::filesystem::path& json_file,
                                               const TokenizerSettings& settings);

}  // namespace models::tokenizer_detail
