// SentencePiece tokenizer.model through libsentencepiece, encoding like HF's slow LlamaTokenizer:
//   legacy (the default when tokenizer_config.json says nothing): each run of text between added
//     tokens is encoded by SentencePiece on its own (with its dummy-prefix "▁");
//   legacy = false: the model's dummy prefix is switched off, "▁" is put before the whole text, and
//     runs that start with a space are encoded after an "<unk>" that is then dropped, so a run after a
//     special token gets no extra "▁" (transformers' LlamaTokenizer.tokenize / _tokenize).
// Decoding hands runs of ordinary ids to SentencePiece (byte pieces such as <0x0A> become bytes)
// and writes added / special tokens as their text.

#include <fstream>
#include <sstream>

#include "models/tokenizer/spm_library.h"
#include "models/tokenizer/tokenizer_internal.h"
#include "pipeline/core/error.h"

namespace models::tokenizer_detail {
namespace {

using pipeline::InputError;
using pipeline::str_cat;

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁"

class SentencePieceTokenizer final : public TokenizerBase {
 public:
  SentencePieceTokenizer(const std::filesystem::path& model_file, const TokenizerSettings& settings)
      : TokenizerBase(model_file) {
    m_legacy = settings.legacy.value_or(true);
    m_add_prefix_space = settings.add_prefix_space.value_or(true);
    load(model_file);
    m_sp_size = m_sp.GetPieceSize();
    m_vocab_size = m_sp_size;
    m_clean_up_tokenization_spaces = settings.clean_up_tokenization_spaces;

    // Special tokens as LlamaTokenizer registers them (unk, bos, eos), then the config's extras.
    const auto model_piece = [this](int id) -> std::optional<std::string> {
      if (id < 0) return std::nullopt;
      return m_sp.IdToPiece(id);
    };
    const auto unk = settings.unk_token ? settings.unk_token : model_piece(m_sp.unk_id());
    const auto bos = settings.bos_token ? settings.bos_token : model_piece(m_sp.bos_id());
    const auto eos = settings.eos_token ? settings.eos_token : model_piece(m_sp.eos_id());
    const auto cfg = settings.config_file;
    for (const auto& token : settings.added_tokens) {
      add_added_token(token);
      m_vocab_size = std::max(m_vocab_size, token.id + 1);
    }
    for (const auto& [token, key] : {std::pair{unk, "unk_token"}, std::pair{bos, "bos_token"},
                                     std::pair{eos, "eos_token"}}) {
      if (!token) continue;
      const int64_t id = resolve_token(*token, key, cfg);
      if (find_added(id) == nullptr) add_added_token(AddedToken{*token, id, true, false, false});
    }
    if (bos) m_bos_id = resolve_token(*bos, "bos_token", cfg);
    if (eos) m_eos_id = resolve_token(*eos, "eos_token", cfg);
    const bool add_bos = settings.add_bos_token.value_or(true);
    const bool add_eos = settings.add_eos_token.value_or(false);
    RHEAD_CHECK(!add_bos || m_bos_id, InputError, "[tokenizer] ", model_file.string(),
                ": add_bos_token is true but there is no BOS token; got bos_id -1 in the model and no "
                "bos_token in tokenizer_config.json, expected one. Hint: set bos_token or "
                "add_bos_token = false in tokenizer_config.json");
    RHEAD_CHECK(!add_eos || m_eos_id, InputError, "[tokenizer] ", model_file.string(),
                ": add_eos_token is true but there is no EOS token; got eos_id -1 in the model and no "
                "eos_token in tokenizer_config.json, expected one. Hint: set eos_token in "
                "tokenizer_config.json");
    if (add_bos) m_prefix_ids.push_back(*m_bos_id);
    if (add_eos) m_suffix_ids.push_back(*m_eos_id);

    m_unk_text = unk.value_or("<unk>");
    if (!m_legacy) m_unk_length = sp_encode(m_unk_text).size();
    const auto marker = m_sp.PieceToId(std::string(kSpaceMarker));
    if (m_sp.IdToPiece(marker) == kSpaceMarker) m_marker_id = marker;
  }

  std::string id_to_piece(int64_t id) const override {
    if (const AddedToken* token = find_added(id)) return token->content;
    RHEAD_CHECK(id >= 0 && id < m_sp_size, InputError, "[tokenizer] ", m_source.string(),
                ": token id out of range; got ", id, ", expected an id in [0, ", m_vocab_size, ")");
    return m_sp.IdToPiece(static_cast<int>(id));
  }

  std::optional<int64_t> piece_to_id(std::string_view piece) const override {
    if (const auto added = find_added(piece)) return added;
    const int id = m_sp.PieceToId(std::string(piece));
    if (id < 0 || m_sp.IdToPiece(id) != piece) return std::nullopt;  // PieceToId answers unk_id
    return id;
  }

  int64_t vocab_size() const override { return m_vocab_size; }
  std::string_view kind() const override { return "sentencepiece"; }

 protected:
  void encode_text(std::string_view text, std::vector<int64_t>& out) const override {
    for (const int id : sp_encode(text)) out.push_back(id);
  }

