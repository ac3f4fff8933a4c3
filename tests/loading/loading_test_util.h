// Helpers shared by the loading tests: raw safetensors bytes, tiny configs, random checkpoints.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/checkpoint.h"
#include "tests/common/test_support.h"

namespace loading_test {

// 8-byte little-endian length + header text + data bytes, written to `path`.
void write_raw_safetensors(const std::filesystem::path& path, const std::string& header,
                           const std::string& data);
std::string read_bytes(const std::filesystem::path& path);
void write_bytes(const std::filesystem::path& path, const std::string& bytes);

// A tiny config.json (Llama-like dims: vocab 32, hidden 16, 2 layers, 4 heads, 2 KV heads,
// intermediate 24, max_position_embeddings 64) with model_type/architectures of `family`.
nlohmann::json tiny_config(const std::string& family);
void write_config(const std::filesystem::path& dir, const nlohmann::json& config);

// Spec of `config` under `family` from the shipped family files.
models::ModelSpec spec_from(const nlohmann::json& config, const std::string& family);

// Random tensors for every expected tensor of `spec`, in spec.checkpoint_dtype.
models::TensorMap random_checkpoint(const models::ModelSpec& spec, uint64_t seed = 0);

using test_support::error_of;

}  // namespace loading_test
