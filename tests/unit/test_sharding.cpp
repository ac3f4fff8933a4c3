// Sharding: every cell exactly once, teams per group, LPT balance bound, determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

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
