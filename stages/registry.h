// The one explicit list of built-in stages (no static self-registration: easy to grep, never dropped
// by the linker).
#pragma once

#include "pipeline/runner/stage.h"

namespace stages {

void register_builtin_stages(pipeline::StageRegistry& registry);

}  // namespace stages
