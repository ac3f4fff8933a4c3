// Pearson / Spearman / top-K overlap on hand-computed vectors, and the shape policies.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "pipeline/core/error.h"
#include "stages/correlate/correlate_ops.h"

using stages::ScoreMap;

TEST(Correlate, PearsonByHand) {
  // x = 1..5, y = [2,4,5,4,5]: sxy = 6, sxx = 10, syy = 6 -> r = 6 / sqrt(60).
  EXPECT_NEAR(stages::pearson({1, 2, 3, 4, 5}, {2, 4, 5, 4, 5}), 6.0 / std::sqrt(60.0), 1e-15);
  EXPECT_NEAR(stages::pearson({1, 2, 3}, {-2, -4, -6}), -1.0, 1e-15);
  EXPECT_TRUE(std::isnan(stages::pearson({1, 1, 1}, {1, 2, 3})));  // constant vector: undefined
  EXPECT_THROW(stages::pearson({1, 2}, {1, 2, 3}), pipeline::ShapeError);
  EXPECT_THROW(stages::pearson({1}, {1}), pipeline::ShapeError);
}

TEST(Correlate, AverageRanksAndSpearmanWithTies) {
  EXPECT_EQ(stages::average_ranks({3, 1, 3, 2, 3, 0}), (std::vector<double>{5, 2, 5, 3, 5, 1}));
  // y ranks [1, 2.5, 4.5, 2.5, 4.5] against 1..5: sxy = 7, sxx = 10, syy = 9 -> rho = 7 / sqrt(90).
  EXPECT_NEAR(stages::spearman({1, 2, 3, 4, 5}, {2, 4, 5, 4, 5}), 7.0 / std::sqrt(90.0), 1e-15);
  // Monotone but non-linear: rho = 1 while r < 1.
  EXPECT_NEAR(stages::spearman({1, 2, 3, 4}, {1, 10, 100, 1000}), 1.0, 1e-15);
  EXPECT_LT(stages::pearson({1, 2, 3, 4}, {1, 10, 100, 1000}), 0.99);
}

TEST(Correlate, TopKJaccard) {
  // 1 x 4 maps; top-2 of a = {h0, h1}, of b = {h1, h2}: |∩| = 1, |∪| = 3.
  const ScoreMap a{1, 4, {0.9, 0.8, 0.1, 0.0}};
  const ScoreMap b{1, 4, {0.0, 0.9, 0.8, 0.1}};
  EXPECT_DOUBLE_EQ(stages::top_k_jaccard(a, b, 2), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(stages::top_k_jaccard(a, a, 3), 1.0);
  EXPECT_DOUBLE_EQ(stages::top_k_jaccard(a, b, 4), 1.0);
  EXPECT_THROW(stages::top_k_jaccard(a, b, 5), pipeline::InputError);
  EXPECT_THROW(stages::top_k_jaccard(a, ScoreMap{2, 2, {0, 0, 0, 0}}, 1), pipeline::ShapeError);
}

TEST(Correlate, ShapePolicies) {
  // a is 2 x 3, b is 3 x 2. Common grid = 2 x 2; zero pad = 3 x 3.
  const ScoreMap a{2, 3, {1, 2, 3, 4, 5, 6}};
  const ScoreMap b{3, 2, {10, 20, 30, 40, 50, 60}};
  const auto [ca, cb] = stages::align_maps(a, b, stages::ShapePolicy::kCommonGrid);
  EXPECT_EQ(ca.value, (std::vector<double>{1, 2, 4, 5}));
  EXPECT_EQ(cb.value, (std::vector<double>{10, 20, 30, 40}));
  const auto [pa, pb] = stages::align_maps(a, b, stages::ShapePolicy::kZeroPad);
  EXPECT_EQ(pa.value, (std::vector<double>{1, 2, 3, 4, 5, 6, 0, 0, 0}));
  EXPECT_EQ(pb.value, (std::vector<double>{10, 20, 0, 30, 40, 0, 50, 60, 0}));
  const auto [fa, fb] = stages::align_maps(ScoreMap{1, 3, {1, 2, 3}}, b, stages::ShapePolicy::kFlatTruncate);
  EXPECT_EQ(fa.value, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(fb.value, (std::vector<double>{10, 20, 30}));
  EXPECT_THROW(stages::align_maps(a, b, stages::ShapePolicy::kError), pipeline::ShapeError);

  const auto cmp = stages::compare_maps(a, b, 2);
  EXPECT_TRUE(cmp.shape_mismatch);
  EXPECT_EQ(cmp.n_layer, 2);
  EXPECT_EQ(cmp.n_head, 2);
  EXPECT_NEAR(cmp.pearson, 70.0 / std::sqrt(5000.0), 1e-15);  // [1,2,4,5] vs [10,20,30,40]: sxy 70, sxx 10, syy 500
  EXPECT_DOUBLE_EQ(cmp.top_k_jaccard, 1.0);  // top-2 of both = {1-0, 1-1}
  EXPECT_EQ(stages::parse_shape_policy("zero_pad"), stages::ShapePolicy::kZeroPad);
  EXPECT_THROW(stages::parse_shape_policy("pad"), pipeline::ConfigError);
}
