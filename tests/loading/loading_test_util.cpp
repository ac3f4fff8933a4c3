#include "tests/loading/loading_test_util.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace loading_test {

namespace fs = std::filesystem;

void write_raw_safetensors(const fs::path& path, const std::string& header, const std::string& data) {
  std::string bytes;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  bytes += header;
  bytes += data;
  write_bytes(path, bytes);
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

nlohmann::json tiny_config(const std::string& family) {
  static const std::map<std::string, std::pair<std::string, std::string>> kTypes = {
      {"llama", {"llama", "LlamaForCausalLM"}},     {"mistral", {"mistral", "MistralForCausalLM"}},
      {"mixtral", {"mixtral", "MixtralForCausalLM"}}, {"qwen2", {"qwen2", "Qwen2ForCausalLM"}},
      {"yi", {"llama", "LlamaForCausalLM"}}};
  const auto& t = kTypes.at(family);
  nlohmann::json c = {{"model_type", t.first},
                      {"architectures", {t.second}},
                      {"vocab_size", 32},
                      {"hidden_size", 16},
                      {"intermediate_size", 24},
                      {"num_hidden_layers", 2},
                      {"num_attention_heads", 4},
                      {"num_key_value_heads", 2},
                      {"max_position_embeddings", 64},
                      {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},
                      {"bos_token_id", 1},
                      {"eos_token_id", 2},
                      {"torch_dtype", "float32"}};
  if (family == "mixtral") {
    c["num_local_experts"] = 3;
    c["num_experts_per_tok"] = 2;
  }
  return c;
}

void write_config(const fs::path& dir, const nlohmann::json& config) {
  fs::create_directories(dir);
  std::ofstream out(dir / "config.json");
  out << config.dump(2);
}

models::ModelSpec spec_from(const nlohmann::json& config, const std::string& family) {
  const models::FamilyInfo info = models::load_family(family);
  return models::model_spec_from_config(config, info, "test/config.json");
}

models::TensorMap random_checkpoint(const models::ModelSpec& spec, uint64_t seed) {
  torch::manual_seed(seed);
  models::TensorMap out;
  for (const models::ExpectedTensor& t : models::expected_tensors(spec)) {
    out[t.name] = torch::randn(t.shape).to(models::to_scalar_type(spec.checkpoint_dtype));
  }
  return out;
}

}  // namespace loading_test
