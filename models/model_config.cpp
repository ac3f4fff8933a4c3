#include "models/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#ifndef RHEAD_FAMILY_DIR_DEFAULT
#define RHEAD_FAMILY_DIR_DEFAULT "models/families"
#endif

namespace models {

namespace fs = std::filesystem;
using nlohmann::json;
using pipeline::ConfigError;
using pipeline::KeyType;
using pipeline::str_cat;

// ---------------------------------------------------------------------------------------------
// Names

const char* mlp_kind_name(MlpKind kind) {
  switch (kind) {
    case MlpKind::GatedSilu: return "gated_silu";
    case MlpKind::SparseMoe: return "sparse_moe";
  }
  return "?";
}

const char* rope_scaling_name(RopeScaling scaling) {
  switch (scaling) {
    case RopeScaling::None: return "none";
    case RopeScaling::Linear: return "linear";
    case RopeScaling::Dynamic: return "dynamic";
  }
  return "?";
}

namespace {

enum class TensorScope { Global, Layer, Expert };

struct LogicalTensor {
  const char* name;
  TensorScope scope;
  const char* default_pattern;  // Hugging Face Llama / Mixtral naming
  const char* help;
};

const std::vector<LogicalTensor>& logical_tensors() {
  static const std::vector<LogicalTensor> kTensors = {
      {"embed", TensorScope::Global, "model.embed_tokens.weight", "token embedding [vocab, hidden]"},
      {"final_norm", TensorScope::Global, "model.norm.weight", "final RMSNorm weight [hidden]"},
      {"lm_head", TensorScope::Global, "lm_head.weight",
       "output projection [vocab, hidden] (may be absent when tie_word_embeddings)"},
      {"attn_norm", TensorScope::Layer, "model.layers.{layer}.input_layernorm.weight",
       "pre-attention RMSNorm weight [hidden]"},
      {"q_proj", TensorScope::Layer, "model.layers.{layer}.self_attn.q_proj.weight",
       "query projection [n_head*head_dim, hidden]"},
      {"k_proj", TensorScope::Layer, "model.layers.{layer}.self_attn.k_proj.weight",
       "key projection [n_kv_head*head_dim, hidden]"},
      {"v_proj", TensorScope::Layer, "model.layers.{layer}.self_attn.v_proj.weight",
       "value projection [n_kv_head*head_dim, hidden]"},
      {"o_proj", TensorScope::Layer, "model.layers.{layer}.self_attn.o_proj.weight",
       "output projection [hidden, n_head*head_dim]"},
      {"q_bias", TensorScope::Layer, "model.layers.{layer}.self_attn.q_proj.bias",
       "query bias [n_head*head_dim] (qkv_bias)"},
      {"k_bias", TensorScope::Layer, "model.layers.{layer}.self_attn.k_proj.bias",
       "key bias [n_kv_head*head_dim] (qkv_bias)"},
      {"v_bias", TensorScope::Layer, "model.layers.{layer}.self_attn.v_proj.bias",
       "value bias [n_kv_head*head_dim] (qkv_bias)"},
      {"o_bias", TensorScope::Layer, "model.layers.{layer}.self_attn.o_proj.bias",
       "output-projection bias [hidden] (o_bias)"},
      {"mlp_norm", TensorScope::Layer, "model.layers.{layer}.post_attention_layernorm.weight",
       "pre-MLP RMSNorm weight [hidden]"},
      {"gate_proj", TensorScope::Layer, "model.layers.{layer}.mlp.gate_proj.weight",
       "gated_silu: gate projection [intermediate, hidden]"},
      {"up_proj", TensorScope::Layer, "model.layers.{layer}.mlp.up_proj.weight",
       "gated_silu: up projection [intermediate, hidden]"},
      {"down_proj", TensorScope::Layer, "model.layers.{layer}.mlp.down_proj.weight",
       "gated_silu: down projection [hidden, intermediate]"},
      {"router", TensorScope::Layer, "model.layers.{layer}.block_sparse_moe.gate.weight",
       "sparse_moe: router [n_expert, hidden]"},
      {"expert_gate_proj", TensorScope::Expert,
       "model.layers.{layer}.block_sparse_moe.experts.{expert}.w1.weight",
       "sparse_moe: expert gate projection [intermediate, hidden]"},
      {"expert_up_proj", TensorScope::Expert,
       "model.layers.{layer}.block_sparse_moe.experts.{expert}.w3.weight",
       "sparse_moe: expert up projection [intermediate, hidden]"},
      {"expert_down_proj", TensorScope::Expert,
       "model.layers.{layer}.block_sparse_moe.experts.{expert}.w2.weight",
       "sparse_moe: expert down projection [hidden, intermediate]"},
  };
  return kTensors;
}

const LogicalTensor* find_logical(const std::string& name) {
  for (const LogicalTensor& t : logical_tensors()) {
    if (name == t.name) return &t;
  }
  return nullptr;
}

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

bool contains(const std::vector<std::string>& items, const std::string& x) {
  return std::find(items.begin(), items.end(), x) != items.end();
}

// Logical names a spec needs, given its switches (lm_head always listed: with tied embeddings
// the decoder uses embed when the checkpoint has no lm_head).
std::vector<std::string> relevant_logical_names(bool qkv_bias, bool o_bias, MlpKind mlp) {
  std::vector<std::string> out;
  for (const LogicalTensor& t : logical_tensors()) {
    const std::string n = t.name;
    if ((n == "q_bias" || n == "k_bias" || n == "v_bias") && !qkv_bias) continue;
    if (n == "o_bias" && !o_bias) continue;
    if ((n == "gate_proj" || n == "up_proj" || n == "down_proj") && mlp != MlpKind::GatedSilu) continue;
    if ((n == "router" || n.rfind("expert_", 0) == 0) && mlp != MlpKind::SparseMoe) continue;
    out.push_back(n);
  }
  return out;
}

}  // namespace

const std::vector<std::string>& logical_tensor_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> names;
    for (const LogicalTensor& t : logical_tensors()) names.push_back(t.name);
    return names;
  }();
  return kNames;
}

