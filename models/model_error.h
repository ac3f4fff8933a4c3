// Errors of the models layer's loading code: a model folder, checkpoint file or config.json that is
// unusable. A ModelError is an InputError (user data), so main() reports it like any input problem.
// Message prefixes: "[safetensors] <file>: ...", "[model] <file or folder>: ...".
// Family files (models/families/*.ini) throw pipeline::ConfigError ("[family] <file>: ...").
#pragma once

#include "pipeline/core/error.h"

namespace models {

class ModelError : public pipeline::InputError {
 public:
  using pipeline::InputError::InputError;
};

}  // namespace models
