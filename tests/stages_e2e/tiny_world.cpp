#include "tests/stages_e2e/tiny_world.h"

#include <torch/torch.h>

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/checkpoint.h"
#include "models/model_config.h"
#include "models/tokenizer/tokenizer.h"
#include "tests/common/test_support.h"

namespace test_support {

namespace fs = std::filesystem;

namespace {
const char* kWords[] = {"the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "tree", "old", "small",
                        "green", "house", "river", "near", "slowly", "quickly", "and", "then"};

}  // namespace

void write_world(const fs::path& dir, int hidden, int layers, int heads, const std::string& family, bool bf16) {
  // Filler sentences from a fixed word list, each ending in " ." (its own token for WordLevel).
  fs::create_directories(dir / "haystack");
  std::ostringstream hay;
  uint64_t state = 12345;
  for (int s = 0; s < 400; ++s) {
    int n = 5 + static_cast<int>(state % 6);
    for (int w = 0; w < n; ++w) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      hay << kWords[(state >> 33) % 20] << " ";
    }
    hay << ". ";
  }
  write_text_file(dir / "haystack" / "filler.txt", hay.str());
  write_text_file(
      dir / "needles.jsonl",
      "{\"needle\": \"the secret code is blue seven .\", \"question\": \"what is the secret code ?\", "
      "\"real_needle\": \"blue seven\"}\n"
      "{\"needle\": \"the best river is the amber river .\", \"question\": \"which river is best ?\", "
      "\"real_needle\": \"the amber river\"}\n");

  std::vector<std::string> vocab = {"<unk>", "<s>", "</s>", ".", "?", ":", ",", "based", "content", "of",
                                    "book", "question", "answer", "what", "is", "secret", "code", "blue", "seven",
                                    "best", "which", "amber", "Based", "Question:", "Answer:"};
  for (const char* w : kWords) {
    if (std::find(vocab.begin(), vocab.end(), w) == vocab.end()) vocab.push_back(w);
  }
  fs::create_directories(dir / "model");
  models::write_wordlevel_tokenizer_json(dir / "model" / "tokenizer.json", vocab, "<unk>", {"<s>", "</s>"});
  models::TokenizerConfigSpec tc;
  tc.bos_token = "<s>";
  tc.eos_token = "</s>";
  tc.unk_token = "<unk>";
  models::write_tokenizer_config_json(dir / "model" / "tokenizer_config.json", tc);

  std::string arch = "\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\"";
  if (family == "qwen2") {
    arch = "\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", \"use_sliding_window\": false";
  } else if (family == "mixtral") {
    arch = "\"architectures\": [\"MixtralForCausalLM\"], \"model_type\": \"mixtral\", "
           "\"num_local_experts\": 4, \"num_experts_per_tok\": 2, \"sliding_window\": null";
  } else if (family != "llama") {
    throw std::invalid_argument("write_world: family '" + family + "', expected llama, qwen2 or mixtral");
  }
  write_text_file(
      dir / "model" / "config.json",
      "{" + arch + ", \"hidden_size\": " +
          std::to_string(hidden) + ", \"intermediate_size\": " + std::to_string(2 * hidden) +
          ", \"num_hidden_layers\": " + std::to_string(layers) + ", \"num_attention_heads\": " +
          std::to_string(heads) + ", \"num_key_value_heads\": " + std::to_string(heads / 2) +
          ", \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
      "\"max_position_embeddings\": 1024, \"vocab_size\": " + std::to_string(vocab.size()) +
          ", \"tie_word_embeddings\": false, \"bos_token_id\": 1, \"eos_token_id\": 2, \"torch_dtype\": \"float32\"}");
  models::ModelSpec spec = models::load_model_spec(dir / "model" / "config.json");
  if (bf16) spec.checkpoint_dtype = models::DType::BFloat16;  // save_model_folder converts the tensors
  torch::manual_seed(7);
  models::TensorMap tensors;
  for (const auto& t : models::expected_tensors(spec)) {
    if (!t.required) continue;
    bool is_norm = t.logical.find("norm") != std::string::npos;
    tensors[t.name] = is_norm ? torch::ones(t.shape) : torch::randn(t.shape) * 0.3;
  }
  models::save_model_folder(dir / "model", spec, tensors);
}


}  // namespace test_support
