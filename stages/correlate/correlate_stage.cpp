#include "stages/correlate/correlate_stage.h"

#include <algorithm>
#include <cstdio>

#include "pipeline/core/error.h"
#include "pipeline/core/logging.h"
#include "stages/correlate/correlate_ops.h"
#include "stages/score/score_ops.h"

namespace stages {

namespace fs = std::filesystem;
using pipeline::ConfigError;
using pipeline::KeyType;
using pipeline::str_cat;
using pipeline::store::Group;

namespace {

constexpr int64_t kScoreSchema = 1;  // newest score.h5 layout this stage reads

struct NamedPair {
  std::string a, b;
};

struct Settings {
  int64_t top_k = 30;
  std::string policy_name;
  ShapePolicy policy = ShapePolicy::kCommonGrid;
  std::vector<NamedPair> pairs;
};

Settings read_settings(const pipeline::Config& cfg) {
  Settings s;
  s.top_k = cfg.get_int("correlate.top_k");
  RHEAD_CHECK(s.top_k >= 1, ConfigError, "[config] ", cfg.source(), ": [correlate] top_k: got ", s.top_k,
              ", expected >= 1");
  s.policy_name = cfg.get_string("correlate.shape_policy");
  try {
    s.policy = parse_shape_policy(s.policy_name);
  } catch (const ConfigError& e) {
    throw ConfigError(str_cat("[config] ", cfg.source(), ": ", e.what()));
  }
  for (const auto& item : cfg.get_strings("correlate.pairs")) {
    const size_t colon = item.find(':');
    RHEAD_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < item.size() &&
                    item.find(':', colon + 1) == std::string::npos,
                ConfigError, "[config] ", cfg.source(), ": [correlate] pairs: got '", item,
                "', expected model_a:model_b (e.g. base:chat)");
    s.pairs.push_back({item.substr(0, colon), item.substr(colon + 1)});
  }
  return s;
}

// Every model's [L, H] mean map, in the store's (sorted) order.
std::vector<std::pair<std::string, ScoreMap>> read_maps(const Group& score_root) {
  std::vector<std::pair<std::string, ScoreMap>> out;
  if (!score_root.has("models")) return out;
  const Group models = score_root.open_group("models");
  for (const auto& name : models.children()) {
    auto mean = models.open_group(name).read_double("mean");
    RHEAD_CHECK(mean.shape.size() == 2, pipeline::StoreError, "[correlate] ", score_root.file_path(), ":/models/",
                name, "/mean has ", mean.shape.size(), " dims, expected 2 (layer, head)");
    out.push_back({name, ScoreMap{static_cast<int64_t>(mean.shape[0]), static_cast<int64_t>(mean.shape[1]),
                                  std::move(mean.data)}});
  }
  return out;
}

std::vector<std::pair<std::string, ScoreMap>> open_and_read(const fs::path& path) {
  pipeline::store::File file = pipeline::store::File::open(path);
  const Group root = file.root();
  pipeline::store::require_readable(root, "score", kScoreSchema);
  return read_maps(root);
}

std::string model_list(const std::vector<std::pair<std::string, ScoreMap>>& maps) {
  std::string s;
  for (const auto& m : maps) s += (s.empty() ? "" : ", ") + m.first;
  return s.empty() ? "(none)" : s;
}

}  // namespace

void CorrelateStage::declare(pipeline::ConfigSchema& schema) const {
  schema.optional("correlate.top_k", KeyType::Int, "30", "K of the top-K head-set overlap (Jaccard)")
      .optional("correlate.shape_policy", KeyType::String, "common_grid",
                "maps of different shapes: common_grid (truncate to min L x min H, match by (layer, head)), "
                "zero_pad, flat_truncate or error")
      .optional("correlate.pairs", KeyType::StringList, "",
                "named model pairs to report, model_a:model_b (label 'model_a vs model_b')");
}

void CorrelateStage::validate(const pipeline::StageContext& ctx) const {
  const Settings s = read_settings(ctx.config);
  const fs::path path = ctx.store_path("score");
  const auto maps = open_and_read(path);
  RHEAD_CHECK(!maps.empty(), pipeline::InputError, "[correlate] ", path.string(),
              ": no models to correlate. Hint: give score a generate store or imports");
  const auto known = [&](const std::string& name) {
    for (const auto& m : maps) {
      if (m.first == name) return true;
    }
    return false;
  };
  for (const auto& p : s.pairs) {
    for (const auto* name : {&p.a, &p.b}) {
      RHEAD_CHECK(known(*name), ConfigError, "[config] ", ctx.config.source(), ": [correlate] pairs: unknown model '",
                  *name, "' in '", p.a, ":", p.b, "'; models of ", path.string(), ": ", model_list(maps));
    }
  }
  if (s.policy == ShapePolicy::kError) {
    for (const auto& m : maps) {
      const ScoreMap& first = maps.front().second;
      RHEAD_CHECK(m.second.n_layer == first.n_layer && m.second.n_head == first.n_head, ConfigError, "[config] ",
                  ctx.config.source(), ": [correlate] shape_policy = error, but ", maps.front().first, " is ",
                  first.n_layer, "x", first.n_head, " and ", m.first, " is ", m.second.n_layer, "x",
                  m.second.n_head, ". Hint: shape_policy = common_grid");
    }
  }
}

