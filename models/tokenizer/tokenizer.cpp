// load_tokenizer, tokenizer_config.json settings, the shared TokenizerBase and UTF-8 helpers.
#include "models/tokenizer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/tokenizer/tokenizer_internal.h"
#include "pipeline/core/error.h"

namespace models {
namespace tokenizer_detail {

using pipeline::InputError;
using pipeline::str_cat;

// ---- UTF-8 -------------------------------------------------------------------------------------
namespace {

// Length of the well-formed prefix of the sequence starting at s[pos] (Unicode table 3-7), and
// whether it is a whole character. A lone invalid byte gives length 0.
size_t utf8_sequence(std::string_view s, size_t pos, bool& complete, uint32_t& cp) {
  complete = false;
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) {
    complete = true;
    cp = b0;
    return 1;
  }
  size_t n = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
    cp = b0 & 0x1Fu;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    cp = b0 & 0x0Fu;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    cp = b0 & 0x07u;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  size_t len = 1;
  for (; len < n; ++len) {
    if (pos + len >= s.size()) return len;
    const auto b = static_cast<unsigned char>(s[pos + len]);
    if (b < lo || b > hi) return len;
    lo = 0x80;
    hi = 0xBF;
    cp = (cp << 6) | (b & 0x3Fu);
  }
  complete = true;
  return n;
}

}  // namespace

bool utf8_next(std::string_view s, size_t& pos, uint32_t& cp) {
  if (pos >= s.size()) return false;
  bool complete = false;
  const size_t len = utf8_sequence(s, pos, complete, cp);
  if (!complete) return false;
  pos += len;
  return true;
}

std::optional<size_t> utf8_first_invalid(std::string_view s) {
  size_t pos = 0;
  uint32_t cp = 0;
  while (pos < s.size()) {
    if (!utf8_next(s, pos, cp)) return pos;
  }
  return std::nullopt;
}

std::string utf8_lossy(std::string_view s) {
  if (!utf8_first_invalid(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  size_t pos = 0;
  while (pos < s.size()) {
    bool complete = false;
    uint32_t cp = 0;
    const size_t len = utf8_sequence(s, pos, complete, cp);
    if (complete) {
      out.append(s.substr(pos, len));
      pos += len;
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD for the maximal invalid subpart
      pos += std::max<size_t>(len, 1);
    }
  }
  return out;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_unicode_whitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// ---- settings ----------------------------------------------------------------------------------
namespace {

nlohmann::json read_json(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  RHEAD_CHECK(in.good(), InputError, "[tokenizer] ", file.string(),
              ": cannot open file. Hint: check the path and its permissions");
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return nlohmann::json::parse(buffer.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(str_cat("[tokenizer] ", file.string(), ": not valid JSON (", e.what(),
                             "). Hint: the file may be truncated or a Git LFS pointer"));
  }
}

// A token entry in tokenizer_config.json: "<s>", null, or {"content": "<s>", ...} (AddedToken).
std::optional<std::string> token_string(const nlohmann::json& j, const std::string& key,
                                        const std::filesystem::path& file) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  const auto& v = j.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string()) {
    return v.at("content").get<std::string>();
  }
  throw InputError(str_cat("[tokenizer] ", file.string(), ": key '", key, "' has the wrong type; got ",
                           v.dump(), ", expected a string or an object with a string \"content\""));
}

std::optional<bool> bool_value(const nlohmann::json& j, const std::string& key,
                               const std::filesystem::path& file) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  RHEAD_CHECK(j.at(key).is_boolean(), InputError, "[tokenizer] ", file.string(), ": key '", key,
              "' has the wrong type; got ", j.at(key).dump(), ", expected true or false");
  return j.at(key).get<bool>();
}

}  // namespace

TokenizerSettings read_tokenizer_settings(const std::filesystem::path& model_dir) {
  TokenizerSettings s;
  const auto map_file = model_dir / "special_tokens_map.json";
  if (std::filesystem::exists(map_file)) {
    const auto j = read_json(map_file);
    RHEAD_CHECK(j.is_object(), InputError, "[tokenizer] ", map_file.string(),
                ": top level has the wrong type; got ", j.type_name(), ", expected an object");
    s.bos_token = token_string(j, "bos_token", map_file);
    s.eos_token = token_string(j, "eos_token", map_file);
    s.unk_token = token_string(j, "unk_token", map_file);
  }
  const auto file = model_dir / "tokenizer_config.json";
  if (!std::filesystem::exists(file)) return s;
  s.config_file = file;
  const auto j = read_json(file);
  RHEAD_CHECK(j.is_object(), InputError, "[tokenizer] ", file.string(),
              ": top level has the wrong type; got ", j.type_name(), ", expected an object");
  // tokenizer_config.json wins over special_tokens_map.json, as in transformers.
  if (j.contains("bos_token")) s.bos_token = token_string(j, "bos_token", file);
  if (j.contains("eos_token")) s.eos_token = token_string(j, "eos_token", file);
  if (j.contains("unk_token")) s.unk_token = token_string(j, "unk_token", file);
  s.add_bos_token = bool_value(j, "add_bos_token", file);
  s.add_eos_token = bool_value(j, "add_eos_token", file);
  s.legacy = bool_value(j, "legacy", file);
  s.add_prefix_space = bool_value(j, "add_prefix_space", file);
  s.clean_up_tokenization_spaces = bool_value(j, "clean_up_tokenization_spaces", file).value_or(false);
  if (j.contains("added_tokens_decoder") && !j.at("added_tokens_decoder").is_null()) {
    const auto& decoder = j.at("added_tokens_decoder");
    RHEAD_CHECK(decoder.is_object(), InputError, "[tokenizer] ", file.string(),
                ": key 'added_tokens_decoder' has the wrong type; got ", decoder.type_name(),
                ", expected an object {\"<id>\": {\"content\": ..., \"special\": ...}}");
    for (const auto& [key, value] : decoder.items()) {
      AddedToken token;
      try {
        size_t used = 0;
        token.id = std::stoll(key, &used);
        if (used != key.size() || token.id < 0) token.id = -1;
      } catch (const std::exception&) {
        token.id = -1;
      }
      RHEAD_CHECK(token.id >= 0, InputError, "[tokenizer] ", file.string(), ": key 'added_tokens_decoder.",
                  key, "' is not a token id; got \"", key, "\", expected a non-negative integer");
      const auto content = token_string(decoder, key, file);
      RHEAD_CHECK(content.has_value() && !content->empty(), InputError, "[tokenizer] ", file.string(),
                  ": key 'added_tokens_decoder.", key,
                  ".content' is missing or empty; expected the token's text");
      token.content = *content;
      if (value.is_object()) {
        token.special = bool_value(value, "special", file).value_or(false);
        token.lstrip = bool_value(value, "lstrip", file).value_or(false);
        token.rstrip = bool_value(value, "rstrip", file).value_or(false);
      }
      s.added_tokens.push_back(token);
    }
  }
  return s;
}

// ---- TokenizerBase -----------------------------------------------------------------------------
namespace {

// transformers' clean_up_tokenization (decode with clean_up_tokenization_spaces=True).
std::string clean_up_tokenization(std::string s) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."},   {" ?", "?"},     {" !", "!"},     {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    const std::string_view f(from);
    const std::string_view t(to);
    std::string out;
    out.reserve(s.size());
    size_t pos = 0;
    while (true) {
      const size_t hit = s.find(f, pos);
      if (hit == std::string::npos) break;
      out.append(s, pos, hit - pos);
      out.append(t);
      pos = hit + f.size();
    }
    out.append(s, pos, std::string::npos);
    s = std::move(out);
  }
  return s;
}

