// Checkpoint validation against a spec, model-folder save -> load round trips for every family,
// tokenizer detection and model-info.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "models/checkpoint.h"
#include "models/model_info.h"
#include "tests/common/test_support.h"
#include "tests/loading/loading_test_util.h"

namespace {

namespace fs = std::filesystem;
using loading_test::error_of;
using loading_test::random_checkpoint;
using loading_test::spec_from;
using loading_test::tiny_config;
using models::ModelError;
using models::ModelSpec;
using models::TensorMap;
using ::testing::HasSubstr;

TEST(ExpectedTensors, CountsAndShapes) {
  const ModelSpec llama = spec_from(tiny_config("llama"), "llama");
  auto t = models::expected_tensors(llama);
  EXPECT_EQ(t.size(), 3u + 2u * 9u);  // embed, final_norm, lm_head + 9 per layer
  EXPECT_EQ(t.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(t.front().shape, (std::vector<int64_t>{32, 16}));
  const auto k = std::find_if(t.begin(), t.end(), [](const auto& e) { return e.logical == "k_proj"; });
  EXPECT_EQ(k->shape, (std::vector<int64_t>{8, 16}));  // 2 KV heads * head_dim 4
  EXPECT_EQ(k->origin, "num_key_value_heads * head_dim = 2 * 4, hidden_size = 16");
  // 32*16*2 (embed, lm_head) + 16 + 2 * (16*2 + 16*16*2 + 8*16*2 + 24*16*3)
  EXPECT_EQ(models::parameter_count(llama), 32 * 16 * 2 + 16 + 2 * (32 + 512 + 256 + 1152));

  const ModelSpec qwen = spec_from(tiny_config("qwen2"), "qwen2");
  EXPECT_EQ(models::expected_tensors(qwen).size(), 3u + 2u * 12u);
  const ModelSpec mixtral = spec_from(tiny_config("mixtral"), "mixtral");
  EXPECT_EQ(models::expected_tensors(mixtral).size(), 3u + 2u * (7u + 3u * 3u));
}

TEST(ValidateCheckpoint, MissingWrongShapeWrongDtype) {
  const ModelSpec spec = spec_from(tiny_config("mixtral"), "mixtral");
  TensorMap good = random_checkpoint(spec);
  EXPECT_NO_THROW(models::validate_checkpoint(spec, good, "toy"));

  TensorMap bad = good;
  bad.erase("model.layers.1.block_sparse_moe.experts.2.w3.weight");
  bad["model.layers.0.self_attn.q_proj.weight"] = torch::zeros({8, 16});
  bad["model.norm.weight"] = torch::zeros({16}, torch::kBFloat16);
  bad["unused.extra"] = torch::zeros({1});  // ignored
  const std::string msg = error_of<ModelError>([&] { models::validate_checkpoint(spec, bad, "toy"); });
  EXPECT_THAT(msg, HasSubstr("[model] toy: checkpoint does not match the mixtral spec (3 problems)"));
  EXPECT_THAT(msg, HasSubstr("tensor 'model.layers.0.self_attn.q_proj.weight' (q_proj, layer 0): shape "
                             "[8, 16] in checkpoint, expected [16, 16] from num_attention_heads * "
                             "head_dim = 4 * 4, hidden_size = 16"));
  EXPECT_THAT(msg, HasSubstr("tensor 'model.layers.1.block_sparse_moe.experts.2.w3.weight' "
                             "(expert_up_proj, layer 1, expert 2): missing from the checkpoint; "
                             "expected shape [24, 16] from intermediate_size = 24, hidden_size = 16"));
  EXPECT_THAT(msg, HasSubstr("tensor 'model.norm.weight' (final_norm): dtype bfloat16 in checkpoint, "
                             "expected float32"));

  // Many problems: the first 8 are listed, then a count.
  TensorMap empty;
  const std::string many = error_of<ModelError>([&] { models::validate_checkpoint(spec, empty, "toy"); });
  EXPECT_THAT(many, HasSubstr("(35 problems)"));
  EXPECT_THAT(many, HasSubstr("... and 27 more"));
}

TEST(ValidateCheckpoint, TiedEmbeddingsMakeLmHeadOptional) {
  nlohmann::json c = tiny_config("llama");
  c["tie_word_embeddings"] = true;
  const ModelSpec spec = spec_from(c, "llama");
  TensorMap t = random_checkpoint(spec);
  t.erase("lm_head.weight");
  EXPECT_NO_THROW(models::validate_checkpoint(spec, t, "toy"));
  t["lm_head.weight"] = torch::zeros({3, 16});  // present: checked
  EXPECT_THAT(error_of<ModelError>([&] { models::validate_checkpoint(spec, t, "toy"); }),
              HasSubstr("tensor 'lm_head.weight' (lm_head): shape [3, 16]"));
  EXPECT_EQ(models::parameter_count(spec), 32 * 16 + 16 + 2 * (32 + 512 + 256 + 1152));
}

class ModelFolderTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelFolderTest, SaveLoadRoundTrip) {
  const std::string family = GetParam();
  test_support::TempDir dir("model-folder-" + family);
  nlohmann::json c = tiny_config(family);
  c["torch_dtype"] = "bfloat16";
  const ModelSpec spec = spec_from(c, family);
  const TensorMap tensors = random_checkpoint(spec, 3);

