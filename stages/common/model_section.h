// The job file's [model.<name>] sections, shared by the stages that run models (generate, ablate):
//   [model.base]
//   path = /models/llama-2-7b-80k   Hugging Face folder (config.json, *.safetensors, tokenizer)
//   family = auto                   family file name (models/families/<family>.ini); auto: from config.json
//   dtype = float32                 compute dtype: float32 or bfloat16
//   chat = false                    wrap prompts in the family's chat template
//   period_provider = LLaMA         faithful prompts: the official --model_provider for period ids
//                                   (LLaMA, Mistral, GLM, or "own" for the model's own "." pieces)
#pragma once

#include <memory>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "models/checkpoint.h"
#include "models/decoder.h"
#include "models/tokenizer/tokenizer.h"
#include "pipeline/core/config.h"
#include "pipeline/runner/stage.h"

namespace stages {

struct ModelEntry {
  std::string name;  // the <name> of [model.<name>]
  std::string path;
  std::string family;  // "auto" or a family name
  models::DType dtype = models::DType::Float32;
  bool chat = false;
  std::string period_provider;
};

// Declares the [model.*] keys (once, whichever stage asks first).
void declare_model_sections(pipeline::ConfigSchema& schema);
// Every [model.<name>] of the job, in file order; ConfigError when there is none or a value is bad.
std::vector<ModelEntry> read_model_entries(const pipeline::Config& config);

// The files of every [model.<name>] folder, each an InputFile of group <name>, so that replacing a
// model's weights or tokenizer at the same path recomputes that model's cells: every regular file
// in the folder (not below it) but hidden ones and train_meta.json (the train stage's log of how the
// weights were made, rewritten with them), and the family file the model resolves to
// (models/families/<family>.ini). A folder that does not exist is listed as itself.
std::vector<pipeline::InputFile> model_input_files(const pipeline::Config& config);

// `rhead run --dry-run`: one line per [model.<name>] with its folder and whether config.json is there.
void plan_models(const pipeline::Config& config, std::ostream& out);
// "<what> <path>" with "(found)" or "(NOT FOUND)", for dry-run plans.
std::string plan_path(const std::string& what, const std::filesystem::path& path);

// A model ready to run: its folder (memory-mapped weights), decoder and tokenizer.
struct LoadedModel {
  ModelEntry entry;
  models::ModelFolder folder;
  std::unique_ptr<models::Decoder> decoder;
  std::unique_ptr<models::Tokenizer> tokenizer;
};
// Loads and validates the folder, builds the decoder (threads set by the caller), loads the tokenizer.
// prefill_chunk and prefill_call: models::DecoderOptions.
std::unique_ptr<LoadedModel> load_model(const ModelEntry& entry, int64_t prefill_chunk, int64_t prefill_call);

// The folder's config.json (family resolved, tensors not checked): shapes for planning and store
// headers on ranks that do not load the model.
models::ModelFolder read_model_shapes(const ModelEntry& entry);

}  // namespace stages
