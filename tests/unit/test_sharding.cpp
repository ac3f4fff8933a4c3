// Sharding: every cell exactly once, teams per group, LPT balance bound, chained runs, determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "pipeline/core/error.h"
#include "pipeline/core/sharding.h"

using pipeline::assign_work;
using pipeline::WorkItem;

namespace {

// The paper's grid for `n_models` models: 3 needles x 20 lengths x 10 depths each.
std::vector<WorkItem> paper_grid(int n_models) {
  std::vector<WorkItem> items;
  for (int m = 0; m < n_models; ++m) {
    for (int n = 0; n < 3; ++n) {
      for (int l = 0; l < 20; ++l) {
        int64_t len = 1000 + l * 2579;
        for (int d = 0; d < 10; ++d) {
          items.push_back({"m" + std::to_string(m) + ".n" + std::to_string(n) + ".L" + std::to_string(len) + ".D" +
                               std::to_string(d),
                           "model" + std::to_string(m), pipeline::cell_cost(len)});
        }
      }
    }
  }
  return items;
}

}  // namespace

TEST(Sharding, EveryItemExactlyOnceForOneToEightRanks) {
  for (int n_models : {1, 2, 3, 5}) {
    auto items = paper_grid(n_models);
    for (int ranks = 1; ranks <= 8; ++ranks) {
      auto a = assign_work(items, ranks);
      std::vector<int> seen(items.size(), 0);
      for (int r = 0; r < ranks; ++r) {
        for (size_t i : a.items_of_rank[r]) {
          ++seen[i];
          EXPECT_EQ(a.rank_of_item[i], r);
        }
      }
      for (size_t i = 0; i < items.size(); ++i) ASSERT_EQ(seen[i], 1) << "item " << i << " ranks " << ranks;
    }
  }
}

TEST(Sharding, EachRankLoadsOneModelWhenRanksSuffice) {
  auto items = paper_grid(3);
  for (int ranks = 3; ranks <= 8; ++ranks) {
    auto a = assign_work(items, ranks);
    for (int r = 0; r < ranks; ++r) {
      std::set<std::string> groups;
      for (size_t i : a.items_of_rank[r]) groups.insert(items[i].group);
      EXPECT_LE(groups.size(), 1u) << "rank " << r << " of " << ranks << " loads " << groups.size() << " models";
      EXPECT_FALSE(a.items_of_rank[r].empty()) << "rank " << r << " idle with " << ranks << " ranks";
    }
  }
}

TEST(Sharding, FewerRanksThanModelsKeepsModelsWhole) {
  auto items = paper_grid(5);
  auto a = assign_work(items, 2);
  std::map<std::string, std::set<int>> ranks_of_group;
  for (size_t i = 0; i < items.size(); ++i) ranks_of_group[items[i].group].insert(a.rank_of_item[i]);
  for (const auto& [g, ranks] : ranks_of_group) EXPECT_EQ(ranks.size(), 1u) << g << " split across ranks";
}

TEST(Sharding, LptBalanceBound) {
  // Inside one team, LPT keeps max load <= mean + largest item (a standard bound, looser than 4/3 OPT
  // but checkable without knowing OPT).
  auto items = paper_grid(1);
  double largest = 0, total = 0;
  for (const auto& it : items) {
    largest = std::max(largest, it.cost);
    total += it.cost;
  }
  for (int ranks = 1; ranks <= 8; ++ranks) {
    auto a = assign_work(items, ranks);
    double max_load = *std::max_element(a.load_of_rank.begin(), a.load_of_rank.end());
    EXPECT_LE(max_load, total / ranks + largest) << ranks << " ranks";
    // In practice LPT on this grid is within 2% of perfect balance.
    if (ranks <= 4) {
      EXPECT_LE(max_load, 1.02 * total / ranks) << ranks << " ranks";
    }
  }
}

TEST(Sharding, TeamsProportionalToCost) {
  // One cheap and one expensive model with 4 ranks: the expensive one gets 3.
  std::vector<WorkItem> items;
  for (int i = 0; i < 30; ++i) items.push_back({"cheap" + std::to_string(i), "a", 1.0});
  for (int i = 0; i < 30; ++i) items.push_back({"dear" + std::to_string(i), "b", 3.0});
  auto a = assign_work(items, 4);
  EXPECT_EQ(std::count(a.team_of_rank.begin(), a.team_of_rank.end(), 0), 1);
  EXPECT_EQ(std::count(a.team_of_rank.begin(), a.team_of_rank.end(), 1), 3);
}

TEST(Sharding, DeterministicAndEmpty) {
  auto items = paper_grid(2);
  auto a = assign_work(items, 5);
  auto b = assign_work(items, 5);
  EXPECT_EQ(a.rank_of_item, b.rank_of_item);
  auto empty = assign_work({}, 3);
  EXPECT_EQ(empty.items_of_rank.size(), 3u);
  EXPECT_TRUE(empty.items_of_rank[0].empty());
}

TEST(Sharding, CostGrowsSuperlinearly) {
  EXPECT_GT(pipeline::cell_cost(4000), 4 * pipeline::cell_cost(1000));
  EXPECT_DOUBLE_EQ(pipeline::cell_cost(16384), 2 * 16384.0);
}

