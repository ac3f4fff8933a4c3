// tokenizer.json: byte-level BPE (GPT-2 / Qwen2 / Llama-3 layout) and WordLevel, following HF
// `tokenizers`: added tokens are matched first, the rest is normalized (NFC is taken as identity, see
// below), pre-tokenized, run through the model, and decoded by the ByteLevel decoder (or joined with
// spaces when there is no decoder). Every key this reads is validated with a message naming it.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <mutex>
#include <queue>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "models/tokenizer/pre_tokenizer.h"
#include "models/tokenizer/tokenizer_internal.h"
#include "pipeline/core/error.h"

namespace models::tokenizer_detail {
namespace {

using pipeline::InputError;
using pipeline::str_cat;
using nlohmann::json;

json read_json_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  RHEAD_CHECK(in.good(), InputError, "[tokenizer] ", file.string(),
              ": cannot open file. Hint: check the path and its permissions");
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return json::parse(buffer.str());
  } catch (const json::parse_error& e) {
    throw InputError(str_cat("[tokenizer] ", file.string(), ": not valid JSON (", e.what(),
                             "). Hint: the file may be truncated or a Git LFS pointer"));
  }
}

// An optional boolean key: absent or null gives fallback; anything else but a bool is an error.
bool opt_bool(const json& j, const char* name, bool fallback, const std::filesystem::path& file,
              const std::string& key) {
  if (!j.contains(name) || j.at(name).is_null()) return fallback;
  RHEAD_CHECK(j.at(name).is_boolean(), InputError, "[tokenizer] ", file.string(), ": key '", key, ".", name,
              "' has the wrong type; got ", j.at(name).dump(), ", expected true or false");
  return j.at(name).get<bool>();
}

bool is_null_or_empty(const json& j, const char* name) {
  return !j.contains(name) || j.at(name).is_null() ||
         (j.at(name).is_string() && j.at(name).get<std::string>().empty());
}

std::string type_of(const json& j, const std::filesystem::path& file, const std::string& key) {
  RHEAD_CHECK(j.is_object() && j.contains("type") && j.at("type").is_string(), InputError, "[tokenizer] ",
              file.string(), ": key '", key, ".type' is missing or not a string; got ", j.dump(),
              ", expected an object with a string \"type\"");
  return j.at("type").get<std::string>();
}

class JsonTokenizer final : public TokenizerBase {
 public:
  JsonTokenizer(const std::filesystem::path& file, const TokenizerSettings& settings) : TokenizerBase(file) {
    const json root = read_json_file(file);
    RHEAD_CHECK(root.is_object(), InputError, "[tokenizer] ", file.string(),
                ": top level has the wrong type; got ", root.type_name(), ", expected an object");
    RHEAD_CHECK(root.contains("model") && root.at("model").is_object(), InputError, "[tokenizer] ",
                file.string(), ": key 'model' is missing or not an object; expected {\"type\": \"BPE\" | "
                "\"WordLevel\", \"vocab\": ...}. Hint: this is not a HF tokenizer.json");
    const json& model = root.at("model");
    const std::string type = type_of(model, file, "model");
    if (type == "BPE") {
      m_kind = Kind::kBpe;
    } else if (type == "WordLevel") {
      m_kind = Kind::kWordLevel;
    } else {
      throw InputError(str_cat("[tokenizer] ", file.string(), ": key 'model.type' is not supported; got \"",
                               type, "\", expected BPE or WordLevel. Hint: SentencePiece models (Unigram) "
                               "load from tokenizer.model"));
    }
    read_vocab(model);
    if (m_kind == Kind::kBpe) read_bpe(model);
    if (m_kind == Kind::kWordLevel) read_wordlevel(model);
    read_added_tokens(root);
    for (const auto& token : settings.added_tokens) {
      add_added_token(token);
      m_vocab_size = std::max(m_vocab_size, token.id + 1);
    }
    read_normalizer(root);
    if (root.contains("pre_tokenizer") && !root.at("pre_tokenizer").is_null()) {
      m_pre_tokenizer = make_pre_tokenizer(root.at("pre_tokenizer"), file, "pre_tokenizer");
    }
    read_decoder(root);
    read_post_processor(root);
    configure_special_tokens(settings);
    m_clean_up_tokenization_spaces = settings.clean_up_tokenization_spaces;
  }

