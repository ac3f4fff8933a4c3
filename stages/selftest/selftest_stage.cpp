#include "stages/selftest/selftest_stage.h"

#include <chrono>
#include <thread>

#include "pipeline/core/error.h"
#include "pipeline/core/fnv1a.h"
#include "pipeline/core/logging.h"
#include "pipeline/core/sharding.h"
#include "pipeline/runner/cell_driver.h"

namespace stages {

using pipeline::ConfigError;
using pipeline::KeyType;
using pipeline::str_cat;

namespace {

using pipeline::fnv1a;

constexpr int64_t kSpanTokens = 16;  // width of the synthetic needle span

struct Grid {
  std::vector<std::string> groups;
  int64_t needles = 0;
  std::vector<int64_t> lengths, depths;
  int64_t steps = 0, layers = 0, heads = 0;
};

struct SelftestCell {
  std::string group;
  int64_t needle, length, depth;
};

Grid read_grid(const pipeline::Config& cfg) {
  Grid g;
  g.groups = cfg.get_strings("selftest.groups");
  g.needles = cfg.get_int("selftest.needles");
  g.lengths = cfg.get_ints("selftest.lengths");
  g.depths = cfg.get_ints("selftest.depths");
  g.steps = cfg.get_int("selftest.steps");
  g.layers = cfg.get_int("selftest.layers");
  g.heads = cfg.get_int("selftest.heads");
  return g;
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::string cell_id(const SelftestCell& c) {
  return str_cat(c.group, ".n", c.needle, ".L", c.length, ".D", c.depth);
}

// capture: [steps, layers, heads] positions in [0, length); hits: [layers, heads] steps inside the span.
void synthesize(uint64_t seed, const SelftestCell& c, const Grid& g, std::vector<int32_t>* capture,
                std::vector<int64_t>* hits) {
  uint64_t state = seed ^ fnv1a(cell_id(c), pipeline::kFnv1aShortBasis);
  int64_t span_begin = c.length * c.depth / 100;
  capture->assign(static_cast<size_t>(g.steps * g.layers * g.heads), 0);
  hits->assign(static_cast<size_t>(g.layers * g.heads), 0);
  for (int64_t s = 0; s < g.steps; ++s) {
    for (int64_t lh = 0; lh < g.layers * g.heads; ++lh) {
      // Every fourth head is a synthetic "retrieval head" that mostly looks inside the span.
      uint64_t r = splitmix64(state);
      int64_t pos = (lh % 4 == 0 && r % 5 != 0) ? span_begin + static_cast<int64_t>(r % kSpanTokens)
                                                : static_cast<int64_t>(r % static_cast<uint64_t>(c.length));
      pos = std::min(pos, c.length - 1);
      (*capture)[s * g.layers * g.heads + lh] = static_cast<int32_t>(pos);
      if (pos >= span_begin && pos < span_begin + kSpanTokens) ++(*hits)[lh];
    }
  }
}

}  // namespace

void SelftestStage::declare(pipeline::ConfigSchema& schema) const {
  schema.optional("selftest.groups", KeyType::StringList, "m0, m1", "synthetic model names (one group each)")
      .optional("selftest.needles", KeyType::Int, "2", "needles per group")
      .optional("selftest.lengths", KeyType::IntList, "linspace(1000, 8000, 4)", "context lengths (tokens)")
      .optional("selftest.depths", KeyType::IntList, "linspace(0, 100, 5)", "needle depths (percent)")
      .optional("selftest.steps", KeyType::Int, "6", "decode steps per cell")
      .optional("selftest.layers", KeyType::Int, "4", "layers of the synthetic capture")
      .optional("selftest.heads", KeyType::Int, "4", "heads per layer of the synthetic capture")
      .optional("selftest.work_ms", KeyType::Int, "0", "milliseconds of sleep per cell (kill/resume tests)")
      .optional("selftest.fail_on_cell", KeyType::String, "", "throw while computing this cell id (failure tests)")
      .tuning("selftest.work_ms")        // a resumed test run may change them: the cells are the same
      .tuning("selftest.fail_on_cell");
}

void SelftestStage::validate(const pipeline::StageContext& ctx) const {
  const auto& cfg = ctx.config;
  Grid g = read_grid(cfg);
  RHEAD_CHECK(!g.groups.empty(), ConfigError, "[config] ", cfg.source(), ": [selftest] groups is empty");
  for (const char* key : {"selftest.needles", "selftest.steps", "selftest.layers", "selftest.heads"}) {
    RHEAD_CHECK(cfg.get_int(key) >= 1, ConfigError, "[config] ", cfg.source(), ": ", key, ": got ",
                cfg.get_int(key), ", expected >= 1");
  }
  for (int64_t len : g.lengths) {
    RHEAD_CHECK(len >= kSpanTokens, ConfigError, "[config] ", cfg.source(), ": [selftest] lengths: got ", len,
                ", expected every length >= ", kSpanTokens);
  }
  for (int64_t d : g.depths) {
    RHEAD_CHECK(d >= 0 && d <= 100, ConfigError, "[config] ", cfg.source(), ": [selftest] depths: got ", d,
                ", expected percentages in [0, 100]");
  }
  RHEAD_CHECK(cfg.get_int("selftest.work_ms") >= 0, ConfigError, "[config] ", cfg.source(),
              ": [selftest] work_ms must be >= 0");
}

void SelftestStage::run(pipeline::StageContext& ctx) {
  const Grid g = read_grid(ctx.config);
  const int64_t work_ms = ctx.config.get_int("selftest.work_ms");
  const std::string fail_on = ctx.config.get_string("selftest.fail_on_cell");

  std::vector<SelftestCell> grid;
  std::vector<pipeline::WorkItem> items;
  for (const auto& group : g.groups) {
    for (int64_t n = 0; n < g.needles; ++n) {
      for (int64_t len : g.lengths) {
        for (int64_t depth : g.depths) {
          SelftestCell c{group, n, len, depth};
          grid.push_back(c);
          items.push_back({cell_id(c), group, pipeline::cell_cost(len)});
        }
      }
    }
  }

  pipeline::CellHooks hooks;
  hooks.begin_group = [](const std::string& group) { pipeline::log::debug("selftest: begin group ", group); };
  hooks.compute = [&](size_t index, pipeline::store::Group& out) {
    const SelftestCell& c = grid[index];
    if (!fail_on.empty() && cell_id(c) == fail_on) {
      throw pipeline::InputError(str_cat("[selftest] cell ", fail_on, ": failing on purpose (fail_on_cell)"));
    }
    if (work_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(work_ms));
    std::vector<int32_t> capture;
    std::vector<int64_t> hits;
    synthesize(ctx.seed, c, g, &capture, &hits);
    out.set_attr("group", c.group);
    out.set_attr("needle", c.needle);
    out.set_attr("context_length", c.length);
    out.set_attr("depth_percent", c.depth);
    out.write("capture", capture, {uint64_t(g.steps), uint64_t(g.layers), uint64_t(g.heads)}, "step,layer,head");
    out.write("hits", hits, {uint64_t(g.layers), uint64_t(g.heads)}, "layer,head");
  };
  pipeline::CellRunStats stats = pipeline::run_cells(ctx, items, hooks);

  // Summary: per group, hits summed over cells (int64, exact) and as float64 (exact for integers),
  // through the Communicator: cells are dealt round-robin, partial sums all-reduced.
  const size_t lh = static_cast<size_t>(g.layers * g.heads);
  std::vector<int64_t> hit_sum(g.groups.size() * lh, 0);
  std::vector<double> hit_sum_f(g.groups.size() * lh, 0.0);
  for (size_t i = static_cast<size_t>(ctx.comm.rank()); i < grid.size(); i += static_cast<size_t>(ctx.comm.size())) {
    std::vector<int32_t> capture;
    std::vector<int64_t> hits;
    synthesize(ctx.seed, grid[i], g, &capture, &hits);
    size_t gi = static_cast<size_t>(std::find(g.groups.begin(), g.groups.end(), grid[i].group) - g.groups.begin());
    for (size_t k = 0; k < lh; ++k) {
      hit_sum[gi * lh + k] += hits[k];
      hit_sum_f[gi * lh + k] += static_cast<double>(hits[k]);
    }
  }
  ctx.comm.allreduce_sum(hit_sum.data(), hit_sum.size());
  ctx.comm.allreduce_sum(hit_sum_f.data(), hit_sum_f.size());

  if (ctx.comm.rank() != 0) return;
  pipeline::store::Group root = ctx.output->root();
  // Integrity: every merged cell equals its pure re-derivation.
  pipeline::store::Group cells = root.open_group("cells");
  for (const auto& c : grid) {
    std::vector<int32_t> capture;
    std::vector<int64_t> hits;
    synthesize(ctx.seed, c, g, &capture, &hits);
    auto stored = cells.open_group(cell_id(c)).read_int32("capture");
    RHEAD_CHECK(stored.data == capture, pipeline::StoreError, "[selftest] ", ctx.output->path().string(),
                ":/cells/", cell_id(c), "/capture differs from its re-derivation: store damaged");
  }
  pipeline::store::Group summary = root.create_group("summary");
  for (size_t gi = 0; gi < g.groups.size(); ++gi) {
    pipeline::store::Group s = summary.create_group(g.groups[gi]);
    std::vector<int64_t> ints(hit_sum.begin() + gi * lh, hit_sum.begin() + (gi + 1) * lh);
    std::vector<double> reals(hit_sum_f.begin() + gi * lh, hit_sum_f.begin() + (gi + 1) * lh);
    for (size_t k = 0; k < lh; ++k) {
      RHEAD_CHECK(static_cast<double>(ints[k]) == reals[k], pipeline::CommError,
                  "[selftest] int64 and float64 all-reduce disagree for group ", g.groups[gi], " head ", k);
    }
    s.write("hit_sum", ints, {uint64_t(g.layers), uint64_t(g.heads)}, "layer,head");
    s.write("hit_sum_f64", reals, {uint64_t(g.layers), uint64_t(g.heads)}, "layer,head");
  }
  pipeline::log::info("selftest: ", stats.total, " cells (", stats.already_done, " resumed, ", stats.computed,
                      " computed now), summary verified on rank 0");
}

void SelftestStage::inspect(const pipeline::store::Group& root, std::ostream& out) const {
  out << "cells: " << root.open_group("cells").children().size() << "\n";
  if (!root.has("summary")) return;
  pipeline::store::Group summary = root.open_group("summary");
  for (const auto& group : summary.children()) {
    auto hits = summary.open_group(group).read_int64("hit_sum");
    int64_t total = 0;
    for (auto v : hits.data) total += v;
    out << "group " << group << ": " << total << " span hits over " << hits.shape[0] << "x" << hits.shape[1]
        << " heads\n";
  }
}

}  // namespace stages
