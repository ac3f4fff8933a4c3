// Tokenizers for Hugging Face model folders, without LibTorch:
//   tokenizer.model  SentencePiece through libsentencepiece, encoding like HF's slow LlamaTokenizer
//   tokenizer.json   byte-level BPE (GPT-2 / Qwen2 / Llama-3 style) and WordLevel, in our own code
// tokenizer_config.json (and special_tokens_map.json) supply add_bos_token / add_eos_token, the
// bos / eos / unk token strings and extra added tokens, as in HF transformers.
// All errors are pipeline::InputError with the message format of docs/ARCHITECTURE.md, "Errors".
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace models {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // UTF-8 text -> ids. Added and special tokens written in the text (e.g. "<|im_end|>") are matched
  // first and never split. add_special_tokens adds BOS (and EOS) like HF's add_special_tokens=True:
  // from add_bos_token / add_eos_token in tokenizer_config.json when given, else from the
  // tokenizer.json post_processor (SentencePiece: BOS on, EOS off, as LlamaTokenizer).
  // Throws pipeline::InputError on text that is not valid UTF-8.
  virtual std::vector<int64_t> encode(std::string_view text, bool add_special_tokens) const = 0;

  // ids -> UTF-8 text (invalid byte sequences become U+FFFD). skip_special_tokens drops the ids for
  // which is_special() is true. Throws pipeline::InputError on an id outside [0, vocab_size()).
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const = 0;

  // The vocabulary string of one id ("Ġhello", "▁the", "<0x0A>", "<|endoftext|>"), and back.
  virtual std::string id_to_piece(int64_t id) const = 0;
  virtual std::optional<int64_t> piece_to_id(std::string_view piece) const = 0;

  // Number of ids: the model vocabulary plus added tokens beyond it (HF's len(tokenizer)).
  virtual int64_t vocab_size() const = 0;
  virtual std::optional<int64_t> bos_id() const = 0;
  virtual std::optional<int64_t> eos_id() const = 0;
  // Special tokens: added tokens marked "special", SentencePiece control and unknown pieces.
  virtual bool is_special(int64_t id) const = 0;
  // "sentencepiece" | "bpe" | "wordlevel"
  virtual std::string_view kind() const = 0;
};

// Loads the tokenizer of a Hugging Face model folder. tokenizer.model (SentencePiece) is preferred
// when present (Llama-2, Yi, Mistral and Mixtral folders ship both files, and their tokenizer.json is a
// SentencePiece-style BPE this code does not read); otherwise tokenizer.json. tokenizer_config.json
// and special_tokens_map.json are read when present.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir);

// Loads one tokenizer.json file (BPE or WordLevel) with no tokenizer_config.json.
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::filesystem::path& tokenizer_json);

// Writes a WordLevel tokenizer.json that HF `tokenizers` loads: id i is vocab[i], pre-tokenizer
// WhitespaceSplit, no decoder (decoding joins tokens with spaces). special_tokens (each must be in
// vocab) become special added tokens, matched in text before splitting. unk must be in vocab.
void write_wordlevel_tokenizer_json(const std::filesystem::path& path,
                                    const std::vector<std::string>& vocab, const std::string& unk,
                                    const std::vector<std::string>& special_tokens);

// Writes a byte-level BPE tokenizer.json (GPT-2 layout: ByteLevel pre-tokenizer with GPT-2's regex,
// ByteLevel decoder). vocab holds byte-level strings ("Ġthe"; see byte_level_encode), merges are
// pairs in rank order; special_tokens (each must be in vocab) become special added tokens.
void write_byte_level_bpe_tokenizer_json(
    const std::filesystem::path& path, const std::vector<std::string>& vocab,
    const std::vector<std::pair<std::string, std::string>>& merges,
    const std::vector<std::string>& special_tokens);

// Writes a tokenizer_config.json: bos/eos token strings (empty = none) and whether
// add_special_tokens adds them.
struct TokenizerConfigSpec {
  std::string bos_token;
  std::string eos_token;
  std::string unk_token;
  bool add_bos_token = true;
  bool add_eos_token = false;
  std::string tokenizer_class = "PreTrainedTokenizerFast";
};
void write_tokenizer_config_json(const std::filesystem::path& path, const TokenizerConfigSpec& spec);

// GPT-2's byte-to-unicode map applied to every byte of s: "hé " -> "hÃ©Ġ". byte_level_decode is the
// inverse for one token; a token with any character outside the map is returned unchanged (its UTF-8
// bytes), as HF's ByteLevel decoder does. The result may be invalid UTF-8 (a token can end mid-character).
std::string byte_level_encode(std::string_view s);
std::string byte_level_decode(std::string_view s);

}  // namespace models
