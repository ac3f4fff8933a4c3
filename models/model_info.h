// `rhead model-info DIR`: a human-readable summary of a model folder.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace models {

// Loads the folder (validating it) and describes: family, model_type / architecture, dimensions,
// attention layout (MHA/GQA), MLP kind (experts), rope, context length, sliding window, parameter
// count, checkpoint dtype and size, shard count, tokenizer kind and file, chat template.
// Throws what load_model_folder throws.
std::string model_info(const std::filesystem::path& path,
                       const std::optional<std::string>& family = std::nullopt);

}  // namespace models