// ---------------------------------------------------------------------------------------------
// Family files

const pipeline::ConfigSchema& family_schema() {
  static const pipeline::ConfigSchema kSchema = [] {
    pipeline::ConfigSchema s("family file");
    s.required("family.name", KeyType::String, "family name; must equal the file name without .ini")
        .optional("family.description", KeyType::String, "", "one line for humans")
        .optional("family.model_types", KeyType::StringList, "",
                  "config.json model_type values this family claims (list)")
        .optional("family.architectures", KeyType::StringList, "",
                  "config.json architectures values this family claims (list)")
        .optional("arch.norm", KeyType::String, "rms", "normalisation: rms (RMSNorm; the only kind)")
        .optional("arch.mlp", KeyType::String, "gated_silu",
                  "MLP: gated_silu (SwiGLU) | sparse_moe (top-k routed SwiGLU experts)")
        .optional("arch.qkv_bias", KeyType::Bool, "false", "q/k/v projections have a bias (Qwen2)")
        .optional("arch.o_bias", KeyType::Bool, "false", "output projection has a bias")
        .optional("arch.attention_bias_from_config", KeyType::Bool, "false",
                  "config.json attention_bias (when present) sets qkv_bias and o_bias (Llama)")
        .optional("arch.tie_word_embeddings", KeyType::Bool, "false",
                  "lm_head shares the embedding when config.json has no tie_word_embeddings")
        .optional("arch.rope_scaling", KeyType::StringList, "",
                  "config.json rope_scaling types supported: list of linear, dynamic")
        .optional("arch.sliding_window", KeyType::String, "none",
                  "none | config (sliding_window, null = none) | use_sliding_window (Qwen2 rule: "
                  "only when use_sliding_window is true, for layers >= max_window_layers)");
    for (const LogicalTensor& t : logical_tensors()) {
      s.optional(str_cat("tensors.", t.name), KeyType::String, t.default_pattern,
                 str_cat(t.help, "; checkpoint name",
                         t.scope == TensorScope::Global  ? ""
                         : t.scope == TensorScope::Layer ? " with {layer}"
                                                         : " with {layer} and {expert}"));
    }
    s.optional("chat.template", KeyType::String, "",
               "chat prompt with {system} and {user} placeholders (plain text, not Jinja); "
               "empty: no chat format")
        .optional("chat.system", KeyType::String, "", "default text for {system}")
        .optional("generation.stop_strings", KeyType::StringList, "",
                  "generation stops after emitting one of these (list; repeat the key for "
                  "strings containing commas)")
        .optional("tokenizer.sentence_end_tokens", KeyType::StringList, "",
                  "token texts that end a sentence, for needle-insertion snapping (list)");
    return s;
  }();
  return kSchema;
}

