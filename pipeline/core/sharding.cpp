#include "pipeline/core/sharding.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "pipeline/core/error.h"

namespace pipeline {

double cell_cost(int64_t context_length, double quadratic_crossover) {
  double n = static_cast<double>(std::max<int64_t>(context_length, 1));
  return n + n * n / quadratic_crossover;
}

namespace {

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
    by_group[items[i].group].push_back(i);
  }
  std::vector<double> group_cost;
  std::vector<std::vector<size_t>> group_items;
  for (auto& [name, idx] : by_group) {
    out.group_names.push_back(name);
    double c = 0;
    for (size_t i : idx) c += items[i].cost;
    group_cost.push_back(c);
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
      deal_lpt(items, group_items[g], ranks, out);
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