  for (uint64_t shard_bytes : {uint64_t{0}, uint64_t{2048}}) {
    SCOPED_TRACE(shard_bytes);
    models::SaveOptions options;
    options.max_shard_bytes = shard_bytes;
    models::save_model_folder(dir.path(), spec, tensors, options);
    EXPECT_EQ(fs::exists(dir.path() / "model.safetensors.index.json"), shard_bytes > 0);

    models::LoadOptions load;
    if (family == "yi") load.family = "yi";  // model_type llama
    const models::ModelFolder m = models::load_model_folder(dir.path(), load);
    EXPECT_EQ(m.spec.family, family);
    EXPECT_EQ(m.spec.hidden_size, spec.hidden_size);
    EXPECT_EQ(m.spec.tensor_names, spec.tensor_names);
    EXPECT_EQ(m.spec.checkpoint_dtype, models::DType::BFloat16);
    EXPECT_EQ(m.names().size(), tensors.size());
    for (const auto& kv : tensors) {
      ASSERT_TRUE(m.contains(kv.first)) << kv.first;
      EXPECT_TRUE(torch::equal(m.tensor(kv.first), kv.second)) << kv.first;
    }
    EXPECT_TRUE(torch::equal(m.weight("v_proj", 1), tensors.at("model.layers.1.self_attn.v_proj.weight")));
    EXPECT_EQ(m.tokenizer_kind, models::TokenizerKind::None);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, ModelFolderTest,
                         ::testing::Values("llama", "mistral", "mixtral", "qwen2", "yi"));

TEST(ModelFolder, DtypeFromWeightsTokenizerAndErrors) {
  test_support::TempDir dir("model-folder-misc");
  nlohmann::json c = tiny_config("llama");
  const ModelSpec spec = spec_from(c, "llama");  // float32
  models::save_model_folder(dir.path(), spec, random_checkpoint(spec));

  // config.json says bfloat16 but the weights are float32: the weights win.
  c["torch_dtype"] = "bfloat16";
  loading_test::write_config(dir.path(), c);
  test_support::write_text_file(dir.path() / "tokenizer.json", "{}");
  models::ModelFolder m = models::load_model_folder(dir.path());
  EXPECT_EQ(m.spec.checkpoint_dtype, models::DType::Float32);
  EXPECT_EQ(m.tokenizer_kind, models::TokenizerKind::Json);
  EXPECT_EQ(m.tokenizer_path, dir.path() / "tokenizer.json");
  test_support::write_text_file(dir.path() / "tokenizer.model", "x");
  m = models::load_model_folder(dir.path());
  EXPECT_EQ(m.tokenizer_kind, models::TokenizerKind::SentencePiece);
  EXPECT_EQ(m.tokenizer_json_path, dir.path() / "tokenizer.json");

  const std::string info = models::model_info(dir.path());
  EXPECT_THAT(info, HasSubstr("family              llama"));
  EXPECT_THAT(info, HasSubstr("4 query heads, 2 KV heads (GQA 2:1), head_dim 4"));
  EXPECT_THAT(info, HasSubstr("context_length      64"));
  EXPECT_THAT(info, HasSubstr("parameters          4.94K (4944)"));
  EXPECT_THAT(info, HasSubstr("dtype               float32"));
  EXPECT_THAT(info, HasSubstr("tokenizer           sentencepiece (tokenizer.model)"));

  // A config whose dims disagree with the weights.
  c["intermediate_size"] = 32;
  loading_test::write_config(dir.path(), c);
  EXPECT_THAT(error_of<ModelError>([&] { models::load_model_folder(dir.path()); }),
              HasSubstr("(gate_proj, layer 0): shape [24, 16] in checkpoint, expected [32, 16] from "
                        "intermediate_size = 32, hidden_size = 16"));
  models::LoadOptions no_validate;
  no_validate.validate = false;
  EXPECT_NO_THROW(models::load_model_folder(dir.path(), no_validate));

  fs::remove(dir.path() / "model.safetensors");
  EXPECT_THAT(error_of<ModelError>([&] { models::load_model_folder(dir.path()); }),
              HasSubstr("no model.safetensors.index.json, model.safetensors or other *.safetensors file"));
  EXPECT_THAT(error_of<ModelError>([&] { models::load_model_folder(dir.path() / "nope"); }),
              HasSubstr("not a folder"));
}

TEST(ModelFolder, SaveRejectsMismatchedTensors) {
  test_support::TempDir dir("model-folder-save");
  const ModelSpec spec = spec_from(tiny_config("qwen2"), "qwen2");
  TensorMap t = random_checkpoint(spec);
  t.erase("model.layers.0.self_attn.q_proj.bias");
  EXPECT_THAT(error_of<ModelError>([&] { models::save_model_folder(dir.path(), spec, t); }),
              HasSubstr("tensor 'model.layers.0.self_attn.q_proj.bias' (q_bias, layer 0): missing"));
  EXPECT_FALSE(fs::exists(dir.path() / "config.json"));
  // Tensors in another float dtype are converted to spec.checkpoint_dtype.
  t = random_checkpoint(spec);
  for (auto& kv : t) kv.second = kv.second.to(torch::kFloat16);
  models::save_model_folder(dir.path(), spec, t);
  auto m = models::load_model_folder(dir.path());
  EXPECT_EQ(m.tensor("model.norm.weight").scalar_type(), torch::kFloat32);
}

}  // namespace
