#include "stages/score/score_stage.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <tuple>

#include "pipeline/core/error.h"
#include "pipeline/core/logging.h"
#include "stages/score/head_score_json.h"
#include "stages/score/score_ops.h"

namespace stages {

namespace fs = std::filesystem;
using pipeline::ConfigError;
using pipeline::InputError;
using pipeline::KeyType;
using pipeline::str_cat;
using pipeline::store::Group;

namespace {

constexpr int64_t kGenerateSchema = 2;  // newest generate.h5 layout this stage reads (1 and 2 differ only in prompt_ids)

struct ImportSpec {
  std::string name;   // model name in score.h5
  std::string given;  // path as written in the job
  fs::path path;      // resolved against the current directory
};

struct Settings {
  ScoreRule rule = ScoreRule::kOfficialSteps;
  std::string rule_name;  // docs/STORE.md spelling
  double success_threshold = 50.0;
  double retrieval_threshold = 0.1;
  std::vector<ImportSpec> imports;
  std::string export_dir;
  bool from_generate = false;
};

// The store spelling of a rule (docs/STORE.md): official_steps | set_positions | set_tokens.
const char* store_rule_name(ScoreRule rule) {
  switch (rule) {
    case ScoreRule::kOfficialSteps: return "official_steps";
    case ScoreRule::kSetPositions: return "set_positions";
    case ScoreRule::kSetTokens: return "set_tokens";
  }
  return "unknown";
}

ScoreRule parse_rule(const pipeline::Config& cfg) {
  const std::string name = cfg.get_string("score.rule");
  if (name == "official_steps" || name == "official") return ScoreRule::kOfficialSteps;
  if (name == "set_positions") return ScoreRule::kSetPositions;
  if (name == "set_tokens") return ScoreRule::kSetTokens;
  throw ConfigError(str_cat("[config] ", cfg.source(), ": [score] rule: got '", name,
                            "', expected one of official_steps, set_positions, set_tokens. Hint: official_steps "
                            "reproduces the shipped head_score files"));
}

void check_model_name(const pipeline::Config& cfg, const std::string& name, const std::string& item) {
  RHEAD_CHECK(!name.empty() && name != "." && name.find('/') == std::string::npos, ConfigError, "[config] ",
              cfg.source(), ": [score] import: '", item, "': got model name '", name,
              "', expected a non-empty name without '/'");
}

// "name=path" or "path" (name = the file's stem, e.g. llama-2-7b-80k for .../llama-2-7b-80k.json).
std::vector<ImportSpec> parse_imports(const pipeline::Config& cfg) {
  std::vector<ImportSpec> out;
  for (const auto& item : cfg.get_strings("score.import")) {
    ImportSpec spec;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      spec.given = item;
      spec.name = fs::path(item).stem().string();
    } else {
      spec.name = item.substr(0, eq);
      spec.given = item.substr(eq + 1);
    }
    RHEAD_CHECK(!spec.given.empty(), ConfigError, "[config] ", cfg.source(), ": [score] import: '", item,
                "': empty path; expected name=path/to/head_score.json");
    check_model_name(cfg, spec.name, item);
    for (const auto& other : out) {
      RHEAD_CHECK(other.name != spec.name, ConfigError, "[config] ", cfg.source(), ": [score] import: model name '",
                  spec.name, "' is given twice (", other.given, " and ", spec.given, ")");
    }
    spec.path = fs::absolute(spec.given).lexically_normal();
    out.push_back(spec);
  }
  return out;
}

// Score reads the generate store when [job] stages lists generate before score.
bool uses_generate(const pipeline::Config& cfg) {
  const auto stages = cfg.get_strings("job.stages");
  const auto g = std::find(stages.begin(), stages.end(), "generate");
  const auto s = std::find(stages.begin(), stages.end(), "score");
  return g != stages.end() && (s == stages.end() || g < s);
}

Settings read_settings(const pipeline::Config& cfg) {
  Settings s;
  s.rule = parse_rule(cfg);
  s.rule_name = store_rule_name(s.rule);
  s.success_threshold = cfg.get_float("score.success_threshold");
  s.retrieval_threshold = cfg.get_float("score.retrieval_threshold");
  s.imports = parse_imports(cfg);
  s.export_dir = cfg.get_string("score.export_dir");
  s.from_generate = uses_generate(cfg);
  return s;
}

// ---- one generate cell -> one test row, serialised for gather_bytes ----

struct CellResult {
  std::string id, model;
  int64_t needle = 0, length = 0, depth = 0;
  double rouge = 0.0;
  int64_t n_layer = 0, n_head = 0;
  bool success = false;
  std::vector<double> scores;  // [L, H], successful tests only
};

class Writer {
 public:
  template <class T>
  void pod(const T& v) { m_out.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void str(const std::string& s) {
    pod(static_cast<uint64_t>(s.size()));
    m_out.append(s);
  }
  void doubles(const std::vector<double>& v) {
    pod(static_cast<uint64_t>(v.size()));
    m_out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(double));
  }
  std::string take() { return std::move(m_out); }

