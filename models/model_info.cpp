#include "models/model_info.h"

#include <cstdio>
#include <sstream>

#include "models/checkpoint.h"

namespace models {

namespace {

std::string human_count(double n) {
  const char* units[] = {"", "K", "M", "B", "T"};
  int u = 0;
  while (n >= 1000.0 && u < 4) {
    n /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f%s" : "%.2f%s", n, units[u]);
  return buf;
}

std::string human_bytes(double n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (n >= 1024.0 && u < 4) {
    n /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", n, units[u]);
  return buf;
}

std::string escaped(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out;
}

}  // namespace

std::string model_info(const std::filesystem::path& path, const std::optional<std::string>& family) {
  const ModelFolder m = load_model_folder(path, family);
  const ModelSpec& s = m.spec;
  std::ostringstream out;
  auto row = [&out](const char* key, const std::string& value) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%-20s", key);
    out << buf << value << "\n";
  };
  row("path", m.path.string());
  row("family", s.family);
  row("model_type", s.model_type.empty() ? "(none)" : s.model_type);
  row("architecture", s.architecture.empty() ? "(none)" : s.architecture);
  row("layers", std::to_string(s.n_layer));
  row("hidden_size", std::to_string(s.hidden_size));
  row("intermediate_size", std::to_string(s.intermediate_size) +
                               (s.mlp == MlpKind::SparseMoe ? " (per expert)" : ""));
  std::string attn = pipeline::str_cat(s.n_head, " query heads, ", s.n_kv_head, " KV heads (",
                                       s.n_kv_head == s.n_head ? "MHA" : pipeline::str_cat("GQA ", s.n_group(), ":1"),
                                       "), head_dim ", s.head_dim);
  if (s.qkv_bias) attn += ", q/k/v bias";
  if (s.o_bias) attn += ", o bias";
  row("attention", attn);
  row("mlp", s.mlp == MlpKind::SparseMoe
                 ? pipeline::str_cat(mlp_kind_name(s.mlp), ", ", s.n_expert, " experts, top-", s.n_expert_used)
                 : std::string(mlp_kind_name(s.mlp)));
  row("vocab_size", std::to_string(s.vocab_size));
  std::string rope = pipeline::str_cat("theta ", s.rope_theta);
  if (s.rope_scaling != RopeScaling::None) {
    rope += pipeline::str_cat(", ", rope_scaling_name(s.rope_scaling), " scaling x", s.rope_scaling_factor);
  }
  row("rope", rope);
  row("context_length", std::to_string(s.max_position_embeddings) + " (max_position_embeddings)");
  row("sliding_window", s.sliding_window
                            ? pipeline::str_cat(*s.sliding_window, s.sliding_window_first_layer > 0
                                                    ? pipeline::str_cat(" (layers >= ", s.sliding_window_first_layer, ")")
                                                    : std::string())
                            : std::string("none"));
  row("tie_embeddings", s.tie_word_embeddings ? "yes" : "no");
  const int64_t params = parameter_count(s);
  row("parameters", pipeline::str_cat(human_count(static_cast<double>(params)), " (", params, ")"));
  row("dtype", dtype_name(s.checkpoint_dtype));
  row("checkpoint", pipeline::str_cat(human_bytes(static_cast<double>(m.weights.total_bytes())), " in ",
                                      m.weights.files().size(), m.weights.files().size() == 1 ? " file" : " files",
                                      ", ", m.weights.names().size(), " tensors"));
  row("tokenizer", m.tokenizer_kind == TokenizerKind::None
                       ? std::string("none found (tokenizer.model or tokenizer.json)")
                       : pipeline::str_cat(tokenizer_kind_name(m.tokenizer_kind), " (",
                                           m.tokenizer_path.filename().string(), ")"));
  std::string tokens;
  if (s.bos_token_id) tokens += pipeline::str_cat("bos ", *s.bos_token_id);
  if (!s.eos_token_ids.empty()) {
    if (!tokens.empty()) tokens += ", ";
    tokens += "eos";
    for (int64_t id : s.eos_token_ids) tokens += pipeline::str_cat(" ", id);
  }
  row("special_tokens", tokens.empty() ? "(none in config.json)" : tokens);
  row("chat_template", s.chat_template.empty() ? "(none)" : "\"" + escaped(s.chat_template) + "\"");
  return out.str();
}

}  // namespace models