namespace {

void check_pattern(const std::string& where, const LogicalTensor& t, const std::string& pattern) {
  const std::string what = str_cat(where, ": [tensors] ", t.name, " = '", pattern, "'");
  RHEAD_CHECK(!pattern.empty(), ConfigError, what, ": empty; expected a checkpoint tensor name");
  bool has_layer = false, has_expert = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '}') {
      throw ConfigError(str_cat(what, ": unmatched '}'; expected placeholders {layer} or {expert}"));
    }
    if (pattern[i] != '{') continue;
    size_t close = pattern.find('}', i);
    RHEAD_CHECK(close != std::string::npos, ConfigError, what,
                ": unmatched '{'; expected placeholders {layer} or {expert}");
    const std::string ph = pattern.substr(i, close - i + 1);
    if (ph == "{layer}") has_layer = true;
    else if (ph == "{expert}") has_expert = true;
    else throw ConfigError(str_cat(what, ": unknown placeholder ", ph, "; expected {layer} or {expert}"));
    i = close;
  }
  switch (t.scope) {
    case TensorScope::Global:
      RHEAD_CHECK(!has_layer && !has_expert, ConfigError, what,
                  ": a model-wide tensor takes no {layer} or {expert} placeholder");
      break;
    case TensorScope::Layer:
      RHEAD_CHECK(has_layer && !has_expert, ConfigError, what,
                  ": a per-layer tensor needs {layer} and no {expert}");
      break;
    case TensorScope::Expert:
      RHEAD_CHECK(has_layer && has_expert, ConfigError, what,
                  ": a per-expert tensor needs both {layer} and {expert}");
      break;
  }
}

void check_template(const std::string& where, const std::string& tmpl) {
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] != '{') continue;
    size_t close = tmpl.find('}', i);
    RHEAD_CHECK(close != std::string::npos, ConfigError, where,
                ": [chat] template: unmatched '{'; expected placeholders {system} and {user}");
    const std::string ph = tmpl.substr(i, close - i + 1);
    RHEAD_CHECK(ph == "{system}" || ph == "{user}", ConfigError, where, ": [chat] template: unknown ",
                "placeholder ", ph, "; expected {system} or {user} (plain placeholders, not Jinja)");
    i = close;
  }
  RHEAD_CHECK(tmpl.find("{user}") != std::string::npos, ConfigError, where,
              ": [chat] template has no {user} placeholder");
}

FamilyInfo family_from_config(const pipeline::Config& cfg, const std::string& source) {
  const std::string where = str_cat("[family] ", source);
  FamilyInfo f;
  f.source = source;
  f.name = cfg.get_string("family.name");
  RHEAD_CHECK(!f.name.empty(), ConfigError, where, ": [family] name is empty");
  f.model_types = cfg.get_strings("family.model_types");
  f.architectures = cfg.get_strings("family.architectures");

  const std::string norm = cfg.get_string("arch.norm");
  RHEAD_CHECK(norm == "rms", ConfigError, where, ": [arch] norm = '", norm,
              "' is not supported by the decoder; expected rms");
  const std::string mlp = cfg.get_string("arch.mlp");
  if (mlp == "gated_silu") f.mlp = MlpKind::GatedSilu;
  else if (mlp == "sparse_moe") f.mlp = MlpKind::SparseMoe;
  else throw ConfigError(str_cat(where, ": [arch] mlp = '", mlp, "'; expected gated_silu or sparse_moe"));
  f.qkv_bias = cfg.get_bool("arch.qkv_bias");
  f.o_bias = cfg.get_bool("arch.o_bias");
  f.attention_bias_from_config = cfg.get_bool("arch.attention_bias_from_config");
  f.tie_word_embeddings = cfg.get_bool("arch.tie_word_embeddings");
  for (const std::string& kind : cfg.get_strings("arch.rope_scaling")) {
    if (kind == "linear") f.rope_scaling.push_back(RopeScaling::Linear);
    else if (kind == "dynamic") f.rope_scaling.push_back(RopeScaling::Dynamic);
    else throw ConfigError(str_cat(where, ": [arch] rope_scaling lists '", kind,
                                   "'; expected linear and/or dynamic"));
  }
  const std::string sw = cfg.get_string("arch.sliding_window");
  if (sw == "none") f.sliding_window = SlidingWindowRule::None;
  else if (sw == "config") f.sliding_window = SlidingWindowRule::Config;
  else if (sw == "use_sliding_window") f.sliding_window = SlidingWindowRule::UseSlidingWindow;
  else throw ConfigError(str_cat(where, ": [arch] sliding_window = '", sw,
                                 "'; expected none, config or use_sliding_window"));

  for (const LogicalTensor& t : logical_tensors()) {
    std::string pattern = cfg.get_string(str_cat("tensors.", t.name));
    check_pattern(where, t, pattern);
    f.tensor_names[t.name] = pattern;
  }
  f.chat_template = cfg.get_string("chat.template");
  if (!f.chat_template.empty()) check_template(where, f.chat_template);
  f.chat_system = cfg.get_string("chat.system");
  f.stop_strings = cfg.get_strings("generation.stop_strings");
  for (const std::string& s : f.stop_strings) {
    RHEAD_CHECK(!s.empty(), ConfigError, where, ": [generation] stop_strings has an empty entry");
  }
  f.sentence_end_tokens = cfg.get_strings("tokenizer.sentence_end_tokens");
  return f;
}

}  // namespace