 private:
  std::string m_out;
};

class Reader {
 public:
  explicit Reader(const std::string& in) : m_in(in) {}
  bool done() const { return m_pos == m_in.size(); }
  template <class T>
  T pod() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, m_in.data() + m_pos, sizeof v);
    m_pos += sizeof v;
    return v;
  }
  std::string str() {
    const auto n = static_cast<size_t>(pod<uint64_t>());
    need(n);
    std::string s = m_in.substr(m_pos, n);
    m_pos += n;
    return s;
  }
  std::vector<double> doubles() {
    const auto n = static_cast<size_t>(pod<uint64_t>());
    need(n * sizeof(double));
    std::vector<double> v(n);
    if (n > 0) std::memcpy(v.data(), m_in.data() + m_pos, n * sizeof(double));
    m_pos += n * sizeof(double);
    return v;
  }

 private:
  void need(size_t n) const {
    RHEAD_CHECK(m_pos + n <= m_in.size(), pipeline::InternalError, "[score] gathered cell rows are truncated");
  }
  const std::string& m_in;
  size_t m_pos = 0;
};

void serialise(Writer& w, const CellResult& c) {
  w.str(c.id);
  w.str(c.model);
  w.pod(c.needle);
  w.pod(c.length);
  w.pod(c.depth);
  w.pod(c.rouge);
  w.pod(c.n_layer);
  w.pod(c.n_head);
  w.pod(static_cast<uint8_t>(c.success ? 1 : 0));
  w.doubles(c.scores);
}

CellResult deserialise(Reader& r) {
  CellResult c;
  c.id = r.str();
  c.model = r.str();
  c.needle = r.pod<int64_t>();
  c.length = r.pod<int64_t>();
  c.depth = r.pod<int64_t>();
  c.rouge = r.pod<double>();
  c.n_layer = r.pod<int64_t>();
  c.n_head = r.pod<int64_t>();
  c.success = r.pod<uint8_t>() != 0;
  c.scores = r.doubles();
  return c;
}