  std::string id_to_piece(int64_t id) const override {
    if (const AddedToken* token = find_added(id)) return token->content;
    RHEAD_CHECK(id >= 0 && id < static_cast<int64_t>(m_id_to_token.size()) &&
                    m_has_id[static_cast<size_t>(id)],
                InputError, "[tokenizer] ", m_source.string(), ": token id has no token; got ", id,
                ", expected an id of model.vocab or added_tokens (vocab size ", m_vocab_size, ")");
    return m_id_to_token[static_cast<size_t>(id)];
  }

  std::optional<int64_t> piece_to_id(std::string_view piece) const override {
    if (const auto added = find_added(piece)) return added;
    const auto it = m_vocab.find(std::string(piece));
    if (it == m_vocab.end()) return std::nullopt;
    return it->second;
  }

  int64_t vocab_size() const override { return m_vocab_size; }
  std::string_view kind() const override { return m_kind == Kind::kBpe ? "bpe" : "wordlevel"; }

 protected:
  void encode_text(std::string_view text, std::vector<int64_t>& out) const override {
    std::vector<std::string> pieces{std::string(text)};
    if (m_pre_tokenizer) m_pre_tokenizer->split(pieces);
    for (const auto& piece : pieces) {
      if (piece.empty()) continue;
      if (m_kind == Kind::kWordLevel) {
        const auto it = m_vocab.find(piece);
        out.push_back(it != m_vocab.end() ? it->second : m_unk_id);
      } else {
        bpe_word(piece, out);
      }
    }
  }

  std::string decode_ids(const std::vector<int64_t>& ids) const override {
    std::string text;
    if (m_byte_level_decoder) {
      for (const int64_t id : ids) text += byte_level_decode(id_to_piece(id));
      return utf8_lossy(text);
    }
    for (size_t i = 0; i < ids.size(); ++i) {  // no decoder: HF joins the tokens with spaces
      if (i > 0) text.push_back(' ');
      text += id_to_piece(ids[i]);
    }
    return utf8_lossy(text);
  }

 private:
  enum class Kind { kBpe, kWordLevel };

  struct Merge {
    int64_t rank;
    int64_t new_id;
  };