FamilyInfo parse_family_text(const std::string& text, const std::string& source_name) {
  return family_from_config(pipeline::Config::parse_text(family_schema(), text, source_name), source_name);
}

FamilyInfo parse_family_file(const fs::path& path) {
  FamilyInfo f = family_from_config(pipeline::Config::parse_file(family_schema(), path), path.string());
  RHEAD_CHECK(f.name == path.stem().string(), ConfigError, "[family] ", path.string(),
              ": [family] name = '", f.name, "' but the file is named '", path.filename().string(),
              "'; expected name = ", path.stem().string());
  return f;
}

fs::path default_family_dir() {
  if (const char* env = std::getenv("RHEAD_FAMILY_DIR")) {
    if (*env) return fs::path(env);
  }
  return fs::path(RHEAD_FAMILY_DIR_DEFAULT);
}

FamilyInfo load_family(const std::string& name, const fs::path& dir) {
  const fs::path path = dir / (name + ".ini");
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    std::vector<std::string> names;
    if (fs::is_directory(dir, ec)) {
      for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() == ".ini") names.push_back(entry.path().stem().string());
      }
    }
    std::sort(names.begin(), names.end());
    const std::string hint = pipeline::nearest_name(name, names);
    throw ConfigError(str_cat("[family] unknown family '", name, "': no ", path.string(),
                              "; expected one of ", join(names),
                              hint.empty() ? "" : str_cat(". Hint: did you mean '", hint, "'?")));
  }
  return parse_family_file(path);
}

std::vector<FamilyInfo> load_families(const fs::path& dir) {
  std::error_code ec;
  RHEAD_CHECK(fs::is_directory(dir, ec), ConfigError, "[family] ", dir.string(),
              ": family directory does not exist. Hint: set RHEAD_FAMILY_DIR to the folder holding "
              "the family .ini files (models/families in the source tree)");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".ini") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  RHEAD_CHECK(!files.empty(), ConfigError, "[family] ", dir.string(), ": no family .ini files");
  std::vector<FamilyInfo> families;
  for (const fs::path& p : files) families.push_back(parse_family_file(p));
  return families;
}

const FamilyInfo& select_family(const std::vector<FamilyInfo>& families, const std::string& model_type,
                                const std::vector<std::string>& architectures,
                                const std::optional<std::string>& forced, const std::string& where) {
  std::vector<std::string> names;
  for (const FamilyInfo& f : families) names.push_back(f.name);
  if (forced) {
    for (const FamilyInfo& f : families) {
      if (f.name == *forced) return f;
    }
    std::string hint = pipeline::nearest_name(*forced, names);
    throw ConfigError(str_cat("[family] unknown family '", *forced, "'; expected one of ", join(names),
                              hint.empty() ? "" : str_cat(". Hint: did you mean '", hint, "'?")));
  }
  auto pick = [&](const std::vector<const FamilyInfo*>& matches, const std::string& by) -> const FamilyInfo* {
    if (matches.empty()) return nullptr;
    if (matches.size() > 1) {
      std::vector<std::string> m;
      for (const FamilyInfo* f : matches) m.push_back(f->name);
      throw ConfigError(str_cat("[family] ", where, ": ", by, " is claimed by several families (",
                                join(m), "). Hint: name the family explicitly"));
    }
    return matches.front();
  };
  std::vector<const FamilyInfo*> by_type;
  for (const FamilyInfo& f : families) {
    if (!model_type.empty() && contains(f.model_types, model_type)) by_type.push_back(&f);
  }
  if (const FamilyInfo* f = pick(by_type, str_cat("model_type '", model_type, "'"))) return *f;
  for (const std::string& arch : architectures) {
    std::vector<const FamilyInfo*> by_arch;
    for (const FamilyInfo& f : families) {
      if (contains(f.architectures, arch)) by_arch.push_back(&f);
    }
    if (const FamilyInfo* f = pick(by_arch, str_cat("architecture '", arch, "'"))) return *f;
  }
  throw ConfigError(str_cat("[family] ", where, ": no family claims model_type '", model_type,
                            "' or architectures [", join(architectures), "]; families: ", join(names),
                            ". Hint: name the family explicitly (e.g. family = llama) if the model is "
                            "a variant of one, or add models/families/<name>.ini "
                            "(docs/ADDING_A_FAMILY.md)"));
}

