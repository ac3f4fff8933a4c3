#include "pipeline/core/sharding.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "pipeline/core/error.h"

namespace pipeline {

namespace {
constexpr double kDecodeStepInPrefillTokens = 14.0;  // CPU, docs/BENCHMARKS.md (see generation_cost in the header)
}  // namespace

double cell_cost(int64_t context_length, double quadratic_crossover) {
  double n = static_cast<double>(std::max<int64_t>(context_length, 1));
  return n + n * n / quadratic_crossover;
}

double generation_cost(int64_t context_length, int64_t prefill_tokens, int64_t decode_steps,
                       double quadratic_crossover) {
  const double per_token = 1.0 + static_cast<double>(std::max<int64_t>(context_length, 1)) / quadratic_crossover;
  const double tokens = static_cast<double>(std::max<int64_t>(prefill_tokens, 0)) +
                        kDecodeStepInPrefillTokens * static_cast<double>(std::max<int64_t>(decode_steps, 0));
  return tokens * per_token;
}

double generation_range_cost(int64_t first, int64_t last, int64_t decode_steps, double quadratic_crossover) {
  const double a = static_cast<double>(std::max<int64_t>(first, 0));
  const double b = std::max(a, static_cast<double>(last));
  const double rows = (b - a) + (a + b - 1.0) * (b - a) / quadratic_crossover;  // sum of 1 + 2p/c over [a, b)
  return rows + kDecodeStepInPrefillTokens * static_cast<double>(std::max<int64_t>(decode_steps, 0)) *
                    (1.0 + std::max(b, 1.0) / quadratic_crossover);
}

namespace {

bool is_chained(const std::vector<WorkItem>& items, const std::vector<size_t>& indices) {
  return std::any_of(indices.begin(), indices.end(), [&](size_t i) { return items[i].cost_after_previous >= 0; });
}

// The cost of indices[k] when indices[k - 1] ran just before it on the same rank (warm) or not (cold).
double chained_cost(const std::vector<WorkItem>& items, const std::vector<size_t>& indices, size_t k, bool warm) {
  const WorkItem& it = items[indices[k]];
  return warm && k > 0 && it.cost_after_previous >= 0 ? std::min(it.cost_after_previous, it.cost) : it.cost;
}

// The cost of a group run on one rank in list order.
double group_cost_in_order(const std::vector<WorkItem>& items, const std::vector<size_t>& indices) {
  double c = 0;
  for (size_t k = 0; k < indices.size(); ++k) c += chained_cost(items, indices, k, /*warm=*/true);
  return c;
}

// Greedy cut of the chain into runs of load <= capacity: the run boundaries (start positions, the first
// is 0), or nothing when an item does not fit even as the cold start of a run of its own.
std::vector<size_t> cut_runs(const std::vector<WorkItem>& items, const std::vector<size_t>& indices, double capacity) {
  std::vector<size_t> starts;
  double load = 0;
  for (size_t k = 0; k < indices.size(); ++k) {
    const double warm = chained_cost(items, indices, k, /*warm=*/true);
    if (!starts.empty() && load + warm <= capacity) {
      load += warm;
      continue;
    }
    load = chained_cost(items, indices, k, /*warm=*/false);
    if (load > capacity) return {};
    starts.push_back(k);
  }
  return starts;
}

// Chained items: contiguous runs in list order, at most one per rank, the largest as small as the
// greedy cut can make it (bisection on the capacity). For a given capacity the greedy cut needs the
// fewest runs when starting a run later never costs more, i.e. an item's cold cost is at most an
// earlier item's cold cost plus the warm costs in between: true along one haystack's depth sweep (every
// cold start is a full prompt of the same length), a heuristic across lengths.
void deal_chain(const std::vector<WorkItem>& items, const std::vector<size_t>& indices, const std::vector<int>& ranks,
                Assignment& out) {
  if (indices.empty()) return;
  double lo = 0, hi = 0;
  for (size_t k = 0; k < indices.size(); ++k) hi += chained_cost(items, indices, k, /*warm=*/false);
  for (int iter = 0; iter < 100 && hi - lo > 1e-9 * hi; ++iter) {
    const double mid = 0.5 * (lo + hi);
    const std::vector<size_t> starts = cut_runs(items, indices, mid);
    (!starts.empty() && starts.size() <= ranks.size() ? hi : lo) = mid;
  }
  const std::vector<size_t> starts = cut_runs(items, indices, hi);
  for (size_t run = 0; run < starts.size(); ++run) {
    const int r = ranks[run];
    const size_t end = run + 1 < starts.size() ? starts[run + 1] : indices.size();
    for (size_t k = starts[run]; k < end; ++k) {
      out.rank_of_item[indices[k]] = r;
      out.items_of_rank[r].push_back(indices[k]);
      out.load_of_rank[r] += chained_cost(items, indices, k, /*warm=*/k > starts[run]);
    }
  }
}

// LPT: items sorted by cost (descending, ties by index) go to the least-loaded rank of `ranks`.
void deal_lpt(const std::vector<WorkItem>& items, std::vector<size_t> indices, const std::vector<int>& ranks,
              Assignment& out) {
  std::stable_sort(indices.begin(), indices.end(), [&](size_t a, size_t b) {
    if (items[a].cost != items[b].cost) return items[a].cost > items[b].cost;
    return a < b;
  });
  for (size_t i : indices) {
    int best = ranks.front();
    for (int r : ranks) {
      if (out.load_of_rank[r] < out.load_of_rank[best]) best = r;
    }
    out.rank_of_item[i] = best;
    out.load_of_rank[best] += items[i].cost;
    out.items_of_rank[best].push_back(i);
  }
}

}  // namespace

Assignment assign_work(const std::vector<WorkItem>& items, int n_ranks) {
  RHEAD_CHECK(n_ranks >= 1, InternalError, "assign_work: n_ranks = ", n_ranks, ", expected >= 1");
  Assignment out;
  out.rank_of_item.assign(items.size(), -1);
  out.items_of_rank.assign(n_ranks, {});
  out.load_of_rank.assign(n_ranks, 0.0);
  out.team_of_rank.assign(n_ranks, 0);

  std::map<std::string, std::vector<size_t>> by_group;
  for (size_t i = 0; i < items.size(); ++i) {
    RHEAD_CHECK(items[i].cost > 0, InternalError, "assign_work: item '", items[i].id, "' has cost ",
                items[i].cost, ", expected > 0");
    RHEAD_CHECK(items[i].cost_after_previous <= items[i].cost, InternalError, "assign_work: item '", items[i].id,
                "' has cost_after_previous ", items[i].cost_after_previous, " > cost ", items[i].cost);
    by_group[items[i].group].push_back(i);
  }
  std::vector<double> group_cost;
  std::vector<std::vector<size_t>> group_items;
  for (auto& [name, idx] : by_group) {
    out.group_names.push_back(name);
    double c = 0;
    for (size_t i : idx) c += items[i].cost;
    group_cost.push_back(is_chained(items, idx) ? group_cost_in_order(items, idx) : c);
    group_items.push_back(idx);
  }
  const int n_groups = static_cast<int>(out.group_names.size());
  if (n_groups == 0) return out;

  if (n_ranks >= n_groups) {
    // Team sizes: one rank each, then every spare rank to the team with the largest cost per rank.
    std::vector<int> team_size(n_groups, 1);
    for (int spare = n_ranks - n_groups; spare > 0; --spare) {
      int best = 0;
      for (int g = 1; g < n_groups; ++g) {
        if (group_cost[g] / team_size[g] > group_cost[best] / team_size[best]) best = g;
      }
      ++team_size[best];
    }
    int next = 0;
    for (int g = 0; g < n_groups; ++g) {
      std::vector<int> ranks(team_size[g]);
      std::iota(ranks.begin(), ranks.end(), next);
      for (int r : ranks) out.team_of_rank[r] = g;
      next += team_size[g];
      if (is_chained(items, group_items[g])) {
        deal_chain(items, group_items[g], ranks, out);
      } else {
        deal_lpt(items, group_items[g], ranks, out);
      }
    }
  } else {
    // Fewer ranks than groups: deal whole groups LPT, then keep each group's items together.
    std::vector<size_t> order(n_groups);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return group_cost[a] > group_cost[b]; });
    std::vector<std::vector<size_t>> groups_of_rank(n_ranks);
    for (size_t g : order) {
      int best = 0;
      for (int r = 1; r < n_ranks; ++r) {
        if (out.load_of_rank[r] < out.load_of_rank[best]) best = r;
      }
      out.load_of_rank[best] += group_cost[g];
      groups_of_rank[best].push_back(g);
    }
    for (int r = 0; r < n_ranks; ++r) {
      out.team_of_rank[r] = r;
      std::sort(groups_of_rank[r].begin(), groups_of_rank[r].end());
      for (size_t g : groups_of_rank[r]) {
        for (size_t i : group_items[g]) {
          out.rank_of_item[i] = r;
          out.items_of_rank[r].push_back(i);
        }
      }
    }
  }
  return out;
}

}  // namespace pipeline
