#include "stages/correlate/correlate_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>

#include "pipeline/core/error.h"

namespace stages {
namespace {

void check_pair(const std::vector<double>& x, const std::vector<double>& y, const char* what) {
  RHEAD_CHECK(x.size() == y.size(), pipeline::ShapeError, "[correlate] ", what, ": vectors of length ", x.size(),
              " and ", y.size(), ", expected equal lengths");
  RHEAD_CHECK(x.size() >= 2, pipeline::ShapeError, "[correlate] ", what, ": got ", x.size(),
              " values, expected at least 2");
}

void check_map(const ScoreMap& m, const char* which) {
  RHEAD_CHECK(m.n_layer > 0 && m.n_head > 0 && static_cast<int64_t>(m.value.size()) == m.n_layer * m.n_head,
              pipeline::ShapeError, "[correlate] score map ", which, ": ", m.value.size(), " values for shape [",
              m.n_layer, ", ", m.n_head, "], expected layers x heads > 0");
}

}  // namespace

ShapePolicy parse_shape_policy(const std::string& name) {
  if (name == "common_grid") return ShapePolicy::kCommonGrid;
  if (name == "zero_pad") return ShapePolicy::kZeroPad;
  if (name == "flat_truncate") return ShapePolicy::kFlatTruncate;
  if (name == "error") return ShapePolicy::kError;
  throw pipeline::ConfigError(pipeline::str_cat("[correlate] shape_policy: got '", name,
                                                "', expected one of common_grid, zero_pad, flat_truncate, error"));
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  check_pair(x, y, "pearson");
  const auto n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0.0;
  double sxx = 0.0;
  double syy = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double dx = x[i] - mx;
    const double dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx == 0.0 || syy == 0.0) return std::numeric_limits<double>::quiet_NaN();
  return sxy / std::sqrt(sxx * syy);
}

std::vector<double> average_ranks(const std::vector<double>& x) {
  std::vector<size_t> order(x.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> ranks(x.size(), 0.0);
  size_t i = 0;
  while (i < order.size()) {
    size_t j = i;
    while (j + 1 < order.size() && x[order[j + 1]] == x[order[i]]) ++j;
    const double rank = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;  // mean of ranks i+1..j+1
    for (size_t k = i; k <= j; ++k) ranks[order[k]] = rank;
    i = j + 1;
  }
  return ranks;
}

double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  check_pair(x, y, "spearman");
  return pearson(average_ranks(x), average_ranks(y));
}

double top_k_jaccard(const ScoreMap& a, const ScoreMap& b, int64_t k) {
  check_map(a, "a");
  check_map(b, "b");
  RHEAD_CHECK(a.n_layer == b.n_layer && a.n_head == b.n_head, pipeline::ShapeError,
              "[correlate] top-k overlap: shapes [", a.n_layer, ", ", a.n_head, "] and [", b.n_layer, ", ", b.n_head,
              "], expected equal shapes. Hint: align_maps() first");
  const int64_t n = a.n_layer * a.n_head;
  RHEAD_CHECK(k >= 1 && k <= n, pipeline::InputError, "[correlate] top_k: got ", k, ", expected 1 <= k <= ", n,
              " (heads in the map)");
  const auto ra = rank_heads(a.value, a.n_layer, a.n_head);
  const auto rb = rank_heads(b.value, b.n_layer, b.n_head);
  const std::set<HeadId> sa(ra.begin(), ra.begin() + k);
  const std::set<HeadId> sb(rb.begin(), rb.begin() + k);
  int64_t common = 0;
  for (const HeadId& id : sa) common += sb.count(id) ? 1 : 0;
  return static_cast<double>(common) / static_cast<double>(2 * k - common);
}

std::pair<ScoreMap, ScoreMap> align_maps(const ScoreMap& a, const ScoreMap& b, ShapePolicy policy) {
  check_map(a, "a");
  check_map(b, "b");
  if (a.n_layer == b.n_layer && a.n_head == b.n_head) return {a, b};
  RHEAD_CHECK(policy != ShapePolicy::kError, pipeline::ShapeError, "[correlate] score maps: shapes [", a.n_layer,
              ", ", a.n_head, "] and [", b.n_layer, ", ", b.n_head,
              "] differ, expected equal shapes. Hint: set shape_policy = common_grid or zero_pad");
  if (policy == ShapePolicy::kFlatTruncate) {
    const size_t n = std::min(a.value.size(), b.value.size());
    ScoreMap fa{1, static_cast<int64_t>(n), std::vector<double>(a.value.begin(), a.value.begin() + static_cast<long>(n))};
    ScoreMap fb{1, static_cast<int64_t>(n), std::vector<double>(b.value.begin(), b.value.begin() + static_cast<long>(n))};
    return {fa, fb};
  }
  const bool pad = policy == ShapePolicy::kZeroPad;
  const int64_t n_layer = pad ? std::max(a.n_layer, b.n_layer) : std::min(a.n_layer, b.n_layer);
  const int64_t n_head = pad ? std::max(a.n_head, b.n_head) : std::min(a.n_head, b.n_head);
  const auto regrid = [&](const ScoreMap& m) {
    ScoreMap out{n_layer, n_head, std::vector<double>(static_cast<size_t>(n_layer * n_head), 0.0)};
    for (int64_t l = 0; l < std::min(n_layer, m.n_layer); ++l) {
      for (int64_t h = 0; h < std::min(n_head, m.n_head); ++h) {
        out.value[static_cast<size_t>(l * n_head + h)] = m.at(l, h);
      }
    }
    return out;
  };
  return {regrid(a), regrid(b)};
}

MapComparison compare_maps(const ScoreMap& a, const ScoreMap& b, int64_t top_k, ShapePolicy policy) {
  const auto [ma, mb] = align_maps(a, b, policy);
  MapComparison result;
  result.shape_mismatch = a.n_layer != b.n_layer || a.n_head != b.n_head;
  result.n_layer = ma.n_layer;
  result.n_head = ma.n_head;
  result.pearson = pearson(ma.value, mb.value);
  result.spearman = spearman(ma.value, mb.value);
  result.top_k = std::min<int64_t>(top_k, ma.n_layer * ma.n_head);
  result.top_k_jaccard = top_k_jaccard(ma, mb, result.top_k);
  return result;
}

}  // namespace stages