// ---------------------------------------------------------------------------------------------
// config.json

namespace {

std::string json_value_text(const json& v) {
  std::string text = v.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  if (v.is_number_float()) return "float " + text;
  if (v.is_number()) return "integer " + text;
  return str_cat(v.type_name(), " ", text);
}

class ConfigReader {
 public:
  ConfigReader(const json& config, std::string source) : m_config(config), m_source(std::move(source)) {}

  std::string where(const std::string& key) const {
    return str_cat("[model] ", m_source, ": key '", key, "'");
  }
  // Present and not null.
  bool has(const std::string& key) const {
    return m_config.contains(key) && !m_config[key].is_null();
  }
  const json& at(const std::string& key) const { return m_config[key]; }

  int64_t get_int(const std::string& key) const {
    RHEAD_CHECK(has(key), ModelError, where(key), ": missing; expected an integer");
    return to_int(key, m_config[key]);
  }
  int64_t get_int(const std::string& key, int64_t fallback) const {
    return has(key) ? to_int(key, m_config[key]) : fallback;
  }
  int64_t to_int(const std::string& key, const json& v) const {
    RHEAD_CHECK(v.is_number_integer(), ModelError, where(key), ": got ", json_value_text(v),
                ", expected an integer");
    return v.get<int64_t>();
  }
  double get_float(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = m_config[key];
    RHEAD_CHECK(v.is_number(), ModelError, where(key), ": got ", json_value_text(v), ", expected a number");
    return v.get<double>();
  }
  bool get_bool(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = m_config[key];
    RHEAD_CHECK(v.is_boolean(), ModelError, where(key), ": got ", json_value_text(v),
                ", expected true or false");
    return v.get<bool>();
  }
  std::string get_string(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = m_config[key];
    RHEAD_CHECK(v.is_string(), ModelError, where(key), ": got ", json_value_text(v), ", expected a string");
    return v.get<std::string>();
  }
  std::vector<std::string> get_strings(const std::string& key) const {
    std::vector<std::string> out;
    if (!has(key)) return out;
    const json& v = m_config[key];
    if (v.is_string()) return {v.get<std::string>()};
    RHEAD_CHECK(v.is_array(), ModelError, where(key), ": got ", json_value_text(v),
                ", expected a list of strings");
    for (const json& item : v) {
      RHEAD_CHECK(item.is_string(), ModelError, where(key), ": holds ", json_value_text(item),
                  ", expected a list of strings");
      out.push_back(item.get<std::string>());
    }
    return out;
  }
  const std::string& source() const { return m_source; }

 private:
  const json& m_config;
  std::string m_source;
};

DType parse_torch_dtype(const ConfigReader& r) {
  // Newer transformers write "dtype"; older ones "torch_dtype" (sometimes "torch.bfloat16").
  const std::string key = r.has("torch_dtype") || !r.has("dtype") ? "torch_dtype" : "dtype";
  std::string text = r.get_string(key, "bfloat16");
  if (text.rfind("torch.", 0) == 0) text = text.substr(6);
  if (text == "bfloat16" || text == "bf16") return DType::BFloat16;
  if (text == "float16" || text == "fp16" || text == "half") return DType::Float16;
  if (text == "float32" || text == "fp32" || text == "float") return DType::Float32;
  throw ModelError(str_cat(r.where(key), ": got '", text, "', expected bfloat16, float16 or float32"));
}

}  // namespace