// Start of the whitespace run that ends at `end` (Unicode whitespace), not before `floor`.
size_t whitespace_run_start(std::string_view s, size_t floor, size_t end) {
  size_t pos = end;
  while (pos > floor) {
    size_t start = pos - 1;
    while (start > floor && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t next = start;
    uint32_t cp = 0;
    if (!utf8_next(s, next, cp) || next != pos || !is_unicode_whitespace(cp)) break;
    pos = start;
  }
  return pos;
}

size_t whitespace_run_end(std::string_view s, size_t pos) {
  while (pos < s.size()) {
    size_t next = pos;
    uint32_t cp = 0;
    if (!utf8_next(s, next, cp) || !is_unicode_whitespace(cp)) break;
    pos = next;
  }
  return pos;
}

}  // namespace

void TokenizerBase::add_added_token(const AddedToken& token) {
  if (token.content.empty()) return;
  const auto by_id = m_added_by_id.find(token.id);
  if (by_id != m_added_by_id.end()) {
    const auto old = m_added_by_content.find(m_added[by_id->second].content);
    if (old != m_added_by_content.end() && old->second == by_id->second) m_added_by_content.erase(old);
    m_added[by_id->second] = token;
    m_added_by_content[token.content] = by_id->second;
    return;
  }
  const auto by_content = m_added_by_content.find(token.content);
  if (by_content != m_added_by_content.end()) {
    // Same text under a new id: keep the first (HF keeps the first registration of a content).
    return;
  }
  m_added_by_id[token.id] = m_added.size();
  m_added_by_content[token.content] = m_added.size();
  m_added.push_back(token);
}

const AddedToken* TokenizerBase::find_added(int64_t id) const {
  const auto it = m_added_by_id.find(id);
  return it == m_added_by_id.end() ? nullptr : &m_added[it->second];
}

std::optional<int64_t> TokenizerBase::find_added(std::string_view content) const {
  const auto it = m_added_by_content.find(std::string(content));
  if (it == m_added_by_content.end()) return std::nullopt;
  return m_added[it->second].id;
}

