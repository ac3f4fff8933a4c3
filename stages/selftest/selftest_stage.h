// selftest: synthetic cells through the real sharding, shard stores, resume, merge and Communicator.
// No model is involved, so the whole frame can be exercised end to end on any machine (and it is the
// cluster smoke test: `mpirun -np N rhead run jobs/selftest.ini`).
//
// Each cell (group, needle, length, depth) gets a pseudo-random "capture" [step, layer, head] of
// positions drawn from a seed and the cell id alone, and a per-head hit count: how many steps point
// inside a 16-token "needle span" at the cell's depth. Because a cell's data is a pure function of
// (seed, id), the summary is an all-reduce of per-rank partial sums re-derived on every rank, and rank 0
// checks every merged cell against the same function (store integrity after kills and merges).
#pragma once

#include "pipeline/runner/stage.h"

namespace stages {

class SelftestStage final : public pipeline::Stage {
 public:
  std::string name() const override { return "selftest"; }
  std::string summary() const override {
    return "synthetic cells through sharding, stores, resume and collectives (smoke test)";
  }
  void declare(pipeline::ConfigSchema& schema) const override;
  void validate(const pipeline::StageContext& ctx) const override;
  void run(pipeline::StageContext& ctx) override;
  void inspect(const pipeline::store::Group& root, std::ostream& out) const override;
};

}  // namespace stages