  static uint64_t pair_key(int64_t a, int64_t b) {
    return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b);
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(str_cat("[tokenizer] ", m_source.string(), ": ", what));
  }

  void read_vocab(const json& model) {
    if (!model.contains("vocab") || !model.at("vocab").is_object()) {
      fail(str_cat("key 'model.vocab' is missing or not an object; got ",
                   model.contains("vocab") ? model.at("vocab").type_name() : "nothing",
                   ", expected {\"token\": id, ...}"));
    }
    const json& vocab = model.at("vocab");
    RHEAD_CHECK(!vocab.empty(), InputError, "[tokenizer] ", m_source.string(),
                ": key 'model.vocab' is empty; expected at least one token");
    int64_t max_id = -1;
    for (const auto& [token, value] : vocab.items()) {
      if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
          value.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        fail(str_cat("key 'model.vocab' has a bad id for token \"", token, "\"; got ", value.dump(),
                     ", expected a non-negative integer"));
      }
      max_id = std::max(max_id, value.get<int64_t>());
    }
    m_id_to_token.assign(static_cast<size_t>(max_id + 1), std::string());
    m_has_id.assign(static_cast<size_t>(max_id + 1), false);
    for (const auto& [token, value] : vocab.items()) {
      const auto id = value.get<int64_t>();
      if (m_has_id[static_cast<size_t>(id)]) {
        fail(str_cat("key 'model.vocab' gives id ", id, " to two tokens; got \"",
                     m_id_to_token[static_cast<size_t>(id)], "\" and \"", token,
                     "\", expected one token per id"));
      }
      m_has_id[static_cast<size_t>(id)] = true;
      m_id_to_token[static_cast<size_t>(id)] = token;
      m_vocab.emplace(token, id);
    }
    m_vocab_size = max_id + 1;
  }

  int64_t vocab_id(const std::string& token, const std::string& key, const std::string& context) const {
    const auto it = m_vocab.find(token);
    if (it == m_vocab.end()) {
      fail(str_cat("key '", key, "' refers to a token missing from model.vocab; got \"", token, "\"",
                   context, ", expected a token of model.vocab. Hint: the merges and the vocab come from "
                   "different tokenizers"));
    }
    return it->second;
  }

  void read_bpe(const json& model) {
    if (model.contains("dropout") && !model.at("dropout").is_null()) {
      const auto& d = model.at("dropout");
      if (!d.is_number() || d.get<double>() != 0.0) {
        fail(str_cat("key 'model.dropout' is not supported; got ", d.dump(),
                     ", expected null or 0 (BPE dropout makes encoding random)"));
      }
    }
    for (const char* name : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (!is_null_or_empty(model, name)) {
        fail(str_cat("key 'model.", name, "' is not supported; got ", model.at(name).dump(),
                     ", expected null or \"\" (byte-level BPE)"));
      }
    }
    m_fuse_unk = opt_bool(model, "fuse_unk", false, m_source, "model");
    m_byte_fallback = opt_bool(model, "byte_fallback", false, m_source, "model");
    m_ignore_merges = opt_bool(model, "ignore_merges", false, m_source, "model");
    if (!is_null_or_empty(model, "unk_token")) {
      RHEAD_CHECK(model.at("unk_token").is_string(), InputError, "[tokenizer] ", m_source.string(),
                  ": key 'model.unk_token' has the wrong type; got ", model.at("unk_token").dump(),
                  ", expected a string or null");
      m_unk_token = model.at("unk_token").get<std::string>();
    }
    if (!model.contains("merges") || !model.at("merges").is_array()) {
      fail(str_cat("key 'model.merges' is missing or not an array; got ",
                   model.contains("merges") ? model.at("merges").type_name() : "nothing",
                   ", expected [\"a b\", ...] or [[\"a\", \"b\"], ...]"));
    }
    const json& merges = model.at("merges");
    m_merges.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const json& m = merges[rank];
      const std::string key = str_cat("model.merges[", rank, "]");
      std::string left;
      std::string right;
      if (m.is_string()) {
        const auto text = m.get<std::string>();
        const size_t space = text.find(' ');
        if (space == std::string::npos || space == 0 || space + 1 >= text.size() ||
            text.find(' ', space + 1) != std::string::npos) {
          fail(str_cat("key '", key, "' is not a merge; got ", m.dump(),
                       ", expected two tokens separated by one space (\"a b\")"));
        }
        left = text.substr(0, space);
        right = text.substr(space + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        left = m[0].get<std::string>();
        right = m[1].get<std::string>();
      } else {
        fail(str_cat("key '", key, "' is not a merge; got ", m.dump(),
                     ", expected \"a b\" or [\"a\", \"b\"]"));
      }
      const std::string context = str_cat(" (in merge \"", left, "\" + \"", right, "\")");
      const int64_t a = vocab_id(left, key, context);
      const int64_t b = vocab_id(right, key, context);
      const int64_t merged = vocab_id(left + right, key, context);
      // The first occurrence of a pair keeps its rank (HF builds the map the same way).
      m_merges.emplace(pair_key(a, b), Merge{static_cast<int64_t>(rank), merged});
    }
  }

  void read_wordlevel(const json& model) {
    if (is_null_or_empty(model, "unk_token") || !model.at("unk_token").is_string()) {
      fail(str_cat("key 'model.unk_token' is missing or not a string; got ",
                   model.contains("unk_token") ? model.at("unk_token").dump() : std::string("nothing"),
                   ", expected the token used for unknown words (e.g. \"<unk>\")"));
    }
    const auto unk = model.at("unk_token").get<std::string>();
    const auto it = m_vocab.find(unk);
    if (it == m_vocab.end()) {
      fail(str_cat("key 'model.unk_token' names a token missing from model.vocab; got \"", unk,
                   "\", expected a token of model.vocab. Hint: add it to the vocabulary"));
    }
    m_unk_id = it->second;
  }

  void read_added_tokens(const json& root) {
    if (!root.contains("added_tokens") || root.at("added_tokens").is_null()) return;
    const json& list = root.at("added_tokens");
    RHEAD_CHECK(list.is_array(), InputError, "[tokenizer] ", m_source.string(),
                ": key 'added_tokens' has the wrong type; got ", list.type_name(), ", expected an array");
    for (size_t i = 0; i < list.size(); ++i) {
      const json& t = list[i];
      const std::string key = str_cat("added_tokens[", i, "]");
      if (!t.is_object() || !t.contains("id") || !t.at("id").is_number_integer() || t.at("id").get<int64_t>() < 0 ||
          !t.contains("content") || !t.at("content").is_string() || t.at("content").get<std::string>().empty()) {
        fail(str_cat("key '", key, "' is not an added token; got ", t.dump(),
                     ", expected {\"id\": <non-negative integer>, \"content\": <non-empty string>, ...}"));
      }
      AddedToken token;
      token.id = t.at("id").get<int64_t>();
      token.content = t.at("content").get<std::string>();
      token.special = opt_bool(t, "special", false, m_source, key);
      token.lstrip = opt_bool(t, "lstrip", false, m_source, key);
      token.rstrip = opt_bool(t, "rstrip", false, m_source, key);
      add_added_token(token);
      m_vocab_size = std::max(m_vocab_size, token.id + 1);
      if (token.id < static_cast<int64_t>(m_id_to_token.size()) && !m_has_id[static_cast<size_t>(token.id)]) {
        m_has_id[static_cast<size_t>(token.id)] = true;
        m_id_to_token[static_cast<size_t>(token.id)] = token.content;
      }
    }
  }

  void read_normalizer(const json& root) {
    if (!root.contains("normalizer") || root.at("normalizer").is_null()) return;
    const std::string type = type_of(root.at("normalizer"), m_source, "normalizer");
    // NFC is taken as the identity: text already in NFC (all ASCII, and nearly all real text) is
    // tokenized exactly; decomposed sequences (e.g. "e" + U+0301) are not composed first.
    if (type == "NFC") return;
    fail(str_cat("key 'normalizer.type' is not supported; got \"", type,
                 "\", expected null or NFC. Hint: SentencePiece-style tokenizers (Prepend/Replace "
                 "normalizers) load from tokenizer.model"));
  }

  void read_decoder(const json& root) {
    if (!root.contains("decoder") || root.at("decoder").is_null()) return;
    const std::string type = type_of(root.at("decoder"), m_source, "decoder");
    if (type == "ByteLevel") {
      m_byte_level_decoder = true;
      return;
    }
    fail(str_cat("key 'decoder.type' is not supported; got \"", type,
                 "\", expected null (tokens joined with spaces) or ByteLevel"));
  }

  // add_special_tokens ids from the post-processor: TemplateProcessing, Roberta/Bert, ByteLevel, null.
  void read_post_processor_into(const json& p, const std::string& key) {
    const std::string type = type_of(p, m_source, key);
    if (type == "ByteLevel") return;
    if (type == "Sequence") {
      RHEAD_CHECK(p.contains("processors") && p.at("processors").is_array(), InputError, "[tokenizer] ",
                  m_source.string(), ": key '", key, ".processors' is missing or not an array");
      for (size_t i = 0; i < p.at("processors").size(); ++i) {
        read_post_processor_into(p.at("processors")[i], str_cat(key, ".processors[", i, "]"));
      }
      return;
    }
    if (type == "RobertaProcessing" || type == "BertProcessing") {
      for (const char* name : {"cls", "sep"}) {
        const auto ok = p.contains(name) && p.at(name).is_array() && p.at(name).size() == 2 &&
                        p.at(name)[1].is_number_integer();
        if (!ok) {
          fail(str_cat("key '", key, ".", name, "' is not a token; got ",
                       p.contains(name) ? p.at(name).dump() : std::string("nothing"),
                       ", expected [\"<token>\", <id>]"));
        }
      }
      m_template_prefix = {p.at("cls")[1].get<int64_t>()};
      m_template_suffix = {p.at("sep")[1].get<int64_t>()};
      return;
    }
    if (type != "TemplateProcessing") {
      fail(str_cat("key '", key, ".type' is not supported; got \"", type,
                   "\", expected null, ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing "
                   "or Sequence"));
    }
    if (!p.contains("single") || !p.at("single").is_array()) {
      fail(str_cat("key '", key, ".single' is missing or not an array; expected the template items"));
    }
    const json specials = p.value("special_tokens", json::object());
    bool seen_sequence = false;
    std::vector<int64_t> prefix;
    std::vector<int64_t> suffix;
    for (size_t i = 0; i < p.at("single").size(); ++i) {
      const json& item = p.at("single")[i];
      const std::string item_key = str_cat(key, ".single[", i, "]");
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!item.contains("SpecialToken") || !item.at("SpecialToken").contains("id") ||
          !item.at("SpecialToken").at("id").is_string()) {
        fail(str_cat("key '", item_key, "' is not a template item; got ", item.dump(),
                     ", expected {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": {...}}"));
      }
      const auto name = item.at("SpecialToken").at("id").get<std::string>();
      std::vector<int64_t> ids;
      if (specials.contains(name) && specials.at(name).contains("ids") && specials.at(name).at("ids").is_array()) {
        for (const auto& id : specials.at(name).at("ids")) {
          RHEAD_CHECK(id.is_number_integer(), InputError, "[tokenizer] ", m_source.string(), ": key '", key,
                      ".special_tokens.", name, ".ids' has the wrong type; got ", id.dump(),
                      ", expected integers");
          ids.push_back(id.get<int64_t>());
        }
      } else if (const auto id = piece_to_id(name)) {
        ids.push_back(*id);
      } else {
        fail(str_cat("key '", item_key, "' names special token \"", name,
                     "\", which is neither in ", key, ".special_tokens nor in the vocabulary"));
      }
      auto& target = seen_sequence ? suffix : prefix;
      target.insert(target.end(), ids.begin(), ids.end());
    }
    m_template_prefix = prefix;
    m_template_suffix = suffix;
  }

  void read_post_processor(const json& root) {
    if (!root.contains("post_processor") || root.at("post_processor").is_null()) return;
    read_post_processor_into(root.at("post_processor"), "post_processor");
  }

  void configure_special_tokens(const TokenizerSettings& settings) {
    const auto& cfg = settings.config_file;
    if (settings.bos_token) {
      m_bos_id = resolve_token(*settings.bos_token, "bos_token", cfg);
    } else if (m_template_prefix.size() == 1) {
      m_bos_id = m_template_prefix.front();
    }
    if (settings.eos_token) {
      m_eos_id = resolve_token(*settings.eos_token, "eos_token", cfg);
    } else if (m_template_suffix.size() == 1) {
      m_eos_id = m_template_suffix.front();
    }
    if (!settings.add_bos_token && !settings.add_eos_token) {
      m_prefix_ids = m_template_prefix;
      m_suffix_ids = m_template_suffix;
      return;
    }
    // Explicit flags win over the post-processor, as LlamaTokenizerFast.update_post_processor does.
    const bool add_bos = settings.add_bos_token.value_or(!m_template_prefix.empty());
    const bool add_eos = settings.add_eos_token.value_or(!m_template_suffix.empty());
    RHEAD_CHECK(!add_bos || m_bos_id, InputError, "[tokenizer] ", cfg.string(),
                ": add_bos_token is true but no BOS token is known; got no bos_token, expected one. "
                "Hint: set bos_token in tokenizer_config.json");
    RHEAD_CHECK(!add_eos || m_eos_id, InputError, "[tokenizer] ", cfg.string(),
                ": add_eos_token is true but no EOS token is known; got no eos_token, expected one. "
                "Hint: set eos_token in tokenizer_config.json");
    m_prefix_ids.clear();
    m_suffix_ids.clear();
    if (add_bos) m_prefix_ids.push_back(*m_bos_id);
    if (add_eos) m_suffix_ids.push_back(*m_eos_id);
  }

  // ---- BPE -------------------------------------------------------------------------------------
  void bpe_word(const std::string& word, std::vector<int64_t>& out) const {
    constexpr size_t kMaxCachedWord = 256;
    constexpr size_t kMaxCacheEntries = 200000;
    if (word.size() <= kMaxCachedWord) {
      std::lock_guard<std::mutex> lock(m_cache_mutex);
      const auto it = m_cache.find(word);
      if (it != m_cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int64_t> ids = bpe_merge(word);
    out.insert(out.end(), ids.begin(), ids.end());
    if (word.size() <= kMaxCachedWord) {
      std::lock_guard<std::mutex> lock(m_cache_mutex);
      if (m_cache.size() >= kMaxCacheEntries) m_cache.clear();
      m_cache.emplace(word, std::move(ids));
    }
  }

  int64_t unk_id_or_throw() const {
    const auto it = m_vocab.find(*m_unk_token);
    RHEAD_CHECK(it != m_vocab.end(), InputError, "[tokenizer] ", m_source.string(),
                ": key 'model.unk_token' names a token missing from model.vocab; got \"", *m_unk_token,
                "\", expected a token of model.vocab (needed for a character outside the vocabulary)");
    return it->second;
  }

  // HF tokenizers' Word::merge_all: repeatedly apply the lowest-rank merge (leftmost on ties).
  std::vector<int64_t> bpe_merge(const std::string& word) const {
    if (m_ignore_merges) {
      const auto it = m_vocab.find(word);
      if (it != m_vocab.end()) return {it->second};
    }
    struct Symbol {
      int64_t id;
      int prev;
      int next;
      bool alive;
    };
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    bool previous_unk = false;
    size_t pos = 0;
    while (pos < word.size()) {
      const size_t begin = pos;
      uint32_t cp = 0;
      if (!utf8_next(word, pos, cp)) pos = begin + 1;
      const std::string ch = word.substr(begin, pos - begin);
      const auto it = m_vocab.find(ch);
      if (it != m_vocab.end()) {
        symbols.push_back({it->second, 0, 0, true});
        previous_unk = false;
        continue;
      }
      if (m_byte_fallback) {
        std::vector<int64_t> bytes;
        for (const char c : ch) {
          char name[8];
          std::snprintf(name, sizeof(name), "<0x%02X>", static_cast<unsigned>(static_cast<unsigned char>(c)));
          const auto b = m_vocab.find(name);
          if (b == m_vocab.end()) break;
          bytes.push_back(b->second);
        }
        if (bytes.size() == ch.size()) {
          for (const int64_t id : bytes) symbols.push_back({id, 0, 0, true});
          previous_unk = false;
          continue;
        }
      }
      if (!m_unk_token) continue;  // HF drops the character when there is no unk token
      const int64_t unk = unk_id_or_throw();
      if (m_fuse_unk && previous_unk) continue;
      symbols.push_back({unk, 0, 0, true});
      previous_unk = true;
    }
    const int n = static_cast<int>(symbols.size());
    for (int i = 0; i < n; ++i) {
      symbols[static_cast<size_t>(i)].prev = i - 1;
      symbols[static_cast<size_t>(i)].next = i + 1 < n ? i + 1 : -1;
    }
    struct Candidate {
      int64_t rank;
      int pos;
      int64_t new_id;
      bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
    const auto push_pair = [&](int left) {
      if (left < 0) return;
      const int right = symbols[static_cast<size_t>(left)].next;
      if (right < 0) return;
      const auto it = m_merges.find(pair_key(symbols[static_cast<size_t>(left)].id,
                                             symbols[static_cast<size_t>(right)].id));
      if (it != m_merges.end()) queue.push({it->second.rank, left, it->second.new_id});
    };
    for (int i = 0; i + 1 < n; ++i) push_pair(i);
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& left = symbols[static_cast<size_t>(top.pos)];
      if (!left.alive || left.next < 0) continue;
      Symbol& right = symbols[static_cast<size_t>(left.next)];
      const auto it = m_merges.find(pair_key(left.id, right.id));
      if (it == m_merges.end() || it->second.new_id != top.new_id) continue;  // stale candidate
      left.id = top.new_id;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = top.pos;
      push_pair(left.prev);
      push_pair(top.pos);
    }
    std::vector<int64_t> ids;
    for (int i = 0; i >= 0 && i < n; i = symbols[static_cast<size_t>(i)].next) {
      ids.push_back(symbols[static_cast<size_t>(i)].id);
    }
    return ids;
  }

  Kind m_kind = Kind::kBpe;
  std::unordered_map<std::string, int64_t> m_vocab;
  std::vector<std::string> m_id_to_token;
  std::vector<bool> m_has_id;
  int64_t m_vocab_size = 0;
  std::unordered_map<uint64_t, Merge> m_merges;
  std::optional<std::string> m_unk_token;  // BPE
  int64_t m_unk_id = -1;                   // WordLevel
  bool m_fuse_unk = false;
  bool m_byte_fallback = false;
  bool m_ignore_merges = false;
  bool m_byte_level_decoder = false;
  std::unique_ptr<PreTokenizer> m_pre_tokenizer;
  std::vector<int64_t> m_template_prefix;
  std::vector<int64_t> m_template_suffix;
  mutable std::mutex m_cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int64_t>> m_cache;
};

// ---- writers -----------------------------------------------------------------------------------
using ordered_json = nlohmann::ordered_json;

void write_json_file(const std::filesystem::path& path, const ordered_json& j) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  RHEAD_CHECK(out.good(), InputError, "[tokenizer] ", path.string(),
              ": cannot open file for writing. Hint: check that the folder exists and is writable");
  std::string text;
  try {
    text = j.dump(2);
  } catch (const nlohmann::json::type_error& e) {
    throw InputError(str_cat("[tokenizer] ", path.string(), ": cannot write the tokenizer (", e.what(),
                             "); expected every token to be valid UTF-8"));
  }
  out << text << "\n";
  out.close();
  RHEAD_CHECK(out.good(), InputError, "[tokenizer] ", path.string(), ": write failed (disk full?)");
}