std::vector<TokenizerBase::Segment> TokenizerBase::split_added(std::string_view text) const {
  std::vector<Segment> segments;
  if (m_added.empty()) {
    if (!text.empty()) segments.push_back({text, -1});
    return segments;
  }
  // Leftmost-longest match over all added tokens (HF's AddedVocabulary). next[i] caches the next
  // occurrence of token i at or after the scan position.
  std::vector<size_t> next(m_added.size(), 0);
  std::vector<bool> known(m_added.size(), false);
  size_t pos = 0;        // scan position
  size_t text_from = 0;  // start of the pending plain-text run
  while (pos < text.size()) {
    size_t best_start = std::string_view::npos;
    size_t best_index = 0;
    for (size_t i = 0; i < m_added.size(); ++i) {
      if (!known[i] || (next[i] != std::string_view::npos && next[i] < pos)) {
        next[i] = text.find(m_added[i].content, pos);
        known[i] = true;
      }
      if (next[i] == std::string_view::npos) continue;
      if (next[i] < best_start ||
          (next[i] == best_start && m_added[i].content.size() > m_added[best_index].content.size())) {
        best_start = next[i];
        best_index = i;
      }
    }
    if (best_start == std::string_view::npos) break;
    const AddedToken& token = m_added[best_index];
    size_t text_end = best_start;
    if (token.lstrip) text_end = whitespace_run_start(text, text_from, best_start);
    if (text_end > text_from) segments.push_back({text.substr(text_from, text_end - text_from), -1});
    segments.push_back({text.substr(best_start, token.content.size()), token.id});
    pos = best_start + token.content.size();
    if (token.rstrip) pos = whitespace_run_end(text, pos);
    text_from = pos;
  }
  if (text_from < text.size()) segments.push_back({text.substr(text_from), -1});
  return segments;
}

void TokenizerBase::encode_segments(const std::vector<Segment>& segments,
                                    std::vector<int64_t>& out) const {
  for (const auto& segment : segments) {
    if (segment.added_id >= 0) {
      out.push_back(segment.added_id);
    } else {
      encode_text(segment.text, out);
    }
  }
}

std::vector<int64_t> TokenizerBase::encode(std::string_view text, bool add_special_tokens) const {
  const auto bad = utf8_first_invalid(text);
  RHEAD_CHECK(!bad.has_value(), InputError, "[tokenizer] ", m_source.string(),
              ": text to encode is not valid UTF-8; got an invalid byte sequence at byte offset ",
              bad.value_or(0), " of ", text.size(),
              ", expected UTF-8. Hint: re-encode the input file (e.g. iconv -t UTF-8)");
  std::vector<int64_t> ids;
  if (add_special_tokens) ids = m_prefix_ids;
  const std::string prepared = prepare_text(text);
  encode_segments(split_added(prepared), ids);
  if (add_special_tokens) ids.insert(ids.end(), m_suffix_ids.begin(), m_suffix_ids.end());
  return ids;
}

std::string TokenizerBase::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  const int64_t n = vocab_size();
  std::vector<int64_t> kept;
  kept.reserve(ids.size());
  for (const int64_t id : ids) {
    RHEAD_CHECK(id >= 0 && id < n, InputError, "[tokenizer] ", m_source.string(),
                ": token id out of range in decode; got ", id, ", expected an id in [0, ", n,
                "). Hint: the ids come from a model with a different vocabulary");
    if (skip_special_tokens && is_special(id)) continue;
    kept.push_back(id);
  }
  std::string text = decode_ids(kept);
  if (m_clean_up_tokenization_spaces) text = clean_up_tokenization(std::move(text));
  return text;
}

bool TokenizerBase::is_special(int64_t id) const {
  const AddedToken* token = find_added(id);
  if (token != nullptr && token->special) return true;
  return is_model_special(id);
}

int64_t TokenizerBase::resolve_token(const std::string& token, const std::string& key,
                                     const std::filesystem::path& file) const {
  const auto id = piece_to_id(token);
  RHEAD_CHECK(id.has_value(), InputError, "[tokenizer] ",
              (file.empty() ? m_source : file).string(), ": key '", key, "' names token \"", token,
              "\", which is not in the vocabulary of ", m_source.string(),
              ". Hint: the tokenizer files come from different models");
  return *id;
}

}  // namespace tokenizer_detail

// ---- factories ---------------------------------------------------------------------------------
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir) {
  using pipeline::InputError;
  RHEAD_CHECK(std::filesystem::is_directory(model_dir), InputError, "[tokenizer] ", model_dir.string(),
              ": model folder not found; expected a directory with tokenizer.model or tokenizer.json");
  const auto settings = tokenizer_detail::read_tokenizer_settings(model_dir);
  if (std::filesystem::exists(model_dir / "tokenizer.model")) {
    return tokenizer_detail::make_sentencepiece_tokenizer(model_dir / "tokenizer.model", settings);
  }
  if (std::filesystem::exists(model_dir / "tokenizer.json")) {
    return tokenizer_detail::make_json_tokenizer(model_dir / "tokenizer.json", settings);
  }
  throw InputError(pipeline::str_cat(
      "[tokenizer] ", model_dir.string(),
      ": no tokenizer found; got neither tokenizer.model nor tokenizer.json, expected one of them. "
      "Hint: copy the tokenizer files of the Hugging Face checkpoint into the model folder"));
}

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::filesystem::path& tokenizer_json) {
  return tokenizer_detail::make_json_tokenizer(tokenizer_json, tokenizer_detail::TokenizerSettings{});
}

}  // namespace models