namespace {

// A NIAH sweep as the generate stage lists it: per length, depths from the deepest needle up, the
// needles (one shared haystack) taking turns at each depth; a prompt reuses the haystack up to the
// shallower of its needle and the one before.
std::vector<WorkItem> chained_sweep(const std::vector<int64_t>& lengths, int n_needles, int64_t steps) {
  std::vector<WorkItem> items;
  for (int64_t L : lengths) {
    int64_t previous = -1;
    for (int d = 100; d >= 0; d -= 11) {
      for (int n = 0; n < n_needles; ++n) {
        WorkItem it{"L" + std::to_string(L) + ".D" + std::to_string(d) + ".n" + std::to_string(n), "model",
                    pipeline::generation_cost(L, L, steps)};
        if (previous >= 0) it.cost_after_previous = pipeline::generation_cost(L, L - std::min<int64_t>(d, previous) * L / 100, steps);
        items.push_back(it);
        previous = d;
      }
    }
  }
  return items;
}

// What each rank really pays when it runs its items in order: warm cost only right after the item's
// predecessor in the list.
std::vector<double> processed_loads(const std::vector<WorkItem>& items, const pipeline::Assignment& a) {
  std::vector<double> loads;
  for (const auto& mine : a.items_of_rank) {
    double load = 0;
    for (size_t k = 0; k < mine.size(); ++k) {
      const bool warm = k > 0 && mine[k - 1] + 1 == mine[k] && items[mine[k]].cost_after_previous >= 0;
      load += warm ? items[mine[k]].cost_after_previous : items[mine[k]].cost;
    }
    loads.push_back(load);
  }
  return loads;
}

}  // namespace

TEST(Sharding, ChainedItemsRunAsContiguousStretchesInListOrder) {
  const auto items = chained_sweep({1000, 4000, 16000}, 2, 20);
  for (int ranks = 1; ranks <= 8; ++ranks) {
    auto a = assign_work(items, ranks);
    size_t next = 0;  // rank r's stretch starts where rank r-1's ended
    for (int r = 0; r < ranks; ++r) {
      for (size_t i : a.items_of_rank[r]) {
        ASSERT_EQ(i, next) << ranks << " ranks, rank " << r;
        EXPECT_EQ(a.rank_of_item[i], r);
        ++next;
      }
    }
    EXPECT_EQ(next, items.size()) << ranks << " ranks";
    const std::vector<double> loads = processed_loads(items, a);
    for (int r = 0; r < ranks; ++r) EXPECT_NEAR(a.load_of_rank[r], loads[r], 1e-9 * loads[r]) << "rank " << r;
  }
}

TEST(Sharding, ChainedSweepKeepsTwoRanksWarm) {
  // The benchmark's grid (docs/BENCHMARKS.md): one length, 10 depths x 2 needles. On one rank every
  // prompt but the first is warm; round-robin dealing (the LPT order for equal costs) gives rank 1 a
  // cold start on its first cell at depth 100, a contiguous cut only a cold start at a middle depth.
  for (int64_t L : {1000, 4000}) {
    const auto items = chained_sweep({L}, 2, 20);
    const double one_rank = assign_work(items, 1).load_of_rank[0];
    EXPECT_NEAR(one_rank, processed_loads(items, assign_work(items, 1))[0], 1e-9 * one_rank);
    auto a = assign_work(items, 2);
    const std::vector<double> chained = processed_loads(items, a);
    const double chained_max = std::max(chained[0], chained[1]);
    std::vector<WorkItem> unchained = items;
    for (auto& it : unchained) it.cost_after_previous = -1;
    const std::vector<double> dealt = processed_loads(items, assign_work(unchained, 2));
    const double dealt_max = std::max(dealt[0], dealt[1]);
    EXPECT_LT(chained_max, dealt_max) << "L " << L;
    // Perfect balance would be one_rank / 2 plus half a cold start: within 10 %.
    EXPECT_LE(chained_max, 0.55 * one_rank) << "L " << L << ": chained " << chained[0] << " + " << chained[1];
  }
}

TEST(Sharding, ChainedCostAboveColdCostIsABug) {
  std::vector<WorkItem> items = {{"a", "g", 1.0}, {"b", "g", 1.0, 2.0}};
  EXPECT_THROW(assign_work(items, 2), pipeline::InternalError);
}

TEST(Sharding, GenerationCostMatchesCellCostAndCountsDecodeSteps) {
  EXPECT_DOUBLE_EQ(pipeline::generation_cost(4000, 4000, 0), pipeline::cell_cost(4000));
  EXPECT_GT(pipeline::generation_cost(4000, 100, 20), pipeline::generation_cost(4000, 100, 0));
  EXPECT_LT(pipeline::generation_cost(4000, 100, 20), pipeline::generation_cost(4000, 4000, 20));
}

TEST(Sharding, RangeCostWeighsRowsByPosition) {
  // A whole prefill costs what generation_cost says (sum of 1 + 2p/c over [0, n): n + n (n - 1) / c).
  EXPECT_NEAR(pipeline::generation_range_cost(0, 4000, 20, 2000.0), pipeline::generation_cost(4000, 4000, 20, 2000.0),
              4000.0 / 2000.0 + 1e-9);
  // Hand-worked: rows [10, 13) at c = 100 cost (1 + .2) + (1 + .22) + (1 + .24) = 3.66; a decode step at
  // context 13 costs 14 (1 + .13).
  EXPECT_NEAR(pipeline::generation_range_cost(10, 13, 0, 100.0), 3.66, 1e-12);
  EXPECT_NEAR(pipeline::generation_range_cost(10, 13, 1, 100.0), 3.66 + 14 * 1.13, 1e-12);
  // The last 500 rows of a 4K prompt cost more than its first 500 (they attend to more keys).
  EXPECT_GT(pipeline::generation_range_cost(3500, 4000, 0, 2304.0), 2 * pipeline::generation_range_cost(0, 500, 0, 2304.0));
  EXPECT_DOUBLE_EQ(pipeline::generation_range_cost(50, 50, 0), 0.0);
}
