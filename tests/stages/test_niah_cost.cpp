// Sharding estimates of NIAH cells: the attention crossover of a model and the cost of a cell's prefill
// rows (stages/niah/niah_cell.h), against hand-worked values.
#include <gtest/gtest.h>

#include "models/model_spec.h"
#include "pipeline/core/sharding.h"
#include "stages/niah/niah_cell.h"

namespace {

models::ModelSpec spec(int64_t hidden, int64_t heads, int64_t kv_heads, int64_t ff) {
  models::ModelSpec s;
  s.hidden_size = hidden;
  s.n_head = heads;
  s.n_kv_head = kv_heads;
  s.head_dim = hidden / heads;
  s.intermediate_size = ff;
  s.n_layer = 8;
  return s;
}

TEST(NiahCost, AttentionCrossoverFromTheShapes) {
  // (2 q_dim + 2 kv_dim) D + 3 F D over 2 q_dim: bench model (512, 8 q / 4 kv heads, F 1024):
  // (1024 + 512) * 512 + 3 * 1024 * 512 = 2359296, / 1024 = 2304. Llama-2-7B: (16384 * 4096 + 3 * 11008 *
  // 4096) / 8192 = 8192 + 16512 = 24704.
  EXPECT_DOUBLE_EQ(stages::attention_crossover(spec(512, 8, 4, 1024)), 2304.0);
  EXPECT_DOUBLE_EQ(stages::attention_crossover(spec(4096, 32, 32, 11008)), 24704.0);
  models::ModelSpec moe = spec(512, 8, 4, 1024);
  moe.mlp = models::MlpKind::SparseMoe;
  moe.n_expert = 4;
  moe.n_expert_used = 2;  // two experts' weights per token
  EXPECT_DOUBLE_EQ(stages::attention_crossover(moe), (1536.0 * 512 + 2 * 3 * 1024 * 512) / 1024);
}

TEST(NiahCost, ColdAndWarmCountTheRowsComputed) {
  // Prompt 1000 - 200 = 800 tokens, needle at 50 % = row 400, calls of 512: the call [0, 512) holding it
  // runs whole, then [400, 512) again. Cold: [0, 800) + [400, 512); after a deeper needle (row 720):
  // [400, 800); after a shallower one (row 80): [0, 800) + [400, 512) again (the call before 80 is not whole).
  const double c = 2304.0;
  const auto range = [&](int64_t a, int64_t b, int64_t steps) { return pipeline::generation_range_cost(a, b, steps, c); };
  stages::NiahCostModel fixed;  // 200 buffer tokens, fixed prompts in calls of 512, 20 decode steps
  fixed.buffer_tokens = 200;
  fixed.reuse_prefix = true;
  fixed.split_at_needle = true;
  fixed.prefill_call = 512;
  fixed.max_new_tokens = 20;
  fixed.quadratic_crossover = c;
  const stages::NiahCellCost deeper = stages::niah_cell_cost(fixed, 1000, 50, 90);
  EXPECT_DOUBLE_EQ(deeper.cold, range(0, 800, 20) + range(400, 512, 0));
  EXPECT_DOUBLE_EQ(deeper.warm, range(400, 800, 20));
  const stages::NiahCellCost shallower = stages::niah_cell_cost(fixed, 1000, 50, 10);
  EXPECT_DOUBLE_EQ(shallower.warm, shallower.cold);
  // Without reuse every cell is cold; a needle at row 0 splits nothing.
  stages::NiahCostModel no_reuse = fixed;
  no_reuse.reuse_prefix = false;
  EXPECT_DOUBLE_EQ(stages::niah_cell_cost(no_reuse, 1000, 50, 90).warm, deeper.cold);
  EXPECT_DOUBLE_EQ(stages::niah_cell_cost(fixed, 1000, 0, -1).cold, range(0, 800, 20));
  // Faithful prompts do not split: calls of 128, after a deeper needle the whole calls before row 400.
  stages::NiahCostModel faithful = fixed;
  faithful.split_at_needle = false;
  faithful.prefill_call = 128;
  const stages::NiahCellCost whole = stages::niah_cell_cost(faithful, 1000, 50, 90);
  EXPECT_DOUBLE_EQ(whole.cold, range(0, 800, 20));
  EXPECT_DOUBLE_EQ(whole.warm, range(384, 800, 20));
}

}  // namespace