ModelSpec model_spec_from_config(const json& config, const FamilyInfo& family, const std::string& source) {
  RHEAD_CHECK(config.is_object(), ModelError, "[model] ", source, ": config.json is a JSON ",
              config.type_name(), "; expected an object");
  ConfigReader r(config, source);
  ModelSpec s;
  s.family = family.name;
  s.model_type = r.get_string("model_type", "");
  const std::vector<std::string> archs = r.get_strings("architectures");
  s.architecture = archs.empty() ? "" : archs.front();

  s.vocab_size = r.get_int("vocab_size");
  s.hidden_size = r.get_int("hidden_size");
  s.intermediate_size = r.get_int("intermediate_size");
  s.n_layer = r.get_int("num_hidden_layers");
  s.n_head = r.get_int("num_attention_heads");
  RHEAD_CHECK(s.n_head > 0, ModelError, r.where("num_attention_heads"), ": got ", s.n_head,
              ", expected a positive integer");
  s.n_kv_head = r.get_int("num_key_value_heads", s.n_head);
  if (r.has("head_dim")) {
    s.head_dim = r.get_int("head_dim");
  } else {
    RHEAD_CHECK(s.hidden_size % s.n_head == 0, ModelError, r.where("hidden_size"), ": ",
                s.hidden_size, " is not a multiple of num_attention_heads = ", s.n_head,
                " and there is no head_dim key; expected hidden_size = num_attention_heads * head_dim");
    s.head_dim = s.hidden_size / s.n_head;
  }
  s.max_position_embeddings = r.get_int("max_position_embeddings");
  s.rms_norm_eps = r.get_float("rms_norm_eps", 1e-6);
  s.rope_theta = r.get_float("rope_theta", 10000.0);

  if (r.has("rope_scaling")) {
    const json& rs = r.at("rope_scaling");
    RHEAD_CHECK(rs.is_object(), ModelError, r.where("rope_scaling"), ": got ", json_value_text(rs),
                ", expected null or an object {\"type\": ..., \"factor\": ...}");
    std::string type_key = rs.contains("rope_type") ? "rope_type" : "type";
    RHEAD_CHECK(rs.contains(type_key) && rs[type_key].is_string(), ModelError,
                r.where("rope_scaling"), ": no string \"type\" or \"rope_type\" in ", rs.dump());
    const std::string type = rs[type_key].get<std::string>();
    if (type != "default") {
      if (type == "linear") s.rope_scaling = RopeScaling::Linear;
      else if (type == "dynamic") s.rope_scaling = RopeScaling::Dynamic;
      std::vector<std::string> supported;
      for (RopeScaling k : family.rope_scaling) supported.push_back(rope_scaling_name(k));
      RHEAD_CHECK(s.rope_scaling != RopeScaling::None &&
                      std::find(family.rope_scaling.begin(), family.rope_scaling.end(),
                                s.rope_scaling) != family.rope_scaling.end(),
                  ModelError, r.where(str_cat("rope_scaling.", type_key)), ": '", type,
                  "' is not supported by family '", family.name, "'; expected ",
                  supported.empty() ? std::string("no rope_scaling (null)") : join(supported, " or "),
                  " (", family.source.string(), " [arch] rope_scaling)");
      RHEAD_CHECK(rs.contains("factor") && rs["factor"].is_number(), ModelError,
                  r.where("rope_scaling.factor"), ": missing or not a number in ", rs.dump());
      s.rope_scaling_factor = rs["factor"].get<double>();
      RHEAD_CHECK(s.rope_scaling_factor > 0 && std::isfinite(s.rope_scaling_factor), ModelError,
                  r.where("rope_scaling.factor"), ": got ", s.rope_scaling_factor,
                  ", expected a positive number");
    }
  }

  s.tie_word_embeddings = r.get_bool("tie_word_embeddings", family.tie_word_embeddings);
  s.qkv_bias = family.qkv_bias;
  s.o_bias = family.o_bias;
  if (family.attention_bias_from_config && r.has("attention_bias")) {
    s.qkv_bias = s.o_bias = r.get_bool("attention_bias", false);
  }

  switch (family.sliding_window) {
    case SlidingWindowRule::None: break;
    case SlidingWindowRule::Config:
      if (r.has("sliding_window")) s.sliding_window = r.get_int("sliding_window");
      break;
    case SlidingWindowRule::UseSlidingWindow:
      if (r.get_bool("use_sliding_window", false) && r.has("sliding_window")) {
        s.sliding_window = r.get_int("sliding_window");
        s.sliding_window_first_layer = r.get_int("max_window_layers", 0);
      }
      break;
  }

  s.mlp = family.mlp;
  if (s.mlp == MlpKind::SparseMoe) {
    RHEAD_CHECK(r.has("num_local_experts"), ModelError, r.where("num_local_experts"), ": missing; ",
                "family '", family.name, "' is a sparse MoE and needs the number of experts");
    RHEAD_CHECK(r.has("num_experts_per_tok"), ModelError, r.where("num_experts_per_tok"), ": missing; ",
                "family '", family.name, "' is a sparse MoE and needs the router's top-k");
    s.n_expert = r.get_int("num_local_experts");
    s.n_expert_used = r.get_int("num_experts_per_tok");
  }

  if (r.has("bos_token_id")) s.bos_token_id = r.get_int("bos_token_id");
  if (r.has("eos_token_id")) {
    const json& eos = r.at("eos_token_id");
    if (eos.is_array()) {
      for (const json& id : eos) s.eos_token_ids.push_back(r.to_int("eos_token_id", id));
    } else {
      s.eos_token_ids.push_back(r.get_int("eos_token_id"));
    }
    if (!s.eos_token_ids.empty()) s.eos_token_id = s.eos_token_ids.front();
  }
  s.checkpoint_dtype = parse_torch_dtype(r);

  for (const std::string& n : relevant_logical_names(s.qkv_bias, s.o_bias, s.mlp)) {
    s.tensor_names[n] = family.tensor_names.at(n);
  }
  s.chat_template = family.chat_template;
  s.chat_system = family.chat_system;
  s.stop_strings = family.stop_strings;
  s.sentence_end_tokens = family.sentence_end_tokens;

  validate_model_spec(s, source);
  return s;
}

