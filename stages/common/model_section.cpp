#include "stages/common/model_section.h"

#include <optional>

#include "models/model_config.h"
#include "pipeline/core/error.h"
#include "pipeline/core/logging.h"

namespace stages {

using pipeline::ConfigError;
using pipeline::KeyType;

void declare_model_sections(pipeline::ConfigSchema& schema) {
  if (schema.find("model.*.path")) return;
  schema.required("model.*.path", KeyType::String, "Hugging Face model folder (config.json, safetensors, tokenizer)")
      .optional("model.*.family", KeyType::String, "auto", "family file (models/families/<family>.ini); auto: "
                "chosen from config.json model_type / architectures")
      .optional("model.*.dtype", KeyType::String, "float32", "compute dtype: float32 or bfloat16")
      .optional("model.*.chat", KeyType::Bool, "false", "wrap prompts in the family's chat template")
      .optional("model.*.period_provider", KeyType::String, "LLaMA",
                "faithful prompts: official --model_provider deciding the period ids (LLaMA, Mistral, GLM, own)");
}

std::string plan_path(const std::string& what, const std::filesystem::path& path) {
  return what + " " + path.string() + (std::filesystem::exists(path) ? " (found)" : " (NOT FOUND)");
}

void plan_models(const pipeline::Config& config, std::ostream& out) {
  for (const ModelEntry& e : read_model_entries(config)) {
    out << "  model " << e.name << ": " << plan_path("folder", e.path)
        << (std::filesystem::exists(e.path) && !std::filesystem::exists(std::filesystem::path(e.path) / "config.json") ? ", but no config.json in it" : "")
        << (e.chat ? ", chat template" : "") << "\n";
  }
}

std::vector<pipeline::InputFile> model_input_files(const pipeline::Config& config) {
  namespace fs = std::filesystem;
  std::vector<pipeline::InputFile> out;
  for (const auto& name : config.section_names("model.*")) {
    const fs::path folder = config.get_string("model." + name + ".path");
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) {
      out.push_back({name, folder});
      continue;
    }
    for (const auto& f : fs::directory_iterator(folder)) {
      const std::string file = f.path().filename().string();
      if (f.is_regular_file() && file.rfind('.', 0) != 0 && file != "train_meta.json") out.push_back({name, f.path()});
    }
    // The family file the model resolves to (tensor names, chat template, stop strings). Adding another
    // family file leaves this model's cells alone. A folder that does not resolve is the stage checks' to
    // report.
    try {
      const std::string family = config.get_string("model." + name + ".family");
      const models::ModelSpec spec = models::load_model_spec(
          folder / "config.json", family == "auto" ? std::nullopt : std::optional<std::string>(family));
      out.push_back({name, models::default_family_dir() / (spec.family + ".ini")});
    } catch (const std::exception&) {
    }
  }
  return out;
}

std::vector<ModelEntry> read_model_entries(const pipeline::Config& config) {
  std::vector<ModelEntry> out;
  for (const auto& name : config.section_names("model.*")) {
    ModelEntry e;
    e.name = name;
    const std::string p = "model." + name + ".";
    e.path = config.get_string(p + "path");
    e.family = config.get_string(p + "family");
    std::string dtype = config.get_string(p + "dtype");
    if (dtype == "float32") {
      e.dtype = models::DType::Float32;
    } else if (dtype == "bfloat16") {
      e.dtype = models::DType::BFloat16;
    } else {
      throw ConfigError(pipeline::str_cat("[config] ", config.source(), ": [model.", name, "] dtype: got '", dtype,
                                          "', expected float32 or bfloat16"));
    }
    e.chat = config.get_bool(p + "chat");
    e.period_provider = config.get_string(p + "period_provider");
    RHEAD_CHECK(name.find('.') == std::string::npos && name.find('/') == std::string::npos, ConfigError,
                "[config] ", config.source(), ": model name '", name, "' must not contain '.' or '/'");
    out.push_back(e);
  }
  RHEAD_CHECK(!out.empty(), ConfigError, "[config] ", config.source(),
              ": no [model.<name>] section; expected at least one, e.g.\n  [model.base]\n  path = /models/llama-2-7b");
  return out;
}

models::ModelFolder read_model_shapes(const ModelEntry& entry) {
  models::LoadOptions options;
  if (entry.family != "auto") options.family = entry.family;
  options.validate = false;
  return models::load_model_folder(entry.path, options);
}

std::unique_ptr<LoadedModel> load_model(const ModelEntry& entry, int64_t prefill_chunk, int64_t prefill_call) {
  auto m = std::make_unique<LoadedModel>();
  m->entry = entry;
  models::LoadOptions options;
  if (entry.family != "auto") options.family = entry.family;
  m->folder = models::load_model_folder(entry.path, options);
  models::DecoderOptions dopt;
  dopt.compute_dtype = entry.dtype;
  dopt.prefill_chunk = prefill_chunk;
  dopt.prefill_call = prefill_call;
  const models::ModelFolder& folder = m->folder;
  m->decoder = std::make_unique<models::Decoder>(
      folder.spec, [&folder](const std::string& name) { return folder.tensor(name); }, dopt);
  m->tokenizer = models::load_tokenizer(entry.path);
  pipeline::log::info("model ", entry.name, ": ", folder.spec.family, ", ", folder.spec.n_layer, " layers x ",
                      folder.spec.n_head, " heads (", folder.spec.n_kv_head, " kv), ",
                      models::dtype_name(entry.dtype), ", tokenizer ", m->tokenizer->kind());
  return m;
}

}  // namespace stages
