// config.json + family file -> ModelSpec for every shipped family (dims as in the published models),
// family selection, validation errors and family-file errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "models/model_config.h"
#include "tests/common/test_support.h"
#include "tests/loading/loading_test_util.h"

namespace {

namespace fs = std::filesystem;
using loading_test::error_of;
using loading_test::tiny_config;
using models::ModelError;
using models::ModelSpec;
using nlohmann::json;
using pipeline::ConfigError;
using ::testing::HasSubstr;

// Writes `config` to a temp folder and loads it with the shipped family files.
class ModelConfig : public ::testing::Test {
 protected:
  ModelSpec load(const json& config, std::optional<std::string> family = std::nullopt) {
    loading_test::write_config(m_dir.path(), config);
    return models::load_model_spec(m_dir.path(), family);
  }
  std::string load_error(const json& config, std::optional<std::string> family = std::nullopt) {
    return error_of<ModelError>([&] { load(config, family); });
  }
  std::string config_path() const { return (m_dir.path() / "config.json").string(); }
  test_support::TempDir m_dir{"model-config"};
};

TEST_F(ModelConfig, ShippedFamiliesParse) {
  const auto families = models::load_families();
  std::vector<std::string> names;
  for (const auto& f : families) names.push_back(f.name);
  EXPECT_EQ(names, (std::vector<std::string>{"llama", "mistral", "mixtral", "qwen2", "yi"}));
  for (const auto& f : families) {
    SCOPED_TRACE(f.name);
    EXPECT_EQ(f.tensor_names.size(), models::logical_tensor_names().size());
    EXPECT_THAT(f.chat_template, HasSubstr("{user}"));
    EXPECT_FALSE(f.stop_strings.empty());
    EXPECT_EQ(f.stop_strings.front(), "\n");  // escapes decoded by the INI parser
  }
}

TEST_F(ModelConfig, Llama2_7B) {
  json c = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"bos_token_id", 1},
            {"eos_token_id", 2}, {"hidden_act", "silu"}, {"hidden_size", 4096},
            {"intermediate_size", 11008}, {"max_position_embeddings", 4096},
            {"num_attention_heads", 32}, {"num_hidden_layers", 32}, {"num_key_value_heads", 32},
            {"rms_norm_eps", 1e-05}, {"rope_scaling", nullptr}, {"tie_word_embeddings", false},
            {"torch_dtype", "float16"}, {"vocab_size", 32000}};
  ModelSpec s = load(c);
  EXPECT_EQ(s.family, "llama");
  EXPECT_EQ(s.architecture, "LlamaForCausalLM");
  EXPECT_EQ(s.n_layer, 32);
  EXPECT_EQ(s.n_head, 32);
  EXPECT_EQ(s.n_kv_head, 32);
  EXPECT_EQ(s.head_dim, 128);
  EXPECT_EQ(s.intermediate_size, 11008);
  EXPECT_EQ(s.vocab_size, 32000);
  EXPECT_DOUBLE_EQ(s.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(s.rope_theta, 10000.0);  // default when absent
  EXPECT_EQ(s.rope_scaling, models::RopeScaling::None);
  EXPECT_FALSE(s.qkv_bias);
  EXPECT_FALSE(s.sliding_window);
  EXPECT_EQ(s.checkpoint_dtype, models::DType::Float16);
  EXPECT_EQ(s.bos_token_id, 1);
  EXPECT_EQ(s.eos_token_id, 2);
  EXPECT_EQ(s.chat_template, "[INST] {user} [/INST]");
  EXPECT_EQ(s.sentence_end_tokens, (std::vector<std::string>{".", "\xE2\x96\x81."}));
  EXPECT_EQ(s.tensor_names.at("q_proj"), "model.layers.{layer}.self_attn.q_proj.weight");
  EXPECT_EQ(s.tensor_names.count("q_bias"), 0u);
  EXPECT_EQ(s.tensor_names.count("router"), 0u);
  EXPECT_EQ(models::checkpoint_tensor_name(s, "down_proj", 31), "model.layers.31.mlp.down_proj.weight");
}