ModelSpec load_model_spec(const fs::path& config_json, const std::optional<std::string>& family,
                          const fs::path& family_dir) {
  fs::path path = config_json;
  std::error_code ec;
  if (fs::is_directory(path, ec)) path /= "config.json";
  std::ifstream in(path, std::ios::binary);
  RHEAD_CHECK(in.good(), ModelError, "[model] ", path.string(),
              ": cannot read. Hint: a model folder needs the Hugging Face config.json");
  json config;
  try {
    config = json::parse(in);
  } catch (const json::parse_error& e) {
    throw ModelError(str_cat("[model] ", path.string(), ": not valid JSON: ", e.what()));
  }
  RHEAD_CHECK(config.is_object(), ModelError, "[model] ", path.string(), ": config.json is a JSON ",
              config.type_name(), "; expected an object");
  ConfigReader r(config, path.string());
  const std::vector<FamilyInfo> families = load_families(family_dir);
  const FamilyInfo& chosen = select_family(families, r.get_string("model_type", ""),
                                           r.get_strings("architectures"), family, path.string());
  return model_spec_from_config(config, chosen, path.string());
}

void validate_model_spec(const ModelSpec& s, const std::string& source) {
  const std::string where = str_cat("[model] ", source);
  auto positive = [&](int64_t v, const char* key) {
    RHEAD_CHECK(v > 0, ModelError, where, ": key '", key, "': got ", v, ", expected a positive integer");
  };
  positive(s.vocab_size, "vocab_size");
  positive(s.hidden_size, "hidden_size");
  positive(s.intermediate_size, "intermediate_size");
  positive(s.n_layer, "num_hidden_layers");
  positive(s.n_head, "num_attention_heads");
  positive(s.n_kv_head, "num_key_value_heads");
  positive(s.head_dim, "head_dim");
  positive(s.max_position_embeddings, "max_position_embeddings");
  RHEAD_CHECK(s.n_head % s.n_kv_head == 0, ModelError, where, ": num_attention_heads = ", s.n_head,
              " is not a multiple of num_key_value_heads = ", s.n_kv_head,
              "; expected each KV head to serve the same number of query heads");
  RHEAD_CHECK(s.head_dim % 2 == 0, ModelError, where, ": key 'head_dim': got ", s.head_dim,
              ", expected an even number (RoPE rotates pairs)");
  RHEAD_CHECK(s.rms_norm_eps > 0 && std::isfinite(s.rms_norm_eps), ModelError, where,
              ": key 'rms_norm_eps': got ", s.rms_norm_eps, ", expected a positive number");
  RHEAD_CHECK(s.rope_theta > 0 && std::isfinite(s.rope_theta), ModelError, where,
              ": key 'rope_theta': got ", s.rope_theta, ", expected a positive number");
  if (s.rope_scaling != RopeScaling::None) {
    RHEAD_CHECK(s.rope_scaling_factor > 0 && std::isfinite(s.rope_scaling_factor), ModelError, where,
                ": key 'rope_scaling.factor': got ", s.rope_scaling_factor, ", expected a positive number");
  }
  if (s.sliding_window) {
    RHEAD_CHECK(*s.sliding_window > 0, ModelError, where, ": key 'sliding_window': got ",
                *s.sliding_window, ", expected a positive integer or null");
    RHEAD_CHECK(s.sliding_window_first_layer >= 0, ModelError, where,
                ": key 'max_window_layers': got ", s.sliding_window_first_layer,
                ", expected a non-negative integer");
  }
  if (s.mlp == MlpKind::SparseMoe) {
    positive(s.n_expert, "num_local_experts");
    RHEAD_CHECK(s.n_expert_used >= 1 && s.n_expert_used <= s.n_expert, ModelError, where,
                ": key 'num_experts_per_tok': got ", s.n_expert_used, ", expected 1..",
                "num_local_experts = ", s.n_expert);
  }
  auto token_in_vocab = [&](int64_t id, const char* key) {
    RHEAD_CHECK(id >= 0 && id < s.vocab_size, ModelError, where, ": key '", key, "': got ", id,
                ", expected a token id in [0, vocab_size = ", s.vocab_size, ")");
  };
  if (s.bos_token_id) token_in_vocab(*s.bos_token_id, "bos_token_id");
  for (int64_t id : s.eos_token_ids) token_in_vocab(id, "eos_token_id");
  if (s.eos_token_id) token_in_vocab(*s.eos_token_id, "eos_token_id");

  for (const std::string& n : relevant_logical_names(s.qkv_bias, s.o_bias, s.mlp)) {
    RHEAD_CHECK(s.tensor_names.count(n), ModelError, where, ": the spec has no checkpoint name for ",
                "logical tensor '", n, "' (family '", s.family, "', mlp = ", mlp_kind_name(s.mlp),
                ", qkv_bias = ", s.qkv_bias, ", o_bias = ", s.o_bias, ")");
  }
}