// vocab[i] -> id i, with every special token checked to be in it; returns the added_tokens array.
ordered_json vocab_object(const std::filesystem::path& path, const std::vector<std::string>& vocab,
                          const std::vector<std::string>& special_tokens,
                          std::unordered_map<std::string, int64_t>& ids, ordered_json& added) {
  RHEAD_CHECK(!vocab.empty(), InputError, "[tokenizer] ", path.string(),
              ": cannot write an empty vocabulary; got 0 tokens, expected at least one");
  ordered_json object = ordered_json::object();
  for (size_t i = 0; i < vocab.size(); ++i) {
    RHEAD_CHECK(!vocab[i].empty(), InputError, "[tokenizer] ", path.string(),
                ": vocabulary entry ", i, " is empty; expected a non-empty token");
    const auto [it, inserted] = ids.emplace(vocab[i], static_cast<int64_t>(i));
    RHEAD_CHECK(inserted, InputError, "[tokenizer] ", path.string(), ": token \"", vocab[i],
                "\" appears twice in the vocabulary; got ids ", it->second, " and ", i,
                ", expected each token once");
    object[vocab[i]] = static_cast<int64_t>(i);
  }
  added = ordered_json::array();
  for (const auto& token : special_tokens) {
    const auto it = ids.find(token);
    RHEAD_CHECK(it != ids.end(), InputError, "[tokenizer] ", path.string(), ": special token \"", token,
                "\" is not in the vocabulary; expected every special token to have an id");
    added.push_back(ordered_json{{"id", it->second},           {"content", token},     {"single_word", false},
                                 {"lstrip", false},            {"rstrip", false},      {"normalized", false},
                                 {"special", true}});
  }
  return object;
}

}  // namespace