TEST_F(ModelConfig, Llama2LongContextAndRopeScaling) {
  json c = tiny_config("llama");
  c["rope_theta"] = 5000000.0;
  c["max_position_embeddings"] = 81920;
  c["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  ModelSpec s = load(c);
  EXPECT_DOUBLE_EQ(s.rope_theta, 5e6);
  EXPECT_EQ(s.max_position_embeddings, 81920);
  EXPECT_EQ(s.rope_scaling, models::RopeScaling::Linear);
  EXPECT_DOUBLE_EQ(s.rope_scaling_factor, 4.0);
  c["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2}};
  EXPECT_EQ(load(c).rope_scaling, models::RopeScaling::Dynamic);
  c["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(load(c).rope_scaling, models::RopeScaling::None);
  c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 2}};
  auto msg = load_error(c);
  EXPECT_THAT(msg, HasSubstr(config_path() + ": key 'rope_scaling.rope_type': 'yarn' is not supported "
                             "by family 'llama'; expected linear or dynamic"));
  c["rope_scaling"] = {{"type", "linear"}};
  EXPECT_THAT(load_error(c), HasSubstr("key 'rope_scaling.factor': missing or not a number"));
}

TEST_F(ModelConfig, LlamaAttentionBiasFromConfig) {
  json c = tiny_config("llama");
  c["attention_bias"] = true;
  ModelSpec s = load(c);
  EXPECT_TRUE(s.qkv_bias);
  EXPECT_TRUE(s.o_bias);
  EXPECT_EQ(s.tensor_names.at("o_bias"), "model.layers.{layer}.self_attn.o_proj.bias");
}

TEST_F(ModelConfig, MistralSlidingWindow) {
  json c = tiny_config("mistral");
  c["sliding_window"] = 4096;  // v0.1
  ModelSpec s = load(c);
  EXPECT_EQ(s.family, "mistral");
  EXPECT_EQ(s.sliding_window, 4096);
  EXPECT_EQ(s.sliding_window_first_layer, 0);
  EXPECT_EQ(s.n_group(), 2);
  c["sliding_window"] = nullptr;  // v0.2
  EXPECT_FALSE(load(c).sliding_window);
  c.erase("sliding_window");
  EXPECT_FALSE(load(c).sliding_window);
  c["sliding_window"] = 0;
  EXPECT_THAT(load_error(c), HasSubstr("key 'sliding_window': got 0, expected a positive integer or null"));
}

TEST_F(ModelConfig, MixtralMoe) {
  json c = tiny_config("mixtral");
  ModelSpec s = load(c);
  EXPECT_EQ(s.family, "mixtral");
  EXPECT_EQ(s.mlp, models::MlpKind::SparseMoe);
  EXPECT_EQ(s.n_expert, 3);
  EXPECT_EQ(s.n_expert_used, 2);
  EXPECT_EQ(s.tensor_names.count("gate_proj"), 0u);
  EXPECT_EQ(models::checkpoint_tensor_name(s, "expert_down_proj", 1, 2),
            "model.layers.1.block_sparse_moe.experts.2.w2.weight");
  EXPECT_EQ(models::checkpoint_tensor_name(s, "router", 0), "model.layers.0.block_sparse_moe.gate.weight");

  c.erase("num_local_experts");
  EXPECT_THAT(load_error(c), HasSubstr(config_path() + ": key 'num_local_experts': missing; family "
                                       "'mixtral' is a sparse MoE"));
  c["num_local_experts"] = 2;
  c["num_experts_per_tok"] = 3;
  EXPECT_THAT(load_error(c), HasSubstr("key 'num_experts_per_tok': got 3, expected 1..num_local_experts = 2"));
}

TEST_F(ModelConfig, Qwen15WithBiasAndSlidingWindowRule) {
  json c = {{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}, {"hidden_size", 5120},
            {"intermediate_size", 13696}, {"num_hidden_layers", 40}, {"num_attention_heads", 40},
            {"num_key_value_heads", 40}, {"max_position_embeddings", 32768}, {"rms_norm_eps", 1e-6},
            {"rope_theta", 1000000.0}, {"sliding_window", 32768}, {"use_sliding_window", false},
            {"max_window_layers", 35}, {"tie_word_embeddings", false}, {"torch_dtype", "bfloat16"},
            {"vocab_size", 152064}, {"bos_token_id", 151643}, {"eos_token_id", 151645}};
  ModelSpec s = load(c);
  EXPECT_EQ(s.family, "qwen2");
  EXPECT_TRUE(s.qkv_bias);
  EXPECT_FALSE(s.o_bias);
  EXPECT_FALSE(s.sliding_window);  // use_sliding_window false
  EXPECT_EQ(s.head_dim, 128);
  EXPECT_EQ(s.tensor_names.at("k_bias"), "model.layers.{layer}.self_attn.k_proj.bias");
  EXPECT_EQ(s.chat_template,
            "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(s.chat_system, "You are a helpful assistant.");
  EXPECT_EQ(s.stop_strings, (std::vector<std::string>{"\n", "<|im_end|>", "<|endoftext|>"}));
  c["use_sliding_window"] = true;
  s = load(c);
  EXPECT_EQ(s.sliding_window, 32768);
  EXPECT_EQ(s.sliding_window_first_layer, 35);
}

TEST_F(ModelConfig, YiIsLlamaUnlessForced) {
  json c = tiny_config("yi");
  c["num_key_value_heads"] = 1;
  c["rope_theta"] = 5000000.0;
  EXPECT_EQ(load(c).family, "llama");
  ModelSpec s = load(c, std::string("yi"));
  EXPECT_EQ(s.family, "yi");
  EXPECT_EQ(s.model_type, "llama");
  EXPECT_THAT(s.chat_template, HasSubstr("<|im_start|>user\n{user}<|im_end|>"));
  // The early Yi configs say model_type "Yi".
  c["model_type"] = "Yi";
  c["architectures"] = {"YiForCausalLM"};
  EXPECT_EQ(load(c).family, "yi");
}

TEST_F(ModelConfig, FamilySelectionErrors) {
  json c = tiny_config("llama");
  c["model_type"] = "gpt2";
  c["architectures"] = {"GPT2LMHeadModel"};
  auto msg = error_of<ConfigError>([&] { load(c); });
  EXPECT_THAT(msg, HasSubstr("no family claims model_type 'gpt2' or architectures [GPT2LMHeadModel]"));
  EXPECT_THAT(msg, HasSubstr("families: llama, mistral, mixtral, qwen2, yi"));
  // Matched by architecture when model_type is unknown.
  c["architectures"] = {"MistralForCausalLM"};
  EXPECT_EQ(load(c).family, "mistral");
  msg = error_of<ConfigError>([&] { load(tiny_config("llama"), std::string("lama")); });
  EXPECT_THAT(msg, HasSubstr("unknown family 'lama'; expected one of llama, mistral"));
  EXPECT_THAT(msg, HasSubstr("did you mean 'llama'?"));
  msg = error_of<ConfigError>([&] { models::load_family("mistrall"); });
  EXPECT_THAT(msg, HasSubstr("unknown family 'mistrall'"));
  EXPECT_THAT(msg, HasSubstr("did you mean 'mistral'?"));
}

TEST_F(ModelConfig, ValidationErrors) {
  json c = tiny_config("llama");
  c["num_key_value_heads"] = 3;
  EXPECT_THAT(load_error(c), HasSubstr(config_path() + ": num_attention_heads = 4 is not a multiple of "
                                       "num_key_value_heads = 3"));
  c = tiny_config("llama");
  c.erase("hidden_size");
  EXPECT_THAT(load_error(c), HasSubstr(config_path() + ": key 'hidden_size': missing; expected an integer"));
  c["hidden_size"] = "16";
  EXPECT_THAT(load_error(c), HasSubstr("key 'hidden_size': got string \"16\", expected an integer"));
  c["hidden_size"] = 16.5;
  EXPECT_THAT(load_error(c), HasSubstr("key 'hidden_size': got float 16.5, expected an integer"));
  c["hidden_size"] = 18;
  EXPECT_THAT(load_error(c), HasSubstr("key 'hidden_size': 18 is not a multiple of num_attention_heads = 4"));
  c["head_dim"] = 6;  // explicit head_dim: hidden_size need not be n_head * head_dim
  EXPECT_EQ(load(c).head_dim, 6);
  c["head_dim"] = 5;
  EXPECT_THAT(load_error(c), HasSubstr("key 'head_dim': got 5, expected an even number"));
  c = tiny_config("llama");
  c["num_hidden_layers"] = 0;
  EXPECT_THAT(load_error(c), HasSubstr("key 'num_hidden_layers': got 0, expected a positive integer"));
  c = tiny_config("llama");
  c["eos_token_id"] = {2, 40};
  EXPECT_THAT(load_error(c), HasSubstr("key 'eos_token_id': got 40, expected a token id in [0, vocab_size = 32)"));
  c["eos_token_id"] = {5, 7};
  ModelSpec s = load(c);
  EXPECT_EQ(s.eos_token_id, 5);
  EXPECT_EQ(s.eos_token_ids, (std::vector<int64_t>{5, 7}));
  c = tiny_config("llama");
  c["torch_dtype"] = "int8";
  EXPECT_THAT(load_error(c), HasSubstr("key 'torch_dtype': got 'int8', expected bfloat16, float16 or float32"));
  c["torch_dtype"] = "torch.bfloat16";
  EXPECT_EQ(load(c).checkpoint_dtype, models::DType::BFloat16);
  c["tie_word_embeddings"] = "yes";
  EXPECT_THAT(load_error(c), HasSubstr("key 'tie_word_embeddings': got string \"yes\", expected true or false"));
  c = tiny_config("llama");
  c["rope_theta"] = -1;
  EXPECT_THAT(load_error(c), HasSubstr("key 'rope_theta': got -1, expected a positive number"));

  loading_test::write_bytes(m_dir.path() / "config.json", "{\"hidden_size\": ");
  EXPECT_THAT(error_of<ModelError>([&] { models::load_model_spec(m_dir.path()); }),
              HasSubstr(config_path() + ": not valid JSON"));
  fs::remove(m_dir.path() / "config.json");
  EXPECT_THAT(error_of<ModelError>([&] { models::load_model_spec(m_dir.path()); }),
              HasSubstr(config_path() + ": cannot read"));
}

TEST_F(ModelConfig, SpecToConfigJsonRoundTrip) {
  for (const std::string family : {"llama", "mistral", "mixtral", "qwen2", "yi"}) {
    SCOPED_TRACE(family);
    json c = tiny_config(family);
    if (family == "mistral" || family == "qwen2") {
      c["sliding_window"] = 8;
      c["use_sliding_window"] = true;
      c["max_window_layers"] = 1;
    }
    c["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
    c["eos_token_id"] = {2, 3};
    const ModelSpec a = loading_test::spec_from(c, family);
    const ModelSpec b = loading_test::spec_from(models::model_spec_to_config_json(a), family);
    EXPECT_EQ(a.hidden_size, b.hidden_size);
    EXPECT_EQ(a.n_kv_head, b.n_kv_head);
    EXPECT_EQ(a.head_dim, b.head_dim);
    EXPECT_EQ(a.sliding_window, b.sliding_window);
    EXPECT_EQ(a.sliding_window_first_layer, b.sliding_window_first_layer);
    EXPECT_EQ(a.rope_scaling, b.rope_scaling);
    EXPECT_EQ(a.n_expert, b.n_expert);
    EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
    EXPECT_EQ(a.tensor_names, b.tensor_names);
    EXPECT_EQ(a.checkpoint_dtype, b.checkpoint_dtype);
  }
}

// ---------------------------------------------------------------------------------------------
// Family files

const char* kMinimalFamily = "[family]\nname = toy\n";

TEST(FamilyFile, DefaultsAreLlamaNames) {
  models::FamilyInfo f = models::parse_family_text(kMinimalFamily, "toy.ini");
  EXPECT_EQ(f.name, "toy");
  EXPECT_EQ(f.mlp, models::MlpKind::GatedSilu);
  EXPECT_EQ(f.tensor_names.at("embed"), "model.embed_tokens.weight");
  EXPECT_EQ(f.tensor_names.at("expert_up_proj"), "model.layers.{layer}.block_sparse_moe.experts.{expert}.w3.weight");
  EXPECT_TRUE(f.chat_template.empty());
  EXPECT_TRUE(f.model_types.empty());
  EXPECT_FALSE(models::family_schema().describe().empty());
}

TEST(FamilyFile, Errors) {
  auto err = [](const std::string& text) {
    return error_of<ConfigError>([&] { models::parse_family_text(text, "bad.ini"); });
  };
  EXPECT_THAT(err("[arch]\nmlp = gated_silu\n"), HasSubstr("missing required key 'name' in section [family]"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[arch]\nmlp = gelu\n"),
              HasSubstr("[family] bad.ini: [arch] mlp = 'gelu'; expected gated_silu or sparse_moe"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[arch]\nmpl = gated_silu\n"), HasSubstr("did you mean 'arch.mlp'"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[arch]\nnorm = layer\n"), HasSubstr("norm = 'layer' is not supported"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[arch]\nqkv_bias = maybe\n"), HasSubstr("expected true or false"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[arch]\nrope_scaling = linear, yarn\n"),
              HasSubstr("rope_scaling lists 'yarn'; expected linear and/or dynamic"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[arch]\nsliding_window = always\n"),
              HasSubstr("sliding_window = 'always'; expected none, config or use_sliding_window"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[tensors]\nq_proj = model.layers.self_attn.q_proj.weight\n"),
              HasSubstr("[tensors] q_proj = 'model.layers.self_attn.q_proj.weight': a per-layer tensor needs {layer}"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[tensors]\nembed = model.{layer}.embed\n"),
              HasSubstr("a model-wide tensor takes no {layer} or {expert} placeholder"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[tensors]\nexpert_up_proj = model.layers.{layer}.w3\n"),
              HasSubstr("a per-expert tensor needs both {layer} and {expert}"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[tensors]\nq_proj = model.layers.{lyr}.q\n"),
              HasSubstr("unknown placeholder {lyr}; expected {layer} or {expert}"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[tensors]\nfoo_proj = x\n"), HasSubstr("unknown key 'foo_proj'"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[chat]\ntemplate = \"{{ messages }}\"\n"),
              HasSubstr("unknown placeholder {{ messages }"));
  EXPECT_THAT(err(std::string(kMinimalFamily) + "[chat]\ntemplate = \"{system} hi\"\n"),
              HasSubstr("[chat] template has no {user} placeholder"));
}

TEST(FamilyFile, NameMustMatchFileAndDirectoryOverride) {
  test_support::TempDir dir("family-dir");
  test_support::write_text_file(dir.path() / "other.ini", kMinimalFamily);
  EXPECT_THAT(error_of<ConfigError>([&] { models::load_families(dir.path()); }),
              HasSubstr("[family] name = 'toy' but the file is named 'other.ini'; expected name = other"));
  fs::remove(dir.path() / "other.ini");
  test_support::write_text_file(dir.path() / "toy.ini",
                                std::string(kMinimalFamily) + "model_types = llama\n");
  test_support::write_text_file(dir.path() / "toy2.ini", "[family]\nname = toy2\nmodel_types = llama\n");
  auto families = models::load_families(dir.path());
  ASSERT_EQ(families.size(), 2u);
  EXPECT_THAT(error_of<ConfigError>([&] {
                models::select_family(families, "llama", {}, std::nullopt, "x/config.json");
              }),
              HasSubstr("model_type 'llama' is claimed by several families (toy, toy2)"));
  EXPECT_EQ(models::select_family(families, "llama", {}, std::string("toy2"), "x").name, "toy2");

  setenv("RHEAD_FAMILY_DIR", dir.path().c_str(), 1);
  EXPECT_EQ(models::default_family_dir(), dir.path());
  unsetenv("RHEAD_FAMILY_DIR");
  EXPECT_TRUE(fs::exists(models::default_family_dir() / "llama.ini"));
  EXPECT_THAT(error_of<ConfigError>([&] { models::load_families(dir.path() / "nope"); }),
              HasSubstr("family directory does not exist"));
}

}  // namespace
