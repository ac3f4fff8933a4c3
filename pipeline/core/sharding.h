// Deterministic assignment of work items (cells) to ranks.
//
// Items carry a group (for rhead: the model) and a cost. Ranks are split into per-group teams so that
// each rank loads one model once: with at least as many ranks as groups, every group gets a team sized
// in proportion to its total cost (at least one rank); with fewer ranks than groups, whole groups are
// dealt to ranks (a rank then loads its models one after another, each once). Inside a team:
//  - independent items are dealt longest-processing-time-first (LPT) to the least-loaded rank;
//  - *chained* items (a group where some item is cheaper right after its predecessor, because it reuses
//    that item's work: a NIAH prompt reuses the previous prompt's KV cache up to its needle) are cut
//    into contiguous runs, one per rank, with the largest run as small as possible (each run processed in
//    list order). A run pays full cost for its first item only; dealing items round-robin instead makes
//    each rank's items follow items that ran elsewhere, so a rank may pay a cold start on every item, and
//    its load estimate would not say so.
// Ties break on item order and rank number, so the same input always gives the same assignment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pipeline {

struct WorkItem {
  std::string id;     // unique, stable across runs (used for resume)
  std::string group;  // items of one group share a loaded model
  double cost = 1.0;  // relative cost, > 0
  // The cost when the item runs right after the previous item of its group in the list, on the same
  // rank (it reuses that item's work); < 0: no such saving. 0 <= cost_after_previous <= cost.
  double cost_after_previous = -1.0;
  // Items of one rank with the same non-empty key, consecutive in its processing order, may be computed
  // in one call (pipeline/runner/cell_driver.h, CellHooks::compute_batch); sharding ignores it.
  std::string batch{};
};

struct Assignment {
  std::vector<int> rank_of_item;               // [n_items]
  std::vector<std::vector<size_t>> items_of_rank;  // [n_ranks] item indices, in processing order
  std::vector<double> load_of_rank;            // [n_ranks] summed cost (chained items: as processed)
  std::vector<std::string> group_names;        // sorted unique groups
  std::vector<int> team_of_rank;               // [n_ranks] color for a communicator split
};

// Prefill cost grows with length and length^2 (attention); decode is length-linear. The quadratic
// term is scaled so it matches the linear one at `quadratic_crossover` tokens.
double cell_cost(int64_t context_length, double quadratic_crossover = 16384.0);

// The cost of a generation cell in cell_cost's units: `prefill_tokens` computed at `context_length`
// tokens of context, then `decode_steps` greedy steps. On CPU a decode step costs as much as about 14
// prefill tokens at the same context (docs/BENCHMARKS.md: prefill tokens/s over decode steps/s is
// 13.5-15.3 from 512 to 8K tokens). cell_cost(n) == generation_cost(n, n, 0).
double generation_cost(int64_t context_length, int64_t prefill_tokens, int64_t decode_steps,
                       double quadratic_crossover = 16384.0);

// generation_cost for prefill rows at positions [first, last) only (a prompt reusing the rows before
// `first`), each row weighted by the attention it does: 1 + 2 p / quadratic_crossover, so that
// generation_range_cost(0, n, s) == generation_cost(n, n, s) - n / quadratic_crossover; decode steps at
// context last.
double generation_range_cost(int64_t first, int64_t last, int64_t decode_steps, double quadratic_crossover = 16384.0);

Assignment assign_work(const std::vector<WorkItem>& items, int n_ranks);

}  // namespace pipeline
