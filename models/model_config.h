// config.json + family file -> validated ModelSpec.
//
// A family file models/families/<family>.ini (schema: family_schema(), guide: docs/ADDING_A_FAMILY.md)
// holds everything config.json does not say: which config.json model_type / architectures it
// claims, architecture switches (biases, MLP kind, supported rope scaling, sliding-window rule),
// the logical -> checkpoint tensor-name table, the chat template, stop strings and sentence-end
// tokens. The family is chosen by config.json "model_type" (then "architectures") unless the
// caller names one (Yi-200K says model_type "llama": force family "yi").
//
// Errors: family files throw pipeline::ConfigError ("[family] <file>: ..."), config.json problems
// throw ModelError ("[model] <.../config.json>: key 'hidden_size': ...").
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/model_error.h"
#include "models/model_spec.h"
#include "pipeline/core/config.h"

namespace models {

// How a family reads the sliding window from config.json.
enum class SlidingWindowRule {
  None,              // never (Llama, Yi): config.json's value is ignored
  Config,            // "sliding_window" (null: none)                      (Mistral, Mixtral)
  UseSlidingWindow,  // "sliding_window" only when "use_sliding_window" is true, for layers
                     // >= "max_window_layers"                             (Qwen2)
};

// One parsed family file.
struct FamilyInfo {
  std::string name;                          // == file stem
  std::filesystem::path source;              // the .ini (or the source name given to parse_family_text)
  std::vector<std::string> model_types;      // config.json "model_type" values it claims
  std::vector<std::string> architectures;    // config.json "architectures" values it claims
  bool qkv_bias = false;
  bool o_bias = false;
  bool attention_bias_from_config = false;   // config.json "attention_bias" sets q/k/v/o bias (Llama)
  MlpKind mlp = MlpKind::GatedSilu;
  bool tie_word_embeddings = false;          // when config.json does not say
  std::vector<RopeScaling> rope_scaling;     // supported besides None
  SlidingWindowRule sliding_window = SlidingWindowRule::None;
  std::map<std::string, std::string> tensor_names;  // every logical name -> pattern
  std::string chat_template;                 // {system} {user}; empty: no chat format
  std::string chat_system;                   // default system message for {system}
  std::vector<std::string> stop_strings;
  std::vector<std::string> sentence_end_tokens;
};

// The agreed logical tensor names, in checkpoint order (the decoder relies on exactly these):
// embed final_norm lm_head attn_norm q_proj k_proj v_proj o_proj q_bias k_bias v_bias o_bias
// mlp_norm gate_proj up_proj down_proj router expert_gate_proj expert_up_proj expert_down_proj.
const std::vector<std::string>& logical_tensor_names();

// Every key of a family file with type, default and help (rhead --help-keys can print describe()).
const pipeline::ConfigSchema& family_schema();

FamilyInfo parse_family_file(const std::filesystem::path& path);
FamilyInfo parse_family_text(const std::string& text, const std::string& source_name);

// $RHEAD_FAMILY_DIR when set, else models/families of the source tree this was built from.
std::filesystem::path default_family_dir();
// <dir>/<name>.ini, e.g. load_family("llama") to build a toy model's spec with model_spec_from_config.
FamilyInfo load_family(const std::string& name, const std::filesystem::path& dir = default_family_dir());
// Every *.ini in `dir`, sorted by name. Throws ConfigError when there is none.
std::vector<FamilyInfo> load_families(const std::filesystem::path& dir = default_family_dir());
// The family named `forced` when given (ConfigError listing the available ones if unknown), else
// the unique family claiming `model_type`, else the unique one claiming an entry of
// `architectures`. `where` (config.json path) is used in messages.
const FamilyInfo& select_family(const std::vector<FamilyInfo>& families, const std::string& model_type,
                                const std::vector<std::string>& architectures,
                                const std::optional<std::string>& forced, const std::string& where);

// config.json (already parsed) + family -> validated ModelSpec. `source` names config.json.
ModelSpec model_spec_from_config(const nlohmann::json& config, const FamilyInfo& family,
                                 const std::string& source);
// Reads `config_json` (a file, or a folder holding config.json), picks the family and builds the spec.
ModelSpec load_model_spec(const std::filesystem::path& config_json,
                          const std::optional<std::string>& family = std::nullopt,
                          const std::filesystem::path& family_dir = default_family_dir());

// Checks a spec however it was built (dims positive, n_head % n_kv_head == 0, even head_dim,
// MoE fields for MoE specs, token ids inside the vocabulary, tensor names present). Messages name
// `source` and the config.json key. Throws ModelError.
void validate_model_spec(const ModelSpec& spec, const std::string& source);

// The HF config.json for a spec (inverse of model_spec_from_config for the keys it reads).
nlohmann::json model_spec_to_config_json(const ModelSpec& spec);

// Checkpoint name of a logical tensor: pattern with {layer} / {expert} substituted.
// Throws ModelError when the spec has no such logical tensor.
std::string checkpoint_tensor_name(const ModelSpec& spec, const std::string& logical,
                                   int64_t layer = -1, int64_t expert = -1);

const char* mlp_kind_name(MlpKind kind);             // "gated_silu" | "sparse_moe"
const char* rope_scaling_name(RopeScaling scaling);  // "none" | "linear" | "dynamic"

}  // namespace models
