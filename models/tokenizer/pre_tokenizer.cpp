// tokenizer.json pre-tokenizers (HF `tokenizers` semantics) and the PCRE2 regex wrapper.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "models/tokenizer/pre_tokenizer.h"

#include <pcre2.h>

#include <algorithm>
#include <array>

#include "models/tokenizer/tokenizer_internal.h"
#include "pipeline/core/error.h"

namespace models::tokenizer_detail {

using pipeline::InputError;
using pipeline::str_cat;

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ---- byte-level table --------------------------------------------------------------------------
namespace {

struct ByteLevelTable {
  std::array<std::string, 256> chars;
  std::array<int, 324> bytes{};  // code points 0..323 cover the whole table
  ByteLevelTable() {
    bytes.fill(-1);
    // GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
    // U+0100 onwards in byte order.
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
      utf8_append(chars[static_cast<size_t>(b)], cp);
      bytes[cp] = b;
    }
  }
};

const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable table;
  return table;
}

}  // namespace

const std::string& byte_level_char(unsigned char b) { return byte_level_table().chars[b]; }

int byte_level_byte(uint32_t cp) {
  const auto& bytes = byte_level_table().bytes;
  return cp < bytes.size() ? bytes[cp] : -1;
}

// ---- Regex -------------------------------------------------------------------------------------
Regex::Regex(const std::string& pattern, const std::filesystem::path& file, const std::string& key)
    : m_pattern(pattern), m_file(file) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    std::array<PCRE2_UCHAR, 256> message{};
    pcre2_get_error_message(error_code, message.data(), message.size());
    throw InputError(str_cat("[tokenizer] ", file.string(), ": key '", key,
                             "' is not a regex PCRE2 can compile; got \"", pattern, "\" (",
                             reinterpret_cast<const char*>(message.data()), " at offset ", error_offset,
                             "), expected an Oniguruma/PCRE-compatible pattern"));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter is the fallback
  m_code = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(m_code)); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  auto* code = static_cast<pcre2_code*>(m_code);
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create_from_pattern(code, nullptr), &pcre2_match_data_free);
  std::vector<std::pair<size_t, size_t>> matches;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    int rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, data.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data.get(),
                       nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(rc, message.data(), message.size());
      throw InputError(str_cat("[tokenizer] ", m_file.string(), ": pre-tokenizer regex \"", m_pattern,
                               "\" failed at byte ", pos, " of a ", text.size(), "-byte text; got error '",
                               reinterpret_cast<const char*>(message.data()),
                               "'. Hint: split very long inputs into smaller parts"));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (end > begin) {
      matches.emplace_back(begin, end);
      pos = end;
    } else {  // empty match: step over one character
      pos = begin + 1;
      while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
  return matches;
}

// ---- pre-tokenizers ----------------------------------------------------------------------------
namespace {

std::string get_string(const nlohmann::json& j, const std::string& name, const std::filesystem::path& file,
                       const std::string& key) {
  RHEAD_CHECK(j.contains(name) && j.at(name).is_string(), InputError, "[tokenizer] ", file.string(),
              ": key '", key, ".", name, "' is missing or not a string; got ",
              (j.contains(name) ? j.at(name).dump() : std::string("nothing")), ", expected a string");
  return j.at(name).get<std::string>();
}

bool get_bool(const nlohmann::json& j, const std::string& name, bool fallback,
              const std::filesystem::path& file, const std::string& key) {
  if (!j.contains(name) || j.at(name).is_null()) return fallback;
  RHEAD_CHECK(j.at(name).is_boolean(), InputError, "[tokenizer] ", file.string(), ": key '", key, ".",
              name, "' has the wrong type; got ", j.at(name).dump(), ", expected true or false");
  return j.at(name).get<bool>();
}

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// One piece cut into (begin, end, is_match) runs that cover it, then grouped by behavior
// (HF tokenizers NormalizedString::split).
std::vector<std::string> split_by_matches(const std::string& piece,
                                          const std::vector<std::pair<size_t, size_t>>& matches,
                                          SplitBehavior behavior, bool invert) {
  struct Run {
    size_t begin;
    size_t end;
    bool is_match;
  };
  std::vector<Run> runs;
  size_t prev = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > prev) runs.push_back({prev, begin, invert});
    runs.push_back({begin, end, !invert});
    prev = end;
  }
  if (prev < piece.size()) runs.push_back({prev, piece.size(), invert});

  std::vector<std::pair<size_t, size_t>> out;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const auto& r : runs) {
        if (!r.is_match) out.emplace_back(r.begin, r.end);
      }
      break;
    case SplitBehavior::kIsolated:
      for (const auto& r : runs) out.emplace_back(r.begin, r.end);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const auto& r : runs) {
        if (r.is_match && !previous_match && !out.empty()) {
          out.back().second = r.end;
        } else {
          out.emplace_back(r.begin, r.end);
        }
        previous_match = r.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().first = it->begin;
        } else {
          out.emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      int previous = -1;
      for (const auto& r : runs) {
        if (previous == static_cast<int>(r.is_match) && !out.empty()) {
          out.back().second = r.end;
        } else {
          out.emplace_back(r.begin, r.end);
        }
        previous = static_cast<int>(r.is_match);
      }
      break;
    }
  }
  std::vector<std::string> pieces;
  for (const auto& [begin, end] : out) {
    if (end > begin) pieces.push_back(piece.substr(begin, end - begin));
  }
  return pieces;
}

