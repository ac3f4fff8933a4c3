// Pre-tokenizers of tokenizer.json (not a public header): each splits pieces of text into smaller
// pieces, as HF `tokenizers` does, before the model (BPE / WordLevel) sees them. Regex patterns run
// through PCRE2 with UTF and UCP, so \s, \w, \p{L} and \p{N} are Unicode-aware like Oniguruma's.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace models::tokenizer_detail {

// A compiled PCRE2 pattern (thread-safe to use: match data is per call).
class Regex {
 public:
  // Throws pipeline::InputError naming file and key when the pattern does not compile.
  Regex(const std::string& pattern, const std::filesystem::path& file, const std::string& key);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Non-empty, non-overlapping matches [begin, end) in order; text must be valid UTF-8.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  void* m_code = nullptr;  // pcre2_code_8*
  std::string m_pattern;
  std::filesystem::path m_file;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces each piece by its sub-pieces (empty pieces are dropped).
  virtual void split(std::vector<std::string>& pieces) const = 0;
  // True when this pre-tokenizer maps text bytes to GPT-2's byte-level characters.
  virtual bool is_byte_level() const { return false; }
};

// Builds the pre-tokenizer described by j (tokenizer.json "pre_tokenizer"); key is its JSON path for
// messages. Supported: ByteLevel, Split, WhitespaceSplit, Whitespace, Digits, Sequence.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::filesystem::path& file,
                                                 const std::string& key);

// GPT-2's pattern, used by ByteLevel with use_regex = true.
extern const char* const kGpt2Pattern;

// GPT-2's byte <-> unicode table: byte_level_char(b) is the UTF-8 of the character for byte b;
// byte_level_byte(cp) is the byte of character cp, or -1 when cp is not in the table.
const std::string& byte_level_char(unsigned char b);
int byte_level_byte(uint32_t cp);

}  // namespace models::tokenizer_detail