CellResult score_cell(const Group& cells, const std::string& id, const Settings& s) {
  const Group g = cells.open_group(id);
  const std::string where = str_cat(g.file_path(), ":", g.path());
  try {
    CellResult c;
    c.id = id;
    c.model = g.attr_string("model");
    c.needle = g.attr_int("needle_index");
    c.length = g.attr_int("context_length");
    c.depth = g.attr_int("depth_percent");
    c.rouge = g.attr_double("rouge1_recall");
    const auto shape = g.shape_of("capture_argmax");
    RHEAD_CHECK(shape.size() == 3, pipeline::ShapeError, "capture_argmax has ", shape.size(),
                " dims, expected 3 (step, layer, head)");
    c.n_layer = static_cast<int64_t>(shape[1]);
    c.n_head = static_cast<int64_t>(shape[2]);
    c.success = c.rouge > s.success_threshold;
    if (!c.success) return c;  // dropped from the average, only counted

    const int64_t prompt_tokens = g.attr_int("prompt_tokens");
    const NeedleSpan span{g.attr_int("needle_begin"), g.attr_int("needle_end")};
    const auto needle_ids = g.read_int32("needle_ids");
    RHEAD_CHECK(static_cast<int64_t>(needle_ids.data.size()) == span.end - span.begin, InputError, "needle_ids has ",
                needle_ids.data.size(), " tokens, expected needle_end - needle_begin = ", span.end - span.begin);
    RHEAD_CHECK(span.begin >= 0 && span.begin < span.end && span.end <= prompt_tokens, InputError, "needle span [",
                span.begin, ", ", span.end, ") is not inside the prompt of ", prompt_tokens, " tokens");
    // The rule only looks at prompt positions inside the span, which needle_ids holds; the rest of the
    // prompt is not stored, so it is filled with -1 (never a generated token id).
    std::vector<int32_t> prompt(static_cast<size_t>(prompt_tokens), -1);
    std::copy(needle_ids.data.begin(), needle_ids.data.end(), prompt.begin() + span.begin);

    ArgmaxCapture capture;
    capture.n_step = static_cast<int64_t>(shape[0]);
    capture.n_layer = c.n_layer;
    capture.n_head = c.n_head;
    capture.pos = g.read_int32("capture_argmax").data;
    const auto generated = g.read_int32("generated_ids").data;
    c.scores = retrieval_scores_for_test(capture, generated, prompt, span, s.rule);
    return c;
  } catch (const pipeline::StoreError&) {
    throw;  // already names the file and the object
  } catch (const pipeline::Error& e) {
    throw InputError(str_cat("[score] ", where, ": ", e.what()));
  }
}

struct ModelResult {
  std::string source;
  std::string rule_name;
  double success_threshold = 50.0;
  int64_t n_total = 0;
  HeadScores scores;
  std::vector<std::string> test_cells;
};

std::vector<int32_t> pairs_of(const std::vector<HeadId>& heads) {
  std::vector<int32_t> out;
  out.reserve(heads.size() * 2);
  for (const auto& h : heads) {
    out.push_back(h.layer);
    out.push_back(h.head);
  }
  return out;
}

void write_model(Group& models, const std::string& name, const ModelResult& m, double retrieval_threshold) {
  HeadSummaryOptions options;
  options.retrieval_threshold = retrieval_threshold;
  HeadSummary summary = [&] {
    try {
      return summarize_heads(m.scores, options);
    } catch (const pipeline::Error& e) {
      throw InputError(str_cat("[score] model ", name, " (", m.source, ", ", m.n_total, " tests): ", e.what()));
    }
  }();
  const auto L = static_cast<uint64_t>(m.scores.n_layer);
  const auto H = static_cast<uint64_t>(m.scores.n_head);
  const auto N = static_cast<uint64_t>(m.scores.n_test);
  Group g = models.create_group(name);
  g.set_attr("source", m.source);
  g.set_attr("rule", m.rule_name);
  g.set_attr("success_threshold", m.success_threshold);
  g.set_attr("retrieval_threshold", retrieval_threshold);
  g.set_attr("n_tests_total", m.n_total);
  g.set_attr("n_tests_success", m.scores.n_test);
  g.write("test_scores", m.scores.scores, {N, L, H}, "test,layer,head");
  g.write_texts("test_cells", m.test_cells, "test");
  g.write("mean", summary.mean, {L, H}, "layer,head");
  g.write("frequency", summary.frequency, {L, H}, "layer,head");
  g.write("ranking", pairs_of(summary.ranking), {summary.ranking.size(), 2}, "rank,layer_head");
  g.write("retrieval_heads", pairs_of(summary.retrieval_heads), {summary.retrieval_heads.size(), 2},
          "rank,layer_head");
  g.write("always_on_heads", pairs_of(summary.always_on_heads), {summary.always_on_heads.size(), 2},
          "index,layer_head");
  g.write("bins", std::vector<int64_t>(summary.bins.count.begin(), summary.bins.count.end()), {4}, "bin");
  pipeline::log::info("score: ", name, " [", m.source, "] ", L, "x", H, ", ", N, "/", m.n_total, " tests: ",
                      summary.retrieval_heads.size(), " retrieval heads (mean > ", retrieval_threshold, "), ",
                      summary.always_on_heads.size(), " always on");
}

