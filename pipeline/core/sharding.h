// Deterministic assignment of work items (cells) to ranks.
//
// Items carry a group (for rhead: the model) and a cost. Ranks are split into per-group teams so that
// each rank loads one model once: with at least as many ranks as groups, every group gets a team sized
// in proportion to its total cost (at least one rank); with fewer ranks than groups, whole groups are
// dealt to ranks (a rank then loads its models one after another, each once). Inside a team, items are
// dealt longest-processing-time-first (LPT) to the least-loaded rank. Ties break on item order and rank
// number, so the same input always gives the same assignment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pipeline {

struct WorkItem {
  std::string id;     // unique, stable across runs (used for resume)
  std::string group;  // items of one group share a loaded model
  double cost = 1.0;  // relative cost, > 0
};

struct Assignment {
  std::vector<int> rank_of_item;               // [n_items]
  std::vector<std::vector<size_t>> items_of_rank;  // [n_ranks] item indices, in processing order
  std::vector<double> load_of_rank;            // [n_ranks] summed cost
  std::vector<std::string> group_names;        // sorted unique groups
  std::vector<int> team_of_rank;               // [n_ranks] color for a communicator split
};

// Prefill cost grows with length and length^2 (attention); decode is length-linear. The quadratic
// term is scaled so it matches the linear one at `quadratic_crossover` tokens.
double cell_cost(int64_t context_length, double quadratic_crossover = 16384.0);

Assignment assign_work(const std::vector<WorkItem>& items, int n_ranks);

}  // namespace pipeline