template <class Fn>
void split_each(std::vector<std::string>& pieces, Fn&& fn) {
  std::vector<std::string> out;
  out.reserve(pieces.size());
  for (const auto& piece : pieces) {
    for (auto& sub : fn(piece)) {
      if (!sub.empty()) out.push_back(std::move(sub));
    }
  }
  pieces = std::move(out);
}

class RegexSplit final : public PreTokenizer {
 public:
  RegexSplit(std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert)
      : m_regex(std::move(regex)), m_behavior(behavior), m_invert(invert) {}
  void split(std::vector<std::string>& pieces) const override {
    split_each(pieces, [this](const std::string& piece) {
      return split_by_matches(piece, m_regex->find_all(piece), m_behavior, m_invert);
    });
  }

 private:
  std::unique_ptr<Regex> m_regex;
  SplitBehavior m_behavior;
  bool m_invert;
};

class StringSplit final : public PreTokenizer {
 public:
  StringSplit(std::string literal, SplitBehavior behavior, bool invert)
      : m_literal(std::move(literal)), m_behavior(behavior), m_invert(invert) {}
  void split(std::vector<std::string>& pieces) const override {
    split_each(pieces, [this](const std::string& piece) {
      std::vector<std::pair<size_t, size_t>> matches;
      if (!m_literal.empty()) {
        for (size_t pos = piece.find(m_literal); pos != std::string::npos;
             pos = piece.find(m_literal, pos + m_literal.size())) {
          matches.emplace_back(pos, pos + m_literal.size());
        }
      }
      return split_by_matches(piece, matches, m_behavior, m_invert);
    });
  }

 private:
  std::string m_literal;
  SplitBehavior m_behavior;
  bool m_invert;
};

// ByteLevel: optional prefix space, optional GPT-2 regex split, then every byte -> its character.
class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : m_add_prefix_space(add_prefix_space), m_regex(std::move(regex)) {}
  void split(std::vector<std::string>& pieces) const override {
    split_each(pieces, [this](const std::string& input) {
      std::string piece = input;
      if (m_add_prefix_space && (piece.empty() || piece.front() != ' ')) piece.insert(0, " ");
      std::vector<std::string> subs;
      if (m_regex) {
        subs = split_by_matches(piece, m_regex->find_all(piece), SplitBehavior::kIsolated, false);
      } else {
        subs.push_back(piece);
      }
      for (auto& sub : subs) sub = models::byte_level_encode(sub);
      return subs;
    });
  }
  bool is_byte_level() const override { return true; }

 private:
  bool m_add_prefix_space;
  std::unique_ptr<Regex> m_regex;
};

