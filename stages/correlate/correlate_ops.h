// Cross-model similarity of retrieval-score maps (Figure 6; docs/PAPER_NOTES.md, "Correlation"). Pure functions.
//
// A score map is the [L, H] per-head mean score of one model. Two maps are compared on flattened vectors
// in (layer, head) row-major order: Pearson r, Spearman rho (Pearson of average ranks, ties share the mean
// of their ranks) and the Jaccard overlap of their top-K head sets.
//
// Maps of different shapes (32x32 vs 40x40): the paper does not say how it aligned them. Policies:
//   kCommonGrid (default): keep heads (l, h) with l < min(L_a, L_b) and h < min(H_a, H_b) of both maps,
//       i.e. truncate both to the common min(L) x min(H) grid, matching heads by (layer, head) index;
//   kZeroPad: embed both in the max(L) x max(H) grid, heads a model lacks score 0;
//   kFlatTruncate: flatten each map row-major and keep the first min(L_a*H_a, L_b*H_b) entries (pairs
//       heads by flat index, which mixes layers: only for reproducing other people's numbers);
//   kError: throw pipeline::ShapeError.
// docs/PAPER_NOTES.md, "Correlation": all options give |r| <= 0.11 for the published cross-shape pairs.
// Whenever the shapes differ the result carries shape_mismatch = true so reports can flag the number.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "stages/score/score_ops.h"

namespace stages {

enum class ShapePolicy { kCommonGrid, kZeroPad, kFlatTruncate, kError };

// Parses "common_grid" | "zero_pad" | "flat_truncate" | "error"; pipeline::ConfigError otherwise.
ShapePolicy parse_shape_policy(const std::string& name);

// x [n], y [n], n >= 2 -> Pearson r (two-pass: means first). NaN when either vector is constant.
double pearson(const std::vector<double>& x, const std::vector<double>& y);

// x [n] -> 1-based ranks [n], ascending; tied values share the average of their ranks (scipy "average").
std::vector<double> average_ranks(const std::vector<double>& x);

// x [n], y [n], n >= 2 -> Spearman rho = Pearson of average ranks. NaN when either vector is constant.
double spearman(const std::vector<double>& x, const std::vector<double>& y);

// maps of the same shape, 1 <= k <= L*H -> |top_k(a) ∩ top_k(b)| / |top_k(a) ∪ top_k(b)|, where top_k follows
// rank_heads (value descending, ties by (layer, head) ascending).
double top_k_jaccard(const ScoreMap& a, const ScoreMap& b, int64_t k);

// (a, b) -> both maps on one grid per the policy: first = a, second = b, same shape.
std::pair<ScoreMap, ScoreMap> align_maps(const ScoreMap& a, const ScoreMap& b, ShapePolicy policy);

struct MapComparison {
  double pearson = 0.0;
  double spearman = 0.0;
  double top_k_jaccard = 0.0;  // on the aligned grid
  int64_t top_k = 0;
  int64_t n_layer = 0;  // aligned grid
  int64_t n_head = 0;
  bool shape_mismatch = false;  // the inputs' shapes differed; numbers depend on the policy
};

// (a, b, k) -> Pearson, Spearman and top-k Jaccard of the aligned maps (k clipped to the aligned size).
MapComparison compare_maps(const ScoreMap& a, const ScoreMap& b, int64_t top_k = 30,
                           ShapePolicy policy = ShapePolicy::kCommonGrid);

}  // namespace stages