json model_spec_to_config_json(const ModelSpec& s) {
  json c = json::object();
  if (!s.architecture.empty()) c["architectures"] = json::array({s.architecture});
  if (!s.model_type.empty()) c["model_type"] = s.model_type;
  c["vocab_size"] = s.vocab_size;
  c["hidden_size"] = s.hidden_size;
  c["intermediate_size"] = s.intermediate_size;
  c["num_hidden_layers"] = s.n_layer;
  c["num_attention_heads"] = s.n_head;
  c["num_key_value_heads"] = s.n_kv_head;
  if (s.n_head <= 0 || s.head_dim * s.n_head != s.hidden_size) c["head_dim"] = s.head_dim;
  c["max_position_embeddings"] = s.max_position_embeddings;
  c["rms_norm_eps"] = s.rms_norm_eps;
  c["rope_theta"] = s.rope_theta;
  if (s.rope_scaling == RopeScaling::None) {
    c["rope_scaling"] = nullptr;
  } else {
    c["rope_scaling"] = {{"type", rope_scaling_name(s.rope_scaling)}, {"factor", s.rope_scaling_factor}};
  }
  c["tie_word_embeddings"] = s.tie_word_embeddings;
  c["attention_bias"] = s.qkv_bias;
  if (s.sliding_window) {
    c["sliding_window"] = *s.sliding_window;
    c["use_sliding_window"] = true;
    c["max_window_layers"] = s.sliding_window_first_layer;
  } else {
    c["sliding_window"] = nullptr;
    c["use_sliding_window"] = false;
  }
  if (s.mlp == MlpKind::SparseMoe) {
    c["num_local_experts"] = s.n_expert;
    c["num_experts_per_tok"] = s.n_expert_used;
  }
  if (s.bos_token_id) c["bos_token_id"] = *s.bos_token_id;
  if (s.eos_token_ids.size() > 1) {
    c["eos_token_id"] = s.eos_token_ids;
  } else if (s.eos_token_id) {
    c["eos_token_id"] = *s.eos_token_id;
  } else if (!s.eos_token_ids.empty()) {
    c["eos_token_id"] = s.eos_token_ids.front();
  }
  c["torch_dtype"] = dtype_name(s.checkpoint_dtype);
  c["hidden_act"] = "silu";
  return c;
}

std::string checkpoint_tensor_name(const ModelSpec& spec, const std::string& logical, int64_t layer,
                                   int64_t expert) {
  auto it = spec.tensor_names.find(logical);
  RHEAD_CHECK(it != spec.tensor_names.end(), ModelError, "[model] family '", spec.family,
              "': no checkpoint name for logical tensor '", logical, "'",
              find_logical(logical) ? " in this model (check qkv_bias / o_bias / mlp)"
                                    : "; it is not one of the agreed logical names");
  std::string out = it->second;
  auto replace = [&out, &spec, &logical](const std::string& ph, int64_t value) {
    size_t pos = out.find(ph);
    if (pos == std::string::npos) return;
    RHEAD_CHECK(value >= 0, ModelError, "[model] family '", spec.family, "': logical tensor '",
                logical, "' (", out, ") needs ", ph, " but none was given");
    while (pos != std::string::npos) {
      out.replace(pos, ph.size(), std::to_string(value));
      pos = out.find(ph, pos);
    }
  };
  replace("{layer}", layer);
  replace("{expert}", expert);
  return out;
}

}  // namespace models