void CorrelateStage::run(pipeline::StageContext& ctx) {
  if (ctx.comm.rank() != 0) return;  // a few dozen comparisons of ~1000-element vectors
  const Settings s = read_settings(ctx.config);
  const auto maps = open_and_read(ctx.store_path("score"));
  const size_t n = maps.size();
  std::vector<double> pear(n * n), spear(n * n), jac(n * n);
  std::vector<int32_t> mismatch(n * n);
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) {
    names.push_back(maps[i].first);
    for (size_t j = i; j < n; ++j) {
      const MapComparison c = compare_maps(maps[i].second, maps[j].second, s.top_k, s.policy);
      for (size_t k : {i * n + j, j * n + i}) {
        pear[k] = c.pearson;
        spear[k] = c.spearman;
        jac[k] = c.top_k_jaccard;
        mismatch[k] = c.shape_mismatch ? 1 : 0;
      }
    }
  }
  Group root = ctx.output->root();
  root.set_attr("top_k", s.top_k);
  root.set_attr("shape_policy", s.policy_name);
  const std::vector<uint64_t> shape{n, n};
  root.write_texts("models", names, "model");
  root.write("pearson", pear, shape, "model,model");
  root.write("spearman", spear, shape, "model,model");
  root.write("top_k_jaccard", jac, shape, "model,model");
  root.write("shape_mismatch", mismatch, shape, "model,model");
  Group pairs = root.create_group("pairs");
  const auto index = [&](const std::string& name) {
    return static_cast<size_t>(std::find(names.begin(), names.end(), name) - names.begin());
  };
  for (const auto& p : s.pairs) {
    const std::string group_name = p.a + "__" + p.b;
    if (pairs.has(group_name)) continue;  // listed twice
    const size_t k = index(p.a) * n + index(p.b);
    Group g = pairs.create_group(group_name);
    g.set_attr("pearson", pear[k]);
    g.set_attr("spearman", spear[k]);
    g.set_attr("top_k_jaccard", jac[k]);
    g.set_attr("shape_mismatch", static_cast<int64_t>(mismatch[k]));
    g.set_attr("label", p.a + " vs " + p.b);
    pipeline::log::info("correlate: ", p.a, " vs ", p.b, ": pearson ", pear[k], ", spearman ", spear[k], ", top-",
                        s.top_k, " jaccard ", jac[k], mismatch[k] ? " (shapes differ)" : "");
  }
  pipeline::log::info("correlate: ", n, " model(s), ", s.pairs.size(), " named pair(s), shape policy ", s.policy_name);
}

void CorrelateStage::inspect(const Group& root, std::ostream& out) const {
  if (!root.has("models")) return;
  const auto names = root.read_texts("models");
  const size_t n = names.size();
  const auto mismatch = root.read_int32("shape_mismatch").data;
  char buf[64];
  out << "models: " << n << ", top_k " << root.attr_int("top_k") << ", shape policy "
      << root.attr_string("shape_policy") << " (* = shapes differ)\n";
  for (const char* what : {"pearson", "spearman", "top_k_jaccard"}) {
    const auto m = root.read_double(what).data;
    out << what << ":\n";
    for (size_t i = 0; i < n; ++i) {
      std::snprintf(buf, sizeof buf, "  %2zu ", i);
      out << buf;
      for (size_t j = 0; j < n; ++j) {
        std::snprintf(buf, sizeof buf, " %7.3f%s", m[i * n + j], mismatch[i * n + j] ? "*" : " ");
        out << buf;
      }
      out << "  " << names[i] << "\n";
    }
  }
  if (!root.has("pairs")) return;
  const Group pairs = root.open_group("pairs");
  const auto children = pairs.children();
  if (!children.empty()) out << "named pairs:\n";
  for (const auto& name : children) {
    const Group g = pairs.open_group(name);
    std::snprintf(buf, sizeof buf, "pearson %.3f  spearman %.3f  jaccard %.3f", g.attr_double("pearson"),
                  g.attr_double("spearman"), g.attr_double("top_k_jaccard"));
    out << "  " << g.attr_string("label") << ": " << buf << (g.attr_int("shape_mismatch") ? "  (shapes differ)" : "")
        << "\n";
  }
}

}  // namespace stages
