// A tiny needle-in-a-haystack world on disk for generate tests and benches: a random Llama-family
// model (config.json + model.safetensors), a WordLevel tokenizer.json over the world's words, a filler
// haystack folder and a needles.jsonl. Random weights retrieve nothing; the machinery is what is tested.
#pragma once

#include <filesystem>
#include <string>

namespace test_support {

// Writes <dir>/model, <dir>/haystack/filler.txt and <dir>/needles.jsonl (2 needles).
// family: llama (GQA, heads / 2 KV heads), qwen2 (also q/k/v bias) or mixtral (also MoE, 4 experts,
// top-2); bf16: store the weights as bfloat16 (config.json torch_dtype follows).
void write_world(const std::filesystem::path& dir, int hidden = 32, int layers = 2, int heads = 4,
                 const std::string& family = "llama", bool bf16 = false);

}  // namespace test_support
