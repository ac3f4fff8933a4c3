// Hugging Face model folders: load (config.json + family file -> ModelSpec, safetensors weights,
// tokenizer file), validate the checkpoint against the spec, and write a folder (toy zoo, tests).
//
// A model folder holds config.json, model.safetensors or model-*-of-*.safetensors with
// model.safetensors.index.json, and tokenizer.model (SentencePiece) and/or tokenizer.json
// (plus tokenizer_config.json). Nothing is ever downloaded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/model_config.h"
#include "models/model_spec.h"
#include "models/safetensors.h"

namespace models {

enum class TokenizerKind { None, SentencePiece, Json };  // tokenizer.model | tokenizer.json
const char* tokenizer_kind_name(TokenizerKind kind);     // "none" | "sentencepiece" | "json"

// One tensor the spec expects in the checkpoint.
struct ExpectedTensor {
  std::string logical;          // "q_proj"
  std::string name;             // "model.layers.3.self_attn.q_proj.weight"
  int64_t layer = -1;           // -1 for model-wide tensors
  int64_t expert = -1;          // -1 unless per-expert
  std::vector<int64_t> shape;   // expected shape
  std::string origin;           // where the shape comes from: "num_attention_heads * head_dim = 32 * 128, hidden_size = 4096"
  bool required = true;         // false: lm_head with tie_word_embeddings
};

// Every tensor of the checkpoint implied by the spec (per layer, per expert), in checkpoint order.
std::vector<ExpectedTensor> expected_tensors(const ModelSpec& spec);
// Parameters of the model (lm_head counted once when tied).
int64_t parameter_count(const ModelSpec& spec);

// Checks that every expected tensor exists with the expected shape and spec.checkpoint_dtype.
// Throws ModelError listing the problems (first 8 and a count), each naming the tensor, the
// expected and found shape and the config.json keys the expectation comes from. Tensors in the
// checkpoint that the spec does not use are ignored.
void validate_checkpoint(const ModelSpec& spec, const SafetensorsReader& reader);
void validate_checkpoint(const ModelSpec& spec, const TensorMap& tensors, const std::string& source);

struct LoadOptions {
  std::optional<std::string> family;                         // force a family ("yi" for Yi-200K)
  std::filesystem::path family_dir = default_family_dir();
  bool validate = true;                                      // run validate_checkpoint
};

class ModelFolder {
 public:
  std::filesystem::path path;
  ModelSpec spec;                // checkpoint_dtype is the checkpoint's actual dtype (see load)
  SafetensorsReader weights;     // lazy, memory-mapped
  TokenizerKind tokenizer_kind = TokenizerKind::None;
  std::filesystem::path tokenizer_path;         // the file of tokenizer_kind (empty for None)
  std::filesystem::path tokenizer_model_path;   // tokenizer.model when present
  std::filesystem::path tokenizer_json_path;    // tokenizer.json when present
  std::filesystem::path tokenizer_config_path;  // tokenizer_config.json when present

  // Checkpoint tensors by checkpoint name (zero-copy CPU views of the mapping).
  torch::Tensor tensor(const std::string& name) const { return weights.tensor(name); }
  bool contains(const std::string& name) const { return weights.contains(name); }
  std::vector<std::string> names() const { return weights.names(); }
  // By logical name: weight("q_proj", 3), weight("expert_up_proj", 3, 7), weight("embed").
  torch::Tensor weight(const std::string& logical, int64_t layer = -1, int64_t expert = -1) const;
};

// Loads and validates a model folder. The family comes from config.json unless options.family
// names one. spec.checkpoint_dtype is set to the dtype of the embedding tensor as stored (configs
// in the wild disagree with their own weights); every expected tensor must then share it.
// The tokenizer kind prefers tokenizer.model (the slow SentencePiece tokenizer, as the paper's
// detection code uses) over tokenizer.json.
ModelFolder load_model_folder(const std::filesystem::path& path, const LoadOptions& options = {});
ModelFolder load_model_folder(const std::filesystem::path& path, const std::optional<std::string>& family);

struct SaveOptions {
  uint64_t max_shard_bytes = 0;  // 0: one model.safetensors; else shards + index
  std::map<std::string, std::string> metadata = {{"format", "pt"}};
};

// Writes config.json (model_spec_to_config_json) and the safetensors checkpoint into `dir`
// (created if needed). `tensors` are keyed by checkpoint name and are checked first with
// validate_checkpoint; they are written in spec.checkpoint_dtype (converted if needed).
// Tokenizer files are the caller's.
void save_model_folder(const std::filesystem::path& dir, const ModelSpec& spec, const TensorMap& tensors,
                       const SaveOptions& options = {});

}  // namespace models