class WhitespaceSplit final : public PreTokenizer {
 public:
  void split(std::vector<std::string>& pieces) const override {
    split_each(pieces, [](const std::string& piece) {
      std::vector<std::string> words;
      size_t pos = 0;
      size_t word_begin = std::string::npos;
      while (pos < piece.size()) {
        size_t next = pos;
        uint32_t cp = 0;
        if (!utf8_next(piece, next, cp)) next = pos + 1;  // cannot happen: text is validated
        if (is_unicode_whitespace(cp)) {
          if (word_begin != std::string::npos) words.push_back(piece.substr(word_begin, pos - word_begin));
          word_begin = std::string::npos;
        } else if (word_begin == std::string::npos) {
          word_begin = pos;
        }
        pos = next;
      }
      if (word_begin != std::string::npos) words.push_back(piece.substr(word_begin));
      return words;
    });
  }
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : m_steps(std::move(steps)) {}
  void split(std::vector<std::string>& pieces) const override {
    for (const auto& step : m_steps) step->split(pieces);
  }
  bool is_byte_level() const override {
    for (const auto& step : m_steps) {
      if (step->is_byte_level()) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> m_steps;
};

SplitBehavior parse_behavior(const std::string& name, const std::filesystem::path& file,
                             const std::string& key) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  throw InputError(str_cat("[tokenizer] ", file.string(), ": key '", key,
                           ".behavior' is unknown; got \"", name,
                           "\", expected one of Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                           "Contiguous"));
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::filesystem::path& file,
                                                 const std::string& key) {
  RHEAD_CHECK(j.is_object(), InputError, "[tokenizer] ", file.string(), ": key '", key,
              "' has the wrong type; got ", j.dump(), ", expected an object with a \"type\"");
  const std::string type = get_string(j, "type", file, key);
  if (type == "Sequence") {
    RHEAD_CHECK(j.contains("pretokenizers") && j.at("pretokenizers").is_array(), InputError,
                "[tokenizer] ", file.string(), ": key '", key,
                ".pretokenizers' is missing or not an array; expected a list of pre-tokenizers");
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    const auto& list = j.at("pretokenizers");
    for (size_t i = 0; i < list.size(); ++i) {
      steps.push_back(make_pre_tokenizer(list[i], file, str_cat(key, ".pretokenizers[", i, "]")));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  if (type == "ByteLevel") {
    const bool add_prefix_space = get_bool(j, "add_prefix_space", true, file, key);
    const bool use_regex = get_bool(j, "use_regex", true, file, key);
    std::unique_ptr<Regex> regex;
    if (use_regex) regex = std::make_unique<Regex>(kGpt2Pattern, file, key + ".use_regex");
    return std::make_unique<ByteLevel>(add_prefix_space, std::move(regex));
  }
  if (type == "Split") {
    RHEAD_CHECK(j.contains("pattern") && j.at("pattern").is_object(), InputError, "[tokenizer] ",
                file.string(), ": key '", key, ".pattern' is missing or not an object; expected "
                "{\"Regex\": \"...\"} or {\"String\": \"...\"}");
    const auto& pattern = j.at("pattern");
    const auto behavior = parse_behavior(get_string(j, "behavior", file, key), file, key);
    const bool invert = get_bool(j, "invert", false, file, key);
    if (pattern.contains("Regex")) {
      const auto text = get_string(pattern, "Regex", file, key + ".pattern");
      return std::make_unique<RegexSplit>(std::make_unique<Regex>(text, file, key + ".pattern.Regex"),
                                          behavior, invert);
    }
    if (pattern.contains("String")) {
      return std::make_unique<StringSplit>(get_string(pattern, "String", file, key + ".pattern"), behavior,
                                           invert);
    }
    throw InputError(str_cat("[tokenizer] ", file.string(), ": key '", key,
                             ".pattern' has neither \"Regex\" nor \"String\"; got ", pattern.dump(),
                             ", expected one of them"));
  }
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplit>();
  if (type == "Whitespace") {
    return std::make_unique<RegexSplit>(std::make_unique<Regex>(R"(\w+|[^\w\s]+)", file, key),
                                        SplitBehavior::kRemoved, true);
  }
  if (type == "Digits") {
    const bool individual = get_bool(j, "individual_digits", false, file, key);
    return std::make_unique<RegexSplit>(std::make_unique<Regex>(individual ? R"(\p{N})" : R"(\p{N}+)", file, key),
                                        SplitBehavior::kIsolated, false);
  }
  throw InputError(str_cat("[tokenizer] ", file.string(), ": key '", key, ".type' is not supported; got \"",
                           type,
                           "\", expected one of ByteLevel, Split, WhitespaceSplit, Whitespace, Digits, "
                           "Sequence. Hint: SentencePiece-style tokenizers load from tokenizer.model"));
}

}  // namespace models::tokenizer_detail

namespace models {

std::string byte_level_encode(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 2);
  for (const char c : s) out += tokenizer_detail::byte_level_char(static_cast<unsigned char>(c));
  return out;
}

std::string byte_level_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    uint32_t cp = 0;
    if (!tokenizer_detail::utf8_next(s, pos, cp)) return std::string(s);
    const int b = tokenizer_detail::byte_level_byte(cp);
    if (b < 0) return std::string(s);  // HF: a token with a character outside the map stays as is
    out.push_back(static_cast<char>(b));
  }
  return out;
}

}  // namespace models
