#include "models/checkpoint.h"

#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

namespace models {

namespace fs = std::filesystem;
using nlohmann::json;
using pipeline::str_cat;

const char* tokenizer_kind_name(TokenizerKind kind) {
  switch (kind) {
    case TokenizerKind::None: return "none";
    case TokenizerKind::SentencePiece: return "sentencepiece";
    case TokenizerKind::Json: return "json";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Expected tensors

std::vector<ExpectedTensor> expected_tensors(const ModelSpec& s) {
  const int64_t hidden = s.hidden_size, vocab = s.vocab_size, inter = s.intermediate_size;
  const std::string hidden_txt = str_cat("hidden_size = ", hidden);
  const std::string vocab_txt = str_cat("vocab_size = ", vocab);
  const std::string q_txt = str_cat("num_attention_heads * head_dim = ", s.n_head, " * ", s.head_dim);
  const std::string kv_txt = str_cat("num_key_value_heads * head_dim = ", s.n_kv_head, " * ", s.head_dim);
  const std::string inter_txt = str_cat("intermediate_size = ", inter);

  std::vector<ExpectedTensor> out;
  auto add = [&](const std::string& logical, int64_t layer, int64_t expert, std::vector<int64_t> shape,
                 std::string origin, bool required = true) {
    if (!s.tensor_names.count(logical)) return;  // not part of this model (switches)
    ExpectedTensor t;
    t.logical = logical;
    t.name = checkpoint_tensor_name(s, logical, layer, expert);
    t.layer = layer;
    t.expert = expert;
    t.shape = std::move(shape);
    t.origin = std::move(origin);
    t.required = required;
    out.push_back(std::move(t));
  };

  add("embed", -1, -1, {vocab, hidden}, str_cat(vocab_txt, ", ", hidden_txt));
  for (int64_t l = 0; l < s.n_layer; ++l) {
    add("attn_norm", l, -1, {hidden}, hidden_txt);
    add("q_proj", l, -1, {s.q_dim(), hidden}, str_cat(q_txt, ", ", hidden_txt));
    add("k_proj", l, -1, {s.kv_dim(), hidden}, str_cat(kv_txt, ", ", hidden_txt));
    add("v_proj", l, -1, {s.kv_dim(), hidden}, str_cat(kv_txt, ", ", hidden_txt));
    add("o_proj", l, -1, {hidden, s.q_dim()}, str_cat(hidden_txt, ", ", q_txt));
    if (s.qkv_bias) {
      add("q_bias", l, -1, {s.q_dim()}, q_txt + " (qkv_bias)");
      add("k_bias", l, -1, {s.kv_dim()}, kv_txt + " (qkv_bias)");
      add("v_bias", l, -1, {s.kv_dim()}, kv_txt + " (qkv_bias)");
    }
    if (s.o_bias) add("o_bias", l, -1, {hidden}, hidden_txt + " (o_bias)");
    add("mlp_norm", l, -1, {hidden}, hidden_txt);
    if (s.mlp == MlpKind::GatedSilu) {
      add("gate_proj", l, -1, {inter, hidden}, str_cat(inter_txt, ", ", hidden_txt));
      add("up_proj", l, -1, {inter, hidden}, str_cat(inter_txt, ", ", hidden_txt));
      add("down_proj", l, -1, {hidden, inter}, str_cat(hidden_txt, ", ", inter_txt));
    } else {
      add("router", l, -1, {s.n_expert, hidden},
          str_cat("num_local_experts = ", s.n_expert, ", ", hidden_txt));
      for (int64_t e = 0; e < s.n_expert; ++e) {
        add("expert_gate_proj", l, e, {inter, hidden}, str_cat(inter_txt, ", ", hidden_txt));
        add("expert_up_proj", l, e, {inter, hidden}, str_cat(inter_txt, ", ", hidden_txt));
        add("expert_down_proj", l, e, {hidden, inter}, str_cat(hidden_txt, ", ", inter_txt));
      }
    }
  }
  add("final_norm", -1, -1, {hidden}, hidden_txt);
  add("lm_head", -1, -1, {vocab, hidden}, str_cat(vocab_txt, ", ", hidden_txt),
      /*required=*/!s.tie_word_embeddings);
  return out;
}

int64_t parameter_count(const ModelSpec& spec) {
  int64_t total = 0;
  for (const ExpectedTensor& t : expected_tensors(spec)) {
    if (!t.required) continue;  // tied lm_head shares the embedding
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    total += n;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// validate_checkpoint

namespace {

struct FoundTensor {
  std::vector<int64_t> shape;
  DType dtype;
};

constexpr size_t kMaxListedProblems = 8;

void validate_with(const ModelSpec& spec, const std::string& source,
                   const std::function<std::optional<FoundTensor>(const std::string&)>& lookup) {
  std::vector<std::string> problems;
  size_t n_problems = 0;
  auto report = [&](std::string text) {
    ++n_problems;
    if (problems.size() < kMaxListedProblems) problems.push_back(std::move(text));
  };
  for (const ExpectedTensor& t : expected_tensors(spec)) {
    std::string label = str_cat("tensor '", t.name, "' (", t.logical);
    if (t.layer >= 0) label += str_cat(", layer ", t.layer);
    if (t.expert >= 0) label += str_cat(", expert ", t.expert);
    label += ")";
    std::optional<FoundTensor> found = lookup(t.name);
    if (!found) {
      if (t.required) {
        report(str_cat(label, ": missing from the checkpoint; expected shape ", shape_str(t.shape),
                       " from ", t.origin));
      }
      continue;
    }
    if (found->shape != t.shape) {
      report(str_cat(label, ": shape ", shape_str(found->shape), " in checkpoint, expected ",
                     shape_str(t.shape), " from ", t.origin));
    }
    if (found->dtype != spec.checkpoint_dtype) {
      report(str_cat(label, ": dtype ", dtype_name(found->dtype), " in checkpoint, expected ",
                     dtype_name(spec.checkpoint_dtype), " (checkpoint dtype)"));
    }
  }
  if (n_problems == 0) return;
  std::string msg = str_cat("[model] ", source, ": checkpoint does not match the ", spec.family,
                            " spec (", n_problems, n_problems == 1 ? " problem" : " problems", "):");
  for (const std::string& p : problems) msg += "\n  " + p;
  if (n_problems > problems.size()) msg += str_cat("\n  ... and ", n_problems - problems.size(), " more");
  throw ModelError(msg);
}

}  // namespace

void validate_checkpoint(const ModelSpec& spec, const SafetensorsReader& reader) {
  validate_with(spec, reader.source().string(), [&reader](const std::string& name) -> std::optional<FoundTensor> {
    if (!reader.contains(name)) return std::nullopt;
    const TensorInfo& info = reader.info(name);
    return FoundTensor{info.shape, info.dtype};
  });
}

void validate_checkpoint(const ModelSpec& spec, const TensorMap& tensors, const std::string& source) {
  validate_with(spec, source, [&tensors, &source](const std::string& name) -> std::optional<FoundTensor> {
    auto it = tensors.find(name);
    if (it == tensors.end()) return std::nullopt;
    return FoundTensor{it->second.sizes().vec(),
                       from_scalar_type(it->second.scalar_type(), str_cat(source, ": tensor '", name, "'"))};
  });
}

// ---------------------------------------------------------------------------------------------
// Model folders

torch::Tensor ModelFolder::weight(const std::string& logical, int64_t layer, int64_t expert) const {
  return weights.tensor(checkpoint_tensor_name(spec, logical, layer, expert));
}

ModelFolder load_model_folder(const fs::path& path, const LoadOptions& options) {
  std::error_code ec;
  RHEAD_CHECK(fs::is_directory(path, ec), ModelError, "[model] ", path.string(),
              ": not a folder; expected a Hugging Face model folder (config.json, *.safetensors, "
              "tokenizer.model or tokenizer.json)");
  ModelFolder m;
  m.path = path;
  m.spec = load_model_spec(path / "config.json", options.family, options.family_dir);
  m.weights = SafetensorsReader::open(path);

  // Configs in the wild disagree with their weights' dtype: trust the weights.
  const std::string embed_name = checkpoint_tensor_name(m.spec, "embed");
  if (m.weights.contains(embed_name)) m.spec.checkpoint_dtype = m.weights.info(embed_name).dtype;
  if (options.validate) validate_checkpoint(m.spec, m.weights);

  if (fs::exists(path / "tokenizer.model")) m.tokenizer_model_path = path / "tokenizer.model";
  if (fs::exists(path / "tokenizer.json")) m.tokenizer_json_path = path / "tokenizer.json";
  if (fs::exists(path / "tokenizer_config.json")) m.tokenizer_config_path = path / "tokenizer_config.json";
  if (!m.tokenizer_model_path.empty()) {
    m.tokenizer_kind = TokenizerKind::SentencePiece;
    m.tokenizer_path = m.tokenizer_model_path;
  } else if (!m.tokenizer_json_path.empty()) {
    m.tokenizer_kind = TokenizerKind::Json;
    m.tokenizer_path = m.tokenizer_json_path;
  }
  return m;
}

ModelFolder load_model_folder(const fs::path& path, const std::optional<std::string>& family) {
  LoadOptions options;
  options.family = family;
  return load_model_folder(path, options);
}

void save_model_folder(const fs::path& dir, const ModelSpec& spec, const TensorMap& tensors,
                       const SaveOptions& options) {
  validate_model_spec(spec, dir.string());
  TensorMap converted;
  const torch::ScalarType dtype = to_scalar_type(spec.checkpoint_dtype);
  for (const auto& kv : tensors) {
    from_scalar_type(kv.second.scalar_type(), str_cat(dir.string(), ": tensor '", kv.first, "'"));
    converted[kv.first] = kv.second.scalar_type() == dtype ? kv.second : kv.second.to(dtype);
  }
  validate_checkpoint(spec, converted, dir.string());

  fs::create_directories(dir);
  {
    const fs::path config_path = dir / "config.json";
    std::ofstream out(config_path, std::ios::binary | std::ios::trunc);
    RHEAD_CHECK(out.good(), ModelError, "[model] ", config_path.string(), ": cannot write");
    out << model_spec_to_config_json(spec).dump(2) << "\n";
    RHEAD_CHECK(out.good(), ModelError, "[model] ", config_path.string(), ": write failed");
  }
  // A stale index or single file from an earlier save would shadow (or sit beside) the new one.
  std::error_code ec;
  if (options.max_shard_bytes == 0) {
    fs::remove(dir / "model.safetensors.index.json", ec);
    save_safetensors(dir / "model.safetensors", converted, options.metadata);
  } else {
    fs::remove(dir / "model.safetensors", ec);
    save_safetensors_sharded(dir, converted, options.max_shard_bytes, options.metadata, "model");
  }
}

}  // namespace models
