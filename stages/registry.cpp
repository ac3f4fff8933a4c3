#include "stages/registry.h"

#include "stages/ablate/ablate_stage.h"
#include "stages/correlate/correlate_stage.h"
#include "stages/generate/generate_stage.h"
#include "stages/score/score_stage.h"
#include "stages/selftest/selftest_stage.h"
#include "stages/train/train_stage.h"

namespace stages {

void register_builtin_stages(pipeline::StageRegistry& registry) {
  registry.add(std::make_unique<SelftestStage>());
  registry.add(std::make_unique<TrainStage>());
  registry.add(std::make_unique<GenerateStage>());
  registry.add(std::make_unique<ScoreStage>());
  registry.add(std::make_unique<CorrelateStage>());
  registry.add(std::make_unique<AblateStage>());
}

}  // namespace stages
