// A tiny needle-in-a-haystack world on disk for generate tests and benches: a random Llama-family
// model (config.json + model.safetensors), a WordLevel tokenizer.json over the world's words, a filler
// haystack folder and a needles.jsonl. Random weights retrieve nothing; the machinery is what is tested.
#pragma once

#include <filesystem>

namespace test_support {

// Writes <dir>/model, <dir>/haystack/filler.txt and <dir>/needles.jsonl (2 needles).
void write_world(const std::filesystem::path& dir, int hidden = 32, int layers = 2, int heads = 4);

}  // namespace test_support