// Generate source: every rank scores its share of cells; rank 0 gets every row back.
std::map<std::string, ModelResult> score_generate(pipeline::StageContext& ctx, const Settings& s) {
  const fs::path path = ctx.store_path("generate");
  pipeline::store::File file = pipeline::store::File::open(path);
  const Group root = file.root();
  pipeline::store::require_readable(root, "generate", kGenerateSchema);
  const Group cells = root.open_group("cells");
  const std::vector<std::string> ids = cells.children();  // sorted: the same deal on every rank

  Writer w;
  int64_t mine_total = 0, mine_success = 0;
  const auto rank = static_cast<size_t>(ctx.comm.rank());
  const auto size = static_cast<size_t>(ctx.comm.size());
  for (size_t i = rank; i < ids.size(); i += size) {
    CellResult c = score_cell(cells, ids[i], s);
    ++mine_total;
    mine_success += c.success ? 1 : 0;
    serialise(w, c);
  }
  file.close();
  pipeline::log::info_all("score: scored ", mine_total, " of ", ids.size(), " cells of ", path.string(), " (",
                          mine_success, " successful)");
  std::vector<int64_t> counts{mine_total, mine_success};
  ctx.comm.allreduce_sum(counts.data(), counts.size());
  std::vector<std::string> blobs = ctx.comm.gather_bytes(w.take(), 0);

  std::map<std::string, ModelResult> out;
  if (ctx.comm.rank() != 0) return out;
  std::vector<CellResult> rows;
  for (const auto& blob : blobs) {
    Reader r(blob);
    while (!r.done()) rows.push_back(deserialise(r));
  }
  const auto n_success = std::count_if(rows.begin(), rows.end(), [](const CellResult& c) { return c.success; });
  RHEAD_CHECK(static_cast<int64_t>(rows.size()) == counts[0] && n_success == counts[1] &&
                  rows.size() == ids.size(),
              pipeline::CommError, "[score] gathered ", rows.size(), " cells (", n_success,
              " successful), but the ranks reported ", counts[0], " (", counts[1], ") of ", ids.size());
  // The official test order: needle, then context length, then depth (docs/PAPER_NOTES.md, "Retrieval score");
  // the id breaks ties.
  std::sort(rows.begin(), rows.end(), [](const CellResult& a, const CellResult& b) {
    return std::tie(a.model, a.needle, a.length, a.depth, a.id) < std::tie(b.model, b.needle, b.length, b.depth, b.id);
  });
  for (const auto& c : rows) {
    auto it = out.find(c.model);
    if (it == out.end()) {
      ModelResult m;
      m.source = "generate";
      m.rule_name = s.rule_name;
      m.success_threshold = s.success_threshold;
      m.scores = make_head_scores(c.n_layer, c.n_head);
      it = out.emplace(c.model, std::move(m)).first;
    }
    ModelResult& m = it->second;
    RHEAD_CHECK(c.n_layer == m.scores.n_layer && c.n_head == m.scores.n_head, pipeline::ShapeError, "[score] ",
                path.string(), ":/cells/", c.id, ": capture has ", c.n_layer, "x", c.n_head,
                " heads, expected ", m.scores.n_layer, "x", m.scores.n_head, " like the other cells of model ",
                c.model);
    ++m.n_total;
    if (c.success) {
      append_if_successful(m.scores, c.scores, c.rouge, s.success_threshold);
      m.test_cells.push_back(c.id);
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> ScoreStage::inputs(const pipeline::Config& job) const {
  if (uses_generate(job)) return {"generate"};
  return {};
}

std::vector<pipeline::InputFile> ScoreStage::input_files(const pipeline::Config& job) const {
  std::vector<pipeline::InputFile> files;
  for (const auto& imp : parse_imports(job)) files.push_back({"", imp.path});
  return files;
}

void ScoreStage::declare(pipeline::ConfigSchema& schema) const {
  schema
      .optional("score.rule", KeyType::String, "official_steps",
                "retrieval-score rule: official_steps (the official code: per decode step, duplicates count), "
                "set_positions or set_tokens (the paper's set recall; docs/PAPER_NOTES.md, 'Retrieval score')")
      .optional("score.success_threshold", KeyType::Float, "50",
                "a test enters the average only when its ROUGE-1 recall (x100) is above this")
      .optional("score.retrieval_threshold", KeyType::Float, "0.1", "retrieval head: mean score above this")
      .optional("score.import", KeyType::StringList, "",
                "official head_score JSON files to import: name=path.json (or just path.json: name = file stem); "
                "paths relative to the current directory")
      .optional("score.export_dir", KeyType::String, "",
                "when set, write every model's per-test scores there as <model>.json in the official format");
}

void ScoreStage::validate(const pipeline::StageContext& ctx) const {
  const auto& cfg = ctx.config;
  const Settings s = read_settings(cfg);
  RHEAD_CHECK(s.from_generate || !s.imports.empty(), ConfigError, "[config] ", cfg.source(),
              ": score has nothing to score: [job] stages has no 'generate' before 'score' and [score] import is "
              "empty. Hint: add generate before score, or import = name=path/to/head_score.json");
  RHEAD_CHECK(s.success_threshold >= 0.0 && s.success_threshold <= 100.0, ConfigError, "[config] ", cfg.source(),
              ": [score] success_threshold: got ", s.success_threshold, ", expected a ROUGE-1 recall in [0, 100]");
  RHEAD_CHECK(s.retrieval_threshold >= 0.0, ConfigError, "[config] ", cfg.source(),
              ": [score] retrieval_threshold: got ", s.retrieval_threshold, ", expected >= 0");
  for (const auto& imp : s.imports) {
    RHEAD_CHECK(fs::is_regular_file(imp.path), InputError, "[score] import ", imp.name, ": ", imp.path.string(),
                ": no such file (from '", imp.given, "', relative to the current directory ",
                fs::current_path().string(), "). Hint: run the job from the repository root");
  }
  if (!s.from_generate) return;
  const fs::path gen = ctx.store_path("generate");
  RHEAD_CHECK(pipeline::store::is_complete(gen), ConfigError, "[score] ", gen.string(),
              (fs::exists(gen) ? " is incomplete" : " is missing"),
              "; score reads the generate store because [job] stages lists generate before score. Hint: run "
              "generate first (rhead run ", cfg.source(), " --stages generate), or drop generate from [job] stages "
              "to score imports only");
  pipeline::store::File file = pipeline::store::File::open(gen);
  const Group root = file.root();
  pipeline::store::require_readable(root, "generate", kGenerateSchema);
  RHEAD_CHECK(root.has("cells"), InputError, "[score] ", gen.string(), ": no /cells group (docs/STORE.md)");
  if (root.has("models")) {
    for (const auto& model : root.open_group("models").children()) {
      for (const auto& imp : s.imports) {
        RHEAD_CHECK(imp.name != model, ConfigError, "[config] ", cfg.source(), ": [score] import: model name '",
                    imp.name, "' is also a model of ", gen.string(), ". Hint: import it as another name (name=path)");
      }
    }
  }
}

void ScoreStage::run(pipeline::StageContext& ctx) {
  const Settings s = read_settings(ctx.config);
  std::map<std::string, ModelResult> models;
  if (s.from_generate) models = score_generate(ctx, s);
  if (ctx.comm.rank() != 0) return;

  const double t0 = pipeline::log::seconds_since_start();
  for (const auto& imp : s.imports) {
    RHEAD_CHECK(models.count(imp.name) == 0, ConfigError, "[config] ", ctx.config.source(),
                ": [score] import: model name '", imp.name, "' is also a model of the generate store");
    ModelResult m;
    m.source = "import:" + imp.path.string();
    m.rule_name = store_rule_name(ScoreRule::kOfficialSteps);  // what the official code computes
    m.success_threshold = 50.0;                                   // ... and its success filter
    m.scores = read_head_score_file(imp.path);
    m.n_total = m.scores.n_test;  // the file holds successful tests only
    m.test_cells.reserve(static_cast<size_t>(m.scores.n_test));
    for (int64_t k = 0; k < m.scores.n_test; ++k) m.test_cells.push_back(str_cat("import:", k));
    models.emplace(imp.name, std::move(m));
  }
  if (!s.imports.empty()) {
    pipeline::log::info("score: imported ", s.imports.size(), " head_score file(s) in ",
                        pipeline::log::seconds_since_start() - t0, " s");
  }

  Group root = ctx.output->root();
  Group group = root.create_group("models");
  for (const auto& [name, m] : models) write_model(group, name, m, s.retrieval_threshold);
  if (!s.export_dir.empty()) {
    fs::create_directories(s.export_dir);
    for (const auto& [name, m] : models) write_head_score_file(fs::path(s.export_dir) / (name + ".json"), m.scores);
    pipeline::log::info("score: exported ", models.size(), " model(s) in the official format to ", s.export_dir);
  }
}

void ScoreStage::inspect(const Group& root, std::ostream& out) const {
  if (!root.has("models")) return;
  const Group models = root.open_group("models");
  char buf[160];
  for (const auto& name : models.children()) {
    const Group g = models.open_group(name);
    const auto mean = g.read_double("mean");
    const int64_t L = static_cast<int64_t>(mean.shape.at(0)), H = static_cast<int64_t>(mean.shape.at(1));
    const auto ranking = g.read_int32("ranking").data;
    const auto n_retrieval = g.shape_of("retrieval_heads").at(0);
    const auto n_always = g.shape_of("always_on_heads").at(0);
    const auto bins = g.read_int64("bins").data;
    const double n_heads = static_cast<double>(L * H);
    out << "model " << name << "  [" << g.attr_string("source") << "]  " << L << "x" << H << " heads, rule "
        << g.attr_string("rule") << "\n";
    out << "  tests used: " << g.attr_int("n_tests_success") << " of " << g.attr_int("n_tests_total")
        << " (ROUGE-1 recall > " << g.attr_double("success_threshold") << ")\n";
    std::snprintf(buf, sizeof buf, "  retrieval heads (mean > %g): %llu (%.1f%%)\n", g.attr_double("retrieval_threshold"),
                  static_cast<unsigned long long>(n_retrieval), 100.0 * static_cast<double>(n_retrieval) / n_heads);
    out << buf;
    std::snprintf(buf, sizeof buf, "  bins: =0 %.1f%%  (0,0.1] %.1f%%  (0.1,0.5] %.1f%%  >0.5 %.1f%%\n",
                  100.0 * static_cast<double>(bins.at(0)) / n_heads, 100.0 * static_cast<double>(bins.at(1)) / n_heads,
                  100.0 * static_cast<double>(bins.at(2)) / n_heads, 100.0 * static_cast<double>(bins.at(3)) / n_heads);
    out << buf;
    out << "  always-on heads (frequency 1): " << n_always << "\n";
    out << "  top-10:";
    for (size_t r = 0; r < 10 && 2 * r + 1 < ranking.size(); ++r) {
      const int32_t l = ranking[2 * r], h = ranking[2 * r + 1];
      std::snprintf(buf, sizeof buf, " %d-%d %.3f", l, h, mean.data[static_cast<size_t>(l * H + h)]);
      out << buf << (r + 1 < 10 && 2 * r + 3 < ranking.size() ? "," : "");
    }
    out << "\n";
  }
}

}  // namespace stages