  std::string prepare_text(std::string_view text) const override {
    if (m_legacy || text.empty()) return std::string(text);
    std::string out;
    if (m_add_prefix_space) out.append(kSpaceMarker);
    for (size_t pos = 0; pos < text.size();) {  // text.replace("▁", " ")
      if (text.compare(pos, kSpaceMarker.size(), kSpaceMarker) == 0) {
        out.push_back(' ');
        pos += kSpaceMarker.size();
      } else {
        out.push_back(text[pos++]);
      }
    }
    return out;
  }

  void encode_segments(const std::vector<Segment>& segments, std::vector<int64_t>& out) const override {
    if (m_legacy) {
      TokenizerBase::encode_segments(segments, out);
      return;
    }
    const size_t first = out.size();
    for (const auto& segment : segments) {
      if (segment.added_id >= 0) {
        out.push_back(segment.added_id);
        continue;
      }
      const std::string_view text = segment.text;
      const bool starts_with_space = text.compare(0, kSpaceMarker.size(), kSpaceMarker) == 0 ||
                                     (!text.empty() && text.front() == ' ');
      if (!starts_with_space) {
        encode_text(text, out);
        continue;
      }
      const auto ids = sp_encode(m_unk_text + std::string(text));
      const size_t skip = ids.size() >= m_unk_length ? m_unk_length : 0;
      out.insert(out.end(), ids.begin() + static_cast<std::ptrdiff_t>(skip), ids.end());
    }
    // A lone "▁" before a leading special token is dropped (LlamaTokenizer.tokenize).
    if (out.size() - first > 1 && m_marker_id && out[first] == *m_marker_id) {
      const AddedToken* next = find_added(out[first + 1]);
      if (next != nullptr && next->special) out.erase(out.begin() + static_cast<std::ptrdiff_t>(first));
    }
  }

  std::string decode_ids(const std::vector<int64_t>& ids) const override {
    std::string text;
    std::vector<int> run;
    const auto flush = [&] {
      if (run.empty()) return;
      std::string piece_text;
      const auto status = m_sp.Decode(run, &piece_text);
      RHEAD_CHECK(status.ok(), InputError, "[tokenizer] ", m_source.string(),
                  ": SentencePiece cannot decode ", run.size(), " ids; got error '", status.ToString(),
                  "'");
      text += piece_text;
      run.clear();
    };
    for (const int64_t id : ids) {
      if (const AddedToken* token = find_added(id)) {
        flush();
        text += token->content;
        continue;
      }
      RHEAD_CHECK(id < m_sp_size, InputError, "[tokenizer] ", m_source.string(),
                  ": token id has no piece; got ", id, ", expected an id below the SentencePiece size ",
                  m_sp_size, " or an added token from tokenizer_config.json");
      run.push_back(static_cast<int>(id));
    }
    flush();
    return utf8_lossy(text);
  }

  bool is_model_special(int64_t id) const override {
    if (id < 0 || id >= m_sp_size) return false;
    return m_sp.IsControl(static_cast<int>(id)) || m_sp.IsUnknown(static_cast<int>(id));
  }

 private:
  void load(const std::filesystem::path& model_file) {
    std::ifstream in(model_file, std::ios::binary);
    RHEAD_CHECK(in.good(), InputError, "[tokenizer] ", model_file.string(),
                ": cannot open file. Hint: check the path and its permissions");
    std::stringstream buffer;
    buffer << in.rdbuf();
    std::string proto = buffer.str();
    if (!m_legacy) {
      // Append a ModelProto.normalizer_spec (field 3) holding add_dummy_prefix (field 3) = false:
      // protobuf merges repeated message fields, exactly like transformers' MergeFrom.
      proto += std::string("\x1A\x02\x18\x00", 4);
    }
    const auto status = m_sp.LoadFromSerializedProto(proto);
    RHEAD_CHECK(status.ok(), InputError, "[tokenizer] ", model_file.string(),
                ": not a SentencePiece model; got error '", status.ToString(), "' (", proto.size(),
                " bytes), expected a serialized ModelProto. Hint: the file may be a Git LFS pointer "
                "or a tokenizer.json renamed");
  }

  std::vector<int> sp_encode(std::string_view text) const {
    std::vector<int> ids;
    const auto status = m_sp.Encode(text, &ids);
    RHEAD_CHECK(status.ok(), InputError, "[tokenizer] ", m_source.string(),
                ": SentencePiece cannot encode text; got error '", status.ToString(), "'");
    return ids;
  }

  SpmProcessor m_sp;  // libsentencepiece behind a dlopen()ed plugin (spm_shim.cpp)
  int64_t m_sp_size = 0;
  int64_t m_vocab_size = 0;
  bool m_legacy = true;
  bool m_add_prefix_space = true;
  std::string m_unk_text;
  size_t m_unk_length = 0;
  std::optional<int64_t> m_marker_id;
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const std::filesystem::path& model_file,
                                                        const TokenizerSettings& settings) {
  return std::make_unique<SentencePieceTokenizer>(model_file, settings);
}

}  // namespace models::tokenizer_detail
