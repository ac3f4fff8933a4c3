// ModelSpec: everything the generic decoder needs to know about one checkpoint, merged from the
// checkpoint's config.json (dimensions) and its family file models/families/<family>.ini
// (architecture switches, tensor names, chat template, stop strings). Built and validated by
// models/model_config.cpp; consumed by the decoder, the weight loader and the stages.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace models {

enum class MlpKind { GatedSilu, SparseMoe };       // SwiGLU MLP, or Mixtral top-k routed experts
enum class RopeScaling { None, Linear, Dynamic };  // HF rope_scaling.type
enum class DType { Float32, BFloat16, Float16 };

struct ModelSpec {
  // Identity
  std::string family;        // "llama", "mistral", "mixtral", "qwen2", "yi", ... (family file name)
  std::string model_type;    // config.json "model_type"
  std::string architecture;  // config.json "architectures"[0]

  // Dimensions (config.json)
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;          // d_model
  int64_t intermediate_size = 0;    // d_ff (per expert for MoE)
  int64_t n_layer = 0;              // num_hidden_layers
  int64_t n_head = 0;               // num_attention_heads (query heads)
  int64_t n_kv_head = 0;            // num_key_value_heads (== n_head for MHA)
  int64_t head_dim = 0;             // hidden_size / n_head unless config.json says otherwise
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;

  // Architecture switches (family file, some overridable by config.json)
  bool qkv_bias = false;            // Qwen2: true
  bool o_bias = false;
  bool tie_word_embeddings = false;
  MlpKind mlp = MlpKind::GatedSilu;
  int64_t n_expert = 0;             // num_local_experts (MoE only)
  int64_t n_expert_used = 0;        // num_experts_per_tok (MoE only)
  double rope_theta = 10000.0;
  RopeScaling rope_scaling = RopeScaling::None;
  double rope_scaling_factor = 1.0;
  std::optional<int64_t> sliding_window;  // attend to the last W keys only (Mistral v0.1)
  int64_t sliding_window_first_layer = 0; // layers >= this use the window (Qwen2 max_window_layers)

  // Checkpoint
  DType checkpoint_dtype = DType::BFloat16;  // config.json "torch_dtype"
  // Logical tensor name -> checkpoint name pattern with "{layer}" and "{expert}" placeholders,
  // e.g. "q_proj" -> "model.layers.{layer}.self_attn.q_proj.weight".
  std::map<std::string, std::string> tensor_names;

  // Tokens and prompting
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;    // first of config.json's eos_token_id (may be a list)
  std::vector<int64_t> eos_token_ids;     // all of them (empty when none)
  std::string chat_template;             // placeholders {system} {user}; empty: the family has no chat format
  std::string chat_system;               // family's default text for {system} (may be empty)
  std::vector<std::string> stop_strings; // generation stops after emitting one of these
  std::vector<std::string> sentence_end_tokens;  // token texts that end a sentence (needle snapping)

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_kv_head * head_dim; }
  int64_t n_group() const { return n_head / n_kv_head; }  // query heads per KV head (GQA)
};

const char* dtype_name(DType dtype);

}  // namespace models