std::unique_ptr<Tokenizer> make_json_tokenizer(const std::filesystem::path& json_file,
                                               const TokenizerSettings& settings) {
  try {
    return std::make_unique<JsonTokenizer>(json_file, settings);
  } catch (const json::exception& e) {  // a value of an unexpected type that no check above named
    throw InputError(str_cat("[tokenizer] ", json_file.string(), ": unexpected JSON structure (", e.what(),
                             "); expected the layout of HF tokenizers' tokenizer.json"));
  }
}

}  // namespace models::tokenizer_detail

namespace models {

void write_wordlevel_tokenizer_json(const std::filesystem::path& path, const std::vector<std::string>& vocab,
                                    const std::string& unk, const std::vector<std::string>& special_tokens) {
  using tokenizer_detail::ordered_json;
  std::unordered_map<std::string, int64_t> ids;
  ordered_json added;
  ordered_json vocab_json = tokenizer_detail::vocab_object(path, vocab, special_tokens, ids, added);
  RHEAD_CHECK(ids.count(unk) != 0, pipeline::InputError, "[tokenizer] ", path.string(), ": unk token \"", unk,
              "\" is not in the vocabulary; expected it to have an id");
  for (const auto& token : vocab) {
    RHEAD_CHECK(token.find_first_of(" \t\r\n") == std::string::npos ||
                    std::find(special_tokens.begin(), special_tokens.end(), token) != special_tokens.end(),
                pipeline::InputError, "[tokenizer] ", path.string(), ": word \"", token,
                "\" contains whitespace, which WhitespaceSplit never produces; expected words without "
                "whitespace (or make it a special token)");
  }
  ordered_json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = added;
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = ordered_json{{"type", "WhitespaceSplit"}};
  root["post_processor"] = nullptr;
  root["decoder"] = nullptr;
  root["model"] = ordered_json{{"type", "WordLevel"}, {"vocab", vocab_json}, {"unk_token", unk}};
  tokenizer_detail::write_json_file(path, root);
}

void write_byte_level_bpe_tokenizer_json(const std::filesystem::path& path,
                                         const std::vector<std::string>& vocab,
                                         const std::vector<std::pair<std::string, std::string>>& merges,
                                         const std::vector<std::string>& special_tokens) {
  using tokenizer_detail::ordered_json;
  std::unordered_map<std::string, int64_t> ids;
  ordered_json added;
  ordered_json vocab_json = tokenizer_detail::vocab_object(path, vocab, special_tokens, ids, added);
  ordered_json merges_json = ordered_json::array();
  for (size_t i = 0; i < merges.size(); ++i) {
    const auto& [a, b] = merges[i];
    for (const auto& token : {a, b, a + b}) {
      RHEAD_CHECK(ids.count(token) != 0, pipeline::InputError, "[tokenizer] ", path.string(), ": merge ", i,
                  " (\"", a, "\" + \"", b, "\") needs token \"", token,
                  "\", which is not in the vocabulary; expected both parts and their concatenation in it");
    }
    RHEAD_CHECK(a.find(' ') == std::string::npos && b.find(' ') == std::string::npos, pipeline::InputError,
                "[tokenizer] ", path.string(), ": merge ", i, " (\"", a, "\" + \"", b,
                "\") contains a space; expected byte-level tokens (space is \"\xC4\xA0\")");
    merges_json.push_back(a + " " + b);
  }
  const ordered_json byte_level{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                                {"use_regex", true}};
  ordered_json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = added;
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = byte_level;
  root["post_processor"] = byte_level;
  root["decoder"] = byte_level;
  root["model"] = ordered_json{{"type", "BPE"},
                               {"dropout", nullptr},
                               {"unk_token", nullptr},
                               {"continuing_subword_prefix", nullptr},
                               {"end_of_word_suffix", nullptr},
                               {"fuse_unk", false},
                               {"byte_fallback", false},
                               {"vocab", vocab_json},
                               {"merges", merges_json}};
  tokenizer_detail::write_json_file(path, root);
}

void write_tokenizer_config_json(const std::filesystem::path& path, const TokenizerConfigSpec& spec) {
  using tokenizer_detail::ordered_json;
  const auto token = [](const std::string& s) { return s.empty() ? ordered_json(nullptr) : ordered_json(s); };
  RHEAD_CHECK(!spec.add_bos_token || !spec.bos_token.empty(), pipeline::InputError, "[tokenizer] ", path.string(),
              ": add_bos_token is true but bos_token is empty; expected a BOS token string");
  RHEAD_CHECK(!spec.add_eos_token || !spec.eos_token.empty(), pipeline::InputError, "[tokenizer] ", path.string(),
              ": add_eos_token is true but eos_token is empty; expected an EOS token string");
  ordered_json root;
  root["add_bos_token"] = spec.add_bos_token;
  root["add_eos_token"] = spec.add_eos_token;
  root["bos_token"] = token(spec.bos_token);
  root["eos_token"] = token(spec.eos_token);
  root["unk_token"] = token(spec.unk_token);
  root["clean_up_tokenization_spaces"] = false;
  root["tokenizer_class"] = spec.tokenizer_class;
  tokenizer_detail::write_json_file(path, root);
}

}  // namespace models
