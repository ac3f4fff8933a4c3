#include "stages/registry.h"

#include "stages/selftest/selftest_stage.h"

namespace stages {

void register_builtin_stages(pipeline::StageRegistry& registry) {
  registry.add(std::make_unique<SelftestStage>());
}

}  // namespace stages
